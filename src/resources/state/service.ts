/**
 * The declarative state: GET answers what the store keeps as one document; PUT (and PATCH, a JSON
 * merge patch on that document) makes a document the desired state. Under the executor's `state`
 * lock, held alone (every other write shares it), and the locks of every object it may touch, the
 * planner (./planner.ts) works out from HAProxy's actual state the steps that make HAProxy hold the
 * document; a dry run answers them without sending any, an apply runs them, puts back what it applied
 * when a step fails, and commits the store change in one transaction once every step applied.
 */
import type { Runtime } from '../../runtime/client.ts'
import type { Executor, Outcome } from '../../engine/executor.ts'
import { STATE_LOCK } from '../../engine/executor.ts'
import type { ProcessIdentity } from '../../engine/identity.ts'
import type { Plan, PreviewCommand, Step } from '../../engine/plan.ts'
import { previewOf } from '../../engine/plan.ts'
import { OperationError } from '../../engine/outcomes.ts'
import { readActual } from '../../engine/reconciler.ts'
import type { DesiredState } from '../../engine/store/types.ts'
import type { CreatedBackend } from '../backends/view.ts'
import { readContent } from '../pattern-refs/versioned-load.ts'
import { ifMatchSatisfied } from '../maps/content.ts'
import type { MapEntry } from '../pattern-refs/versioned-load.ts'
import type { StateDocument } from '../../schemas/state.ts'
import { StateDocumentSchema } from '../../schemas/state.ts'
import { documentOf, targetOf } from './document.ts'
import type { DiffItem, PlanProblem, StatePlan } from './planner.ts'
import { probe } from './probes.ts'
import { planState } from './planner.ts'

export type StepOutcome = 'applied' | 'undone' | 'left' | 'unknown' | 'failed' | 'not run'

export type StateResult = {
  dryRun: boolean
  revision: number
  diff: DiffItem[]
  commands: PreviewCommand[]
  steps?: Array<{ label: string, commands: string[], outcome: StepOutcome }>
  warnings?: string[]
}

export type ApplyOptions = {
  dryRun: boolean
  ifMatch?: string | undefined
  /** How long each removed server may take to lose its connections. */
  drainMs: number
  actor?: string | undefined
  requestId?: string | undefined
}

const TARGET = { kind: 'state', id: 'state' } as const

/** The lock probes are sent under, and how long a dry run waits for it before answering BUSY. */
const PROBE_LOCK = 'state-probe'
const PROBE_LOCK_WAIT_MS = 30_000

/** Times a PATCH without If-Match starts again when other writes keep committing under it. */
const PATCH_ATTEMPTS = 3

/** The ETag of a revision. */
export function etagOf (revision: number): string {
  return `"${revision}"`
}

/** RFC 7396: `patch` merged into `target` (a null member removes it; a non-object replaces). */
export function mergePatch (target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  // A Map, not a plain object: a member may be named `constructor` or `__proto__`.
  const out = new Map<string, unknown>(target !== null && typeof target === 'object' && !Array.isArray(target) ? Object.entries(target) : [])
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) out.delete(k)
    else out.set(k, mergePatch(out.get(k), v))
  }
  return Object.fromEntries(out)
}

export class StateService {
  readonly #runtime: Runtime
  readonly #executor: Executor
  readonly #identity: ProcessIdentity
  readonly #created: Map<string, CreatedBackend>

  constructor (deps: { runtime: Runtime, executor: Executor, identity: ProcessIdentity, created: Map<string, CreatedBackend> }) {
    this.#runtime = deps.runtime
    this.#executor = deps.executor
    this.#identity = deps.identity
    this.#created = deps.created
  }

  /** The whole desired state as a document, and its revision. */
  async get (): Promise<{ document: Record<string, unknown>, revision: number }> {
    const state = await this.#executor.store.load()
    return { document: documentOf(state), revision: state.revision }
  }

  /**
   * A JSON merge patch on the current document, then apply() of the result. Without If-Match, a write
   * committed between the read and the apply makes the patch start again on the new document.
   */
  async patch (patch: unknown, opts: ApplyOptions): Promise<StateResult> {
    for (let attempt = 1; ; attempt++) {
      const { document, revision } = await this.get()
      checkIfMatch(opts.ifMatch, revision)
      const merged = mergePatch(document, patch)
      const parsed = StateDocumentSchema.safeParse(merged)
      if (!parsed.success) {
        throw new OperationError('VALIDATION_FAILED', 'the document the patch makes is not a valid state document; nothing was changed', {
          errors: parsed.error.issues.slice(0, 20).map(i => ({ field: ['body', ...i.path.map(String)].join('.'), message: i.message }))
        })
      }
      try {
        // The revision read above must still be the one the patch applies to.
        return await this.apply(parsed.data, { ...opts, ifMatch: etagOf(revision) })
      } catch (err) {
        if (opts.ifMatch !== undefined || attempt >= PATCH_ATTEMPTS || !(err instanceof OperationError) || err.reason !== 'PRECONDITION_FAILED') throw err
      }
    }
  }

  async apply (doc: StateDocument, opts: ApplyOptions): Promise<StateResult> {
    const store = this.#executor.store
    const target = targetOf(doc)
    // Every object the plan may touch is locked before anything is read: what the document names,
    // what the store keeps, and what hapctl created in HAProxy.
    const [current, createdIn] = await Promise.all([store.load(), store.createdIn()])
    const keys = new Set<string>([STATE_LOCK])
    for (const b of [...target.backends, ...current.backends]) keys.add(`backend:${b.name}`)
    for (const s of [...target.servers, ...current.servers, ...target.staticServers]) keys.add(`backend:${s.backend}`)
    for (const name of createdIn.keys()) keys.add(`backend:${name}`)
    for (const m of [...target.maps, ...current.maps]) keys.add(`map:${m.name}`)

    if (opts.dryRun) {
      const { plan, probes, revision } = await this.#plan(target, opts, current)
      return { dryRun: true, revision, diff: plan.diff, commands: [...probes, ...plan.steps.flatMap(previewOf)], ...warningsOf(plan) }
    }
    let planned: StatePlan | undefined
    let probed: PreviewCommand[] = []
    let before = 0
    const { outcome } = await this.#executor.run({ target: TARGET, lock: [...keys], actor: opts.actor, requestId: opts.requestId }, async (): Promise<Plan> => {
      const { plan, probes, revision } = await this.#plan(target, opts, current)
      probed = probes
      const missing = plan.locks.filter(k => !keys.has(k))
      // The store or HAProxy moved between the first read and the locks (a create by another client):
      // the plan touches an object not locked.
      if (missing.length > 0) throw new OperationError('BUSY', `objects changed while the state was being applied (${missing.slice(0, 5).join(', ')}); retry`)
      planned = plan
      before = revision
      return { target: TARGET, action: 'replace', steps: plan.steps, changes: plan.changes.length > 0 ? plan.changes : undefined }
    })
    const plan = planned as StatePlan
    const steps = stepOutcomes(plan.steps, outcome)
    const commands = [...probed, ...plan.steps.flatMap(previewOf)]
    if (outcome.kind !== 'applied') {
      throw outcome.error.extend({ state: { steps: steps.filter(s => s.outcome !== 'not run').slice(0, 1000), stepsNotRun: steps.filter(s => s.outcome === 'not run').length } })
    }
    return { dryRun: false, revision: outcome.revision ?? before, diff: plan.diff, commands, steps, ...warningsOf(plan) }
  }

  /** Reads the store and HAProxy and plans; refuses a document that cannot be applied, whole. */
  async #plan (target: ReturnType<typeof targetOf>, opts: ApplyOptions, loaded: DesiredState): Promise<{ plan: StatePlan, probes: PreviewCommand[], revision: number }> {
    const store = this.#executor.store
    // What apply() read to choose its locks is still current unless a write committed since (a
    // 100,000-entry map costs a fraction of a second to read again).
    const [revisionNow, createdIn] = await Promise.all([store.revision(), store.createdIn()])
    const current = revisionNow === loaded.revision ? loaded : await store.load()
    checkIfMatch(opts.ifMatch, current.revision)
    const actual = await readActual(this.#runtime)
    this.#identity.observe(actual.info)
    const liveMaps = new Map<string, readonly MapEntry[]>()
    for (const m of target.maps) {
      if (actual.maps.has(m.name)) liveMaps.set(m.name, await readContent(this.#runtime, m.name))
    }
    const plan = planState({ target, current, actual, liveMaps, createdIn, drainMs: opts.drainMs }, { executor: this.#executor, identity: this.#identity, created: this.#created })
    refuseIf(plan.problems)
    // What only HAProxy can tell (defaults sections, server options), asked before anything changes.
    const created = target.backends.filter(b => !actual.backends.has(b.name))
    const names = new Set(created.map(b => b.name))
    // One probe at a time in this hapctl (dry runs take no other lock): two would pick the same names.
    const { problems, sent } = await this.#executor.locks.run(PROBE_LOCK, async () =>
      await probe(this.#runtime, created, target.servers.filter(x => names.has(x.backend)), new Set(actual.backends.keys())), { timeoutMs: PROBE_LOCK_WAIT_MS })
    refuseIf(problems)
    return { plan, probes: sent, revision: current.revision }
  }
}

function refuseIf (problems: readonly PlanProblem[]): void {
  if (problems.length === 0) return
  throw new OperationError('STATE_INVALID', `the document cannot be applied (${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems[0]?.message}${problems.length > 1 ? '; …' : ''}); nothing was changed`, {
    errors: problems.slice(0, 100)
  })
}

function warningsOf (plan: StatePlan): { warnings?: string[] } {
  return plan.warnings.length > 0 ? { warnings: plan.warnings } : {}
}

/** If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches, as for maps. */
function checkIfMatch (ifMatch: string | undefined, revision: number): void {
  if (ifMatch === undefined) return
  if (!ifMatchSatisfied(ifMatch, etagOf(revision))) {
    throw new OperationError('PRECONDITION_FAILED', `the desired state is at revision ${revision} (ETag ${etagOf(revision)}), not ${ifMatch}; read it again; nothing was changed`)
  }
}

/** Each step and how it went, from the executor's outcome (labels are unique in a state plan). */
function stepOutcomes (steps: readonly Step[], outcome: Outcome): Array<{ label: string, commands: string[], outcome: StepOutcome }> {
  const applied = new Set(outcome.applied)
  const undone = new Set(outcome.kind === 'applied' ? [] : outcome.undone)
  const left = new Set(outcome.kind === 'applied' ? [] : outcome.left)
  const inDoubt = new Set<string>(outcome.kind === 'applied' ? [] : (outcome.error.state?.inDoubt as string[] | undefined) ?? [])
  // With an unknown outcome the step that got no answer is in doubt, and the ones after it never went out.
  let failedSeen = outcome.kind === 'applied' || outcome.kind === 'unknown'
  return steps.map(s => {
    const commands = previewOf(s).map(c => c.text)
    let result: StepOutcome
    if (left.has(s.label)) result = 'left'
    else if (undone.has(s.label)) result = 'undone'
    else if (inDoubt.has(s.label)) result = 'unknown'
    else if (applied.has(s.label)) result = 'applied'
    else if (!failedSeen) { result = 'failed'; failedSeen = true } else result = 'not run'
    return { label: s.label, commands, outcome: result }
  })
}
