import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { PROBE_PREFIX } from '../../src/schemas/state.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * /state requests at the same time on a real HAProxy 3.4: each one probes HAProxy with a backend of
 * its own (`hapctl-probe-<n>`) before anything is applied, and a dry run is not under the apply's
 * lock, so two probes must never take the same name: a valid document would then be refused with
 * HAProxy's "name is already used" as if its defaults section were at fault.
 */
describe('/state, concurrent requests (real HAProxy)', () => {
  let h: HaproxyInstance
  let app: FastifyInstance
  beforeAll(async () => {
    h = await startHaproxy()
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, HAPROXY_TIMEOUT_MS: '20000' }), logger: false, reconcile: false })
    await app.ready()
  })
  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  const doc = (...names: string[]) => ({
    backends: Object.fromEntries(names.map(n => [n, { from: 'mydefaults', servers: { s1: { address: '127.0.0.1', port: h.upstreams.web1?.port } } }]))
  })
  const put = (body: unknown, query = '') => app.inject({ method: 'PUT', url: `/state${query}`, payload: body as object })

  it('dry runs at the same time all answer their plan', async () => {
    const results = await Promise.all(['a1', 'a2', 'a3', 'a4'].map(n => put(doc(n), '?dryRun=true')))
    for (const r of results) expect(r.statusCode, r.body.slice(0, 600)).toBe(200)
    expect((await h.cli('show backend')).split('\n').filter(l => l.startsWith(PROBE_PREFIX))).toEqual([])
  })

  it('a dry run at the same time as an apply never makes the apply refuse a valid document', async () => {
    for (let round = 0; round < 5; round++) {
      const names = [`c${round}`]
      const [applied, ...dry] = await Promise.all([
        put(doc(...names)),
        put(doc(...names, 'd1'), '?dryRun=true'),
        put(doc(...names, 'd2'), '?dryRun=true')
      ])
      expect(applied?.statusCode, applied?.body.slice(0, 600)).toBe(200)
      for (const r of dry) expect([200, 412, 409], r.body.slice(0, 600)).toContain(r.statusCode)
      for (const r of dry) expect(r.body).not.toMatch(/already used by other proxy/)
    }
    expect((await h.cli('show backend')).split('\n').filter(l => l.startsWith(PROBE_PREFIX))).toEqual([])
  })
})
