/**
 * Health transitions for GET /events, from one `show stat -1 4 -1` poll (management §9.1 for the CSV
 * and its status and check_status fields, §9.3 for `show stat`) every interval, whatever the number
 * of watchers: 100 watchers cost HAProxy what one does. It runs only while a watcher wants health
 * events (and for a short linger after the last one left, so that a watcher that reconnects loses
 * nothing). The first poll after a pause is a baseline and reports nothing: what changed during the
 * pause was not seen, and the hub tells watchers that resume across it.
 *
 * A transition is a change of the normalized status (up, down, maint, drain, nolb; `UP 1/2`, a
 * server going down, is still up), a server appearing or going away. A poll that fails (HAProxy
 * down or slow) reports nothing and keeps the last answer as the baseline: the next answer is
 * compared with it, so a watcher learns the net change once HAProxy answers again.
 * @see https://docs.haproxy.org/3.4/management.html#9.3-show%20stat
 */
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import type { Row } from '../runtime/parsers.ts'
import { normalizeStatus, parseCheckStatus } from '../resources/servers/view.ts'
import type { HealthTransition, ServerHealth } from './kinds.ts'
import type { Logger } from '../logger.ts'

/** The columns read; the other 200 or so of each row are skipped without being cut out. */
const HEALTH_STAT = { columns: ['pxname', 'svname', 'status', 'check_status'], serversOnly: true } as const

export type HealthPollerOptions = {
  runtime: Runtime
  intervalMs: number
  /** How long polling goes on after the last watcher left. */
  lingerMs: number
  onTransitions: (transitions: HealthTransition[], at: Date) => void
  /** Polling starts again after a pause: what happened meanwhile was not seen. */
  onResume: () => void
  logger?: Logger<'warn' | 'debug'> | undefined
}

export class HealthPoller {
  readonly #o: HealthPollerOptions
  #watchers = 0
  #running = false
  #timer: NodeJS.Timeout | undefined
  #linger: NodeJS.Timeout | undefined
  /** The last answer, by `backend/server`; undefined until the baseline of this run. */
  #last: Map<string, ServerHealth & { backend: string, server: string }> | undefined
  /** Bumped at every start and stop: a poll of an earlier run is discarded. */
  #generation = 0
  #baseline: Promise<void> = Promise.resolve()
  #settleBaseline: (() => void) | undefined
  #failing = false
  #polls = 0

  constructor (opts: HealthPollerOptions) {
    this.#o = opts
  }

  /** Polls sent so far (tests). */
  get polls (): number {
    return this.#polls
  }

  get running (): boolean {
    return this.#running
  }

  /** A watcher of health events connected; resolves once polling has a baseline (or its first poll failed). */
  acquire (): Promise<void> {
    this.#watchers++
    clearTimeout(this.#linger)
    this.#linger = undefined
    if (!this.#running) this.#start()
    return this.#baseline
  }

  release (): void {
    if (this.#watchers === 0) return
    if (--this.#watchers > 0 || !this.#running) return
    if (this.#o.lingerMs === 0) { this.stop(); return }
    this.#linger = setTimeout(() => { this.#linger = undefined; if (this.#watchers === 0) this.stop() }, this.#o.lingerMs)
    this.#linger.unref()
  }

  stop (): void {
    this.#running = false
    this.#generation++
    clearTimeout(this.#timer)
    clearTimeout(this.#linger)
    this.#linger = undefined
    this.#last = undefined
    // A watcher waiting for the baseline of a run that ends goes on without it.
    this.#settleBaseline?.()
    this.#settleBaseline = undefined
  }

  #start (): void {
    this.#running = true
    this.#generation++
    this.#last = undefined
    this.#o.onResume()
    let settle: () => void = () => {}
    this.#baseline = new Promise(resolve => { settle = resolve })
    this.#settleBaseline = settle
    this.#loop(this.#generation, settle)
  }

  #loop (generation: number, settle?: () => void): void {
    this.#poll(generation).finally(() => {
      settle?.()
      if (generation !== this.#generation) return
      this.#timer = setTimeout(() => { this.#loop(generation) }, this.#o.intervalMs)
      this.#timer.unref()
    }).catch(() => {})
  }

  async #poll (generation: number): Promise<void> {
    let rows: Row[]
    this.#polls++
    try {
      [rows] = await this.#o.runtime.execute([cmd.showStat(undefined, HEALTH_STAT)])
    } catch (err) {
      if (!this.#failing) this.#o.logger?.warn({ err }, 'health poll failed: no health events until HAProxy answers again')
      this.#failing = true
      return
    }
    if (generation !== this.#generation) return
    if (this.#failing) this.#o.logger?.debug({}, 'health poll answers again')
    this.#failing = false
    const now = new Map<string, ServerHealth & { backend: string, server: string }>()
    for (const r of rows) {
      const backend = r.pxname ?? ''
      const server = r.svname ?? ''
      const rawStatus = r.status ?? ''
      now.set(`${backend}/${server}`, { backend, server, rawStatus, status: normalizeStatus(rawStatus), checkStatus: parseCheckStatus(r.check_status).status })
    }
    const last = this.#last
    this.#last = now
    if (last === undefined) return
    const transitions: HealthTransition[] = []
    for (const [key, cur] of now) {
      const prev = last.get(key)
      if (prev === undefined || prev.status !== cur.status) transitions.push({ backend: cur.backend, server: cur.server, previous: prev && health(prev), current: health(cur) })
    }
    for (const [key, prev] of last) {
      if (!now.has(key)) transitions.push({ backend: prev.backend, server: prev.server, previous: health(prev), current: undefined })
    }
    if (transitions.length > 0) this.#o.onTransitions(transitions, new Date())
  }
}

const health = (h: ServerHealth): ServerHealth => ({ status: h.status, rawStatus: h.rawStatus, checkStatus: h.checkStatus })
