/**
 * The one executor: every write to HAProxy goes through run(). It takes the target's lock (with a
 * deadline), lets the planner read and build its plan under that lock, applies the steps in order,
 * puts applied steps back in reverse when one fails, and commits the plan's desired-state change to
 * the store only once HAProxy has taken it (apply → commit → reply). When a step gets no verdict (a
 * timeout, a cut connection), HAProxy may still run it later, so undoing would race it: the change is
 * recorded as desired instead and the reconciler makes HAProxy match.
 *
 * It is also the one hook for what every write shares: the store today; the audit trail, token
 * scopes and one run per HAProxy node later.
 *
 * On shutdown() nothing new starts (SHUTTING_DOWN, refused), lock waits end, and operations that
 * wait (a drain, a health check) are cut short and put back what they changed, so that a stop of
 * hapctl never strands half an operation; idle() says when the last one has answered. An operation
 * past its point of no return (a server deleted) is not interrupted: it can only be finished.
 */
import { setMaxListeners } from 'node:events'
import type { ExecuteOptions, Runtime } from '../runtime/client.ts'
import { RuntimeAbortedError, RuntimeStaleProcessError } from '../runtime/errors.ts'
import type { DesiredStateStore } from './store/types.ts'
import type { Plan, Step, StepContext, Target } from './plan.ts'
import { KeyedLock, LockTimeoutError } from './locks.ts'
import { OperationError, isVerdictless, rejectionOf, runtimeErrorOf, toOperationError } from './outcomes.ts'
import type { FailureOutcome } from './outcomes.ts'
import type { Logger } from '../logger.ts'

export type Applied = {
  readonly kind: 'applied'
  readonly applied: readonly string[]
  /** The store revision of the change; undefined for plans without one. */
  readonly revision: number | undefined
}

export type Failed = {
  readonly kind: FailureOutcome
  /** What went wrong, with `outcome` and `state` filled in. */
  readonly error: OperationError
  readonly applied: readonly string[]
  readonly undone: readonly string[]
  readonly left: readonly string[]
  readonly revision: number | undefined
}

export type Outcome = Applied | Failed

export type RunOptions = {
  readonly target: Target
  /**
   * The lock(s) to hold; default `<kind>:<id>`. Servers lock their backend, so a deletion cannot race
   * an add. Several are taken in sorted order (the reconciler creates backends in groups), so two
   * holders of overlapping sets never wait for each other in a cycle.
   */
  readonly lock?: string | readonly string[] | undefined
  /**
   * Locks held in shared mode, with others that share them: writes to distinct entries of one map each
   * lock their entry and share the map's lock, which a whole-map operation takes alone. A key in both
   * lists is exclusive. All keys are taken in one sorted order.
   */
  readonly sharedLock?: string | readonly string[] | undefined
  /** Who asks: `api` (a token's name later), `reconciler`. */
  readonly actor?: string | undefined
  readonly requestId?: string | undefined
  /** How long to wait for the lock; default the executor's. */
  readonly lockTimeoutMs?: number | undefined
  /** The runtime to act with, when not the executor's (the reconciler has connections of its own). */
  readonly runtime?: Runtime | undefined
}

/** The lock every operation shares and a whole-state apply holds alone. */
export const STATE_LOCK = 'state'

export type ExecutorLogger = Logger<'info' | 'warn'>

export type ExecutorOptions = {
  runtime: Runtime
  store: DesiredStateStore
  locks?: KeyedLock
  lockTimeoutMs: number
  logger?: ExecutorLogger | undefined
}

export type CommitListener = (event: { revision: number, plan: Plan, actor: string, outcome: 'applied' | 'unknown' }) => void

export class Executor {
  readonly runtime: Runtime
  readonly store: DesiredStateStore
  readonly locks: KeyedLock
  readonly #lockTimeoutMs: number
  readonly #logger: ExecutorLogger | undefined
  readonly #listeners = new Set<CommitListener>()
  readonly #leftListeners = new Set<(plan: Plan) => void>()
  readonly #shutdown = new AbortController()
  /** Calls of run() and locked() not finished yet, lock waits included. */
  #active = 0
  #idle: Array<() => void> = []

  constructor (opts: ExecutorOptions) {
    this.runtime = opts.runtime
    this.store = opts.store
    this.locks = opts.locks ?? new KeyedLock()
    this.#lockTimeoutMs = opts.lockTimeoutMs
    this.#logger = opts.logger
    // Every lock wait and running operation listens to the one shutdown signal (and removes its
    // listener when done): past Node's default of 10 it would warn of a leak under plain concurrency.
    setMaxListeners(0, this.#shutdown.signal)
  }

  /** Called after every commit (applied or recorded with an unknown outcome): the reconciler, later the watch stream. */
  onCommit (listener: CommitListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /**
   * Called when a failed operation on an object hapctl keeps left HAProxy half-changed: the desired
   * state did not change, and the reconciler puts HAProxy back to it.
   */
  onLeft (listener: (plan: Plan) => void): () => void {
    this.#leftListeners.add(listener)
    return () => this.#leftListeners.delete(listener)
  }

  /**
   * Stops taking operations: new ones and those waiting for a lock are refused (SHUTTING_DOWN), and
   * running ones that wait are interrupted and put back. Await idle() for them to finish.
   */
  shutdown (): void {
    if (this.#shutdown.signal.aborted) return
    if (this.#active > 0) this.#logger?.info({ operations: this.#active }, 'shutting down: interrupting the waits of running operations')
    this.#shutdown.abort(new OperationError('SHUTTING_DOWN', 'hapctl is stopping'))
  }

  get closing (): boolean {
    return this.#shutdown.signal.aborted
  }

  /** Resolves once no operation runs or waits for a lock. */
  async idle (): Promise<void> {
    if (this.#active === 0) return
    await new Promise<void>(resolve => { this.#idle.push(resolve) })
  }

  /** Runs `fn` under the target's lock, for reads that must not interleave with a write (and for the reconciler). */
  async locked<T> (opts: RunOptions, fn: () => Promise<T>): Promise<T> {
    const refused = (reason: 'BUSY' | 'SHUTTING_DOWN', message: string): OperationError =>
      new OperationError(reason, message, { outcome: 'refused', state: refusedState(opts.target) })
    if (this.closing) throw refused('SHUTTING_DOWN', 'hapctl is stopping and takes no new operation; retry once it is back')
    const exclusive = new Set(typeof opts.lock === 'string' ? [opts.lock] : opts.lock ?? [`${opts.target.kind}:${opts.target.id}`])
    const shared = new Set(typeof opts.sharedLock === 'string' ? [opts.sharedLock] : opts.sharedLock ?? [])
    // Every operation shares STATE_LOCK; applying a whole state document (PUT /state) takes it alone,
    // so that no write to an object the document does not name commits in the middle of it.
    if (!exclusive.has(STATE_LOCK)) shared.add(STATE_LOCK)
    const keys = [...new Set([...exclusive, ...shared])].sort()
    const timeoutMs = opts.lockTimeoutMs ?? this.#lockTimeoutMs
    const deadline = Date.now() + timeoutMs
    const signal = this.#shutdown.signal
    const under = (i: number): Promise<T> => i === keys.length
      ? this.closing ? Promise.reject(signal.reason) : fn()
      : this.locks.run(keys[i] as string, () => under(i + 1), { timeoutMs: Math.max(1, deadline - Date.now()), signal, shared: !exclusive.has(keys[i] as string) })
    this.#active++
    try {
      return await under(0)
    } catch (err) {
      if (err instanceof LockTimeoutError) throw refused('BUSY', err.message)
      if (err === signal.reason) throw refused('SHUTTING_DOWN', 'hapctl is stopping: the operation was not started; retry once it is back')
      throw err
    } finally {
      if (--this.#active === 0) for (const wake of this.#idle.splice(0)) wake()
    }
  }

  /**
   * Under the target's lock: `build` reads what it needs and returns the plan; its steps run; the
   * change is committed; `then` (still under the lock) reads the result. A failure in `build` or `then`
   * is thrown as is (nothing was applied, or everything was); a failure of a step becomes the outcome.
   */
  async run<T> (opts: RunOptions, build: (ctx: StepContext) => Promise<Plan>, then?: (outcome: Applied) => Promise<T>): Promise<{ outcome: Outcome, value: T | undefined }> {
    return this.locked(opts, async () => {
      const runtime = opts.runtime ?? this.runtime
      for (let attempt = 1; ; attempt++) {
        const interruption = new Interruption(this.#shutdown.signal)
        try {
          const ctx: StepContext = { runtime: interruptible(runtime, interruption), get signal () { return interruption.signal } }
          let plan: Plan
          try {
            plan = await build(ctx)
          } catch (err) {
            if (attempt === 1 && runtimeErrorOf(err, RuntimeStaleProcessError) !== undefined) throw new StartAgain(err)
            // Nothing was applied: a planner only reads. Say so, as every failed write does.
            const error = toOperationError(err)
            throw error.outcome !== undefined ? error : error.extend({ outcome: 'refused', state: refusedState(opts.target) })
          }
          return await this.#runPlan(ctx, { runtime }, interruption, plan, opts, then, attempt === 1)
        } catch (err) {
          // A kept connection reached an old worker a reload had replaced: everything this operation
          // did went to that worker and is lost with it (an operation's calls reach the old process,
          // then only the new one), so nothing is undone and the operation starts again from its plan.
          if (!(err instanceof StartAgain)) throw err
          this.#logger?.info({ target: opts.target, err: err.cause }, 'an HAProxy process stopping after a reload answered: starting the operation again')
        } finally {
          interruption.detach()
        }
      }
    })
  }

  /** The plan's steps, then `then` on success (under the caller's lock). */
  async #runPlan<T> (ctx: StepContext, undoCtx: StepContext, interruption: Interruption, plan: Plan, opts: RunOptions,
    then: ((outcome: Applied) => Promise<T>) | undefined, restartable: boolean): Promise<{ outcome: Outcome, value: T | undefined }> {
    const outcome = await this.#execute(ctx, undoCtx, interruption, plan, opts, restartable)
    if (outcome.kind !== 'applied' || then === undefined) return { outcome, value: undefined }
    try {
      return { outcome, value: await then(outcome) }
    } catch (err) {
      // The change is in HAProxy (and in the store): a failed read-back (HAProxy killed right
      // after) must not read as a failed write, or the client retries or gives up on what hapctl keeps.
      const recorded = outcome.revision === undefined ? 'applied' : `applied and recorded (revision ${outcome.revision})`
      throw toOperationError(err).extend({
        prefix: `the change was ${recorded}, but reading the result back failed: `,
        outcome: 'applied',
        state: { target: plan.target, outcome: 'applied', revision: outcome.revision, applied: outcome.applied }
      })
    }
  }

  /** run(), with a failed outcome thrown as its OperationError. */
  async perform<T> (opts: RunOptions, build: (ctx: StepContext) => Promise<Plan>, then?: (outcome: Applied) => Promise<T>): Promise<T> {
    const { outcome, value } = await this.run(opts, build, then)
    if (outcome.kind !== 'applied') throw outcome.error
    return value as T
  }

  async #execute (ctx: StepContext, undoCtx: StepContext, interruption: Interruption, plan: Plan, opts: RunOptions, restartable: boolean): Promise<Outcome> {
    const applied: Step[] = []
    for (const batch of batches(plan.steps)) {
      let results: readonly unknown[]
      try {
        results = await this.#applyBatch(ctx, batch)
      } catch (err) {
        if (restartable && runtimeErrorOf(err, RuntimeStaleProcessError) !== undefined) throw new StartAgain(err)
        const { done, failed, inDoubt } = whereItStopped(batch, err)
        applied.push(...done)
        return this.#fail(undoCtx, plan, opts, applied, failed, inDoubt, err)
      }
      applied.push(...batch)
      // Past the point of no return (a server deleted), an operation can only be finished: a shutdown
      // no longer cuts its waits short.
      if (batch.some(s => !undoable(s))) interruption.detach()
      let offset = 0
      for (const s of batch) {
        const n = s.commands?.length ?? 0
        try {
          await s.onApplied?.(results.slice(offset, offset + n))
        } catch (err) {
          return this.#fail(undoCtx, plan, opts, applied.slice(0, applied.indexOf(s)), s, [], err, [s, ...applied.slice(applied.indexOf(s) + 1)])
        }
        offset += n
      }
    }
    let revision: number | undefined
    if (plan.changes !== undefined && plan.changes.length > 0) {
      try {
        revision = await this.#record(plan, opts, 'applied')
      } catch (err) {
        // HAProxy has the change but the store does not: left like that, the reconciler would revert
        // it later without anyone being told. Put it back now and say so.
        this.#logger?.warn({ err, target: plan.target }, 'the desired-state store refused a commit; undoing the change')
        const cause = new OperationError('STORE_UNAVAILABLE', `the change was applied to HAProxy but could not be recorded (${(err as Error).message})`, { cause: err })
        return this.#rollback(undoCtx, plan, applied, cause)
      }
    }
    return { kind: 'applied', applied: applied.map(s => s.label), revision }
  }

  /** A function step alone, or consecutive command steps on one connection; the commands' results. */
  async #applyBatch (ctx: StepContext, batch: readonly Step[]): Promise<readonly unknown[]> {
    const first = batch[0] as Step
    if (first.apply !== undefined) {
      await first.apply(ctx)
      return []
    }
    const commands = batch.flatMap(s => s.commands ?? [])
    return commands.length > 0 ? await ctx.runtime.execute(commands) : []
  }

  /**
   * `failed` is the step that failed; `inDoubt` the steps that may or may not have been applied (on a
   * verdictless failure: the whole batch from the failed step on); `alsoApplied` the steps that were
   * applied after all (a failed onApplied) and must be put back too.
   */
  async #fail (ctx: StepContext, plan: Plan, opts: RunOptions, applied: Step[], failed: Step, inDoubt: Step[], err: unknown, alsoApplied: Step[] = []): Promise<Failed> {
    let error = toOperationError(err)
    error = failed.explain?.(error) ?? error
    for (const s of inDoubt) {
      try {
        await s.onInDoubt?.()
      } catch (hookErr) {
        this.#logger?.warn({ err: hookErr, step: s.label }, 'a step in doubt could not note what it may have done')
      }
    }
    if (inDoubt.length > 0 && plan.changes !== undefined && plan.changes.length > 0) {
      // The command went out and nothing came back: HAProxy may apply it now or later (it runs
      // commands whose client has gone). Undoing would race it; record what was asked instead.
      let revision: number | undefined
      try {
        revision = await this.#record(plan, opts, 'unknown')
      } catch (storeErr) {
        this.#logger?.warn({ err: storeErr, target: plan.target }, 'could not record a change whose outcome is unknown')
      }
      if (revision !== undefined) {
        error = error.extend({
          suffix: `; whether ${listed(inDoubt.map(s => `'${s.label}'`))} took effect is unknown: the change was recorded as desired state (revision ${revision}) and hapctl will make HAProxy match it`,
          outcome: 'unknown',
          state: { target: plan.target, outcome: 'unknown', revision, applied: applied.map(s => s.label), inDoubt: inDoubt.map(s => s.label) }
        })
        this.#logger?.warn({ target: plan.target, revision, inDoubt: inDoubt.map(s => s.label) }, 'outcome unknown; recorded for the reconciler')
        return { kind: 'unknown', error, applied: applied.map(s => s.label), undone: [], left: [], revision }
      }
    }
    // Steps in doubt are put back too: undoing what did not run only sets the value it already has,
    // and removing what was not added finds nothing.
    return this.#rollback(ctx, plan, [...applied, ...alsoApplied, ...inDoubt], error)
  }

  async #rollback (ctx: StepContext, plan: Plan, applied: Step[], error: OperationError): Promise<Failed> {
    const undone: string[] = []
    const left: string[] = []
    const undoErrors: string[] = []
    const reversed = [...applied].reverse()
    for (const batch of batches(reversed, true)) {
      const first = batch[0] as Step
      if (!undoable(first)) {
        // A step that cannot be put back (a deleted server) is a point of no return: putting back what
        // came before it (publishing a backend whose servers are gone) would do more harm than good.
        // It and everything before it are left as they are; for objects hapctl keeps, the reconciler
        // brings HAProxy back to the desired state.
        left.push(...reversed.slice(reversed.indexOf(first)).map(s => s.label))
        break
      }
      try {
        if (first.undo !== undefined) await first.undo(ctx)
        else {
          const commands = batch.flatMap(s => s.undoCommands ?? [])
          if (commands.length > 0) await ctx.runtime.execute(commands)
        }
        undone.push(...batch.map(s => s.label))
      } catch (undoErr) {
        const { done, failed, inDoubt } = whereItStopped(batch, undoErr, true)
        undone.push(...done.map(s => s.label))
        const notUndone = inDoubt.length > 0 ? inDoubt : batch.slice(batch.indexOf(failed))
        left.push(...notUndone.map(s => s.label))
        undoErrors.push(`${failed.label}: ${(undoErr as Error).message}`)
      }
    }
    const kind: FailureOutcome = applied.length === 0 ? 'refused' : left.length === 0 ? 'undone' : 'left'
    const kept = plan.changes !== undefined && plan.changes.length > 0
    const suffix = kind === 'refused'
      ? '; nothing was changed'
      : kind === 'undone'
        ? `; what had been applied (${listed(undone)}) was put back`
        : `; ${listed(left)} could not be put back${undoErrors.length > 0 ? ` (${listed(undoErrors, '; ')})` : ''}` +
          (kept ? '; the desired state is unchanged, and hapctl puts HAProxy back as it was' : '')
    if (kind === 'left') {
      this.#logger?.warn({ target: plan.target, left, undoErrors }, 'a failed operation left HAProxy changed')
      if (kept) {
        this.#notify(this.#leftListeners, plan, 'a listener of operations left half-done failed')
      }
    }
    const outcome = error.outcome === undefined || error.outcome === 'applied' ? kind : error.outcome
    const extended = error.extend({
      suffix: error.outcome === undefined ? suffix : '',
      outcome,
      state: { target: plan.target, outcome, applied: applied.map(s => s.label), undone, left }
    })
    return { kind: outcome, error: extended, applied: applied.map(s => s.label), undone, left, revision: undefined }
  }

  /** Commits the plan's change to the store and tells the listeners; the new revision. */
  async #record (plan: Plan, opts: RunOptions, outcome: 'applied' | 'unknown'): Promise<number> {
    const actor = opts.actor ?? 'api'
    const revision = await this.store.commit(plan.changes ?? [], { actor, action: plan.action, target: plan.target, requestId: opts.requestId })
    this.#notify(this.#listeners, { revision, plan, actor, outcome }, 'a commit listener failed')
    return revision
  }

  /** Calls every listener; one that throws is logged, and the others still run. */
  #notify<E> (listeners: ReadonlySet<(event: E) => void>, event: E, failure: string): void {
    for (const l of listeners) {
      try {
        l(event)
      } catch (err) {
        this.#logger?.warn({ err }, failure)
      }
    }
  }
}

/** Steps named in a message: a whole state document is thousands of them (`state` lists them all). */
const MAX_LISTED = 10

function listed (items: readonly string[], separator = ', '): string {
  return items.length <= MAX_LISTED ? items.join(separator) : `${items.slice(0, MAX_LISTED).join(separator)}${separator}and ${items.length - MAX_LISTED} more`
}

/** The state of a failure before anything was applied. */
export function refusedState (target: Target): Record<string, unknown> {
  return { target, outcome: 'refused', applied: [], undone: [], left: [] }
}

/**
 * Groups steps as they go out: a function step alone; consecutive command steps together (one
 * connection). For undo, the same over undo commands.
 */
function batches (steps: readonly Step[], undo = false): Step[][] {
  const out: Step[][] = []
  let current: Step[] = []
  const isCommand = (s: Step): boolean => undo ? s.undo === undefined && s.undoCommands !== undefined : s.apply === undefined
  for (const s of steps) {
    if (isCommand(s)) { current.push(s); continue }
    if (current.length > 0) { out.push(current); current = [] }
    out.push([s])
  }
  if (current.length > 0) out.push(current)
  return out
}

/**
 * Which steps of a batch ran when it failed with `err`: a refusal carries the index of the command
 * refused, so the steps before it were applied; an unreachable socket means nothing was sent; any
 * other failure (no verdict) leaves the whole batch in doubt.
 */
function whereItStopped (batch: readonly Step[], err: unknown, undo = false): { done: Step[], failed: Step, inDoubt: Step[] } {
  const first = batch[0] as Step
  const refusal = rejectionOf(err)
  // A wait a shutdown interrupted: the commands before its index ran.
  const interrupted = runtimeErrorOf(err, RuntimeAbortedError)
  // A step that only reads or waits leaves nothing in doubt, whatever ended it.
  const harmless = !undo && batch.length === 1 && first.apply !== undefined && first.changesNothing === true
  if (refusal !== undefined || interrupted !== undefined || harmless || !isVerdictless(err)) {
    const index = refusal?.index ?? interrupted?.index
    if (index === undefined || batch.length === 1) return { done: [], failed: first, inDoubt: [] }
    let seen = 0
    for (const [i, s] of batch.entries()) {
      seen += (undo ? s.undoCommands : s.commands)?.length ?? 0
      if (index < seen) return { done: batch.slice(0, i), failed: s, inDoubt: [] }
    }
    return { done: [], failed: first, inDoubt: [] }
  }
  return { done: [], failed: first, inDoubt: [...batch] }
}

function undoable (s: Step): boolean {
  return s.undo !== undefined || s.undoCommands !== undefined
}

/** Thrown inside run() to start an operation again (see there); never leaves it. */
class StartAgain extends Error {
  constructor (cause: unknown) {
    super('start the operation again', { cause })
  }
}

const NEVER = new AbortController().signal

/**
 * An operation's view of the shutdown: its signal follows the executor's while the operation can
 * still be put back, and is never aborted once it is detached (past its point of no return, or done).
 */
class Interruption {
  readonly #controller = new AbortController()
  readonly #shutdown: AbortSignal
  readonly #follow = (): void => { this.#controller.abort(this.#shutdown.reason) }
  #attached = true

  constructor (shutdown: AbortSignal) {
    this.#shutdown = shutdown
    if (shutdown.aborted) this.#follow()
    else shutdown.addEventListener('abort', this.#follow, { once: true })
  }

  get signal (): AbortSignal {
    return this.#attached ? this.#controller.signal : NEVER
  }

  detach (): void {
    this.#attached = false
    this.#shutdown.removeEventListener('abort', this.#follow)
  }
}

/** `runtime`, with the operation's current signal on every call (see ExecuteOptions.signal: it ends waits only). */
function interruptible (runtime: Runtime, interruption: Interruption): Runtime {
  return {
    execute: (commands, options?: ExecuteOptions) => runtime.execute(commands, { ...options, signal: interruption.signal }),
    ...(runtime.executePayload === undefined ? {} : { executePayload: runtime.executePayload.bind(runtime) }),
    close: () => runtime.close()
  }
}
