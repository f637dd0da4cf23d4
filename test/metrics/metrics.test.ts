import { describe, expect, it } from 'vitest'
import { HTTP_BUCKETS, Metrics } from '../../src/metrics/metrics.ts'
import type { PassEvent, ReconcileReport } from '../../src/engine/reconciler.ts'
import type { PoolStats, Runtime } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { INFO_REPLY, fakeRuntime } from '../helpers/fake-runtime.ts'
import { metric, parseMetrics } from '../helpers/metrics.ts'

async function samples (m: Metrics) {
  return parseMetrics(await m.registry.metrics())
}

function report (over: Partial<ReconcileReport>): ReconcileReport {
  return { reason: 'periodic', startedAt: new Date().toISOString(), durationMs: 0, process: '1@1', revision: 1, reapplied: [], failed: [], drift: [], phasesMs: {}, ...over }
}

describe('Metrics', () => {
  it('keeps each app\'s counts in its own registry', async () => {
    const a = new Metrics()
    const b = new Metrics()
    a.observeRequest('GET', '/backends', 200, 0.01)
    expect(metric(await samples(a), 'hapctl_http_requests_total', { route: '/backends' })).toBe(1)
    expect(metric(await samples(b), 'hapctl_http_requests_total', { route: '/backends' })).toBeUndefined()
  })

  it('files latencies in cumulative buckets, and a request no route matched under one label', async () => {
    const m = new Metrics()
    m.observeRequest('GET', '/backends/:name', 200, 0.003)
    m.observeRequest('GET', '/backends/:name', 200, 0.2)
    m.observeRequest('GET', '/backends/:name', 404, 0.0001)
    m.observeRequest('GET', undefined, 404, 0.0001)
    const s = await samples(m)
    const bucket = (le: string) => metric(s, 'hapctl_http_request_duration_seconds_bucket', { route: '/backends/:name', status: '200', le })
    expect(bucket('0.0025')).toBe(0)
    expect(bucket('0.005')).toBe(1)
    expect(bucket('0.1')).toBe(1)
    expect(bucket('0.25')).toBe(2)
    expect(bucket('+Inf')).toBe(2)
    const les = s.filter(x => x.name === 'hapctl_http_request_duration_seconds_bucket' && x.labels.status === '200').map(x => x.labels.le)
    expect(les).toEqual([...HTTP_BUCKETS.map(String), '+Inf'])
    expect(metric(s, 'hapctl_http_request_duration_seconds_count', { route: '/backends/:name', status: '200' })).toBe(2)
    expect(metric(s, 'hapctl_http_request_duration_seconds_sum', { route: '/backends/:name', status: '200' })).toBeCloseTo(0.203, 6)
    expect(metric(s, 'hapctl_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1)
  })

  it('counts Runtime API calls by client, verb and outcome, and follows HAProxy\'s reachability', async () => {
    const m = new Metrics()
    let down = false
    const runtime = m.runtime(fakeRuntime(() => down ? new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED') : INFO_REPLY), 'api')
    expect(metric(await samples(m), 'hapctl_haproxy_up')).toBe(0)
    await runtime.execute([cmd.showInfo()])
    expect(metric(await samples(m), 'hapctl_haproxy_up')).toBe(1)
    down = true
    await expect(runtime.execute([cmd.showInfo()])).rejects.toThrow()
    let s = await samples(m)
    expect(metric(s, 'hapctl_haproxy_up')).toBe(0)
    expect(metric(s, 'hapctl_runtime_calls_total', { client: 'api', verb: 'show info', outcome: 'ok' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_calls_total', { client: 'api', verb: 'show info', outcome: 'unavailable' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_call_duration_seconds_count', { client: 'api', verb: 'show info' })).toBe(2)
    expect(metric(s, 'hapctl_runtime_commands_total', { verb: 'show info', result: 'ok' })).toBe(1)
    down = false
    await runtime.execute([cmd.showInfo()])
    s = await samples(m)
    expect(metric(s, 'hapctl_haproxy_up')).toBe(1)
  })

  it('reads connection pools at scrape time, by client', async () => {
    const m = new Metrics()
    const stats: PoolStats = { open: 3, idle: 2, waiting: 1, opened: 7 }
    const pooled = { ...fakeRuntime(() => INFO_REPLY), get stats () { return { ...stats } } } as Runtime
    m.runtime(pooled, 'api')
    m.runtime(fakeRuntime(() => INFO_REPLY), 'reconciler')
    let s = await samples(m)
    expect(metric(s, 'hapctl_runtime_connections_open', { client: 'api' })).toBe(3)
    expect(metric(s, 'hapctl_runtime_connections_idle', { client: 'api' })).toBe(2)
    expect(metric(s, 'hapctl_runtime_calls_waiting', { client: 'api' })).toBe(1)
    expect(metric(s, 'hapctl_runtime_connections_opened_total', { client: 'api' })).toBe(7)
    // A runtime without a pool (a fake) has no pool series.
    expect(metric(s, 'hapctl_runtime_connections_open', { client: 'reconciler' })).toBeUndefined()
    Object.assign(stats, { open: 0, idle: 0, waiting: 0, opened: 9 })
    s = await samples(m)
    expect(metric(s, 'hapctl_runtime_connections_open', { client: 'api' })).toBe(0)
    expect(metric(s, 'hapctl_runtime_connections_opened_total', { client: 'api' })).toBe(9)
  })

  it('follows reconciler passes, HAProxy process changes, watchers, the store revision and audit failures', async () => {
    const m = new Metrics()
    const passListeners: Array<(e: PassEvent) => void> = []
    const identityListeners: Array<(c: { previous: string | undefined }) => void> = []
    const events = { watchers: 2, healthPolls: { sent: 5 }, slowCuts: 1 }
    let revision = 4
    m.watch({
      reconciler: { onPass: l => { passListeners.push(l); return () => {} } },
      identity: { onChange: l => { identityListeners.push(l); return () => {} } },
      events,
      store: { revision: async () => revision },
      audit: { failures: 3 }
    })
    const pass = (e: PassEvent) => { for (const l of passListeners) l(e) }
    pass({ phase: 'started', reason: 'start', startedAt: '' })
    pass({ phase: 'finished', report: report({ durationMs: 40, reapplied: ['backend/b1', 'map/m'], drift: [] }) })
    pass({ phase: 'finished', report: report({ durationMs: 3000, failed: [{ object: 'haproxy', error: 'down' }], drift: [{ object: 'haproxy', desired: '', actual: '' }] }) })
    for (const l of identityListeners) { l({ previous: undefined }); l({ previous: '1@1' }) }
    let s = await samples(m)
    expect(metric(s, 'hapctl_reconcile_passes_total', { result: 'ok' })).toBe(1)
    expect(metric(s, 'hapctl_reconcile_passes_total', { result: 'failed' })).toBe(1)
    expect(metric(s, 'hapctl_reconcile_duration_seconds_count')).toBe(2)
    expect(metric(s, 'hapctl_reconcile_duration_seconds_bucket', { le: '0.05' })).toBe(1)
    expect(metric(s, 'hapctl_reconcile_duration_seconds_bucket', { le: '5' })).toBe(2)
    expect(metric(s, 'hapctl_reconcile_drift_objects')).toBe(1)
    expect(metric(s, 'hapctl_reconcile_failed_objects')).toBe(1)
    expect(metric(s, 'hapctl_reconcile_reapplied_objects_total')).toBe(2)
    expect(metric(s, 'hapctl_reconcile_last_pass_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60)
    // The first process seen is no change; the next one is.
    expect(metric(s, 'hapctl_haproxy_process_changes_total')).toBe(1)
    expect(metric(s, 'hapctl_events_watchers')).toBe(2)
    expect(metric(s, 'hapctl_events_health_polls_total')).toBe(5)
    expect(metric(s, 'hapctl_events_slow_watchers_cut_total')).toBe(1)
    expect(metric(s, 'hapctl_store_revision')).toBe(4)
    expect(metric(s, 'hapctl_audit_append_failures_total')).toBe(3)
    events.watchers = 0
    revision = 5
    s = await samples(m)
    expect(metric(s, 'hapctl_events_watchers')).toBe(0)
    expect(metric(s, 'hapctl_store_revision')).toBe(5)
  })

  it('adds the process\'s metrics to the scrape', async () => {
    const text = await new Metrics().scrape()
    expect(text).toMatch(/^# TYPE process_cpu_seconds_total counter$/m)
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m)
    expect(text).toMatch(/^# TYPE hapctl_http_requests_total counter$/m)
  })
})
