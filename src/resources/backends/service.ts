/**
 * Backends: reads from `show stat`, and planners for `add backend` (with its servers and `publish`),
 * `publish`/`unpublish backend` and the drain-and-delete sequence (management §9.3). Every write is a
 * plan run by the executor under `backend:<name>`; backends created through hapctl are kept in the
 * desired-state store, with the HAProxy process they were created in, so that a backend with the same
 * name that the configuration defines after a reload is told apart from hapctl's own.
 */
import type { Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { ProcessInfo, Row } from '../../runtime/parsers.ts'
import { AdminStateBits } from '../../runtime/parsers.ts'
import type { ProxyMode } from '../../runtime/validation.ts'
import { checkName } from '../../runtime/validation.ts'
import type { Executor } from '../../engine/executor.ts'
import { refusedState } from '../../engine/executor.ts'
import type { ProcessId, ProcessIdentity } from '../../engine/identity.ts'
import { processIdOf } from '../../engine/identity.ts'
import type { Plan, Step } from '../../engine/plan.ts'
import { commandStep } from '../../engine/plan.ts'
import { OperationError, rejectionOf, toOperationError } from '../../engine/outcomes.ts'
import type { DesiredBackend, DesiredChange } from '../../engine/store/types.ts'
import type { CreateServerInput } from '../../schemas/servers.ts'
import { addServerSteps, backendNotFound, desiredServerOf, waitOrExplain } from '../servers/service.ts'
import type { UpWait } from '../servers/wait-up.ts'
import { waitUntilUp } from '../servers/wait-up.ts'
import { checkStateOf } from '../servers/view.ts'
import { orRestoring } from '../restoring.ts'
import type { Backend, CreatedBackend } from './view.ts'
import { BACKEND_ROW_STAT, BACKEND_STAT, backendsFromStat } from './view.ts'
import { SharedRead } from './shared-read.ts'

export type { Backend } from './view.ts'
export { TCP_MODE_WARNING } from './view.ts'

export type CreateBackendInput = {
  name: string
  from: string
  mode?: ProxyMode | undefined
  published: boolean
  /** Added before publishing, all or nothing together with the backend. */
  servers?: CreateServerInput[] | undefined
}

/** What a refused `add backend` means (management §9.3 `add backend`). */
function addBackendRejection (input: { name: string, from: string }, err: OperationError): OperationError | undefined {
  const r = rejectionOf(err)
  if (r === undefined || r.verb !== 'add backend') return undefined
  const details = { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r }
  if (r.kind === 'not_found') {
    return new OperationError('DEFAULTS_NOT_FOUND', `there is no defaults section named '${input.from}' in HAProxy's configuration (backends are created from a named defaults section)`, details)
  }
  if (r.kind === 'exists') return new OperationError('BACKEND_EXISTS', `the name '${input.name}' is already used by another proxy`, details)
  if (/^Mode is required/.test(r.haproxyMessage)) {
    return new OperationError('MODE_REQUIRED', `defaults section '${input.from}' sets no mode: give "mode": "http" or "tcp"`, details)
  }
  return undefined
}

/**
 * The steps that create a backend as the store describes it: `show info` + `add backend` on one
 * connection (the process it was created in is recorded with it), then its servers, then `publish`.
 * Used by POST /backends and by the reconciler.
 */
export function createBackendSteps (b: DesiredBackend, deps: { executor: Executor, identity: ProcessIdentity, created: Map<string, CreatedBackend> },
  servers: Step[], between: Step[] = [], opts: { process?: () => ProcessInfo | undefined, createdIn?: (process: ProcessId) => void } = {}): Step[] {
  const { executor, identity } = deps
  // `show info` on the same connection as `add backend`: the process recorded is the one that has it.
  // With `process`, an earlier command step of the same batch (same connection) asked already.
  const add: Step = {
    label: 'add backend',
    commands: opts.process === undefined ? [cmd.showInfo(), cmd.addBackend(b.name, b.from, b.mode ?? undefined)] : [cmd.addBackend(b.name, b.from, b.mode ?? undefined)],
    onApplied: async (results) => {
      const [info, result] = opts.process === undefined ? results : [opts.process(), results[0]]
      if (info === undefined) throw new Error('the process that has the backend is unknown')
      const { dynamicServers, note } = result as cmd.AddBackendResult
      const here = processOf(info as ProcessInfo, identity)
      deps.created.set(b.name, { from: b.from, noDynamicServers: dynamicServers ? undefined : (note ?? 'static load-balancing algorithm') })
      await executor.store.setCreatedIn(b.name, here)
      opts.createdIn?.(here)
    },
    // It may exist now: note the process it would be in, so that it is not taken for a backend of the configuration.
    onInDoubt: async () => { if (identity.current !== undefined) await executor.store.setCreatedIn(b.name, identity.current) },
    // Unpublish first: if a later publish timed out, HAProxy may have applied it, and `del backend` refuses a published backend.
    undo: async ({ runtime }) => {
      await deleteBackend(runtime, b.name, cmd.unpublishBackend(b.name))
      deps.created.delete(b.name)
      await executor.store.setCreatedIn(b.name, undefined)
    },
    explain: err => addBackendRejection(b, err)
  }
  // Servers follow on the same connection; on a backend whose algorithm refuses dynamic servers,
  // the first `add server` is refused (NO_DYNAMIC_SERVERS) and the backend is removed again.
  const steps: Step[] = [add, ...servers, ...between]
  if (b.published) steps.push(commandStep([cmd.publishBackend(b.name)], [cmd.unpublishBackend(b.name)]))
  return steps
}

export class BackendService {
  readonly #runtime: Runtime
  readonly #executor: Executor
  readonly #identity: ProcessIdentity
  /** Backends created in the HAProxy process answering now (what `show stat` cannot tell). */
  readonly created = new Map<string, CreatedBackend>()
  /** Listings asked for at the same time share one read (./shared-read.ts). */
  readonly #listing = new SharedRead(async () => this.#list())

  constructor (deps: { runtime: Runtime, executor: Executor, identity: ProcessIdentity }) {
    this.#runtime = deps.runtime
    this.#executor = deps.executor
    this.#identity = deps.identity
  }

  /** Every backend. The array and its objects may be shared with concurrent callers: never change them. */
  async list (): Promise<Backend[]> {
    return this.#listing.get()
  }

  async #list (): Promise<Backend[]> {
    let info, stat
    try {
      [info, stat] = await this.#runtime.execute([cmd.showInfo(), cmd.showStat(undefined, BACKEND_STAT)])
    } catch (err) {
      throw toOperationError(err)
    }
    return this.#view(processOf(info, this.#identity), stat)
  }

  async get (name: string): Promise<Backend> {
    checkName('backend', name)
    return this.#orRestoring(name, () => this.#get(name))
  }

  /**
   * `here`: the process known to answer (the one a write just created the backend in); without it,
   * `show info` on the same connection says which one does.
   */
  async #get (name: string, here?: ProcessId): Promise<Backend> {
    try {
      let process: ProcessId, stat: Row[]
      if (here === undefined) {
        const [info, rows] = await this.#runtime.execute([cmd.showInfo(), cmd.showStat(name, BACKEND_STAT)])
        process = processOf(info, this.#identity)
        stat = rows
      } else {
        [stat] = await this.#runtime.execute([cmd.showStat(name, BACKEND_STAT)])
        process = here
      }
      const found = (await this.#view(process, stat, name)).find(b => b.name === name)
      if (found !== undefined) return found
    } catch (err) {
      // `show stat <unknown>` says `No such proxy.`; a frontend's name finds no BACKEND row.
      if (rejectionOf(err)?.kind !== 'not_found') throw toOperationError(err)
    }
    throw backendNotFound(name)
  }

  /** A backend is hapctl's when the store keeps it and it was created in the process answering (`here`). */
  async #view (here: ProcessId, stat: Row[], only?: string): Promise<Backend[]> {
    const store = this.#executor.store
    const createdIn = await store.createdIn()
    // One backend's view reads one row of the store, not every backend kept.
    const list = only === undefined ? await store.listBackends() : [await store.getBackend(only)].filter(b => b !== undefined)
    const kept = new Map(list.map(b => [b.name, b]))
    return backendsFromStat(stat, name => {
      const b = kept.get(name)
      if (b === undefined || createdIn.get(name) !== here) return undefined
      return this.created.get(name) ?? { from: b.from, noDynamicServers: undefined }
    })
  }

  async create (input: CreateBackendInput): Promise<Backend> {
    const desired: DesiredBackend = { name: input.name, from: input.from, mode: input.mode ?? null, published: input.published }
    const servers = (input.servers ?? []).map(s => desiredServerOf(input.name, s))
    const warnings: string[] = []
    const target = { kind: 'backend', id: input.name }
    // The process `add backend` ran in (its `show info`): the read-back needs not ask again.
    let createdIn: ProcessId | undefined
    const backend = await this.#executor.perform({ target }, async (): Promise<Plan> => {
      const between: Step[] = []
      const checked = (input.servers ?? []).filter(s => s.check)
      if (input.published && checked.length > 0) {
        // Health-checked servers start DOWN (init-state down); published before one is UP, the backend
        // would answer 503 to routes already pointing at it instead of their fallback.
        // It only reads: a timeout of its `show stat` undoes the create rather than leaving it in doubt,
        // and a shutdown cuts it short (the create is then undone: it could take longer than the grace).
        between.push({
          label: 'wait for a server UP',
          apply: async ({ runtime, signal }) => {
            if (!(await waitUntilUp(runtime, input.name, undefined, { timeoutMs: publishWaitMs(checked), signal })).up) {
              warnings.push('published before any server passed its health check: requests routed here get 503 until one does')
            }
          },
          undo: async () => {},
          changesNothing: true
        })
      }
      return {
        target,
        action: 'create',
        steps: createBackendSteps(desired, { executor: this.#executor, identity: this.#identity, created: this.created }, servers.flatMap(s => addServerSteps(s)), between,
          { createdIn: process => { createdIn = process } }),
        changes: [{ op: 'backend.put', backend: desired }, ...servers.map(server => ({ op: 'server.put', server }) as const)]
      }
    }, async () => this.#orRestoring(input.name, () => this.#get(input.name, createdIn)))
    return { ...backend, warnings: [...backend.warnings, ...warnings] }
  }

  /** Not found, but kept: RESTORING (../restoring.ts). */
  async #orRestoring<T> (name: string, fn: () => Promise<T>): Promise<T> {
    return orRestoring(fn, async err => err.reason === 'BACKEND_NOT_FOUND' && await this.#executor.store.getBackend(name) !== undefined ? `backend '${name}'` : undefined)
  }

  /**
   * Publishes or unpublishes. With `waitUp` (publishing only), answers once a server of the backend is
   * UP (../servers/wait-up.ts), waiting after the change is applied and recorded, outside the lock: a
   * deadline that runs out leaves it published and kept, and says so (NOT_UP, outcome `applied`).
   */
  async setPublished (name: string, published: boolean, opts: { waitUp?: UpWait | undefined } = {}): Promise<Backend> {
    checkName('backend', name)
    const target = { kind: 'backend', id: name }
    if (opts.waitUp !== undefined && !published) {
      throw new OperationError('VALIDATION_FAILED', 'wait=up goes with "published": true: an unpublished backend takes no traffic',
        { errors: [{ field: 'querystring.wait', message: 'needs "published": true' }], outcome: 'refused', state: refusedState(target) })
    }
    const backend = await this.#setPublished(name, published, target)
    if (opts.waitUp === undefined) return backend
    await waitOrExplain(this.#runtime, target, `backend '${name}' was published and is kept`, name, undefined, opts.waitUp, this.#executor)
    return this.#get(name).catch(err => {
      throw toOperationError(err).extend({ prefix: `backend '${name}' was published, is kept and has a server UP, but reading it back failed: `, outcome: 'applied' })
    })
  }

  async #setPublished (name: string, published: boolean, target: { kind: string, id: string }): Promise<Backend> {
    return this.#orRestoring(name, () => this.#executor.perform({ target }, async (): Promise<Plan> => {
      const kept = await this.#executor.store.getBackend(name)
      const changes: DesiredChange[] = kept === undefined ? [] : [{ op: 'backend.put', backend: { ...kept, published } }]
      const step = commandStep([published ? cmd.publishBackend(name) : cmd.unpublishBackend(name)], [published ? cmd.unpublishBackend(name) : cmd.publishBackend(name)], {
        explain: err => rejectionOf(err)?.kind === 'not_found' ? backendNotFound(name) : undefined
      })
      return { target, action: 'update', steps: [step], changes }
    }, async () => this.#get(name)))
  }

  /**
   * The removal sequence (management §9.3 `del backend`): unpublish, put every server in maintenance,
   * wait until each is removable, delete them, wait until the backend is removable, delete it. Until
   * the first server is deleted everything can be put back, so a server that does not drain in time
   * restores the backend as it was; after that the error says what is left.
   */
  async delete (name: string, opts: { timeoutMs: number, force: boolean }): Promise<void> {
    checkName('backend', name)
    const target = { kind: 'backend', id: name }
    await this.#executor.perform({ target }, async (): Promise<Plan> => {
      const deadline = Date.now() + opts.timeoutMs
      let found
      try {
        found = await this.#preflight(name)
      } catch (err) {
        // Kept but not in HAProxy (a reload not yet reconciled, or one HAProxy cannot create: its
        // defaults section is gone): deleted from the desired state alone, or the reconciler would
        // bring back what the client was told does not exist.
        if (err instanceof OperationError && err.reason === 'BACKEND_NOT_FOUND' && await this.#executor.store.getBackend(name) !== undefined) {
          return { target, action: 'delete', steps: [], changes: [{ op: 'backend.delete', name }] }
        }
        throw err
      }
      const [here, stat, servers] = found
      const backend = (await this.#view(here, stat, name)).find(b => b.name === name)
      if (backend === undefined) throw backendNotFound(name)
      if (!backend.dynamic && !opts.force) {
        throw new OperationError('BACKEND_STATIC',
          `backend '${name}' comes from HAProxy's configuration (or was not created through this hapctl): deleting it lasts only until the next reload; pass force=true to delete it anyway`)
      }
      const prior = servers.map(s => ({
        name: s.srv_name as string,
        admin: Number(s.srv_admin_state),
        agentEnabled: checkStateOf(s.srv_agent_state).enabled
      }))
      const steps: Step[] = []
      if (backend.published) steps.push(commandStep([cmd.unpublishBackend(name)], [cmd.publishBackend(name)]))
      for (const s of prior) {
        if (s.agentEnabled) steps.push(commandStep([cmd.disableAgent(name, s.name)], [cmd.enableAgent(name, s.name)]))
        if ((s.admin & AdminStateBits.FMAINT) === 0) {
          steps.push(commandStep([cmd.setServerState(name, s.name, 'maint')], [cmd.setServerState(name, s.name, (s.admin & AdminStateBits.FDRAIN) !== 0 ? 'drain' : 'ready')]))
        }
      }
      for (const [i, s] of prior.entries()) {
        const explain = (err: OperationError): OperationError | undefined => {
          const r = rejectionOf(err)
          if (r?.verb !== 'wait srv-removable') return undefined
          return new OperationError('NOT_REMOVABLE', `a server of '${name}' ('${s.name}') still had connections when the ${opts.timeoutMs} ms timeout ran out`,
            { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r })
        }
        // The first wait goes out on the connection that put the servers in maintenance, with what is
        // left of the timeout now (a round trip more than when it is sent). The next ones get what is
        // left when they start, so that all of them together stay within the timeout.
        if (i === 0) {
          steps.push(commandStep([cmd.waitServerRemovable(name, s.name, remaining(deadline))], [], { label: `wait srv-removable ${s.name}`, explain }))
          continue
        }
        steps.push({
          label: `wait srv-removable ${s.name}`,
          apply: async ({ runtime }) => { await runtime.execute([cmd.waitServerRemovable(name, s.name, remaining(deadline))]) },
          undo: async () => {},
          explain
        })
      }
      // Past this point servers are being deleted: nothing can be put back, only reported.
      for (const s of prior) steps.push(commandStep([cmd.delServer(name, s.name)], undefined, { label: `del server ${s.name}` }))
      steps.push({
        label: 'del backend',
        apply: async ({ runtime }) => {
          await deleteBackend(runtime, name, cmd.waitBackendRemovable(name, remaining(deadline)))
          this.created.delete(name)
          await this.#executor.store.setCreatedIn(name, undefined)
        },
        explain: err => {
          const r = rejectionOf(err)
          if (r === undefined) return undefined
          return new OperationError(r.verb === 'wait be-removable' ? 'NOT_REMOVABLE' : 'CONFLICT', `backend '${name}' could not be deleted: ${r.haproxyMessage}`,
            { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r })
        }
      })
      return { target, action: 'delete', steps, changes: [{ op: 'backend.delete', name }] }
    })
  }

  /**
   * Reads what the removal needs, and asks HAProxy whether the backend can ever be removed before
   * touching it: `wait … be-removable` reports references from the configuration first (verified on
   * 3.4.7: before the published and has-servers checks), so a referenced backend is refused unchanged.
   * One connection: the process, the BACKEND row, the servers, and the question last, so that a
   * refusal of it can only come after the reads have said that the backend exists.
   */
  async #preflight (name: string): Promise<[ProcessId, Row[], Row[]]> {
    try {
      const [info, stat, servers] = await this.#runtime.execute([
        cmd.showInfo(), cmd.showStat(name, BACKEND_ROW_STAT), cmd.showServersState(name), cmd.probeBackendRemovable(name)
      ])
      return [processOf(info, this.#identity), stat, servers]
    } catch (err) {
      const r = rejectionOf(err)
      if (r?.verb === 'wait be-removable') {
        throw new OperationError('BACKEND_NOT_REMOVABLE', `HAProxy cannot remove backend '${name}' at runtime; nothing was changed`,
          { haproxyMessage: r.haproxyMessage, command: r.verb, state: { backend: name, changed: false } })
      }
      if (r?.kind === 'not_found') throw backendNotFound(name)
      throw toOperationError(err)
    }
  }
}

/**
 * `del backend <name>` after `first` (the wait until it is removable, or `unpublish`), on one
 * connection. When HAProxy's reply has no verdict, only notices (cmd.delBackend: they can crowd
 * `Backend deleted.` out of it), `show backend` (management §9.3) says whether the backend is gone:
 * gone is success, still listed is the refusal. Asked in a second call only then (the pool gives it
 * a connection to the current process, most often the same one), so that a reply with its verdict
 * costs no extra round trip.
 */
export async function deleteBackend (runtime: Runtime, name: string, first: cmd.Command<unknown>): Promise<void> {
  const [, result] = await runtime.execute([first, cmd.delBackend(name)])
  if (result.confirmed) return
  const [names] = await runtime.execute([cmd.showBackend()])
  if (names.includes(name)) throw result.refusal
}

/** Says which process answered a `show info` (and tells the identity tracker). */
function processOf (info: ProcessInfo, identity: ProcessIdentity): ProcessId {
  identity.observe(info)
  return processIdOf(info)
}

/** How long a new backend's checked servers need to come UP: about inter × rise each, at most 30 s. */
function publishWaitMs (servers: ReadonlyArray<{ inter?: number | undefined, rise?: number | undefined }>): number {
  const longest = Math.max(...servers.map(s => (s.inter ?? 2000) * (s.rise ?? 2)))
  return Math.min(30_000, longest + 1000)
}

function remaining (deadline: number): number {
  return Math.max(1, deadline - Date.now())
}
