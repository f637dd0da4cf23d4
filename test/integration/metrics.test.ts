import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { metric, parseMetrics } from '../helpers/metrics.ts'
import type { Sample } from '../helpers/metrics.ts'

/*
 * GET /metrics against a real HAProxy 3.4: the counters move with the API's writes and the
 * reconciler's passes, and hapctl_haproxy_up follows HAProxy going away and coming back (the
 * reconciler's `show info` poll, at its default interval). This file kills its own HAProxy.
 */

let h: HaproxyInstance
let app: FastifyInstance

beforeAll(async () => {
  h = await startHaproxy()
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
  await app.ready()
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

async function scrape (): Promise<Sample[]> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  expect(res.statusCode).toBe(200)
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return parseMetrics(res.body)
}

describe('GET /metrics on a real HAProxy', () => {
  it('shows the counters moving with writes, and HAProxy up', async () => {
    const before = await waitFor(scrape, s => metric(s, 'hapctl_haproxy_up') === 1 && (metric(s, 'hapctl_reconcile_passes_total') ?? 0) >= 1)
    const n = (s: Sample[], name: string, labels: Record<string, string> = {}): number => metric(s, name, labels) ?? 0

    const created = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'metrics_b1', from: 'mydefaults' } })
    expect(created.statusCode, created.body).toBe(201)
    const server = await app.inject({ method: 'POST', url: '/backends/metrics_b1/servers', payload: { name: 's1', address: '127.0.0.1', port: h.upstreams.web1?.port ?? 1 } })
    expect(server.statusCode, server.body).toBe(201)
    const entry = await app.inject({ method: 'PUT', url: '/maps/virt@paths.map/entries/%2Fmetrics', payload: { value: 'metrics_b1' } })
    expect(entry.statusCode, entry.body).toBeLessThan(300)
    const refused = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'metrics_b1', from: 'mydefaults' } })
    expect(refused.statusCode).toBe(409)

    const after = await scrape()
    expect(n(after, 'hapctl_http_requests_total', { method: 'POST', route: '/backends', status: '201' }) - n(before, 'hapctl_http_requests_total', { method: 'POST', route: '/backends', status: '201' })).toBe(1)
    expect(n(after, 'hapctl_http_requests_total', { method: 'POST', route: '/backends/:backend/servers', status: '201' })).toBe(1)
    expect(n(after, 'hapctl_http_requests_total', { method: 'POST', route: '/backends', status: '409' })).toBe(1)
    expect(n(after, 'hapctl_http_request_duration_seconds_count', { method: 'POST', route: '/backends' })).toBe(2)
    expect(n(after, 'hapctl_runtime_commands_total', { client: 'api', verb: 'add backend', result: 'ok' })).toBe(1)
    expect(n(after, 'hapctl_runtime_commands_total', { client: 'api', verb: 'add backend', result: 'refused' })).toBeGreaterThanOrEqual(1)
    expect(n(after, 'hapctl_runtime_commands_total', { client: 'api', verb: 'add server', result: 'ok' })).toBe(1)
    expect(n(after, 'hapctl_runtime_calls_total', { client: 'api' })).toBeGreaterThan(n(before, 'hapctl_runtime_calls_total', { client: 'api' }))
    // The reconciler's own client polls `show info` on its own connections.
    expect(n(after, 'hapctl_runtime_calls_total', { client: 'reconciler', verb: 'show info', outcome: 'ok' })).toBeGreaterThan(0)
    expect(n(after, 'hapctl_runtime_connections_opened_total', { client: 'api' })).toBeGreaterThan(0)
    expect(metric(after, 'hapctl_runtime_connections_open', { client: 'api' })).toBeDefined()
    expect(n(after, 'hapctl_store_revision')).toBeGreaterThanOrEqual(n(before, 'hapctl_store_revision') + 3)
    expect(n(after, 'hapctl_reconcile_duration_seconds_count')).toBeGreaterThanOrEqual(1)
    expect(n(after, 'hapctl_haproxy_up')).toBe(1)
  })

  it('drops hapctl_haproxy_up to 0 within a few seconds of HAProxy dying, and back to 1 when it returns', async () => {
    await h.kill()
    const down = await waitFor(scrape, s => metric(s, 'hapctl_haproxy_up') === 0, { timeoutMs: 5000, intervalMs: 100 })
    expect((metric(down, 'hapctl_runtime_calls_total', { client: 'reconciler', outcome: 'unavailable' }) ?? 0)).toBeGreaterThan(0)
    await h.start()
    const up = await waitFor(scrape, s => metric(s, 'hapctl_haproxy_up') === 1, { timeoutMs: 10_000, intervalMs: 100 })
    // A new process: the reconciler noticed it (and puts back what hapctl keeps).
    await waitFor(scrape, s => (metric(s, 'hapctl_haproxy_process_changes_total') ?? 0) >= 1, { timeoutMs: 5000 })
    expect(metric(up, 'hapctl_haproxy_up')).toBe(1)
  })
})
