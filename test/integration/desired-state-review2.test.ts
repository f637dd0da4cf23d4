import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
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

async function api (app: FastifyInstance, method: string, url: string, payload?: unknown): Promise<{ status: number, body: any }> {
  const res = await app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as object }) })
  return { status: res.statusCode, body: res.body === '' ? undefined : res.json() }
}

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
