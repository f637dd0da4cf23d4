/**
 * RuntimeClient against a scriptable fake stats socket (test/helpers/fake-haproxy.ts), over TCP and a
 * unix socket: sequencing, refusals, deadlines, broken replies and the connection limit.
 */
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { RuntimeClient } from '../../src/runtime/client.ts'
import type { Endpoint } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { AddBackendResult } from '../../src/runtime/commands/index.ts'
import type { ProcessInfo } from '../../src/runtime/parsers.ts'
import { RuntimeBusyError, RuntimeCommandError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { startFakeHaproxy } from '../helpers/fake-haproxy.ts'
import type { FakeHaproxy, Script } from '../helpers/fake-haproxy.ts'

const INFO = 'Name: HAProxy\nVersion: 3.4.7-1\nRelease_date: 2026/10/14\nNbthread: 2\nPid: 4242\nUptime_sec: 12\nStopping: 0\nnode: fake\nStart_time_sec: 1795495485\n\n'
const TOO_BIG = "The command line is too big for the buffer size. Please change 'tune.bufsize' in the configuration to use a bigger command."

/** HAProxy's replies to the commands these tests send, each after `delayMs`. */
function haproxyLike (delayMs = 0, overrides: Record<string, ReturnType<Script>> = {}): Script {
  const replies: Record<string, string> = {
    'show info': INFO,
    'experimental-mode on': '\n',
    'add backend dyn1 from mydefaults': 'New backend registered.\n\n',
    'publish backend dyn1': 'Backend published.\n\n',
    'unpublish backend dyn1': 'Backend unpublished.\n\n',
    'del backend dyn1': 'Backend deleted.\n\n',
    'set server dyn1/s1 state ready': '\n'
  }
  return line => {
    if (line in overrides) return overrides[line]
    const reply = replies[line]
    if (line === 'prompt i' || reply === undefined) return { reply: '\n', delayMs }
    return { reply, delayMs }
  }
}

const fakes: FakeHaproxy[] = []
const clients: RuntimeClient[] = []

async function setup (transport: 'tcp' | 'unix', script: Script, options: { timeoutMs?: number, maxConnections?: number } = {}): Promise<{ fake: FakeHaproxy, client: RuntimeClient }> {
  const fake = await startFakeHaproxy({ transport, script })
  fakes.push(fake)
  const client = new RuntimeClient({ endpoint: fake.endpoint, timeoutMs: options.timeoutMs ?? 5000, maxConnections: options.maxConnections })
  clients.push(client)
  return { fake, client }
}

async function rejectionOf (p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection, got a result')
}

async function waitFor (predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map(c => c.close()))
  await Promise.all(fakes.splice(0).map(f => f.close()))
})

describe.each(['tcp', 'unix'] as const)('over %s', transport => {
  it('runs a sequence on one connection, one command at a time, and resolves with every result', async () => {
    const { fake, client } = await setup(transport, haproxyLike(30))
    const results = await client.execute([
      cmd.showInfo(),
      cmd.addBackend('dyn1', 'mydefaults'),
      cmd.publishBackend('dyn1'),
      cmd.setServerState('dyn1', 's1', 'ready')
    ])
    expectTypeOf(results).toEqualTypeOf<[ProcessInfo, AddBackendResult, void, void]>()
    expect(results).toEqual([
      { version: '3.4.7-1', releaseDate: '2026/10/14', pid: 4242, uptimeSec: 12, startTimeSec: 1795495485, stopping: false, nodeName: 'fake' },
      { dynamicServers: true, note: undefined },
      undefined,
      undefined
    ])
    expect(fake.received.map(r => r.line)).toEqual([
      'prompt i',
      'show info',
      'experimental-mode on',
      'add backend dyn1 from mydefaults',
      'publish backend dyn1',
      'set server dyn1/s1 state ready'
    ])
    expect(fake.connections).toBe(1)
    // Every reply was delayed: a client writing ahead of the replies would show up here.
    expect(fake.pipelined).toEqual([])
  })

  it('stops at the first refusal; later commands are never sent', async () => {
    const { fake, client } = await setup(transport, haproxyLike(0, {
      'del backend dyn1': { reply: 'Backend must be unpublished prior to its deletion.\n\n' }
    }))
    const err = await rejectionOf(client.execute([cmd.unpublishBackend('dyn1'), cmd.delBackend('dyn1'), cmd.publishBackend('dyn1')]))
    expect(err).toBeInstanceOf(RuntimeCommandError)
    expect(err).toMatchObject({ verb: 'del backend', kind: 'conflict', index: 1, haproxyMessage: 'Backend must be unpublished prior to its deletion.' })
    await waitFor(() => fake.open === 0)
    expect(fake.lines()).toEqual(['prompt i', 'unpublish backend dyn1', 'experimental-mode on', 'del backend dyn1'])
  })

  it('fails with RuntimeUnavailableError once the server is gone, and works again after it restarts', async () => {
    const { fake, client } = await setup(transport, haproxyLike())
    await expect(client.execute([cmd.publishBackend('dyn1')])).resolves.toEqual([undefined])
    await fake.stop()
    await expect(client.execute([cmd.publishBackend('dyn1')])).rejects.toBeInstanceOf(RuntimeUnavailableError)
    await fake.start()
    await expect(client.execute([cmd.publishBackend('dyn1')])).resolves.toEqual([undefined])
    expect(fake.connections).toBe(2)
    expect(fake.lines(2)).toEqual(['prompt i', 'publish backend dyn1'])
  })
})

describe('experimental mode', () => {
  it('is switched on once, right before the first experimental command', async () => {
    const { fake, client } = await setup('tcp', haproxyLike())
    await client.execute([cmd.publishBackend('dyn1'), cmd.unpublishBackend('dyn1'), cmd.delBackend('dyn1'), cmd.addBackend('dyn1', 'mydefaults'), cmd.delBackend('dyn1')])
    expect(fake.lines()).toEqual([
      'prompt i',
      'publish backend dyn1',
      'unpublish backend dyn1',
      'experimental-mode on',
      'del backend dyn1',
      'add backend dyn1 from mydefaults',
      'del backend dyn1'
    ])
  })

  it('is not sent for a sequence without experimental commands', async () => {
    const { fake, client } = await setup('tcp', haproxyLike())
    await client.execute([cmd.showInfo(), cmd.publishBackend('dyn1')])
    expect(fake.lines()).not.toContain('experimental-mode on')
  })

  it('a refusal of experimental-mode stops the sequence before the experimental command', async () => {
    const { fake, client } = await setup('tcp', haproxyLike(0, { 'experimental-mode on': { reply: 'Permission denied\n\n' } }))
    const err = await rejectionOf(client.execute([cmd.showInfo(), cmd.addBackend('dyn1', 'mydefaults')]))
    expect(err).toMatchObject({ kind: 'forbidden', verb: 'experimental-mode on', index: 1 })
    expect(fake.lines()).not.toContain('add backend dyn1 from mydefaults')
  })
})

describe('deadlines', () => {
  it('a stalled reply fails with RuntimeTimeoutError naming the command', async () => {
    const { fake, client } = await setup('tcp', haproxyLike(0, { 'publish backend dyn1': { stall: true } }), { timeoutMs: 300 })
    const started = Date.now()
    const err = await rejectionOf(client.execute([cmd.showInfo(), cmd.publishBackend('dyn1'), cmd.setServerState('dyn1', 's1', 'ready')]))
    const elapsed = Date.now() - started
    expect(err).toBeInstanceOf(RuntimeTimeoutError)
    expect(err).toMatchObject({ verb: 'publish backend', timeoutMs: 300, code: 'RUNTIME_TIMEOUT' })
    // Where it stopped: one reply received, the second command sent and unanswered, the third never sent.
    expect(err).toMatchObject({ position: { done: 1, inFlight: true } })
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(10_000)
    await waitFor(() => fake.open === 0)
    expect(fake.lines()).not.toContain('set server dyn1/s1 state ready')
  })

  it('a per-call timeoutMs overrides the client deadline', async () => {
    const { client } = await setup('tcp', haproxyLike(0, { 'show info': { stall: true } }), { timeoutMs: 60_000 })
    const err = await rejectionOf(client.execute([cmd.showInfo()], { timeoutMs: 200 }))
    expect(err).toMatchObject({ name: 'RuntimeTimeoutError', timeoutMs: 200, verb: 'show info' })
  })

  it('extraTimeMs of a wait command extends the deadline', async () => {
    const slow = { reply: 'Done.\n\n', delayMs: 800 }
    const { client } = await setup('tcp', haproxyLike(0, {
      'wait 5000ms be-removable dyn1': slow,
      'publish backend dyn1': { reply: 'Backend published.\n\n', delayMs: 800 }
    }), { timeoutMs: 300 })
    // The same delay without a wait command is over the deadline…
    await expect(client.execute([cmd.publishBackend('dyn1')])).rejects.toBeInstanceOf(RuntimeTimeoutError)
    // …but within it once the wait's own delay is added.
    await expect(client.execute([cmd.waitBackendRemovable('dyn1', 5000)])).resolves.toEqual([undefined])
  })
})

describe('broken replies', () => {
  it('garbage in answer to `prompt i` is a RuntimeProtocolError', async () => {
    const { fake, client } = await setup('tcp', line => line === 'prompt i' ? { reply: 'HTTP/1.1 400 Bad request\r\nContent-Length: 0\r\n\r\n<html>\n\n' } : undefined)
    const err = await rejectionOf(client.execute([cmd.showInfo()]))
    expect(err).toBeInstanceOf(RuntimeProtocolError)
    await waitFor(() => fake.open === 0)
    expect(fake.lines()).toEqual(['prompt i'])
  })

  it('a connection dropped mid-line is a RuntimeProtocolError naming the command', async () => {
    const { client } = await setup('tcp', haproxyLike(0, { 'publish backend dyn1': { close: true, reply: 'Backend pub' } }))
    const err = await rejectionOf(client.execute([cmd.publishBackend('dyn1')]))
    expect(err).toBeInstanceOf(RuntimeProtocolError)
    expect(err).toMatchObject({ verb: 'publish backend' })
  })

  it('a multi-line reply cut at a line end is a RuntimeProtocolError, not a shorter result', async () => {
    const partial = '# pxname,svname,status,type,\nwebservers,web1,UP,2,\n'
    const { client } = await setup('tcp', haproxyLike(0, { 'show stat': { close: true, reply: partial } }))
    const err = await rejectionOf(client.execute([cmd.showStat()]))
    expect(err).toBeInstanceOf(RuntimeProtocolError)
    expect(err).toMatchObject({ verb: 'show stat' })
  })

  it('a connection closed without any reply is a RuntimeProtocolError', async () => {
    const { client } = await setup('unix', haproxyLike(0, { 'show info': { close: true } }))
    await expect(client.execute([cmd.showInfo()])).rejects.toBeInstanceOf(RuntimeProtocolError)
  })

  it('"The command line is too big…" ending with one newline and a close is that command\'s refusal', async () => {
    const { client } = await setup('tcp', line => line.startsWith('add map ') ? { close: true, reply: TOO_BIG + '\n' } : undefined)
    const err = await rejectionOf(client.execute([cmd.setServerState('a', 'b', 'ready'), cmd.addMapEntry('virt@paths.map', '/a', 'dyn1')]))
    expect(err).toBeInstanceOf(RuntimeCommandError)
    expect(err).toMatchObject({ verb: 'add map', index: 1, haproxyMessage: TOO_BIG })
  })
})

describe('unreachable socket', () => {
  it('connection refused is RuntimeUnavailableError', async () => {
    const fake = await startFakeHaproxy()
    const endpoint = fake.endpoint
    await fake.close()
    const client = new RuntimeClient({ endpoint, timeoutMs: 5000 })
    clients.push(client)
    const err = await rejectionOf(client.execute([cmd.showInfo()]))
    expect(err).toBeInstanceOf(RuntimeUnavailableError)
    expect(err).toMatchObject({ code: 'RUNTIME_UNAVAILABLE', endpoint: `tcp://127.0.0.1:${endpoint.kind === 'tcp' ? endpoint.port : 0}` })
    expect(err.message).toContain('ECONNREFUSED')
  })

  it('a missing unix socket is RuntimeUnavailableError', async () => {
    const endpoint: Endpoint = { kind: 'unix', path: '/nonexistent-hapctl-dir/admin.sock' }
    const client = new RuntimeClient({ endpoint, timeoutMs: 5000 })
    clients.push(client)
    const err = await rejectionOf(client.execute([cmd.showInfo()]))
    expect(err).toBeInstanceOf(RuntimeUnavailableError)
    expect(err.message).toContain('ENOENT')
    expect(err.message).toContain('unix:///nonexistent-hapctl-dir/admin.sock')
  })
})

describe('connection limit', () => {
  it('never opens more than maxConnections at once; the others wait their turn and succeed', async () => {
    const script: Script = line => {
      if (line === 'publish backend dyn1') return { reply: 'Backend published.\n\n', delayMs: 60, last: true }
      return { reply: line === 'show info' ? INFO : '\n', delayMs: 20 }
    }
    const { fake, client } = await setup('tcp', script, { maxConnections: 2 })
    const calls = Array.from({ length: 6 }, () => client.execute([cmd.showInfo(), cmd.publishBackend('dyn1')]))
    const results = await Promise.all(calls)
    expect(results).toHaveLength(6)
    for (const [info, published] of results) {
      expect(info.pid).toBe(4242)
      expect(published).toBeUndefined()
    }
    expect(fake.connections).toBe(6)
    expect(fake.maxOpen).toBe(2)
  })

  it('a queued caller gives up with RuntimeBusyError if no slot frees, having sent nothing', async () => {
    const { fake, client } = await setup('tcp', haproxyLike(0, { 'show info': { stall: true } }), { maxConnections: 1, timeoutMs: 60_000 })
    const first = client.execute([cmd.showInfo()])
    first.catch(() => {})
    await waitFor(() => fake.lines().includes('show info'))
    const err = await rejectionOf(client.execute([cmd.publishBackend('dyn1')], { timeoutMs: 300 }))
    expect(err).toBeInstanceOf(RuntimeBusyError)
    expect(err).toMatchObject({ timeoutMs: 300, code: 'RUNTIME_BUSY' })
    expect(fake.connections).toBe(1)
    await client.close()
    await expect(first).rejects.toBeInstanceOf(RuntimeProtocolError)
  })
})

describe('close()', () => {
  it('makes later calls fail with RuntimeUnavailableError without connecting', async () => {
    const { fake, client } = await setup('tcp', haproxyLike())
    await client.execute([cmd.showInfo()])
    await client.close()
    const err = await rejectionOf(client.execute([cmd.showInfo()]))
    expect(err).toBeInstanceOf(RuntimeUnavailableError)
    expect(fake.connections).toBe(1)
  })

  it('fails queued callers with RuntimeUnavailableError', async () => {
    const { fake, client } = await setup('tcp', haproxyLike(0, { 'show info': { stall: true } }), { maxConnections: 1 })
    const first = client.execute([cmd.showInfo()])
    first.catch(() => {})
    await waitFor(() => fake.lines().includes('show info'))
    const queued = client.execute([cmd.publishBackend('dyn1')])
    queued.catch(() => {})
    await client.close()
    await expect(queued).rejects.toBeInstanceOf(RuntimeUnavailableError)
    await expect(first).rejects.toBeInstanceOf(RuntimeError)
  })
})
