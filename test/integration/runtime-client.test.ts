import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { parseEndpoint } from '../../src/config.ts'
import { RuntimeClient } from '../../src/runtime/client.ts'
import type { Endpoint } from '../../src/runtime/client.ts'
import {
  addBackend, delBackend, expectDone, experimentalModeOn, line, publishBackend, showBackend, showInfo, showStat, unpublishBackend
} from '../../src/runtime/commands/index.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError } from '../../src/runtime/errors.ts'
import { StatType } from '../../src/runtime/parsers.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The Runtime API client against a real HAProxy 3.4, over its TCP and its unix stats socket:
 * command sequences on one interactive connection, stopping at the first refusal, the experimental
 * commands, and the connection cap that keeps it under HAProxy's 10 connections per socket.
 */

let h: HaproxyInstance
let proxyDir: string
const clients: RuntimeClient[] = []

beforeAll(async () => {
  h = await startHaproxy()
  proxyDir = await mkdtemp(join(tmpdir(), 'hapctl-it-proxy-'))
})

afterAll(async () => {
  await Promise.allSettled(clients.map(c => c.close()))
  await h?.stop()
  if (proxyDir !== undefined) await rm(proxyDir, { recursive: true, force: true })
})

function clientFor (endpoint: Endpoint, maxConnections = 4): RuntimeClient {
  const client = new RuntimeClient({ endpoint, timeoutMs: 10_000, maxConnections })
  clients.push(client)
  return client
}

async function backendNames (): Promise<string[]> {
  return (await h.cli('show backend')).split('\n').slice(1).filter(l => l !== '')
}

/** Status column of the BACKEND row, read through the test's own CLI connection. */
async function backendStatus (name: string): Promise<string | undefined> {
  const lines = (await h.cli(`show stat ${name} -1 -1`)).split('\n').filter(l => l !== '')
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  const row = lines.slice(1).map(l => l.split(',')).find(c => c[header.indexOf('svname')] === 'BACKEND')
  return row?.[header.indexOf('status')]
}

/** `wait <ms>ms` (management §9.3 `wait`): holds the connection that long, then answers `Done.`. */
function hold (ms: number): Command<void> {
  return { text: line('wait', `${ms}ms`), verb: 'wait', parse: expectDone('wait'), extraTimeMs: ms }
}

/**
 * A pass-through proxy in front of a stats socket that counts the `wait` commands in progress at once
 * (seen going up, until their `Done.` comes down), so the test sees the client's cap from outside the
 * client. Counting open connections instead would be racy: the proxy can accept the next connection
 * before it notices that the client closed the previous one.
 */
async function countingProxy (target: Endpoint, listenOn: { port: 0 } | { path: string }): Promise<{ endpoint: Endpoint, peak: () => number, connections: () => number, close: () => Promise<void> }> {
  let busy = 0
  let peak = 0
  let connections = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((down) => {
    connections++
    const up = target.kind === 'tcp' ? connect({ host: target.host, port: target.port }) : connect({ path: target.path })
    sockets.add(down).add(up)
    let sent = ''
    let received = ''
    let holding = false
    down.on('data', (chunk: Buffer) => {
      sent += chunk.toString('latin1')
      if (!holding && sent.includes('\nwait ')) {
        holding = true
        peak = Math.max(peak, ++busy)
      }
      up.write(chunk)
    })
    up.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
      if (holding && received.includes('Done.\n')) {
        holding = false
        busy--
      }
      down.write(chunk)
    })
    const end = (): void => {
      if (holding) { holding = false; busy-- }
      down.destroy()
      up.destroy()
    }
    for (const s of [down, up]) {
      s.once('close', () => { sockets.delete(s); end() })
      s.on('error', end)
    }
  })
  await new Promise<void>((resolve) => 'path' in listenOn ? server.listen(listenOn.path, resolve) : server.listen(0, '127.0.0.1', resolve))
  const endpoint: Endpoint = 'path' in listenOn
    ? { kind: 'unix', path: listenOn.path }
    : { kind: 'tcp', host: '127.0.0.1', port: (server.address() as { port: number }).port }
  return {
    endpoint,
    peak: () => peak,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

describe.each([
  { transport: 'tcp', endpoint: () => parseEndpoint(h.runtimeApi), proxyListen: () => ({ port: 0 as const }) },
  { transport: 'unix', endpoint: () => parseEndpoint(h.unixRuntimeApi), proxyListen: () => ({ path: join(proxyDir, 'proxy.sock') }) }
])('RuntimeClient over $transport', ({ transport, endpoint, proxyListen }) => {
  it('parses the endpoint of the running instance', () => {
    expect(endpoint().kind).toBe(transport)
  })

  it('runs a sequence of commands in order on one connection', async () => {
    const name = `seq_${transport}`
    const client = clientFor(endpoint())
    const [info, added, published, stat, unpublished, deleted, names] = await client.execute([
      showInfo(), addBackend(name, 'mydefaults'), publishBackend(name), showStat(name), unpublishBackend(name), delBackend(name), showBackend()
    ])
    expect(info.pid).toBe(h.pid)
    expect(info.version).toMatch(/^3\.4\./)
    expect(added).toEqual({ dynamicServers: true, note: undefined })
    expect([published, unpublished]).toEqual([undefined, undefined])
    // `unpublish` emptied the thread's notice buffer: the verdict is there.
    expect(deleted).toEqual({ confirmed: true })
    // show stat ran after publish and before unpublish.
    expect(stat.find(r => r.type === StatType.BACKEND)).toMatchObject({ pxname: name, status: 'UP' })
    expect(names).not.toContain(name)
    expect(names).toContain('webservers')
    expect(await backendNames()).not.toContain(name)
  })

  it('stops at the first refused command: the later ones are not sent', async () => {
    const name = `stop_${transport}`
    onTestFinished(async () => { await h.cli(`del backend ${name}`) })
    const client = clientFor(endpoint())
    const err = await client.execute([addBackend(name, 'mydefaults'), addBackend(name, 'mydefaults'), publishBackend(name)])
      .then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(RuntimeCommandError)
    expect(err).toMatchObject({ index: 1, verb: 'add backend', kind: 'exists' })
    expect((err as RuntimeCommandError).haproxyMessage).toMatch(/name is already used by other proxy 'backend stop_/)
    // The first command ran, the third did not: the backend exists and is still unpublished.
    expect(await backendNames()).toContain(name)
    expect(await backendStatus(name)).toBe('UP (UNPUB)')
  })

  it('turns experimental mode on, then adds and deletes a backend', async () => {
    const name = `exp_${transport}`
    const client = clientFor(endpoint())
    const [modeOn, added, during, deleted] = await client.execute([
      experimentalModeOn(), addBackend(name, 'mydefaults'), showBackend(), delBackend(name)
    ])
    expect(modeOn).toBeUndefined()
    expect(added).toEqual({ dynamicServers: true, note: undefined })
    expect(during).toContain(name)
    // `add backend` emptied the thread's notice buffer: the verdict is there.
    expect(deleted).toEqual({ confirmed: true })
    expect(await backendNames()).not.toContain(name)
  })

  it('runs 20 concurrent sequences with maxConnections 4: all succeed, never more than 4 at once', async () => {
    const proxy = await countingProxy(endpoint(), proxyListen())
    onTestFinished(() => proxy.close())
    const client = clientFor(proxy.endpoint, 4)
    // Each sequence holds its connection for a while, so that 20 of them would pile up without the cap.
    const results = await Promise.all(Array.from({ length: 20 }, () => client.execute([hold(100), showInfo()])))
    expect(results.map(([, info]) => info.pid)).toEqual(Array(20).fill(h.pid))
    expect(proxy.connections()).toBe(20)
    expect(proxy.peak()).toBe(4)
  })

  it('runs 20 concurrent sequences straight against HAProxy (10 connections per socket)', async () => {
    const client = clientFor(endpoint(), 4)
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => client.execute([hold(50), showBackend(), showInfo()]).then(r => [i, r] as const)))
    expect(results).toHaveLength(20)
    for (const [, [, names, info]] of results) {
      expect(names).toContain('webservers')
      expect(info.pid).toBe(h.pid)
    }
  })
})
