import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { call, testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyConfigContext, HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Second review of the desired-state engine on a real HAProxy 3.4 in master-worker mode: grouped
 * creation by the reconciler, writes racing it, shutdown, and objects the store keeps that HAProxy
 * cannot have.
 */
let h: HaproxyInstance
let dir: string
let n = 0
const apps: FastifyInstance[] = []

/** The suite's configuration, plus a defaults section that a test changes or removes. */
const withExtra = (extra = 'mode http'): ((ctx: HaproxyConfigContext) => string) => ctx =>
  defaultConfig(ctx) + `\ndefaults extradefaults\n    ${extra}\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n`

function env (extra: Record<string, string> = {}): Record<string, string> {
  return { HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_STORE: join(dir, `hapctl-${n}.db`), HAPCTL_IDENTITY_POLL_MS: '200', HAPCTL_RECONCILE_INTERVAL_MS: '10000', ...extra }
}

async function startHapctl (opts: { env?: Record<string, string> } = {}): Promise<FastifyInstance> {
  const a = await buildApp({ config: testConfig(env(opts.env)), logger: false })
  apps.push(a)
  await a.ready()
  return a
}

const api = call

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hapctl-review2-'))
  h = await startHaproxy({ masterWorker: true, config: withExtra() })
}, 60_000)

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close()
  n++
  await h.start().catch(() => {})
  await h.reload({ config: withExtra() })
})

afterAll(async () => {
  await h?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('DELETE of what the store keeps and HAProxy lacks', () => {
  it('a backend HAProxy cannot create (its defaults section is gone): removed from the desired state, not 404 and kept forever', async () => {
    const app = await startHapctl()
    expect((await api(app, 'POST', '/backends', { name: 'orphan2', from: 'extradefaults', servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port }] })).status).toBe(201)
    await h.reload({ config: defaultConfig })
    await waitFor(async () => (await api(app, 'GET', '/status')).body, s => s.drift.some((d: any) => d.object === 'backend/orphan2'), { timeoutMs: 3000 })
    const del = await api(app, 'DELETE', '/backends/orphan2')
    expect(del.status, JSON.stringify(del.body)).toBe(204)
    // Once the defaults section is back, the deleted backend must not come back.
    await h.reload({ config: withExtra() })
    await app.reconciler.reconcileNow('test')
    expect((await api(app, 'GET', '/backends/orphan2')).status).toBe(404)
    expect((await api(app, 'GET', '/status')).body.drift).toEqual([])
  })

  it('a server added to a backend the configuration no longer has: removed from the desired state', async () => {
    const app = await startHapctl()
    expect((await api(app, 'POST', '/backends/static_empty/servers', { name: 'lost', address: '127.0.0.1', port: h.upstreams.r1!.port, enabled: true })).status).toBe(201)
    await h.reload({ config: ctx => withExtra()(ctx).replace(/\nbackend static_empty\b[^\n]*\n(?:[ \t]+[^\n]*\n)*/, '\n') })
    await waitFor(async () => (await api(app, 'GET', '/status')).body, s => s.drift.some((d: any) => d.object === 'server/static_empty/lost'), { timeoutMs: 3000 })
    const del = await api(app, 'DELETE', '/backends/static_empty/servers/lost')
    expect(del.status, JSON.stringify(del.body)).toBe(204)
    await h.reload({ config: withExtra() })
    await app.reconciler.reconcileNow('test')
    expect((await api(app, 'GET', '/backends/static_empty/servers/lost')).status).toBe(404)
  })
})

describe('grouped creation by the reconciler', () => {
  it('one backend of a group whose server HAProxy now refuses: the others are back with their servers, it is reported, and it heals once HAProxy takes it', async () => {
    const app = await startHapctl()
    const server = (name: string) => ({ name, address: '127.0.0.1', port: h.upstreams.s1!.port, enabled: true })
    for (const name of ['ga', 'gb', 'gc']) {
      const from = name === 'gb' ? 'extradefaults' : 'mydefaults'
      expect((await api(app, 'POST', '/backends', { name, from, published: true, servers: [server('s1'), server('s2')] })).status).toBe(201)
    }
    // extradefaults now has a static algorithm: `add backend` still works, every `add server` is refused.
    await h.reload({ config: withExtra('mode http\n    balance static-rr') })
    await waitFor(async () => (await api(app, 'GET', '/status')).body, s => s.reconciler.last?.failed.some((f: any) => f.object === 'backend/gb'), { timeoutMs: 3000 })
    for (const name of ['ga', 'gc']) {
      const b = (await api(app, 'GET', `/backends/${name}`)).body
      expect(b, name).toMatchObject({ dynamic: true, published: true, servers: 2 })
    }
    // Nothing of gb is left half-made in HAProxy (a published backend without servers would answer 503).
    expect(await h.cli('show stat -1 2 -1')).not.toMatch(/^gb,/m)
    await h.reload({ config: withExtra() })
    await waitFor(async () => (await api(app, 'GET', '/backends/gb')).body, b => b?.dynamic === true && b.servers === 2 && b.published === true, { timeoutMs: 3000 })
  })
})

describe('writes racing a replay', () => {
  it('DELETE of backends while the reconciler recreates them after a reload: each answers 204 and stays gone', async () => {
    const app = await startHapctl()
    const names = Array.from({ length: 100 }, (_, i) => `rr${i}`)
    for (const name of names) {
      expect((await api(app, 'POST', '/backends', { name, from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port, enabled: true }] })).status).toBe(201)
    }
    await h.reload()
    // Before the replay (absent), during it (waiting for a group's locks), and after it.
    const doomed = ['rr0', 'rr40', 'rr99', 'rr7', 'rr55']
    const answers: number[] = []
    for (const name of doomed) {
      answers.push((await api(app, 'DELETE', `/backends/${name}?timeout=1s`)).status)
      await new Promise(resolve => setTimeout(resolve, 40))
    }
    expect(answers).toEqual(doomed.map(() => 204))
    await h.reload()
    await waitFor(async () => (await api(app, 'GET', '/backends')).body.items.filter((b: any) => b.name.startsWith('rr') && b.dynamic).length, count => count === names.length - doomed.length, { timeoutMs: 3000 })
    await app.reconciler.reconcileNow('test')
    for (const name of doomed) expect((await api(app, 'GET', `/backends/${name}`)).status, name).toBe(404)
  })
})

describe('a reload in the middle of a grouped replay', () => {
  it('the groups that went to the old worker are made again in the new one; none is taken for the configuration\'s', async () => {
    const app = await startHapctl()
    const names = Array.from({ length: 120 }, (_, i) => `rl${i}`)
    for (const name of names) {
      expect((await api(app, 'POST', '/backends', { name, from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port, enabled: true }] })).status).toBe(201)
    }
    await h.reload()
    await waitFor(async () => (await h.cli('show stat -1 2 -1')).match(/^rl\d+,/mg)?.length ?? 0, count => count > 0, { timeoutMs: 3000, intervalMs: 5 })
    await h.reload()
    await waitFor(async () => (await api(app, 'GET', '/backends')).body.items.filter((b: any) => b.name.startsWith('rl') && b.dynamic && b.published && b.servers === 1).length,
      count => count === names.length, { timeoutMs: 3000 })
    await app.reconciler.reconcileNow('test')
    expect((await api(app, 'GET', '/status')).body.drift).toEqual([])
  })
})

describe('shutdown in the middle of a replay', () => {
  it('app.close() while the reconciler recreates many backends: the next hapctl on the same store finishes it, nothing is taken for a backend of the configuration', async () => {
    const first = await startHapctl()
    const names = Array.from({ length: 120 }, (_, i) => `sd${i}`)
    for (const name of names) {
      expect((await api(first, 'POST', '/backends', { name, from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port, enabled: true }] })).status).toBe(201)
    }
    await h.reload()
    // Close as soon as the replay has begun.
    await waitFor(async () => (await h.cli('show stat -1 2 -1')).match(/^sd\d+,/mg)?.length ?? 0, count => count > 0, { timeoutMs: 3000, intervalMs: 5 })
    await first.close()
    const second = await startHapctl()
    await waitFor(async () => (await api(second, 'GET', '/backends')).body.items.filter((b: any) => b.name.startsWith('sd') && b.dynamic && b.published && b.servers === 1).length,
      count => count === names.length, { timeoutMs: 5000 })
    const status = (await api(second, 'GET', '/status')).body
    expect(status.drift).toEqual([])
  })
})

describe('maps: an API write while the reconciler holds a staged version', () => {
  it('a single-entry PUT waits for the reconciler\'s commit and lands on top of the restored content', async () => {
    // No identity polling: the test starts the pass itself, once HAProxy has been reloaded.
    const app = await startHapctl({ env: { HAPCTL_IDENTITY_POLL_MS: '60000' } })
    const server = { name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port, enabled: true }
    // Enough backends that the map waits a while for the backend phase before its commit.
    for (let i = 0; i < 150; i++) expect((await api(app, 'POST', '/backends', { name: `mg${i}`, from: 'mydefaults', published: true, servers: [server] })).status).toBe(201)
    const content = Array.from({ length: 2000 }, (_, i) => ({ key: `/m${i}`, value: `mg${i % 150}` }))
    expect((await api(app, 'PUT', '/maps/virt@paths.map/entries', content)).status).toBe(200)
    await h.reload()
    const version = async (): Promise<string> => (await h.cli('show map')).split('\n').find(l => l.includes('virt@paths.map')) ?? ''
    const before = await version()
    const pass = app.reconciler.reconcileNow('test')
    // The reconciler has prepared a version (it holds the map's lock until it commits it).
    await waitFor(version, v => v !== before, { timeoutMs: 3000, intervalMs: 2 })
    const put = await api(app, 'PUT', '/maps/virt@paths.map/entries/%2Flate', { value: 'mg1' })
    expect(put.status, JSON.stringify(put.body)).toBe(201)
    await pass
    const live = (await api(app, 'GET', '/maps/virt@paths.map/entries?limit=10000')).body.items
    expect(live).toEqual([...content, { key: '/late', value: 'mg1' }])
    await app.reconciler.reconcileNow('again')
    expect((await api(app, 'GET', '/maps/virt@paths.map/entries?limit=10000')).body.items).toHaveLength(content.length + 1)
  })
})
