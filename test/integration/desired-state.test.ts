import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { SqliteStore } from '../../src/engine/store/sqlite.ts'
import { call, testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Desired state on a real HAProxy 3.4 in master-worker mode: what was done through hapctl (a backend
 * with servers, states, weights and health checks, entries of a virt@ map and of a file map, settings
 * of a static server) comes back by itself after HAProxy is killed and started, reloaded (with writes
 * in flight), after hapctl restarts, and after both restart; proven with traffic through the frontend.
 */
let h: HaproxyInstance
let app: FastifyInstance | undefined
let dir: string
let hostsMap: string

/** Each restart of HAProxy must be healed within this (the bound: 2 s), with no API call. */
const HEAL_MS = 2000

function env (): Record<string, string> {
  return { HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_STORE: join(dir, 'hapctl.db'), HAPCTL_IDENTITY_POLL_MS: '200', HAPCTL_RECONCILE_INTERVAL_MS: '5000' }
}

async function startHapctl (): Promise<FastifyInstance> {
  const a = await buildApp({ config: testConfig(env()), logger: false })
  await a.ready()
  return a
}

const api = async (method: string, url: string, payload?: unknown): Promise<{ status: number, body: any }> => call(app!, method, url, payload)

/** Who answers `GET <path>` through the frontend, with an optional Host header (a new connection each time). */
async function who (path: string, host?: string): Promise<string> {
  if (host === undefined) {
    const r = await httpGet(h.frontendUrl + path)
    return r.status === 200 ? (/srv=(\S+)/.exec(r.body)?.[1] ?? r.body) : `status ${r.status}`
  }
  return await new Promise((resolve, reject) => {
    const req = request(h.frontendUrl + path, { headers: { host }, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => resolve(res.statusCode === 200 ? (/srv=(\S+)/.exec(body)?.[1] ?? body) : `status ${res.statusCode}`))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Everything the suite created is back: traffic, server settings, map entries. Waits at most HEAL_MS. */
async function expectHealed (what: string): Promise<void> {
  const started = Date.now()
  await waitFor(async () => [await who('/app/x'), await who('/', 'b.example')], ([viaVirt, viaFile]) => viaVirt === 's1' && viaFile === 'r1',
    { timeoutMs: HEAL_MS, intervalMs: 25 }).catch(async (err: Error) => {
    throw new Error(`${what}: not healed within ${HEAL_MS} ms: ${err.message}; status: ${JSON.stringify((await api('GET', '/status')).body)}`)
  })
  const healedMs = Date.now() - started
  const servers = await api('GET', '/backends/app/servers')
  expect(servers.status, what).toBe(200)
  const byName = Object.fromEntries(servers.body.items.map((s: any) => [s.name, s]))
  expect(byName.s1, what).toMatchObject({ adminState: 'ready', weight: { current: 7 }, healthCheck: { configured: true, enabled: true } })
  expect(byName.r1, what).toMatchObject({ adminState: 'drain' })
  const web1 = (await api('GET', '/backends/webservers/servers/web1')).body
  expect(web1, what).toMatchObject({ weight: { current: 4 } })
  const virt = (await api('GET', '/maps/virt@paths.map/entries')).body.items
  expect(virt, what).toEqual([{ key: '/app', value: 'app' }, ...acked.map(k => ({ key: k, value: 'webservers' }))])
  const backend = (await api('GET', '/backends/app')).body
  expect(backend, what).toMatchObject({ dynamic: true, published: true, from: 'mydefaults' })
  // A server hapctl added to a backend of the configuration.
  const extra = (await api('GET', '/backends/static_unref/servers/extra')).body
  expect(extra, what).toMatchObject({ name: 'extra', adminState: 'ready', port: h.upstreams.r1!.port })
  console.log(`${what}: healed in ${healedMs} ms`)
}

/** Map keys whose PUT was acknowledged (200/201): none may be missing after a reload. */
const acked: string[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hapctl-desired-'))
  h = await startHaproxy({
    masterWorker: true,
    config: ctx => {
      hostsMap = join(ctx.dir, 'hosts.map')
      writeFileSync(hostsMap, 'a.example static_unref\n')
      return defaultConfig(ctx).replace(/(frontend myfrontend1[^\n]*\n(?:[ \t]+[^\n]*\n)*?)([ \t]+use_backend %\[path)/,
        `$1    use_backend %[req.hdr(host),lower,map_str(${hostsMap})] if { req.hdr(host),lower,map_str(${hostsMap}) -m found }\n$2`)
    }
  })
  app = await startHapctl()
  const created = await api('POST', '/backends', {
    name: 'app',
    from: 'mydefaults',
    published: true,
    servers: [
      { name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port, check: true, inter: '100ms', rise: 1, weight: 2 },
      { name: 'r1', address: '127.0.0.1', port: h.upstreams.r1!.port }
    ]
  })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  expect((await api('PATCH', '/backends/app/servers/s1', { weight: 7 })).status).toBe(200)
  expect((await api('PATCH', '/backends/app/servers/r1', { state: 'drain' })).status).toBe(200)
  expect((await api('PATCH', '/backends/webservers/servers/web1', { weight: 4 })).status).toBe(200)
  expect((await api('POST', '/backends/static_unref/servers', { name: 'extra', address: '127.0.0.1', port: h.upstreams.r1!.port })).status).toBe(201)
  expect((await api('PUT', '/maps/virt@paths.map/entries/%2Fapp', { value: 'app' })).status).toBe(201)
  // A file map: its file is read again on every restart; the content written through hapctl must win.
  expect((await api('PUT', `/maps/${encodeURIComponent(hostsMap)}/entries/b.example`, { value: 'static_ref' })).status).toBe(201)
  await expectHealed('before any restart')
}, 60_000)

afterAll(async () => {
  await app?.close()
  await h?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('desired state survives', () => {
  it('HAProxy killed and started again', async () => {
    const before = await h.identity()
    await h.kill()
    await h.start()
    expect((await h.identity()).pid).not.toBe(before.pid)
    await expectHealed('after kill + start')
  })

  it('a master-worker reload with writes in flight: no acknowledged write is missing', async () => {
    const flag = { stop: false }
    const writer = (async () => {
      for (let i = 0; !flag.stop && i < 400; i++) {
        const key = `/w${i}`
        const res = await api('PUT', `/maps/virt@paths.map/entries/${encodeURIComponent(key)}`, { value: 'webservers' })
        if (res.status === 200 || res.status === 201) acked.push(key)
      }
    })()
    await new Promise(resolve => setTimeout(resolve, 100))
    const before = await h.identity()
    await h.reload()
    await new Promise(resolve => setTimeout(resolve, 200))
    flag.stop = true
    await writer
    expect((await h.identity()).pid).not.toBe(before.pid)
    expect(acked.length).toBeGreaterThan(0)
    await expectHealed('after a reload with writes in flight')
  })

  it('a restart of hapctl: it still knows its backends, and heals a restart of HAProxy that happened while it was down', async () => {
    await app!.close()
    app = undefined
    await h.kill()
    await h.start()
    app = await startHapctl()
    await expectHealed('after hapctl and HAProxy restarted')
    // The restarted hapctl deletes its own backend without force: it knows it created it.
    const tmp = await api('POST', '/backends', { name: 'tmp', from: 'mydefaults' })
    expect(tmp.status).toBe(201)
    await app!.close()
    app = await startHapctl()
    expect((await api('GET', '/backends/tmp')).body).toMatchObject({ dynamic: true })
    expect((await api('DELETE', '/backends/tmp?timeout=1s')).status).toBe(204)
  })

  it('reports a conflict and leaves alone a backend the configuration now defines under a kept name', async () => {
    const created = await api('POST', '/backends', { name: 'clash', from: 'mydefaults' })
    expect(created.status).toBe(201)
    await h.reload({ config: h.config + '\nbackend clash from mydefaults\n    server c1 127.0.0.1:1\n' })
    const status = await waitFor(async () => (await api('GET', '/status')).body, s => s.drift.some((d: any) => d.object === 'backend/clash'), { timeoutMs: 5000 })
    expect(status.drift.find((d: any) => d.object === 'backend/clash').actual).toMatch(/configuration/)
    const servers = await api('GET', '/backends/clash/servers')
    expect(servers.body.items.map((s: any) => s.name)).toEqual(['c1'])
    await expectHealed('after a reload that defines a kept name')
  })
})

describe('writes and the reconciler', () => {
  it('puts back what was changed behind its back, and removes a server added to a backend it owns', async () => {
    expect(await h.cli('del map virt@paths.map /app')).toBe('\n')
    expect(await h.cli('set server app/s1 weight 1')).toBe('\n')
    expect(await h.cli('set server webservers/web1 weight 9')).toBe('\n')
    expect(await h.cli('add server app/intruder 127.0.0.1:1')).toMatch(/New server registered/)
    const report = await app!.reconciler.reconcileNow('test: drift')
    expect(report?.failed).toEqual([])
    expect(report?.reapplied).toEqual(expect.arrayContaining([expect.stringMatching(/^backend\/app: .*server intruder removed/), expect.stringMatching(/^map\/virt@paths.map/)]))
    await expectHealed('after changes behind its back')
    expect((await api('GET', '/backends/app/servers')).body.items.map((s: any) => s.name).sort()).toEqual(['r1', 's1'])
  })

  it('a write that timed out, then an acknowledged write of the same entry: HAProxy ends with the acknowledged value', async () => {
    const slow = await buildApp({ config: testConfig({ ...env(), HAPROXY_TIMEOUT_MS: '300' }), logger: false, reconcile: false })
    try {
      const pid = (await h.identity()).pid
      process.kill(pid, 'SIGSTOP')
      let first
      try {
        first = await slow.inject({ method: 'PUT', url: '/maps/virt@paths.map/entries/%2Frace', payload: { value: 'static_ref' } })
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      expect(first.statusCode).toBe(504)
      const second = await api('PUT', '/maps/virt@paths.map/entries/%2Frace', { value: 'app' })
      expect([200, 201]).toContain(second.status)
      await waitFor(() => who('/race'), w => w === 's1', { timeoutMs: HEAL_MS })
      // Still so a while later: the timed-out write, if HAProxy ran it late, was overwritten for good.
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(await who('/race')).toBe('s1')
    } finally {
      await slow.close()
    }
    expect((await api('DELETE', '/maps/virt@paths.map/entries/%2Frace')).status).toBe(204)
  })

  it('a list racing creates never loses a created backend', async () => {
    const flag = { stop: false }
    const lister = (async () => { while (!flag.stop) await api('GET', '/backends') })()
    const names = Array.from({ length: 15 }, (_, i) => `race${i}`)
    for (const name of names) expect((await api('POST', '/backends', { name, from: 'mydefaults' })).status).toBe(201)
    flag.stop = true
    await lister
    const list = (await api('GET', '/backends')).body.items
    for (const name of names) expect(list.find((b: any) => b.name === name), name).toMatchObject({ dynamic: true, from: 'mydefaults' })
    for (const name of names) expect((await api('DELETE', `/backends/${name}?timeout=1s`)).status).toBe(204)
  })

  it('forgets where it created backends that are neither kept nor in HAProxy any more', async () => {
    const store = await SqliteStore.open(join(dir, 'hapctl.db'))
    try {
      await store.setCreatedIn('long_gone', '1@1')
      await app!.reconciler.reconcileNow('test: stale records')
      const left = await store.createdIn()
      expect(left.has('long_gone')).toBe(false)
      expect(left.get('app')).toBe(`${(await h.identity()).pid}@${(await h.identity()).startTimeSec}`)
    } finally {
      await store.close()
    }
  })

  it('/status tells the HAProxy process, the store revision and the last reconcile', async () => {
    const { body } = await api('GET', '/status')
    const info = await h.identity()
    expect(body).toMatchObject({ haproxy: { pid: info.pid }, store: { description: expect.stringContaining('sqlite') }, reconciler: { last: { failed: [] } } })
    expect(body.store.revision).toBeGreaterThan(5)
  })
})
