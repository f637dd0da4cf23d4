import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { RuntimeClient } from '../../src/runtime/client.ts'
import { addMapPayload, commitMap, prepareMap } from '../../src/runtime/commands/maps.ts'
import { setServerWeight } from '../../src/runtime/commands/servers.ts'
import { showInfo } from '../../src/runtime/commands/backends.ts'
import { startFakeHaproxy } from './fake-haproxy.ts'
import type { FakeHaproxy } from './fake-haproxy.ts'
import { changingCommands, startRuntimeCapture } from './runtime-capture.ts'
import type { RuntimeCapture } from './runtime-capture.ts'

/*
 * The capture proxy against the fake stats socket: what it records, and that both directions pass
 * through byte for byte. Its use against a real HAProxy is test/integration/state*.test.ts.
 */
const SHOW_INFO = 'Name: HAProxy\nVersion: 3.4.7\nPid: 42\nUptime_sec: 5\nStart_time_sec: 1700000000\nStopping: 0\n\n'

describe('startRuntimeCapture', () => {
  let fake: FakeHaproxy | undefined
  let capture: RuntimeCapture | undefined
  afterEach(async () => {
    await capture?.close()
    await fake?.close()
  })

  /**
   * Fake HAProxy: a `<<` line starts a payload answered (and the connection closed) at its empty line;
   * a connection not opened with `prompt i` is closed after its first reply, as HAProxy does.
   */
  async function start (): Promise<{ fake: FakeHaproxy, capture: RuntimeCapture }> {
    const inPayload = new Set<number>()
    const interactive = new Set<number>()
    fake = await startFakeHaproxy({
      script: (line, { conn, index }) => {
        if (index === 0 && line === 'prompt i') { interactive.add(conn); return undefined }
        if (line.endsWith('<<')) { inPayload.add(conn); return { stall: true } }
        if (inPayload.has(conn)) return line === '' ? { close: true, reply: '\n' } : { stall: true }
        const reply = line.startsWith('show info') ? SHOW_INFO : line.startsWith('prepare map') ? 'New version created: 7\n\n' : '\n'
        return interactive.has(conn) ? { reply } : { close: true, reply }
      }
    })
    const endpoint = fake.endpoint
    if (endpoint.kind !== 'tcp') throw new Error('tcp fake expected')
    capture = await startRuntimeCapture({ host: endpoint.host, port: endpoint.port })
    return { fake, capture }
  }

  /** Writes `bytes` one byte per write (every split point), half-closes, resolves with the whole reply. */
  function exchange (port: number, bytes: Buffer, opts: { byteByByte?: boolean } = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
      socket.once('connect', () => {
        if (opts.byteByByte === true) for (const b of bytes) socket.write(Buffer.from([b]))
        else socket.write(bytes)
      })
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.once('end', () => { socket.end(); resolve(Buffer.concat(chunks).toString('utf8')) })
      socket.once('error', reject)
    })
  }

  it('records the commands of a real client, interactive and payload, in order, and passes the replies through', async () => {
    const { fake, capture } = await start()
    const client = new RuntimeClient({ endpoint: { kind: 'tcp', host: '127.0.0.1', port: capture.port }, timeoutMs: 3000 })
    try {
      const [info] = await client.execute([showInfo(), setServerWeight('b1', 's1', 20)])
      expect(info).toMatchObject({ pid: 42, startTimeSec: 1700000000, stopping: false })
      const [version] = await client.execute([prepareMap('virt@paths.map')])
      expect(version).toBe(7)
      await client.executePayload(addMapPayload('virt@paths.map', 7, [{ key: '/a', value: 'b1' }, { key: '/é', value: 'b2' }, { key: '/c', value: 'b3' }]))
      await client.execute([commitMap('virt@paths.map', 7)])
    } finally {
      await client.close()
    }
    const all = capture.commands()
    expect(all.map(c => c.text)).toEqual([
      'prompt i', 'show info', 'set server b1/s1 weight 20',
      'prompt i', 'prepare map virt@paths.map',
      'add map @7 virt@paths.map <<',
      'prompt i', 'commit map @7 virt@paths.map'
    ])
    // HAProxy received exactly the lines the client sent, payload and its empty line included.
    expect(fake.lines()).toEqual([
      'prompt i', 'show info', 'set server b1/s1 weight 20',
      'prompt i', 'prepare map virt@paths.map',
      'add map @7 virt@paths.map <<', '/a b1', '/é b2', '/c b3', '',
      'prompt i', 'commit map @7 virt@paths.map'
    ])
    expect(all.map(c => c.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(new Set(all.map(c => c.conn)).size).toBe(4)
    expect(capture.connections).toBe(4)
    const payload = all[5]
    expect(payload?.payloadLines).toBe(3)
    expect(payload?.payload).toMatchObject({ lines: 3, bytes: Buffer.byteLength('/a b1\n/é b2\n/c b3\n'), firstLine: '/a b1', complete: true })
    expect(all.filter(c => c.payloadLines !== undefined)).toHaveLength(1)
    expect(changingCommands(all).map(c => c.text)).toEqual([
      'set server b1/s1 weight 20', 'prepare map virt@paths.map', 'add map @7 virt@paths.map <<', 'commit map @7 virt@paths.map'
    ])
    expect(capture.commands(all[5]?.conn).map(c => c.text)).toEqual(['add map @7 virt@paths.map <<'])
  })

  it('cuts lines at any chunk boundary, a UTF-8 character split across writes included, and keeps reply bytes intact', async () => {
    const { capture } = await start()
    const reply = await exchange(capture.port, Buffer.from('add map @3 virt@m.map <<\n/ü x\n/b y\n\n'), { byteByByte: true })
    expect(reply).toBe('\n')
    const [cmd, ...rest] = capture.commands()
    expect(rest).toEqual([])
    expect(cmd).toMatchObject({ text: 'add map @3 virt@m.map <<', payloadLines: 2, payload: { lines: 2, firstLine: '/ü x', complete: true } })
  })

  it('keeps payload lines only when asked, and says when a payload was cut short', async () => {
    const { fake } = await start()
    const endpoint = fake.endpoint as { host: string, port: number }
    const keeping = await startRuntimeCapture(endpoint, { keepPayloads: true })
    try {
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: keeping.port })
        s.once('connect', () => s.end('add map @1 virt@m.map <<\n/a b\n/c d\n'))
        s.once('close', () => resolve())
        s.once('error', reject)
        s.resume()
        setTimeout(() => s.destroy(), 300)
      })
      expect(keeping.commands()).toMatchObject([{ text: 'add map @1 virt@m.map <<', payloadLines: 2, payload: { text: ['/a b', '/c d'], complete: false } }])
    } finally {
      await keeping.close()
    }
  })

  it('clear() forgets, waitForCommand() resolves on a later command', async () => {
    const { capture } = await start()
    await exchange(capture.port, Buffer.from('show stat\n'))
    expect(capture.commands().map(c => c.text)).toEqual(['show stat'])
    capture.clear()
    expect(capture.commands()).toEqual([])
    const waited = capture.waitForCommand(c => c.text.startsWith('del server'), { timeoutMs: 3000 })
    await exchange(capture.port, Buffer.from('del server b1/s1\n'))
    await expect(waited).resolves.toMatchObject({ text: 'del server b1/s1', seq: 1 })
    await expect(capture.waitForCommand(() => false, { timeoutMs: 50 })).rejects.toThrow(/no matching command within 50 ms/)
  })

  it('changingCommands drops connection setup and reads only', () => {
    const list = [
      'prompt i', 'set timeout cli 30', 'experimental-mode on', 'show servers state b1', 'show map virt@paths.map',
      'add backend b1 from mydefaults', 'set server b1/s1 state drain', 'wait 5000 srv-removable b1/s1', 'showx', 'set timeout client 3'
    ].map(text => ({ text }))
    expect(changingCommands(list).map(c => c.text)).toEqual([
      'add backend b1 from mydefaults', 'set server b1/s1 state drain', 'wait 5000 srv-removable b1/s1', 'showx', 'set timeout client 3'
    ])
  })
})
