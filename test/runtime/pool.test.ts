/**
 * RuntimeClient with `persistent: true` (the pool) against the scriptable fake stats socket: reuse,
 * the process-identity check, connections HAProxy closes, the limit shared with payloads, idle
 * connections, sinks, and a deadline that does not count hapctl's own work. The same behaviour on a
 * real HAProxy (reload, restart, `shutdown session`) is in test/integration/pool.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { RuntimeClient } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { Command, ReplySink } from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError, RuntimeProtocolError, RuntimeStaleProcessError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { ProcessIdentity } from '../../src/engine/identity.ts'
import { parseShowInfo } from '../../src/runtime/parsers.ts'
import { startFakeHaproxy } from '../helpers/fake-haproxy.ts'
import type { FakeHaproxy, Script } from '../helpers/fake-haproxy.ts'

const info = (pid: number, stopping = false): string =>
  `Name: HAProxy\nVersion: 3.4.7-1\nRelease_date: 2026/10/14\nPid: ${pid}\nUptime_sec: 12\nStopping: ${stopping ? 1 : 0}\nStart_time_sec: 1795495485\n\n`

/** HAProxy-like replies; `process(conn)` says which pid (and whether stopping) a connection talks to. */
function haproxyLike (process: (conn: number) => { pid: number, stopping?: boolean } = () => ({ pid: 4242 }), extra: Script = () => undefined): Script {
  return (line, at) => {
    const step = extra(line, at)
    if (step !== undefined) return step
    if (line === 'show info') {
      const p = process(at.conn)
      return { reply: info(p.pid, p.stopping) }
    }
    if (line.startsWith('wait ')) return { reply: 'Done.\n\n' }
    if (line.startsWith('get map')) return { reply: 'Unknown map identifier. Please use #<id> or <file>.\n\n' }
    return { reply: '\n' }
  }
}

async function waitFor (predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

const fakes: FakeHaproxy[] = []
const clients: RuntimeClient[] = []

afterEach(async () => {
  await Promise.all(clients.splice(0).map(c => c.close()))
  await Promise.all(fakes.splice(0).map(f => f.close()))
})

async function setup (script: Script, options: { timeoutMs?: number, maxConnections?: number, idleMs?: number, identity?: ProcessIdentity } = {}): Promise<{ fake: FakeHaproxy, client: RuntimeClient, identity: ProcessIdentity }> {
  const fake = await startFakeHaproxy({ script })
  fakes.push(fake)
  const identity = options.identity ?? new ProcessIdentity()
  const client = new RuntimeClient({
    endpoint: fake.endpoint,
    timeoutMs: options.timeoutMs ?? 5000,
    maxConnections: options.maxConnections,
    persistent: true,
    identity,
    idleMs: options.idleMs
  })
  clients.push(client)
  return { fake, client, identity }
}

const add = (i: number): Command<void> => cmd.addMapEntry('virt@a.map', `k${i}`, `v${i}`)

describe('a pool of persistent connections', () => {
  it('sends every call of a sequence of calls on one connection, set up once', async () => {
    const { fake, client, identity } = await setup(haproxyLike())
    for (let i = 0; i < 5; i++) await client.execute([add(i)])
    expect(fake.connections).toBe(1)
    expect(fake.lines(1)).toEqual([
      'prompt i', 'set timeout cli 40', 'show info',
      ...Array.from({ length: 5 }, (_, i) => `add map virt@a.map k${i} v${i}`)
    ])
    expect(fake.pipelined).toEqual([])
    // The connection's process became the current one.
    expect(identity.current).toBe('4242@1795495485')
    expect(client.stats).toMatchObject({ open: 1, idle: 1, opened: 1 })
  })

  it('never sends a command on a connection to a process that is no longer the current one', async () => {
    let pid = 4242
    const { fake, client, identity } = await setup(haproxyLike(() => ({ pid })))
    await client.execute([add(1)])
    // A reload: the reconciler's poll (another client) meets the new worker.
    pid = 5000
    identity.observe(parseShowInfo(info(5000).trimEnd()))
    await waitFor(() => fake.open === 0)
    await client.execute([add(2)])
    expect(fake.lines(1)).not.toContain('add map virt@a.map k2 v2')
    expect(fake.lines(2)).toEqual(['prompt i', 'set timeout cli 40', 'show info', 'add map virt@a.map k2 v2'])
  })

  it('closes a connection in use by a replaced process once its call ends, instead of putting it back', async () => {
    let pid = 4242
    const { fake, client, identity } = await setup(haproxyLike(() => ({ pid }), line => line.startsWith('add map') ? { reply: '\n', delayMs: 100 } : undefined))
    const inFlight = client.execute([add(1)])
    await waitFor(() => fake.lines(1).includes('add map virt@a.map k1 v1'))
    pid = 5000
    identity.observe(parseShowInfo(info(5000).trimEnd()))
    await inFlight
    await client.execute([add(2)])
    expect(fake.connections).toBe(2)
    expect(fake.lines(2)).toContain('add map virt@a.map k2 v2')
  })

  it('does not use a new connection that meets a stopping process (an old worker during a reload)', async () => {
    const { fake, client, identity } = await setup(haproxyLike(conn => conn === 1 ? { pid: 4000, stopping: true } : { pid: 4242 }))
    await client.execute([add(1)])
    expect(fake.lines(1)).toEqual(['prompt i', 'set timeout cli 40', 'show info'])
    expect(fake.lines(2)).toContain('add map virt@a.map k1 v1')
    expect(identity.current).toBe('4242@1795495485')
  })

  it('says so (RuntimeStaleProcessError) when a kept connection\'s old worker refuses a call (a reload not noticed yet), and goes to the current process next', async () => {
    let reloaded = false
    const { fake, client, identity } = await setup(haproxyLike(
      conn => conn === 1 ? { pid: 4242, stopping: reloaded } : { pid: 5000 },
      (line, at) => line.startsWith('set server') && at.conn === 1 && reloaded ? { reply: 'Proxy is disabled.\n\n' } : undefined))
    await client.execute([cmd.setServerWeight('b1', 's1', 5)])
    reloaded = true
    // The old worker refuses; the client asks it `show info` and sees it stopping: the caller (the
    // executor) starts its operation again, and the next call goes to the new process.
    const err = await client.execute([cmd.setServerWeight('b1', 's1', 6)]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RuntimeStaleProcessError)
    expect(fake.lines(1).slice(-2)).toEqual(['set server b1/s1 weight 6', 'show info'])
    await client.execute([cmd.setServerWeight('b1', 's1', 6)])
    expect(fake.lines(2)).toContain('set server b1/s1 weight 6')
    expect(identity.current).toBe('5000@1795495485')
    // An ordinary refusal from a current process is believed as it is, after one check.
    const refusal = await client.execute([cmd.getMapLookup('virt@nope.map', 'k')]).catch((e: unknown) => e)
    expect(refusal).toBeInstanceOf(RuntimeCommandError)
  })

  it('asks a connection unused for a while which process it reaches before sending anything on it', async () => {
    let reloaded = false
    const { fake, client, identity } = await setup(haproxyLike(conn => conn === 1 ? { pid: 4242, stopping: reloaded } : { pid: 5000 }))
    await client.execute([add(1)])
    await client.execute([add(2)])
    // Used again at once: no check.
    expect(fake.lines(1).filter(l => l === 'show info').length).toBe(1)
    await new Promise(resolve => setTimeout(resolve, 300))
    reloaded = true
    await client.execute([add(3)])
    expect(fake.lines(1).slice(-1)).toEqual(['show info'])
    expect(fake.lines(1)).not.toContain('add map virt@a.map k3 v3')
    expect(fake.lines(2)).toContain('add map virt@a.map k3 v3')
    expect(identity.current).toBe('5000@1795495485')
  })

  it('believes a refusal from a process that is not stopping, checking it once', async () => {
    const { fake, client } = await setup(haproxyLike(undefined, line => line.startsWith('set server') ? { reply: 'Require \'backend/server\'.\n\n' } : undefined))
    await client.execute([add(1)])
    const err = await client.execute([cmd.setServerWeight('b1', 's1', 5)]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RuntimeCommandError)
    expect(fake.connections).toBe(1)
    expect(fake.lines(1).slice(-2)).toEqual(['set server b1/s1 weight 5', 'show info'])
  })

  it('gives up with RuntimeUnavailableError when only stopping processes answer', async () => {
    const { fake, client } = await setup(haproxyLike(() => ({ pid: 4000, stopping: true })))
    const err = await client.execute([add(1)]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RuntimeUnavailableError)
    expect((err as Error).message).toMatch(/stopping or replaced/)
    expect(fake.received.filter(r => r.line.startsWith('add map'))).toEqual([])
  })

  it('replaces a connection HAProxy closed while it was idle, without failing the next call', async () => {
    const { fake, client } = await setup(haproxyLike())
    await client.execute([add(1)])
    fake.drop(1)
    await waitFor(() => client.stats.open === 0)
    await client.execute([add(2)])
    expect(fake.lines(2)).toContain('add map virt@a.map k2 v2')
  })

  it('sends a read again on a new connection when a kept one closes before answering it (its close not seen yet); a write is reported, not resent', async () => {
    // Connection 1 closes, without a byte, on the first command of its second call, as a connection
    // cut by `shutdown session` just before it is picked does.
    const closeOnce = (line: string, at: { conn: number, index: number }): { close: true } | undefined =>
      at.conn === 1 && (line.startsWith('show map') || line.startsWith('add map virt@a.map k9')) ? { close: true } : undefined
    const { fake, client } = await setup(haproxyLike(undefined, closeOnce))
    await client.execute([add(1)])
    const [listing] = await client.execute([cmd.showMapEntries('virt@a.map')] as const)
    expect(listing).toEqual([])
    expect(fake.connections).toBe(2)
    expect(fake.lines(1)).toContain('show map virt@a.map')
    expect(fake.lines(2)).toContain('show map virt@a.map')

    // The same for a write: its outcome is unknown, so the error reaches the caller.
    const second = await setup(haproxyLike(undefined, closeOnce))
    await second.client.execute([add(1)])
    const lost = await second.client.execute([add(9)]).catch((e: unknown) => e)
    expect(lost).toBeInstanceOf(RuntimeProtocolError)
    expect(second.fake.connections).toBe(1)
  })

  it('keeps a connection after a refusal, and closes it after a timeout', async () => {
    const { fake, client } = await setup(haproxyLike(undefined, line => line.startsWith('set map') ? { stall: true } : undefined), { timeoutMs: 300 })
    const refused = await client.execute([cmd.getMapLookup('virt@nope.map', 'k')]).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(RuntimeCommandError)
    await client.execute([add(1)])
    expect(fake.connections).toBe(1)
    const timedOut = await client.execute([cmd.setMapEntry('virt@a.map', 'k1', 'v')]).catch((e: unknown) => e)
    expect(timedOut).toBeInstanceOf(RuntimeTimeoutError)
    // A reply may still come for the command that timed out: that connection is never used again.
    await client.execute([add(2)])
    expect(fake.connections).toBe(2)
    expect(fake.lines(2)).toContain('add map virt@a.map k2 v2')
  })

  it('sends experimental-mode on and a longer CLI timeout once per connection, only when needed', async () => {
    const { fake, client } = await setup(haproxyLike(undefined, line => line.startsWith('add backend') ? { reply: 'New backend registered.\n\n' } : undefined))
    await client.execute([cmd.addBackend('b1', 'd')])
    await client.execute([cmd.addBackend('b2', 'd')])
    await client.execute([cmd.waitServerRemovable('b1', 's1', 60_000)])
    await client.execute([cmd.waitServerRemovable('b1', 's1', 60_000)])
    const lines = fake.lines(1)
    expect(lines.filter(l => l.startsWith('experimental-mode')).length).toBeLessThanOrEqual(1)
    expect(lines.filter(l => l === 'experimental-mode on').length).toBe(cmd.addBackend('b1', 'd').experimental === true ? 1 : 0)
    expect(lines.filter(l => l.startsWith('set timeout cli'))).toEqual(['set timeout cli 40', 'set timeout cli 70'])
  })

  it('keeps pooled and payload connections within maxConnections together', async () => {
    // A payload connection: the command line and payload lines get nothing, the empty line ends it.
    const payloads: Script = line => line.startsWith('add map @1') || /^p\d+ v$/.test(line)
      ? { stall: true }
      : line === '' ? { close: true, reply: '\n', delayMs: 30 } : line.startsWith('add map') ? { reply: '\n', delayMs: 30 } : undefined
    const { fake, client } = await setup(haproxyLike(undefined, payloads), { maxConnections: 2 })
    const calls: Array<Promise<unknown>> = []
    for (let i = 0; i < 12; i++) {
      calls.push(client.execute([add(i)]))
      calls.push(client.executePayload({ ...cmd.setMapEntry('virt@a.map', `p${i}`, 'v'), text: 'add map @1 virt@a.map', payload: `p${i} v\n` }))
    }
    await Promise.all(calls)
    expect(fake.maxOpen).toBeLessThanOrEqual(2)
    // Payloads went on connections of their own, never after `prompt i`.
    const payloadConns = new Set(fake.received.filter(r => r.line === 'add map @1 virt@a.map').map(r => r.conn))
    for (const conn of payloadConns) expect(fake.lines(conn)[0]).toBe('add map @1 virt@a.map')
    expect(fake.received.filter(r => r.line.startsWith('add map virt@a.map')).length).toBe(12)
  })

  it('closes a connection that stayed unused for idleMs', async () => {
    const { fake, client } = await setup(haproxyLike(), { idleMs: 100 })
    await client.execute([add(1)])
    expect(fake.open).toBe(1)
    // Both sides see the close, hapctl's a moment after the fake's.
    await waitFor(() => fake.open === 0 && client.stats.open === 0, 2000)
    await client.execute([add(2)])
    expect(fake.connections).toBe(2)
  })

  it('serves calls over the limit in order as connections come back', async () => {
    const { fake, client } = await setup(haproxyLike(undefined, line => line.startsWith('add map') ? { reply: '\n', delayMs: 10 } : undefined), { maxConnections: 3 })
    await Promise.all(Array.from({ length: 60 }, (_, i) => client.execute([add(i)])))
    expect(fake.maxOpen).toBeLessThanOrEqual(3)
    expect(fake.connections).toBeLessThanOrEqual(3)
    expect(client.stats).toMatchObject({ waiting: 0, opened: fake.connections })
  })
})

describe('replies', () => {
  it('gives a sink the reply in pieces as it arrives, and its value is the result', async () => {
    const big = Array.from({ length: 40_000 }, (_, i) => `0x${i.toString(16)} key${i} value${i}`).join('\n')
    const { client } = await setup(haproxyLike(undefined, line => line === 'show map virt@a.map' ? { reply: big + '\n\n' } : undefined))
    const pieces: string[] = []
    const sink = (): ReplySink<number> => ({ write: text => { pieces.push(text) }, end: () => pieces.join('').split('\n').length })
    const showMap: Command<number> = { text: 'show map virt@a.map', verb: 'show map', parse: reply => reply.split('\n').length, sink }
    const [lines] = await client.execute([showMap])
    expect(lines).toBe(40_000)
    expect(pieces.join('')).toBe(big)
    expect(pieces.length).toBeGreaterThan(1)
  })

  it('does not time out a reply that arrived while hapctl was too busy to read it', async () => {
    const { fake, client } = await setup(haproxyLike(undefined, line => line.startsWith('add map') ? { reply: '\n', delayMs: 50 } : undefined), { timeoutMs: 200 })
    await client.execute([add(0)])
    const call = client.execute([add(1)])
    await waitFor(() => fake.lines(1).includes('add map virt@a.map k1 v1'))
    // hapctl busy (parsing other replies): the deadline's timer and the reply are both due when it is done.
    const until = Date.now() + 500
    while (Date.now() < until) { /* busy */ }
    await expect(call).resolves.toEqual([undefined])
  })

  it('does not count against HAProxy the time hapctl was too busy to send the command', async () => {
    const { client } = await setup(haproxyLike(undefined, line => line.startsWith('add map') ? { reply: '\n', delayMs: 50 } : undefined), { timeoutMs: 200 })
    await client.execute([add(0)])
    const call = client.execute([add(1)])
    const until = Date.now() + 500
    while (Date.now() < until) { /* busy before the command could go out */ }
    await expect(call).resolves.toEqual([undefined])
  })

  it('gives a call that waited for one of hapctl\'s connections its time with HAProxy once it has one', async () => {
    const { client } = await setup(haproxyLike(undefined, line => line.startsWith('add map') ? { reply: '\n', delayMs: 220 } : undefined), { timeoutMs: 300, maxConnections: 1 })
    await client.execute([cmd.showInfo()])
    // The second waits ~220 ms for the connection, then HAProxy takes 220 ms more: over 300 ms in all.
    await expect(Promise.all([client.execute([add(1)]), client.execute([add(2)])])).resolves.toEqual([[undefined], [undefined]])
  })

  it('still times out when nothing arrives', async () => {
    const { client } = await setup(haproxyLike(undefined, line => line.startsWith('add map') ? { stall: true } : undefined), { timeoutMs: 200 })
    const started = Date.now()
    await expect(client.execute([add(1)])).rejects.toBeInstanceOf(RuntimeTimeoutError)
    expect(Date.now() - started).toBeLessThan(3000)
  })
})
