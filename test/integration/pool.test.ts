import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { call, testConfig } from '../helpers/build-test-app.ts'
import { startHapctl } from '../helpers/hapctl-process.ts'
import { openClientSockets, sampleClientSockets } from '../helpers/sockets.ts'
import { defaultConfig, httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyConfigContext, HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The API's pool of kept Runtime API connections (src/runtime/client.ts, HAPROXY_KEEP_CONNECTIONS) on
 * a real HAProxy 3.4 in master-worker mode: writes keep working across a reload and a restart, and
 * none that was acknowledged is missing once the reconciler has run; connections to an old worker are
 * dropped (an idle CLI connection keeps a stopping worker alive until its CLI timeout); never more than
 * HAPROXY_MAX_CONNECTIONS connections are open, and they are reused; a connection HAProxy cuts
 * (`shutdown session`, management §9.3), idle or in the middle of a `wait`, is replaced.
 *
 * Connections are watched from outside hapctl: the kernel's table of TCP sockets (/proc/net/tcp) for
 * what is open towards the Runtime API port, HAProxy's `show sess` (CLI sessions are `fe=GLOBAL`) and
 * `show info` CumConns (every connection HAProxy accepted, the CLI's included) for what it saw.
 */
let h: HaproxyInstance
const apps: FastifyInstance[] = []

/** A second virt@ map, so that a whole-map replace does not wait for the lock of the entry writes' map. */
const config = (ctx: HaproxyConfigContext): string => defaultConfig(ctx).replace(/(\n[ \t]+use_backend %\[path,map_beg\(virt@paths\.map\)\])/,
  '\n    http-request set-header x-big %[path,map(virt@big.map,none)]$1')

async function startApp (env: Record<string, string> = {}, reconcile = true): Promise<FastifyInstance> {
  const app = await buildApp({
    config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_IDENTITY_POLL_MS: '200', HAPCTL_RECONCILE_INTERVAL_MS: '60000', ...env }),
    logger: false,
    reconcile
  })
  apps.push(app)
  await app.ready()
  return app
}

const delay = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** The CLI sessions of the worker answering now (`show sess`: `<id>: proto=tcpv4 src=127.0.0.1:<port> fe=GLOBAL …`), by client port. */
async function cliSessions (): Promise<Map<number, string>> {
  const sessions = new Map<number, string>()
  for (const m of (await h.cli('show sess')).matchAll(/^(0x[0-9a-f]+): proto=tcpv4 src=127\.0\.0\.1:(\d+) fe=GLOBAL /gm)) {
    sessions.set(Number(m[2]), m[1] as string)
  }
  return sessions
}

/** `show info` CumConns: every connection the process accepted so far, the Runtime API's included. */
async function cumConns (): Promise<number> {
  const m = /^CumConns: (\d+)$/m.exec(await h.cli('show info'))
  if (m === null) throw new Error('show info: no CumConns')
  return Number(m[1])
}

/** The map's entries as `key value`, read on a new connection of the test's own. */
async function mapContent (map: string): Promise<Set<string>> {
  const lines = (await h.cli(`show map ${map}`)).split('\n').filter(l => l !== '')
  return new Set(lines.map(l => l.slice(l.indexOf(' ') + 1)))
}

/** Who answers `GET <path>` through the frontend (a new connection each time). */
async function who (path: string): Promise<string> {
  const r = await httpGet(h.frontendUrl + path)
  return r.status === 200 ? (/srv=(\S+)/.exec(r.body)?.[1] ?? r.body) : `status ${r.status}`
}

/** One PUT of a map entry: its key, answer, and when it was sent (`at`) and answered (`done`). */
type Write = { key: string, status: number, at: number, done: number, body: unknown }

/**
 * Writers (`count` in flight) that PUT map entries routing to `static_ref` (r1) until stopped; every
 * write is kept, so that the acknowledged ones (200/201) can be looked for in HAProxy afterwards.
 */
function writers (app: FastifyInstance, prefix: string, count: number): { writes: () => Write[], stop: () => Promise<Write[]> } {
  const state = { stopped: false }
  const writes: Write[] = []
  const loops = Array.from({ length: count }, async (_, w) => {
    for (let i = 0; !state.stopped; i++) {
      const key = `/${prefix}${w}-${i}`
      const at = Date.now()
      const res = await call(app, 'PUT', `/maps/virt@paths.map/entries/${encodeURIComponent(key)}`, { value: 'static_ref' })
      writes.push({ key, status: res.status, at, done: Date.now(), body: res.body })
      // HAProxy down: do not spin.
      if (res.status >= 500) await delay(20)
    }
  })
  return { writes: () => writes, stop: async () => { state.stopped = true; await Promise.all(loops); return writes } }
}

const acknowledged = (status: number): boolean => status === 200 || status === 201

/**
 * Every entry in `keys` is in the worker answering now (read on a new connection of the test's) within
 * `withinMs`, with no API call: the reconciler puts back what that worker never saw; then each routes
 * traffic through the frontend to r1.
 */
async function expectAllThere (app: FastifyInstance, keys: string[], what: string, withinMs = 3000): Promise<void> {
  const missing = (live: Set<string>): string[] => keys.filter(k => !live.has(`${k} static_ref`))
  await waitFor(() => mapContent('virt@paths.map'), live => missing(live).length === 0, { timeoutMs: withinMs, intervalMs: 50 }).catch(async () => {
    const left = missing(await mapContent('virt@paths.map'))
    throw new Error(`${what}: ${left.length} of ${keys.length} written entries still missing from the worker answering now after ${withinMs} ms ` +
      `(${left.slice(0, 10).join(', ')}…); status: ${JSON.stringify((await call(app, 'GET', '/status')).body)}`)
  })
  const wrong: string[] = []
  for (let i = 0; i < keys.length; i += 8) {
    await Promise.all(keys.slice(i, i + 8).map(async k => { const s = await who(`${k}/x`); if (s !== 'r1') wrong.push(`${k}: ${s}`) }))
  }
  expect(wrong, `${what}: entries that do not route to r1`).toEqual([])
}

beforeAll(async () => {
  h = await startHaproxy({ masterWorker: true, config })
}, 60_000)

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close()
  await h.start().catch(() => {})
})

afterAll(async () => {
  await h?.stop()
})

describe('writes with kept connections', () => {
  it('across a master-worker reload: every acknowledged write is in the new worker, and the old worker is let go', async () => {
    const app = await startApp()
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fwarm', { value: 'static_ref' })).status).toBe(201)
    // The pool keeps a connection to the worker answering now.
    const oldPid = (await h.identity()).pid
    const kept = openClientSockets(h.ports.runtime)
    expect(kept.length).toBeGreaterThan(0)

    const w = writers(app, 'rl', 4)
    await delay(150)
    // A backend created while the reload happens, routed to by a map entry.
    const reloadAt = Date.now()
    const [created] = await Promise.all([
      call(app, 'POST', '/backends', { name: 'poolbe', from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port }] }),
      h.reload()
    ])
    const newPid = (await h.identity()).pid
    expect(newPid).not.toBe(oldPid)
    // When the old worker exits: it waits for its CLI connections to close, and an idle kept one
    // closes only at its CLI timeout (the pool raises it to 40 s) or when the pool ends it.
    const exited = waitFor(async () => alive(oldPid), a => !a, { timeoutMs: 5000, intervalMs: 10 }).then(() => Date.now() - reloadAt, () => undefined)
    await delay(300)
    const writes = await w.stop()
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fpoolbe', { value: 'poolbe' })).status).toBe(201)

    // Writes kept working: every one was acknowledged, before, during and after the reload.
    expect(writes.filter(x => !acknowledged(x.status)).map(x => `${x.key}: ${x.status} ${JSON.stringify(x.body)}`)).toEqual([])
    expect(writes.filter(x => x.at > reloadAt).length).toBeGreaterThan(0)

    await expectAllThere(app, ['/warm', ...writes.map(x => x.key)], 'after a reload')
    // From now on a write reaches the new worker itself, at once: no kept connection to the old one is used.
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fnext', { value: 'static_ref' })).status).toBe(201)
    expect(await mapContent('virt@paths.map')).toContain('/next static_ref')
    expect(await who('/poolbe/x')).toBe('s1')

    // No connection to the old worker was kept: it exited soon after the reload (with one kept, not
    // before the pool's idle timer, 10 s, or the CLI timeout).
    const exitedMs = await exited
    console.log(`old worker exited ${exitedMs ?? 'not within 5 s'} ms after the reload began`)
    expect(exitedMs, `old worker ${oldPid} still running 5 s after the reload; hapctl's sockets: ${openClientSockets(h.ports.runtime).join(', ')}`).toBeDefined()
    // The connections left are all the new worker's.
    // (A socket of the reconciler's poll may come and go between the reads: only those open throughout count.)
    const first = openClientSockets(h.ports.runtime)
    const sessions = await cliSessions()
    const left = openClientSockets(h.ports.runtime).filter(p => first.includes(p))
    expect(left.length).toBeLessThanOrEqual(4)
    for (const port of left) expect(sessions.has(port), `client port ${port} is not a session of worker ${newPid}`).toBe(true)
  })

  // The reconciler's pass used to give up on a map whenever a write had moved the store since the pass
  // began, so a steady stream of writes kept the new worker without the map's earlier entries.
  it('across a master-worker reload while the writes go on: what the old worker was told is back within 2 s, before they stop', async () => {
    const app = await startApp()
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fwarm3', { value: 'static_ref' })).status).toBe(201)
    const w = writers(app, 'go', 4)
    await delay(150)
    const reloadAt = Date.now()
    await h.reload()
    const reloaded = Date.now()
    // Everything acknowledged before the reload began: the new worker never saw it.
    const told = () => ['/warm3', ...w.writes().filter(x => x.done < reloadAt && acknowledged(x.status)).map(x => x.key)]
    try {
      await waitFor(() => mapContent('virt@paths.map'), live => told().every(k => live.has(`${k} static_ref`)), { timeoutMs: 2000, intervalMs: 50 })
    } catch {
      const live = await mapContent('virt@paths.map')
      throw new Error(`${told().filter(k => !live.has(`${k} static_ref`)).length} of ${told().length} entries acknowledged before the reload still missing ` +
        `${Date.now() - reloaded} ms after it, with writes going on; status: ${JSON.stringify((await call(app, 'GET', '/status')).body.reconciler)}`)
    } finally {
      await w.stop()
    }
  })

  it('across a restart (kill + start): the dead connections are not used, and every acknowledged write is back', async () => {
    const app = await startApp()
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fwarm2', { value: 'static_ref' })).status).toBe(201)
    expect(openClientSockets(h.ports.runtime).length).toBeGreaterThan(0)

    const w = writers(app, 'rs', 4)
    await delay(150)
    const killedAt = Date.now()
    await h.kill()
    await delay(200)
    await h.start()
    const startedAt = Date.now()
    await delay(300)
    const writes = await w.stop()
    // Right after the start, a write on its own: the pool's connections died with HAProxy.
    const first = await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fafter', { value: 'static_ref' })
    expect(first.status, JSON.stringify(first.body)).toBe(201)

    // While HAProxy was down, writes failed with 503 and nothing was kept; a write in flight when it was
    // killed may have run: it says so (outcome unknown), and is kept as desired. Once HAProxy answered, writes worked.
    expect(writes.filter(x => x.at > killedAt && x.at < startedAt && x.status === 503).length).toBeGreaterThan(0)
    const unknown = writes.filter(x => !acknowledged(x.status) && x.status !== 503)
    for (const x of unknown) expect(x.body, `${x.key}: ${x.status}`).toMatchObject({ outcome: 'unknown' })
    expect(unknown.length).toBeLessThanOrEqual(4)
    expect(writes.filter(x => x.at > startedAt && !acknowledged(x.status)).map(x => `${x.key}: ${x.status} ${JSON.stringify(x.body)}`)).toEqual([])
    expect(writes.filter(x => x.at > startedAt && acknowledged(x.status)).length).toBeGreaterThan(0)

    await expectAllThere(app, ['/warm2', '/after', ...writes.filter(x => acknowledged(x.status)).map(x => x.key), ...unknown.map(x => x.key)], 'after a restart')

    // Killed and started while the pool's connections were idle: the first write after the start
    // does not go out on one of them (HAProxy closed them all when it died).
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fidle0', { value: 'static_ref' })).status).toBe(201)
    expect(openClientSockets(h.ports.runtime).length).toBeGreaterThan(0)
    await h.kill()
    await h.start()
    const next = await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fidle1', { value: 'static_ref' })
    expect(next.status, JSON.stringify(next.body)).toBe(201)
  })
})

describe('the connection limit', () => {
  it('never has more than HAPROXY_MAX_CONNECTIONS open, however many requests are in flight, and reuses them', async () => {
    // hapctl as its own process: its sockets are told apart from the test's own by their owner. The
    // reconciler is kept quiet (it has connections of its own, within a limit of their own).
    const limit = 3
    const hapctl = await startHapctl({
      env: { HAPROXY_RUNTIME_API: h.runtimeApi, HAPROXY_MAX_CONNECTIONS: String(limit), HAPCTL_IDENTITY_POLL_MS: '60000', HAPCTL_RECONCILE_INTERVAL_MS: '3600000', LOG_LEVEL: 'warn' }
    })
    try {
      await waitFor(async () => (await (await fetch(`${hapctl.url}/status`)).json()) as any, s => s.reconciler.last !== null && !s.reconciler.running, { timeoutMs: 5000 })
      await waitFor(async () => openClientSockets(h.ports.runtime, hapctl.pid).length, n => n === 0, { timeoutMs: 2000 })
      const url = (key: string): string => `${hapctl.url}/maps/virt@paths.map/entries/${encodeURIComponent(key)}`
      const put = async (key: string): Promise<number> =>
        (await fetch(url(key), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value: 'static_ref' }) })).status
      const get = async (key: string): Promise<number> => (await fetch(url(key))).status
      const failed = (statuses: number[]): number[] => statuses.filter(s => s !== 200 && s !== 201 && s !== 404)

      // 64 writes and 16 reads in flight, twice, no payload: every call can use a kept connection.
      const before = await cumConns()
      let sampler = await sampleClientSockets(h.ports.runtime, hapctl.pid)
      let calls = 0
      for (let round = 0; round < 2; round++) {
        const statuses = await Promise.all([
          ...Array.from({ length: 64 }, (_, i) => put(`/lim${round}-${i}`)),
          ...Array.from({ length: 16 }, (_, i) => get(`/lim0-${i}`))
        ])
        calls += statuses.length
        expect(failed(statuses)).toEqual([])
      }
      const first = await sampler.stop()
      // The test's own `show info` is one more.
      const opened = await cumConns() - before - 1
      console.log(`${calls} requests: ${opened} Runtime API connections opened (HAProxy's CumConns), at most ${first.max} open at once (${first.samples} samples)`)
      expect(first.max).toBeGreaterThan(0)
      expect(first.max).toBeLessThanOrEqual(limit)
      expect(opened).toBeGreaterThan(0)
      expect(opened).toBeLessThanOrEqual(limit)

      // The same with a 20,000-entry replace of another map, whose payloads each open a new connection.
      const big = Array.from({ length: 20_000 }, (_, i) => `/big/${i} static_ref\n`).join('')
      sampler = await sampleClientSockets(h.ports.runtime, hapctl.pid)
      const [replaced, ...statuses] = await Promise.all([
        fetch(`${hapctl.url}/maps/virt@big.map/entries`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: big }).then(r => r.status),
        ...Array.from({ length: 64 }, (_, i) => put(`/lim2-${i}`)),
        ...Array.from({ length: 16 }, (_, i) => get(`/lim2-${i}`))
      ])
      const second = await sampler.stop()
      console.log(`with a 20,000-entry replace: at most ${second.max} open at once (${second.samples} samples)`)
      expect(replaced).toBe(200)
      expect(failed(statuses)).toEqual([])
      expect(second.max).toBeLessThanOrEqual(limit)
      expect((await mapContent('virt@big.map')).size).toBe(20_000)
    } finally {
      await hapctl.kill()
    }
  }, 60_000)
})

describe('a connection HAProxy cuts', () => {
  it('while idle in the pool: the next request gets a new one, without failing', async () => {
    // No reconciler: its identity polls would be connections of their own in the socket table.
    const app = await startApp({}, false)
    expect((await call(app, 'GET', '/maps/virt@paths.map/entries/%2Fnone')).status).toBe(404)
    const [port] = openClientSockets(h.ports.runtime)
    expect(port).toBeDefined()
    const id = (await cliSessions()).get(port as number)
    expect(id, `no CLI session for client port ${port}`).toBeDefined()
    expect(await h.cli(`shutdown session ${id}`)).toBe('\n')
    // At once, then once the close has surely reached hapctl.
    const now = await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fcut1', { value: 'static_ref' })
    expect(now.status, JSON.stringify(now.body)).toBe(201)
    await delay(100)
    const later = await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fcut2', { value: 'static_ref' })
    expect(later.status, JSON.stringify(later.body)).toBe(201)
    expect(openClientSockets(h.ports.runtime)).not.toContain(port)
    expect(await who('/cut2/x')).toBe('r1')
  })

  it('in the middle of a request (a wait for a busy server to be removable): the request reports it, and the next ones work', async () => {
    const app = await startApp({}, false)
    const created = await call(app, 'POST', '/backends', { name: 'cutbe', from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port }] })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    expect((await call(app, 'PUT', '/maps/virt@paths.map/entries/%2Fsleep', { value: 'cutbe' })).status).toBe(201)
    // A request the server holds for 2.5 s: the server cannot be removed until it ends.
    const slow = httpGet(`${h.frontendUrl}/sleep/2500`)
    await delay(200)

    const del = call(app, 'DELETE', '/backends/cutbe/servers/s1?timeout=10s')
    // hapctl is waiting (`wait 10s srv-removable cutbe/s1`): cut its connections, that one among them.
    await delay(300)
    const ports = openClientSockets(h.ports.runtime)
    expect(ports.length).toBeGreaterThan(0)
    const sessions = await cliSessions()
    const cutAt = Date.now()
    for (const port of ports) expect(await h.cli(`shutdown session ${sessions.get(port)}`)).toBe('\n')
    const res = await del
    console.log(`DELETE during a cut wait: ${res.status} ${JSON.stringify(res.body)}`)
    // Answered when the cut happened, not at the end of the wait, as a failure during the wait that
    // says what HAProxy may have been left with (the server is in maintenance, not deleted).
    expect(Date.now() - cutAt).toBeLessThan(3000)
    expect(res.status).toBeGreaterThanOrEqual(500)
    expect(res.body).toMatchObject({ command: 'wait srv-removable', outcome: expect.stringMatching(/^(unknown|undone)$/) })
    await slow

    // The next requests work, on a new connection; no connection is left over.
    const servers = await call(app, 'GET', '/backends/cutbe/servers')
    expect(servers.status, JSON.stringify(servers.body)).toBe(200)
    const s1 = servers.body.items.find((s: any) => s.name === 's1')
    // `undone` must mean what it says: the server is back in traffic.
    if (res.body.outcome === 'undone') expect(s1).toMatchObject({ adminState: 'ready' })
    const again = await call(app, 'DELETE', '/backends/cutbe/servers/s1?timeout=5s')
    expect(again.status, JSON.stringify(again.body)).toBe(204)
    const now = openClientSockets(h.ports.runtime)
    for (const port of ports) expect(now).not.toContain(port)
    expect(now.length).toBeLessThanOrEqual(4)
    expect((await call(app, 'DELETE', '/backends/cutbe?timeout=5s')).status).toBe(204)
  })
})
