/**
 * The level-triggered reconciler: compares the desired state (the store) with what HAProxy holds and
 * applies the difference, in dependency order: backends (with their servers, published last) →
 * servers → health/state/weight → maps (each atomically, by a versioned load) → removal of what
 * hapctl created and no longer wants. It never touches an object of HAProxy's configuration except
 * what the desired state names (a static server's state or weight, a file map's content written
 * through hapctl); a name the configuration now defines for one of hapctl's backends is reported as
 * a conflict and left alone.
 *
 * It runs at start, as soon as HAProxy's process identity changes (a restart or a reload starts a
 * process that has forgotten every runtime change; polled with `show info`), after a write whose
 * outcome is unknown, and periodically to catch drift. Its plans go through the executor under each
 * object's lock, so requests are served meanwhile and writes to an object being reconciled wait.
 */
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import type { ProcessInfo, Row } from '../runtime/parsers.ts'
import type { Executor } from './executor.ts'
import type { ProcessIdentity } from './identity.ts'
import { processIdOf } from './identity.ts'
import type { Plan, Step } from './plan.ts'
import { commandStep } from './plan.ts'
import type { DesiredBackend, DesiredMap, DesiredServer, DesiredState, StaticServerSettings } from './store/types.ts'
import { addServerSteps, removalCommands } from '../resources/servers/service.ts'
import { checkStateOf, cliAdminStateOf } from '../resources/servers/view.ts'
import { createBackendSteps, deleteBackend } from '../resources/backends/service.ts'
import type { CreatedBackend } from '../resources/backends/view.ts'
import { BACKEND_STAT, backendsFromStat } from '../resources/backends/view.ts'
import { readContent, sameEntries, stageContent } from '../resources/pattern-refs/versioned-load.ts'
import type { Logger } from '../logger.ts'

export type DriftItem = {
  /** `backend/b1`, `server/b1/s1`, `static-server/webservers/web1`, `map/virt@paths.map`. */
  object: string
  desired: string
  actual: string
}

export type ReconcileReport = {
  reason: string
  startedAt: string
  durationMs: number
  /** The HAProxy process reconciled. */
  process: string | undefined
  /** The store revision it worked from. */
  revision: number
  /** What was put back, one line per object. */
  reapplied: string[]
  failed: Array<{ object: string, error: string }>
  /** Differences left: conflicts, failures, objects that HAProxy's configuration lacks. */
  drift: DriftItem[]
  /** Where the time went: reading the store and HAProxy, and each phase that had work (ms). */
  phasesMs: Record<string, number>
}

/** A pass of the reconciler beginning or ending. */
export type PassEvent =
  | { readonly phase: 'started', readonly reason: string, readonly startedAt: string }
  | { readonly phase: 'finished', readonly report: ReconcileReport }

export type ReconcilerLogger = Logger<'info' | 'warn' | 'debug'>

export type ReconcilerOptions = {
  runtime: Runtime
  executor: Executor
  identity: ProcessIdentity
  /** Backends created in the current process (shared with the backends resource, for views). */
  created: Map<string, CreatedBackend>
  intervalMs: number
  identityPollMs: number
  /** Plans run at once; stays under the client's connection limit so requests still get through. */
  concurrency?: number
  logger?: ReconcilerLogger | undefined
}

/** How long a removal the reconciler starts waits for connections to finish before trying again later. */
const REMOVAL_WAIT_MS = 2000

export class Reconciler {
  readonly #o: ReconcilerOptions
  #timer: NodeJS.Timeout | undefined
  #pollTimer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #pending: string | undefined
  #stopped = true
  /** stop() was called: a running pass skips what it has not started. */
  #closing = false
  #last: ReconcileReport | undefined
  #failures = 0
  #passes = 0
  #lastFailures: string | undefined
  /**
   * Servers hapctl added to backends of the configuration whose deletion had an unknown outcome, by
   * `backend/server`, with the process they were in: the store no longer keeps them, and the
   * reconciler removes only servers of its own backends otherwise, so it finishes these here.
   */
  readonly #unsettledRemovals = new Map<string, { backend: string, name: string, process: string }>()
  readonly #passListeners = new Set<(event: PassEvent) => void>()

  constructor (opts: ReconcilerOptions) {
    this.#o = opts
    opts.identity.onChange(change => {
      if (change.previous !== undefined) this.kick(`HAProxy process changed (${change.previous} → ${change.current})`)
      // The first process seen after passes that could not reach HAProxy (it was down when hapctl
      // started): go now, not when the backed-off retry comes (up to intervalMs later).
      else if (this.#last !== undefined && this.#last.failed.length > 0) this.kick(`HAProxy answers (${change.current})`)
    })
    // A failed write left one of hapctl's objects half-changed: put it back to the desired state now.
    opts.executor.onLeft(plan => { this.kick(`${plan.action} ${plan.target.kind} '${plan.target.id}' left half-done`) })
    opts.executor.onCommit(event => {
      if (event.outcome !== 'unknown') return
      const process = opts.identity.current
      for (const c of event.plan.changes ?? []) {
        if (c.op === 'server.delete' && process !== undefined) this.#unsettledRemovals.set(`${c.backend}/${c.name}`, { backend: c.backend, name: c.name, process })
      }
      this.kick(`outcome of ${event.plan.action} ${event.plan.target.kind} '${event.plan.target.id}' unknown`)
    })
  }

  /** Called when a pass starts and when it finishes (the watch stream's `reconcile` events). */
  onPass (listener: (event: PassEvent) => void): () => void {
    this.#passListeners.add(listener)
    return () => this.#passListeners.delete(listener)
  }

  #emit (event: PassEvent): void {
    for (const l of this.#passListeners) {
      try {
        l(event)
      } catch (err) {
        this.#o.logger?.warn({ err }, 'a listener of reconciler passes failed')
      }
    }
  }

  /** Starts the loops and the first pass (not awaited: HAProxy may be down at start). */
  start (): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#closing = false
    this.kick('start')
    const poll = (): void => {
      this.#pollTimer = setTimeout(() => {
        this.#poll().finally(() => { if (!this.#stopped) poll() }).catch(() => {})
      }, this.#o.identityPollMs)
      this.#pollTimer.unref()
    }
    poll()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#closing = true
    clearTimeout(this.#timer)
    clearTimeout(this.#pollTimer)
    await this.#running
  }

  /** Asks for a pass as soon as possible; passes never overlap, requests made during one are merged into the next. */
  kick (reason: string, delayMs = 0): void {
    if (this.#stopped) return
    this.#pending ??= reason
    if (this.#running !== undefined) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { this.#loop().catch(() => {}) }, delayMs)
    this.#timer.unref()
  }

  /** Runs one pass now and waits for it (tests, and callers that need the result). */
  async reconcileNow (reason = 'requested'): Promise<ReconcileReport | undefined> {
    while (this.#running !== undefined) await this.#running
    this.#pending = reason
    await this.#loop()
    return this.#last
  }

  get lastReport (): ReconcileReport | undefined {
    return this.#last
  }

  get running (): boolean {
    return this.#running !== undefined
  }

  get passes (): number {
    return this.#passes
  }

  async #poll (): Promise<void> {
    try {
      const [info] = await this.#o.runtime.execute([cmd.showInfo()])
      this.#o.identity.observe(info)
    } catch {
      // HAProxy down or slow: the next answer from a new process is what matters.
    }
  }

  async #loop (): Promise<void> {
    if (this.#running !== undefined) return
    clearTimeout(this.#timer)
    let release!: () => void
    this.#running = new Promise(resolve => { release = resolve })
    let again = false
    try {
      const reason = this.#pending ?? 'periodic'
      this.#pending = undefined
      again = await this.#pass(reason)
    } finally {
      this.#running = undefined
      release()
    }
    if (this.#stopped) return
    if (this.#pending !== undefined || again) {
      // Something changed meanwhile, or a plan failed: go again soon, backing off on repeated failures.
      const delay = this.#pending !== undefined ? 0 : Math.min(this.#o.intervalMs, 200 * 2 ** Math.min(this.#failures, 6))
      this.#pending ??= 'retry'
      this.#timer = setTimeout(() => { this.#loop().catch(() => {}) }, delay)
    } else {
      this.#timer = setTimeout(() => { this.#pending ??= 'periodic'; this.#loop().catch(() => {}) }, this.#o.intervalMs)
    }
    this.#timer.unref()
  }

  /** One pass; true when another should follow soon. */
  async #pass (reason: string): Promise<boolean> {
    const started = Date.now()
    const startedAt = new Date(started).toISOString()
    const report: ReconcileReport = { reason, startedAt, durationMs: 0, process: undefined, revision: 0, reapplied: [], failed: [], drift: [], phasesMs: {} }
    let again = false
    this.#emit({ phase: 'started', reason, startedAt })
    try {
      let t0 = performance.now()
      const desired = await this.#o.executor.store.load()
      report.revision = desired.revision
      report.phasesMs.store = Math.round(performance.now() - t0)
      // Read before HAProxy: a backend whose creation is recorded here is then either in what HAProxy
      // answers or deleted since, never one being created that the cleanup below would forget.
      const createdIn = await this.#o.executor.store.createdIn()
      t0 = performance.now()
      const actual = await readActual(this.#o.runtime)
      report.phasesMs.haproxy = Math.round(performance.now() - t0)
      if (actual.info.stopping) return true
      this.#o.identity.observe(actual.info)
      report.process = processIdOf(actual.info)
      const work = await this.#plan(desired, actual, createdIn, report)
      again = await this.#apply(work, report, desired.revision)
    } catch (err) {
      report.failed.push({ object: 'haproxy', error: (err as Error).message })
      // Nothing could be compared: an empty drift would read as "HAProxy matches".
      report.drift.push({ object: 'haproxy', desired: `the desired state (revision ${report.revision})`, actual: `not compared: ${(err as Error).message}` })
      again = true
    }
    report.durationMs = Date.now() - started
    this.#passes++
    this.#failures = report.failed.length > 0 ? this.#failures + 1 : 0
    this.#last = report
    this.#emit({ phase: 'finished', report })
    const log = this.#o.logger
    // The same failures pass after pass (HAProxy down, a conflict that persists) are said once, at
    // warn, and then only at debug until they change: retries must not flood the log.
    const failures = JSON.stringify(report.failed)
    const repeated = report.failed.length > 0 && failures === this.#lastFailures
    this.#lastFailures = report.failed.length > 0 ? failures : undefined
    const details = { reason, ms: report.durationMs, phasesMs: report.phasesMs, reapplied: report.reapplied.length, failed: report.failed.slice(0, 10), drift: report.drift.length }
    if (report.failed.length > 0 && !repeated) {
      log?.warn(details, 'could not bring HAProxy in line with the desired state; retrying')
    } else if (report.reapplied.length > 0) {
      log?.info(details, 'reconciled HAProxy with the desired state')
    } else if (repeated) {
      log?.debug(details, 'still failing to bring HAProxy in line with the desired state')
    } else {
      log?.debug({ reason, ms: report.durationMs }, 'HAProxy matches the desired state')
    }
    return again || report.failed.length > 0
  }

  /** Works out what to do; the plans are built later, under each object's lock. */
  async #plan (desired: DesiredState, actual: Actual, createdIn: Map<string, string>, report: ReconcileReport): Promise<Work[]> {
    const here = processIdOf(actual.info)
    const wantedBackends = new Map(desired.backends.map(b => [b.name, b]))
    const serversOf = new Map<string, DesiredServer[]>()
    for (const s of desired.servers) {
      const list = serversOf.get(s.backend) ?? []
      list.push(s)
      serversOf.set(s.backend, list)
    }
    const work: Work[] = []
    for (const b of desired.backends) {
      const a = actual.backends.get(b.name)
      if (a === undefined) {
        work.push({ kind: 'create-backend', backend: b, servers: serversOf.get(b.name) ?? [] })
        continue
      }
      if (createdIn.get(b.name) !== here) {
        report.drift.push({ object: `backend/${b.name}`, desired: `created from '${b.from}'`, actual: "defined by HAProxy's configuration: left alone" })
        continue
      }
      this.#o.created.set(b.name, this.#o.created.get(b.name) ?? { from: b.from, noDynamicServers: undefined })
      const fixes = serverFixes(b.name, serversOf.get(b.name) ?? [], a, true)
      if (a.published !== b.published) fixes.publish = b.published
      if (fixes.steps.length > 0 || fixes.publish !== undefined) work.push({ kind: 'fix-backend', name: b.name, fixes, snapshot: { backend: b, servers: serversOf.get(b.name) ?? [] } })
    }
    // Servers hapctl added to backends of the configuration.
    for (const [backend, servers] of serversOf) {
      if (wantedBackends.has(backend)) continue
      const a = actual.backends.get(backend)
      if (a === undefined) {
        for (const s of servers) report.drift.push({ object: `server/${backend}/${s.name}`, desired: 'present', actual: `HAProxy has no backend '${backend}'` })
        continue
      }
      const fixes = serverFixes(backend, servers, a, false)
      if (fixes.steps.length > 0) work.push({ kind: 'fix-backend', name: backend, fixes, snapshot: { backend: undefined, servers } })
    }
    // Deletions with an unknown outcome of servers hapctl added to backends of the configuration.
    const keptServers = new Set(desired.servers.map(s => `${s.backend}/${s.name}`))
    for (const [key, r] of this.#unsettledRemovals) {
      const a = actual.backends.get(r.backend)
      if (r.process !== here || a === undefined || !a.servers.has(r.name) || wantedBackends.has(r.backend) || keptServers.has(key)) {
        this.#unsettledRemovals.delete(key)
        continue
      }
      const fixes: Fixes = { steps: [commandStep(removalCommands(r.backend, r.name, REMOVAL_WAIT_MS))], what: [`server ${r.name} removed (its deletion's outcome was unknown)`] }
      work.push({ kind: 'fix-backend', name: r.backend, fixes, snapshot: { backend: undefined, servers: serversOf.get(r.backend) ?? [] } })
    }
    for (const s of desired.staticServers) {
      const row = actual.backends.get(s.backend)?.servers.get(s.name)
      if (row === undefined) {
        report.drift.push({ object: `static-server/${s.backend}/${s.name}`, desired: settingsText(s), actual: 'no such server' })
        continue
      }
      const steps = staticFixes(s, row)
      if (steps.length > 0) work.push({ kind: 'fix-static', settings: s, steps })
    }
    for (const m of desired.maps) {
      if (!actual.maps.has(m.name)) {
        report.drift.push({ object: `map/${m.name}`, desired: `${m.entries.length} entries`, actual: "HAProxy's configuration has no such map" })
        continue
      }
      work.push({ kind: 'map', map: m })
    }
    // What hapctl created in this process and no longer wants: left by a failed undo or a delete whose outcome was unknown.
    for (const [name] of actual.backends) {
      if (!wantedBackends.has(name) && createdIn.get(name) === here) work.push({ kind: 'remove-backend', name })
    }
    // Records of where backends were created that name neither a kept backend nor one HAProxy has
    // (deleted while HAProxy was down, or a process long gone): forgotten, so they do not pile up.
    for (const name of createdIn.keys()) {
      if (!wantedBackends.has(name) && !actual.backends.has(name)) await this.#o.executor.store.setCreatedIn(name, undefined)
    }
    return work
  }

  /**
   * Runs the work in dependency order; true when something must be looked at again. Maps are staged
   * (prepared, loaded, counted: invisible to lookups) while backends are created, and committed once
   * the backend phases are over, so what becomes visible still follows the dependency order.
   */
  async #apply (work: Work[], report: ReconcileReport, revision: number): Promise<boolean> {
    let again = false
    const run = async (item: Work, gate?: Promise<void>): Promise<void> => {
      // Stopping (hapctl shuts down): the items in progress finish, the others are left for the next start.
      if (this.#closing) return
      try {
        const done = await this.#run(item, revision, gate)
        if (done === 'changed') again = true
        else if (done !== undefined) report.reapplied.push(done)
      } catch (err) {
        report.failed.push({ object: objectOf(item), error: (err as Error).message })
        report.drift.push({ object: objectOf(item), desired: 'as kept by hapctl', actual: `not put back: ${(err as Error).message}` })
      }
    }
    const timed = async (phase: string, items: Work[], fn: () => Promise<void>): Promise<void> => {
      const t0 = performance.now()
      await fn()
      if (items.length > 0) report.phasesMs[phase] = Math.round(performance.now() - t0)
    }
    let openGate!: () => void
    const gate = new Promise<void>(resolve => { openGate = resolve })
    const mapItems = work.filter(w => w.kind === 'map')
    const maps = timed('map', mapItems, () => pool(mapItems, 1, item => run(item, gate)))
    try {
      // Backends to create go in groups on one connection each (one `show info`, one connection setup
      // for many backends); a group that fails is put back whole and its backends are created one by one.
      const creates = work.filter((w): w is CreateWork => w.kind === 'create-backend')
      await timed('create-backend', creates, () => pool(chunks(creates, CREATE_GROUP), this.#o.concurrency ?? 3, async group => {
        if (this.#closing) return
        if (group.length > 1 && await this.#createTogether(group, revision, report)) return
        for (const item of group) await run(item)
      }))
      for (const phase of ['fix-backend', 'fix-static'] as const) {
        const items = work.filter(w => w.kind === phase)
        await timed(phase, items, () => pool(items, this.#o.concurrency ?? 3, item => run(item)))
      }
    } finally {
      openGate()
    }
    await maps
    const removals = work.filter(w => w.kind === 'remove-backend')
    await timed('remove-backend', removals, () => pool(removals, this.#o.concurrency ?? 3, item => run(item)))
    return again
  }

  /**
   * Creates a group of backends in one plan under all their locks: one connection, one `show info`.
   * False when it did not (the store moved since the pass began, or a step failed and the group was
   * put back): the caller then creates them one by one, each re-checked under its own lock.
   */
  async #createTogether (group: CreateWork[], revision: number, report: ReconcileReport): Promise<boolean> {
    const { executor } = this.#o
    const names = group.map(item => item.backend.name)
    const target = { kind: 'backend', id: names.join(',') }
    let info: ProcessInfo | undefined
    try {
      // A short lock wait: a group holds the locks it has while it waits for the next one, and a write to
      // one of them must not wait long for an operation on another (then the group goes one by one).
      const { outcome } = await executor.run({ target, lock: names.map(n => `backend:${n}`), actor: 'reconciler', runtime: this.#o.runtime, lockTimeoutMs: GROUP_LOCK_WAIT_MS }, async (): Promise<Plan> => {
        if (await executor.store.revision() !== revision) return { target, action: 'stale', steps: [] }
        const steps: Step[] = [{ label: 'show info', commands: [cmd.showInfo()], undoCommands: [], onApplied: ([i]) => { info = i as ProcessInfo } }]
        for (const item of group) steps.push(...this.#createSteps(item, () => info))
        return { target, action: 'reconcile', steps }
      })
      if (outcome.kind !== 'applied' || outcome.applied.length === 0) return false
    } catch {
      return false
    }
    for (const item of group) report.reapplied.push(createdLine(item))
    return true
  }

  /** A missing backend with its servers, restored in traffic at once (see addServerSteps). */
  #createSteps (item: CreateWork, process?: () => ProcessInfo | undefined): Step[] {
    const { executor, identity, created } = this.#o
    return createBackendSteps(item.backend, { executor, identity, created }, item.servers.flatMap(s => addServerSteps(s, { restore: true })), [],
      process === undefined ? {} : { process })
  }

  /**
   * One item under its object's lock. The desired state is read again there: a write may have changed
   * it since the pass began, and then the pass's view is stale ('changed': look again).
   */
  async #run (item: Work, revision: number, gate?: Promise<void>): Promise<string | 'changed' | undefined> {
    const { executor } = this.#o
    const store = executor.store
    const opts = (kind: string, id: string, lock: string) => ({ target: { kind, id }, lock, actor: 'reconciler', runtime: this.#o.runtime })
    // Nothing was committed since the pass read the store: its view of every object is current.
    const unchanged = async (): Promise<boolean> => await store.revision() === revision
    switch (item.kind) {
      case 'create-backend': {
        const b = item.backend
        return await executor.perform(opts('backend', b.name, `backend:${b.name}`), async (): Promise<Plan> => {
          if (!await unchanged()) {
            const now = await store.getBackend(b.name)
            const servers = await store.getServers(b.name)
            if (!sameJson(now, b) || !sameJson(servers, item.servers)) return { target: { kind: 'backend', id: b.name }, action: 'stale', steps: [] }
          }
          return { target: { kind: 'backend', id: b.name }, action: 'reconcile', steps: this.#createSteps(item) }
        }, async o => o.applied.length === 0 ? 'changed' : createdLine(item))
      }
      case 'fix-backend': {
        const { name, fixes } = item
        return await executor.perform(opts('backend', name, `backend:${name}`), async (): Promise<Plan> => {
          if (!await unchanged()) {
            const now = item.snapshot.backend === undefined ? undefined : await store.getBackend(name)
            const servers = await store.getServers(name)
            if (!sameJson(now, item.snapshot.backend) || !sameJson(servers, item.snapshot.servers)) return { target: { kind: 'backend', id: name }, action: 'stale', steps: [] }
          }
          const steps = [...fixes.steps]
          if (fixes.publish !== undefined) steps.push(commandStep([fixes.publish ? cmd.publishBackend(name) : cmd.unpublishBackend(name)]))
          return { target: { kind: 'backend', id: name }, action: 'reconcile', steps }
        }, async o => o.applied.length === 0 ? 'changed' : `backend/${name}: ${fixes.what.concat(fixes.publish === undefined ? [] : [fixes.publish ? 'published' : 'unpublished']).join(', ')}`)
      }
      case 'fix-static': {
        const s = item.settings
        return await executor.perform(opts('static-server', `${s.backend}/${s.name}`, `backend:${s.backend}`), async (): Promise<Plan> => {
          const current = await unchanged() || sameJson(await store.getStaticServer(s.backend, s.name), s)
          return { target: { kind: 'static-server', id: `${s.backend}/${s.name}` }, action: current ? 'reconcile' : 'stale', steps: current ? item.steps : [] }
        }, async o => o.applied.length === 0 ? 'changed' : `static-server/${s.backend}/${s.name}: ${settingsText(s)}`)
      }
      case 'map': {
        const m = item.map
        let stale = false
        let entries = m.entries
        return await executor.perform(opts('map', m.name, `map:${m.name}`), async (): Promise<Plan> => {
          if (!await unchanged()) {
            // Under the map's lock no write to it commits: what the store holds now is what to load.
            // (Giving up instead starved the map for as long as writes kept coming after a reload.)
            const now = await store.getMap(m.name)
            if (now === undefined) {
              stale = true
              return { target: { kind: 'map', id: m.name }, action: 'stale', steps: [] }
            }
            entries = now.entries
          }
          const live = await readContent(this.#o.runtime, m.name)
          if (sameEntries(live, entries)) return { target: { kind: 'map', id: m.name }, action: 'reconcile', steps: [] }
          return {
            target: { kind: 'map', id: m.name },
            action: 'reconcile',
            steps: [{
              label: 'load map version',
              apply: async ({ runtime }) => {
                const staged = await stageContent(runtime, m.name, entries)
                await gate
                await staged.commit()
              }
            }]
          }
        }, async o => stale ? 'changed' : o.applied.length === 0 ? undefined : `map/${m.name}: ${entries.length} entries loaded`)
      }
      case 'remove-backend': {
        const name = item.name
        return await executor.perform(opts('backend', name, `backend:${name}`), async (): Promise<Plan> => {
          if (await store.getBackend(name) !== undefined) return { target: { kind: 'backend', id: name }, action: 'stale', steps: [] }
          const [servers] = await this.#o.runtime.execute([cmd.showServersState(name)])
          const steps: Step[] = [commandStep([cmd.unpublishBackend(name)])]
          for (const r of servers) steps.push(commandStep(removalCommands(name, r.srv_name as string, REMOVAL_WAIT_MS)))
          steps.push({
            label: 'del backend',
            apply: async ({ runtime }) => {
              await deleteBackend(runtime, name, cmd.waitBackendRemovable(name, REMOVAL_WAIT_MS))
              this.#o.created.delete(name)
              await store.setCreatedIn(name, undefined)
            }
          })
          return { target: { kind: 'backend', id: name }, action: 'reconcile', steps }
        }, async o => o.applied.length === 0 ? 'changed' : `backend/${name}: removed (no longer desired)`)
      }
    }
  }
}

export type ActualBackend = { published: boolean, servers: Map<string, Row> }
export type Actual = { info: ProcessInfo, backends: Map<string, ActualBackend>, maps: Map<string, cmd.MapInfo> }

/**
 * What HAProxy holds, in one round trip: the process, every backend with its published flag, every
 * server's state, every map (management §9.3 `show info`, `show stat`, `show servers state`, `show map`).
 */
export async function readActual (runtime: Runtime): Promise<Actual> {
  const [info, stat, servers, maps] = await runtime.execute([
    cmd.showInfo(), cmd.showStat(undefined, BACKEND_STAT), cmd.showServersState(), cmd.showMaps()
  ])
  const backends = new Map<string, ActualBackend>(backendsFromStat(stat, () => undefined).map(b => [b.name, { published: b.published, servers: new Map() }]))
  for (const r of servers) backends.get(r.be_name as string)?.servers.set(r.srv_name as string, r)
  return { info, backends, maps: new Map(maps.map(m => [m.name, m])) }
}

type Fixes = { steps: Step[], what: string[], publish?: boolean }

/** Backends created per plan (and connection) when many are missing, as after a restart. */
const CREATE_GROUP = 25
/** How long a group waits for each of its locks before its backends are created one by one. */
const GROUP_LOCK_WAIT_MS = 200

type CreateWork = { kind: 'create-backend', backend: DesiredBackend, servers: DesiredServer[] }

function createdLine (item: CreateWork): string {
  return `backend/${item.backend.name}: created${item.servers.length > 0 ? ` with ${item.servers.length} server(s)` : ''}${item.backend.published ? ', published' : ''}`
}

function chunks<T> (items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

type Work =
  | CreateWork
  | { kind: 'fix-backend', name: string, fixes: Fixes, snapshot: { backend: DesiredBackend | undefined, servers: DesiredServer[] } }
  | { kind: 'fix-static', settings: StaticServerSettings, steps: Step[] }
  | { kind: 'map', map: DesiredMap }
  | { kind: 'remove-backend', name: string }

function objectOf (w: Work): string {
  switch (w.kind) {
    case 'create-backend': return `backend/${w.backend.name}`
    case 'fix-backend': return `backend/${w.name}`
    case 'fix-static': return `static-server/${w.settings.backend}/${w.settings.name}`
    case 'map': return `map/${w.map.name}`
    case 'remove-backend': return `backend/${w.name}`
  }
}

/**
 * Steps that bring the servers of one backend to what is desired: missing ones added, settings put
 * back (address, weight, health, agent, then the admin state), and, in a backend hapctl owns, servers
 * it does not want removed.
 */
function serverFixes (backend: string, desired: readonly DesiredServer[], actual: ActualBackend, owned: boolean): Fixes {
  const steps: Step[] = []
  const what: string[] = []
  const wanted = new Set(desired.map(s => s.name))
  for (const s of desired) {
    const row = actual.servers.get(s.name)
    if (row === undefined) {
      steps.push(...addServerSteps(s, { restore: true }))
      what.push(`server ${s.name} added`)
      continue
    }
    const fixes: Array<cmd.Command<void>> = []
    if (row.srv_addr !== s.spec.address || Number(row.srv_port) !== s.spec.port) fixes.push(cmd.setServerAddr(backend, s.name, s.spec.address, s.spec.port))
    const weight = s.weight ?? s.spec.weight
    if (weight !== undefined && Number(row.srv_uweight) !== weight) fixes.push(cmd.setServerWeight(backend, s.name, weight))
    const health = checkStateOf(row.srv_check_state)
    const healthOn = s.healthChecks ?? s.spec.check
    if (health.configured && health.enabled !== healthOn) {
      fixes.push(healthOn ? cmd.enableHealth(backend, s.name) : cmd.disableHealth(backend, s.name))
    }
    const agent = checkStateOf(row.srv_agent_state)
    if (s.agentChecks !== null && agent.configured && agent.enabled !== s.agentChecks) {
      fixes.push(s.agentChecks ? cmd.enableAgent(backend, s.name) : cmd.disableAgent(backend, s.name))
    }
    if (cliAdminStateOf(row) !== s.adminState) {
      fixes.push(cmd.setServerState(backend, s.name, s.adminState))
    }
    if (fixes.length > 0) {
      steps.push(commandStep(fixes))
      what.push(`server ${s.name}: ${fixes.map(f => f.verb).join(', ')}`)
    }
  }
  if (owned) {
    for (const name of actual.servers.keys()) {
      if (wanted.has(name)) continue
      steps.push(commandStep(removalCommands(backend, name, REMOVAL_WAIT_MS)))
      what.push(`server ${name} removed (no longer desired)`)
    }
  }
  return { steps, what }
}

function staticFixes (s: StaticServerSettings, row: Row): Step[] {
  const fixes: Array<cmd.Command<void>> = []
  if (s.weight !== null && Number(row.srv_uweight) !== s.weight) fixes.push(cmd.setServerWeight(s.backend, s.name, s.weight))
  if (s.adminState !== null && cliAdminStateOf(row) !== s.adminState) {
    fixes.push(cmd.setServerState(s.backend, s.name, s.adminState))
  }
  return fixes.length === 0 ? [] : [commandStep(fixes)]
}

function settingsText (s: StaticServerSettings): string {
  return [s.adminState === null ? undefined : `state ${s.adminState}`, s.weight === null ? undefined : `weight ${s.weight}`].filter(Boolean).join(', ')
}

function sameJson (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function pool<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
