import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/auth/tokens.ts'
import { RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'
import { faultyRuntime } from '../helpers/faulty-runtime.ts'
import { metric, parseMetrics } from '../helpers/metrics.ts'

/** HAProxy with one backend (b1) that refuses a second backend of that name. */
function haproxy (state: { down: boolean } = { down: false }) {
  return fakeRuntime(text => {
    if (state.down) return new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return statReply([{ px: 'b1', status: 'UP' }])
    if (text.startsWith('show servers state')) return '1\n# be_id be_name srv_id srv_name srv_addr'
    if (text === 'show map') return '# id (file) description\n'
    if (text.startsWith('add backend b1 ')) return "Error during backend creation : name is already used by other proxy 'backend b1'."
    return `Unknown command: '${text.split(' ')[0] as string}'`
  })
}

async function scrape (app: FastifyInstance, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers })
  expect(res.statusCode, res.body).toBe(200)
  return { res, samples: parseMetrics(res.body) }
}

describe('GET /metrics', () => {
  it('answers the Prometheus text format, with the request id like every answer', async () => {
    const app = await buildTestApp(haproxy())
    const { res } = await scrape(app, { 'x-request-id': 'scrape-1' })
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(res.headers['x-request-id']).toBe('scrape-1')
    expect(res.body).toMatch(/^# HELP hapctl_http_requests_total /m)
    expect(res.body).toMatch(/^# TYPE hapctl_http_request_duration_seconds histogram$/m)
    expect(res.body).toMatch(/^# TYPE hapctl_haproxy_up gauge$/m)
  })

  it('counts requests by route pattern and status, never by URL', async () => {
    const app = await buildTestApp(haproxy())
    for (let i = 0; i < 3; i++) expect((await app.inject({ method: 'GET', url: '/backends' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/backends/b1' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/backends/nosuch-xyz' })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: '/no/such/path-abc' })).statusCode).toBe(404)
    const { res, samples } = await scrape(app)
    expect(metric(samples, 'hapctl_http_requests_total', { method: 'GET', route: '/backends', status: '200' })).toBe(3)
    expect(metric(samples, 'hapctl_http_request_duration_seconds_count', { method: 'GET', route: '/backends', status: '200' })).toBe(3)
    expect(metric(samples, 'hapctl_http_request_duration_seconds_bucket', { method: 'GET', route: '/backends', status: '200', le: '+Inf' })).toBe(3)
    expect(metric(samples, 'hapctl_http_requests_total', { route: '/backends/:name', status: '200' })).toBe(1)
    expect(metric(samples, 'hapctl_http_requests_total', { route: '/backends/:name', status: '404' })).toBe(1)
    expect(metric(samples, 'hapctl_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1)
    expect(res.body).not.toMatch(/nosuch-xyz|path-abc/)
    // The scrape itself is counted from the next one on.
    const again = await scrape(app)
    expect(metric(again.samples, 'hapctl_http_requests_total', { route: '/metrics', status: '200' })).toBe(1)
  })

  it('counts Runtime API calls by verb and outcome: answers, refusals, timeouts and an unreachable HAProxy', async () => {
    const state = { down: false }
    const faulty = faultyRuntime(haproxy(state))
    const app = await buildTestApp(faulty.runtime)
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200)
    expect(metric((await scrape(app)).samples, 'hapctl_haproxy_up')).toBe(1)
    // A refusal: HAProxy answered.
    const refused = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })
    expect(refused.statusCode, refused.body).toBe(409)
    let s = (await scrape(app)).samples
    expect(metric(s, 'hapctl_runtime_commands_total', { verb: 'add backend', result: 'refused' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_calls_total', { client: 'api', outcome: 'refused' })).toBe(1)
    expect(metric(s, 'hapctl_haproxy_up')).toBe(1)
    // A timeout: the command went out and no answer came.
    faulty.arm(1, 'lost-reply')
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(504)
    s = (await scrape(app)).samples
    expect(metric(s, 'hapctl_runtime_calls_total', { verb: 'show info', outcome: 'timeout' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_commands_total', { verb: 'show info', result: 'unknown' })).toBe(1)
    expect(metric(s, 'hapctl_haproxy_up')).toBe(0)
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200)
    expect(metric((await scrape(app)).samples, 'hapctl_haproxy_up')).toBe(1)
    state.down = true
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(503)
    s = (await scrape(app)).samples
    expect(metric(s, 'hapctl_runtime_calls_total', { verb: 'show info', outcome: 'unavailable' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_calls_total', { verb: 'show info', outcome: 'ok' })).toBe(2)
    expect(metric(s, 'hapctl_haproxy_up')).toBe(0)
  })

  it('counts reconciler passes, with the drift and failures of the last', async () => {
    const state = { down: true }
    const app = await buildTestApp(haproxy(state))
    await app.reconciler.reconcileNow()
    let s = (await scrape(app)).samples
    expect(metric(s, 'hapctl_reconcile_passes_total', { result: 'failed' })).toBe(1)
    expect(metric(s, 'hapctl_reconcile_failed_objects')).toBe(1)
    expect(metric(s, 'hapctl_reconcile_drift_objects')).toBe(1)
    expect(metric(s, 'hapctl_reconcile_duration_seconds_count')).toBe(1)
    state.down = false
    await app.reconciler.reconcileNow()
    s = (await scrape(app)).samples
    expect(metric(s, 'hapctl_reconcile_passes_total', { result: 'ok' })).toBe(1)
    expect(metric(s, 'hapctl_reconcile_drift_objects')).toBe(0)
    expect(metric(s, 'hapctl_reconcile_failed_objects')).toBe(0)
    expect(metric(s, 'hapctl_reconcile_duration_seconds_count')).toBe(2)
  })

  describe('authentication', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hapctl-metrics-'))
    afterAll(() => { rmSync(dir, { recursive: true, force: true }) })
    const secret = (): string => `hapctl_${randomBytes(32).toString('base64url')}`
    const reader = secret()
    const writer = secret()
    const tokensFile = join(dir, 'tokens.json')
    writeFileSync(tokensFile, JSON.stringify({
      tokens: [{ name: 'reader', hash: hashToken(reader), scopes: ['read'] }, { name: 'writer', hash: hashToken(writer), scopes: ['backends:write'] }]
    }))

    it('needs the read scope, like /ready', async () => {
      const app = await buildTestApp(haproxy(), { HAPCTL_TOKENS_FILE: tokensFile })
      expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401)
      expect((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${writer}` } })).statusCode).toBe(403)
      const { res } = await scrape(app, { authorization: `Bearer ${reader}` })
      expect(res.body).not.toContain(reader)
    })
  })
})
