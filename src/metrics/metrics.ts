/**
 * What GET /metrics exposes (Prometheus text format), in a registry of each app's own: tests build
 * many apps in one process, and prom-client's default registry is global. Metrics are fed by hooks
 * and decorators (HTTP requests, Runtime API calls, reconciler passes) or read at scrape time
 * (connection pools, watchers, the store's revision). The Node process's own metrics (CPU, memory,
 * event loop, GC) come from ./process.ts, once per process.
 * @see https://prometheus.io/docs/practices/naming/
 * @see https://github.com/siimon/prom-client
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { PoolStats, Runtime } from '../runtime/client.ts'
import type { PassEvent } from '../engine/reconciler.ts'
import { haproxyAnswered, measuredRuntime } from './runtime.ts'
import type { CallObservation } from './runtime.ts'
import { processMetrics } from './process.ts'

/** Seconds. HTTP answers range from a fraction of a millisecond (a read from memory) to a drain's deadline. */
export const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** Seconds. A command on a local socket takes well under a millisecond; a `wait` up to its deadline. */
const RUNTIME_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Seconds. A pass with nothing to do takes milliseconds; one that restores thousands of objects, seconds. */
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

/** The route label of a request no route matched (404, 405): never its URL, which the client chooses. */
const UNMATCHED_ROUTE = 'unmatched'

/** What is read at scrape time; each part is optional (tests attach what they have). */
type MetricSources = {
  reconciler?: { onPass: (listener: (event: PassEvent) => void) => () => void }
  identity?: { onChange: (listener: (change: { previous: string | undefined }) => void) => () => void }
  events?: { readonly watchers: number, readonly healthPolls: { readonly sent: number }, readonly slowCuts: number }
  store?: { revision: () => Promise<number> }
  audit?: { readonly failures: number }
}

export class Metrics {
  readonly registry = new Registry()
  readonly #httpRequests: Counter<'method' | 'route' | 'status'>
  readonly #httpDuration: Histogram<'method' | 'route' | 'status'>
  readonly #calls: Counter<'client' | 'verb' | 'outcome'>
  readonly #callDuration: Histogram<'client' | 'verb' | 'outcome'>
  readonly #commands: Counter<'client' | 'verb' | 'result'>
  readonly #up: Gauge
  readonly #processChanges: Counter
  readonly #passes: Counter<'result'>
  readonly #passDuration: Histogram
  readonly #drift: Gauge
  readonly #failed: Gauge
  readonly #reapplied: Counter
  readonly #lastPass: Gauge
  /** Connection pools by client name, read at scrape time. */
  readonly #pools = new Map<string, () => PoolStats | undefined>()
  #sources: MetricSources = {}
  readonly #unsubscribe: Array<() => void> = []
  /** Metrics whose values are read at scrape time (their collect functions); kept here, set nowhere else. */
  readonly #scraped: Array<Gauge<string> | Counter<string>> = []

  constructor () {
    const registers = [this.registry]
    const scraped = this.#scraped
    const pools = this.#pools
    const sources = (): MetricSources => this.#sources
    /** A collect function that sets a gauge for each pool, read now. */
    const perPool = (read: (s: PoolStats) => number) => function (this: Gauge<'client'>): void {
      for (const [client, stats] of pools) {
        const s = stats()
        if (s !== undefined) this.set({ client }, read(s))
      }
    }

    this.#httpRequests = new Counter({
      name: 'hapctl_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern (not URL) and status',
      labelNames: ['method', 'route', 'status'],
      registers
    })
    this.#httpDuration = new Histogram({
      name: 'hapctl_http_request_duration_seconds',
      help: 'Time from the request\'s arrival to its answer being sent, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: HTTP_BUCKETS,
      registers
    })

    this.#calls = new Counter({
      name: 'hapctl_runtime_calls_total',
      help: 'Runtime API calls (one or more commands on one connection), by client, first command\'s verb and outcome ' +
        '(ok, refused, stale, timeout, unavailable, protocol, busy, interrupted, invalid, error)',
      labelNames: ['client', 'verb', 'outcome'],
      registers
    })
    this.#callDuration = new Histogram({
      name: 'hapctl_runtime_call_duration_seconds',
      help: 'Duration of Runtime API calls, waiting for a connection included, by client, first command\'s verb and outcome',
      labelNames: ['client', 'verb', 'outcome'],
      buckets: RUNTIME_BUCKETS,
      registers
    })
    this.#commands = new Counter({
      name: 'hapctl_runtime_commands_total',
      help: 'Runtime API commands sent, by client, verb and result (ok, refused, interrupted, or unknown: no verdict came)',
      labelNames: ['client', 'verb', 'result'],
      registers
    })
    scraped.push(new Gauge({
      name: 'hapctl_runtime_connections_open',
      help: 'Connections to the Runtime API open, in use or idle, by client',
      labelNames: ['client'],
      registers,
      collect: perPool(s => s.open)
    }))
    scraped.push(new Gauge({
      name: 'hapctl_runtime_connections_idle',
      help: 'Connections to the Runtime API kept open and unused, by client',
      labelNames: ['client'],
      registers,
      collect: perPool(s => s.idle)
    }))
    scraped.push(new Gauge({
      name: 'hapctl_runtime_calls_waiting',
      help: 'Runtime API calls waiting for a connection (hapctl keeps within HAPROXY_MAX_CONNECTIONS), by client',
      labelNames: ['client'],
      registers,
      collect: perPool(s => s.waiting)
    }))
    scraped.push(new Counter({
      name: 'hapctl_runtime_connections_opened_total',
      help: 'Connections to the Runtime API opened, by client',
      labelNames: ['client'],
      registers,
      // The pool keeps the total; the counter repeats it.
      collect: function (this: Counter<'client'>) {
        this.reset()
        for (const [client, stats] of pools) {
          const s = stats()
          if (s !== undefined) this.inc({ client }, s.opened)
        }
      }
    }))

    this.#up = new Gauge({
      name: 'hapctl_haproxy_up',
      help: 'Whether HAProxy answered the last Runtime API call that reached it or failed to (1) or not (0: unreachable, ' +
        'no answer in time, connection cut); the reconciler asks it every HAPCTL_IDENTITY_POLL_MS',
      registers
    })
    this.#processChanges = new Counter({
      name: 'hapctl_haproxy_process_changes_total',
      help: 'HAProxy processes replaced (a restart, or a master-worker reload) as hapctl saw them',
      registers
    })

    this.#passes = new Counter({
      name: 'hapctl_reconcile_passes_total',
      help: 'Reconciler passes finished, by result (failed: at least one object could not be put back, or HAProxy could not be read)',
      labelNames: ['result'],
      registers
    })
    this.#passDuration = new Histogram({
      name: 'hapctl_reconcile_duration_seconds',
      help: 'Duration of reconciler passes',
      buckets: RECONCILE_BUCKETS,
      registers
    })
    this.#drift = new Gauge({
      name: 'hapctl_reconcile_drift_objects',
      help: 'Differences between the desired state and HAProxy left by the last pass (GET /status lists them)',
      registers
    })
    this.#failed = new Gauge({
      name: 'hapctl_reconcile_failed_objects',
      help: 'Objects the last pass could not put back',
      registers
    })
    this.#reapplied = new Counter({
      name: 'hapctl_reconcile_reapplied_objects_total',
      help: 'Objects the reconciler put back into HAProxy',
      registers
    })
    this.#lastPass = new Gauge({
      name: 'hapctl_reconcile_last_pass_timestamp_seconds',
      help: 'When the last reconciler pass finished (Unix time); 0 before the first',
      registers
    })

    scraped.push(new Gauge({
      name: 'hapctl_events_watchers',
      help: 'Clients connected to GET /events',
      registers,
      collect: function (this: Gauge) { const e = sources().events; if (e !== undefined) this.set(e.watchers) }
    }))
    scraped.push(new Counter({
      name: 'hapctl_events_health_polls_total',
      help: 'Health polls (`show stat`) sent for GET /events watchers',
      registers,
      collect: function (this: Counter) { const e = sources().events; if (e !== undefined) { this.reset(); this.inc(e.healthPolls.sent) } }
    }))
    scraped.push(new Counter({
      name: 'hapctl_events_slow_watchers_cut_total',
      help: 'GET /events clients disconnected for leaving more than HAPCTL_EVENTS_BUFFER_BYTES unread',
      registers,
      collect: function (this: Counter) { const e = sources().events; if (e !== undefined) { this.reset(); this.inc(e.slowCuts) } }
    }))
    scraped.push(new Gauge({
      name: 'hapctl_store_revision',
      help: 'Revision of the desired state: it grows with every accepted change',
      registers,
      collect: async function (this: Gauge) { const s = sources().store; if (s !== undefined) this.set(await s.revision()) }
    }))
    scraped.push(new Counter({
      name: 'hapctl_audit_append_failures_total',
      help: 'Audit trail appends that failed (their entries were logged at error level and retried)',
      registers,
      collect: function (this: Counter) { const a = sources().audit; if (a !== undefined) { this.reset(); this.inc(a.failures) } }
    }))
  }

  get contentType (): string {
    return this.registry.contentType
  }

  /** One answered HTTP request; `route` is the route's pattern, undefined when none matched. */
  observeRequest (method: string, route: string | undefined, status: number, seconds: number): void {
    const labels = { method, route: route ?? UNMATCHED_ROUTE, status: String(status) }
    this.#httpRequests.inc(labels)
    this.#httpDuration.observe(labels, seconds)
  }

  /** `inner` with its calls counted and timed under `client`; its pool (a RuntimeClient's `stats`) read at scrape time. */
  runtime (inner: Runtime, client: string): Runtime {
    if ('stats' in inner) this.#pools.set(client, () => (inner as { readonly stats?: PoolStats }).stats)
    return measuredRuntime(inner, o => { this.#observeCall(client, o) })
  }

  #observeCall (client: string, o: CallObservation): void {
    const labels = { client, verb: o.verb, outcome: o.outcome }
    this.#calls.inc(labels)
    this.#callDuration.observe(labels, o.seconds)
    for (const c of o.commands) this.#commands.inc({ client, verb: c.verb, result: c.result })
    const answered = haproxyAnswered(o.outcome)
    if (answered !== undefined) this.#up.set(answered ? 1 : 0)
  }

  /** Starts following the reconciler and HAProxy's process, and reading the others at scrape time. */
  watch (sources: MetricSources): void {
    this.#sources = { ...this.#sources, ...sources }
    if (sources.reconciler !== undefined) this.#unsubscribe.push(sources.reconciler.onPass(event => { this.#observePass(event) }))
    if (sources.identity !== undefined) {
      this.#unsubscribe.push(sources.identity.onChange(change => { if (change.previous !== undefined) this.#processChanges.inc() }))
    }
  }

  #observePass (event: PassEvent): void {
    if (event.phase !== 'finished') return
    const { report } = event
    this.#passes.inc({ result: report.failed.length > 0 ? 'failed' : 'ok' })
    this.#passDuration.observe(report.durationMs / 1000)
    this.#drift.set(report.drift.length)
    this.#failed.set(report.failed.length)
    this.#reapplied.inc(report.reapplied.length)
    this.#lastPass.set(Date.now() / 1000)
  }

  /** The exposition text: this app's metrics, then the process's. */
  async scrape (): Promise<string> {
    return await this.registry.metrics() + await processMetrics().metrics()
  }

  /** Stops following what watch() subscribed to. */
  close (): void {
    for (const u of this.#unsubscribe.splice(0)) u()
  }
}
