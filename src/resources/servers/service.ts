/**
 * Servers: reads from one `show servers state` + `show stat` round trip, and planners for the add,
 * change and remove sequences (management §9.3 `add server`, `set server`, `enable|disable health`,
 * `enable|disable agent`, `wait srv-removable`, `del server`). Every write is a plan run by the
 * executor under the backend's lock (`backend:<name>`, the key backends use too), so a server cannot
 * be added to a backend being deleted. What a write asks for is kept in the desired-state store.
 */
import { setTimeout as delay } from 'node:timers/promises'
import type { Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { RuntimeCommandError } from '../../runtime/errors.ts'
import { checkName } from '../../runtime/validation.ts'
import type { Executor } from '../../engine/executor.ts'
import { refusedState } from '../../engine/executor.ts'
import type { Plan, Step } from '../../engine/plan.ts'
import { commandStep } from '../../engine/plan.ts'
import { OperationError, fromRuntime, rejectionOf, toOperationError } from '../../engine/outcomes.ts'
import type { DesiredChange, DesiredServer, ServerSpec } from '../../engine/store/types.ts'
import type { CreateServerInput, PatchServerInput } from '../../schemas/servers.ts'
import type { Server } from './view.ts'
import { SERVER_STAT, joinServers, toAddOptions } from './view.ts'
import { orRestoring } from '../restoring.ts'
import type { UpWait } from './wait-up.ts'
import { describeSeen, waitUntilUp } from './wait-up.ts'

export type { Server } from './view.ts'

/** Read-backs of a changed address before answering with what HAProxy shows (20 ms apart). */
const ADDR_SETTLE_TRIES = 10

/** How long an undo waits for a server that was briefly in service to lose its connections. */
const ROLLBACK_WAIT_MS = 2000

/** HAProxy has no such backend (`details`: HAProxy's refusal, when one said so). */
export function backendNotFound (backend: string, details?: ConstructorParameters<typeof OperationError>[2]): OperationError {
  return new OperationError('BACKEND_NOT_FOUND', `there is no backend named '${backend}'`, details)
}

function serverNotFound (backend: string, server: string): OperationError {
  return new OperationError('SERVER_NOT_FOUND', `backend '${backend}' has no server named '${server}'`)
}

/** The add-server fields of a request, as the store keeps them. */
function specOf (input: CreateServerInput): ServerSpec {
  const { name: _name, enabled: _enabled, ...spec } = input
  return spec
}

/** A server as the store keeps it right after a successful add. */
export function desiredServerOf (backend: string, input: CreateServerInput): DesiredServer {
  return { backend, name: input.name, spec: specOf(input), adminState: input.enabled ? 'ready' : 'maint', weight: null, healthChecks: null, agentChecks: null }
}

/** What a refused `add server` means for the client (management §9.3 `add server`). */
function addRejection (backend: string, server: string, r: RuntimeCommandError): OperationError {
  const details = { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r }
  if (r.kind === 'not_found') return backendNotFound(backend, details)
  if (r.kind === 'exists') return new OperationError('SERVER_EXISTS', `backend '${backend}' already has a server named '${server}'`, details)
  if (/does not support dynamic servers/.test(r.haproxyMessage)) {
    return new OperationError('NO_DYNAMIC_SERVERS', `backend '${backend}' uses a load-balancing algorithm that does not allow servers to be added at runtime`, details)
  }
  if (r.kind === 'forbidden' || r.kind === 'unsupported') return fromRuntime(r)
  return new OperationError('SERVER_REJECTED', `HAProxy refused server '${server}': ${r.haproxyMessage}`, details)
}

/** `maint` → `wait srv-removable` → `del server`: what removes a server that may have had traffic. */
export function removalCommands (backend: string, server: string, waitMs = ROLLBACK_WAIT_MS): Array<cmd.Command<void>> {
  return [cmd.setServerState(backend, server, 'maint'), cmd.waitServerRemovable(backend, server, waitMs), cmd.delServer(backend, server)]
}

/**
 * The steps that add a server as the store describes it: `add server … [check … init-state down]` →
 * `enable health` (with check) → `set server … state <admin>` (unless maint) → weight, health and
 * agent switches set after the add. Undoing the first step removes the server, which undoes the rest.
 * `restore`: the reconciler puts back a server HAProxy forgot (init-state up, see below).
 * All command steps: they go out on one connection.
 */
export function addServerSteps (s: DesiredServer, opts: { restore?: boolean } = {}): Step[] {
  const { backend, name } = s
  // Restoring a server after a restart or reload: it was in traffic, as the configuration's servers
  // are again at once, so it goes back in at once (checks take it out if it fails) rather than
  // leaving routes to it answering 503 until its first check has passed.
  const add = cmd.addServer(backend, name, { ...toAddOptions(s.spec), initState: opts.restore === true ? 'up' : 'down' })
  const steps: Step[] = [commandStep([add], removalCommands(backend, name), {
    explain: err => { const r = rejectionOf(err); return r?.verb === 'add server' ? addRejection(backend, name, r) : undefined }
  })]
  const healthOn = s.healthChecks ?? s.spec.check
  if (s.spec.check && healthOn) steps.push(commandStep([cmd.enableHealth(backend, name)], []))
  if (s.weight !== null && s.weight !== (s.spec.weight ?? 1)) steps.push(commandStep([cmd.setServerWeight(backend, name, s.weight)], []))
  if (s.agentChecks === true) steps.push(commandStep([cmd.enableAgent(backend, name)], []))
  if (s.adminState !== 'maint') steps.push(commandStep([cmd.setServerState(backend, name, s.adminState)], []))
  return steps
}

/**
 * Removal (management §9.3): `disable agent` (when enabled: an agent would undo the maintenance) →
 * `set server … state maint` → `shutdown sessions server` (force) → `wait <timeout> srv-removable` →
 * `del server`. Until `del server` everything can be put back.
 */
function removeServerSteps (backend: string, server: string, current: { adminState: cmd.ServerAdminState, agentEnabled: boolean }, opts: { timeoutMs: number, force: boolean }): Step[] {
  const steps: Step[] = []
  if (current.agentEnabled) steps.push(commandStep([cmd.disableAgent(backend, server)], [cmd.enableAgent(backend, server)]))
  if (current.adminState !== 'maint') steps.push(commandStep([cmd.setServerState(backend, server, 'maint')], [cmd.setServerState(backend, server, current.adminState)]))
  if (opts.force) steps.push(commandStep([cmd.shutdownSessions(backend, server)], []))
  steps.push(commandStep([cmd.waitServerRemovable(backend, server, opts.timeoutMs)], [], {
    explain: err => {
      const r = rejectionOf(err)
      if (r?.kind !== 'conflict') return undefined
      return new OperationError('NOT_REMOVABLE',
        `server '${backend}/${server}' still had connections when the ${opts.timeoutMs} ms timeout ran out; retry the DELETE with a longer timeout, or pass force=true to close its sessions`,
        { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r })
    }
  }))
  steps.push(commandStep([cmd.delServer(backend, server)]))
  return steps
}

export class ServerService {
  readonly #runtime: Runtime
  readonly #executor: Executor

  constructor (deps: { runtime: Runtime, executor: Executor }) {
    this.#runtime = deps.runtime
    this.#executor = deps.executor
  }

  /** Not found, but kept (the backend, one of its servers, or this server): RESTORING (../restoring.ts). */
  async #orRestoring<T> (backend: string, server: string | undefined, fn: () => Promise<T>): Promise<T> {
    const store = this.#executor.store
    return orRestoring(fn, async err => {
      if (err.reason === 'BACKEND_NOT_FOUND') {
        return await store.getBackend(backend) !== undefined || (await store.getServers(backend)).length > 0 ? `backend '${backend}'` : undefined
      }
      return server !== undefined && await store.getServer(backend, server) !== undefined ? `server '${backend}/${server}'` : undefined
    })
  }

  async list (backend: string): Promise<Server[]> {
    checkName('backend', backend)
    return this.#orRestoring(backend, undefined, () => this.#list(backend))
  }

  async #list (backend: string): Promise<Server[]> {
    let state, stat
    try {
      [state, stat] = await this.#runtime.execute([cmd.showServersState(backend), cmd.showStat(backend, SERVER_STAT)])
    } catch (err) {
      if (rejectionOf(err)?.kind === 'not_found') throw backendNotFound(backend)
      throw toOperationError(err)
    }
    return joinServers(backend, state, stat)
  }

  /**
   * A server as `show servers state` alone shows it, for planning a change: admin state, weights,
   * address and port, whether checks and agent are configured and enabled. Its `show stat` fields
   * (status, check status, sessions, maxconn, backup) are left empty: a plan never reads them.
   */
  async #planned (backend: string, server: string): Promise<Server> {
    let state
    try {
      [state] = await this.#runtime.execute([cmd.showServersState(backend)])
    } catch (err) {
      if (rejectionOf(err)?.kind === 'not_found') throw backendNotFound(backend)
      throw toOperationError(err)
    }
    const found = joinServers(backend, state.filter(r => r.srv_name === server), []).at(0)
    if (found === undefined) throw serverNotFound(backend, server)
    return found
  }

  async get (backend: string, server: string): Promise<Server> {
    checkName('backend', backend)
    checkName('server', server)
    return this.#orRestoring(backend, server, () => this.#get(backend, server))
  }

  async #get (backend: string, server: string): Promise<Server> {
    const found = (await this.#list(backend)).find(s => s.name === server)
    if (found === undefined) throw serverNotFound(backend, server)
    return found
  }

  /**
   * Adds a server. With `waitUp`, answers only once it is UP in `show stat` (./wait-up.ts): the wait
   * runs after the change is applied and recorded, outside the backend's lock (it only reads, and a
   * health check may take seconds), so a deadline that runs out leaves the server added and kept, and
   * says so (NOT_UP, outcome `applied`).
   */
  async create (backend: string, input: CreateServerInput, opts: { waitUp?: UpWait | undefined } = {}): Promise<Server> {
    checkName('backend', backend)
    const target = { kind: 'server', id: `${backend}/${input.name}` }
    if (opts.waitUp !== undefined && !input.enabled) {
      throw new OperationError('VALIDATION_FAILED', 'wait=up needs "enabled": true: a server left in maintenance never turns UP',
        { errors: [{ field: 'querystring.wait', message: 'needs "enabled": true' }], outcome: 'refused', state: refusedState(target) })
    }
    const desired = desiredServerOf(backend, input)
    const added = await this.#orRestoring(backend, undefined, () => this.#executor.perform(
      { target, lock: `backend:${backend}` },
      async (): Promise<Plan> => ({
        target,
        action: 'create',
        steps: addServerSteps(desired),
        changes: [{ op: 'server.put', server: desired }]
      }),
      async () => this.#get(backend, input.name)))
    if (opts.waitUp === undefined || added.status === 'up') return added
    await waitOrExplain(this.#runtime, target, `server '${backend}/${input.name}' was added and is kept`, backend, input.name, opts.waitUp, this.#executor)
    return this.#get(backend, input.name).catch(err => {
      throw toOperationError(err).extend({ prefix: `server '${backend}/${input.name}' was added, is kept and is UP, but reading it back failed: `, outcome: 'applied' })
    })
  }

  /**
   * Applies a PATCH: address/port, weight, health and agent checks, then the admin state (so checks are
   * on before a server goes back into service). Everything is validated and the server read before the
   * first command is sent: `disable health` on a server without checks would answer success and do
   * nothing. Each step carries the command that puts back what it changes, read from the server before.
   */
  async update (backend: string, server: string, patch: PatchServerInput): Promise<Server> {
    checkName('backend', backend)
    checkName('server', server)
    const target = { kind: 'server', id: `${backend}/${server}` }
    return this.#executor.perform({ target, lock: `backend:${backend}` }, async () => {
      const current = await this.#orRestoring(backend, server, () => this.#planned(backend, server))
      if (patch.healthChecks !== undefined && !current.healthCheck.configured) {
        throw new OperationError('CHECKS_NOT_CONFIGURED', `server '${backend}/${server}' was added without health checks ("check"); they cannot be ${patch.healthChecks ? 'enabled' : 'disabled'}. Delete and re-add it with "check": true`)
      }
      if (patch.agentChecks !== undefined && !current.agentCheck.configured) {
        throw new OperationError('AGENT_NOT_CONFIGURED', `server '${backend}/${server}' has no agent check configured; it cannot be ${patch.agentChecks ? 'enabled' : 'disabled'}`)
      }
      const steps: Step[] = []
      if (patch.address !== undefined || patch.port !== undefined) {
        const address = patch.address ?? current.address
        if (address === null) {
          throw new OperationError('SERVER_HAS_NO_IP', `server '${backend}/${server}' has no IP address (an FQDN or socket server): give "address" too, or delete and re-add it`)
        }
        // Port 0 ("the client's port") cannot be set back through `port`, and needs not be when unchanged.
        steps.push(commandStep([cmd.setServerAddr(backend, server, address, patch.port)],
          current.address === null ? undefined : [cmd.setServerAddr(backend, server, current.address, current.port === 0 ? undefined : current.port)]))
      }
      if (patch.weight !== undefined) {
        steps.push(commandStep([cmd.setServerWeight(backend, server, patch.weight)], [cmd.setServerWeight(backend, server, current.weight.current)]))
      }
      if (patch.healthChecks !== undefined) {
        const toggle = (on: boolean): cmd.Command<void> => on ? cmd.enableHealth(backend, server) : cmd.disableHealth(backend, server)
        steps.push(commandStep([toggle(patch.healthChecks)], [toggle(current.healthCheck.enabled)]))
      }
      if (patch.agentChecks !== undefined) {
        const toggle = (on: boolean): cmd.Command<void> => on ? cmd.enableAgent(backend, server) : cmd.disableAgent(backend, server)
        steps.push(commandStep([toggle(patch.agentChecks)], [toggle(current.agentCheck.enabled)]))
      }
      if (patch.state !== undefined) {
        steps.push(commandStep([cmd.setServerState(backend, server, patch.state)], [cmd.setServerState(backend, server, current.adminState)]))
      }
      const notFound = (err: OperationError): OperationError | undefined => rejectionOf(err)?.kind === 'not_found' ? serverNotFound(backend, server) : undefined
      return { target, action: 'update', steps: steps.map(s => ({ ...s, explain: notFound })), changes: await this.#patchChanges(backend, server, patch) }
    }, async () => {
      // HAProxy applies an address change asynchronously (a task makes it atomic for the threads):
      // read right after, `show servers state` may still show the old one. Wait a little for it.
      const settled = (s: Server): boolean => (patch.address === undefined || s.address === patch.address) && (patch.port === undefined || s.port === patch.port)
      let read = await this.#get(backend, server)
      for (let i = 0; i < ADDR_SETTLE_TRIES && !settled(read); i++) {
        await delay(20)
        read = await this.#get(backend, server)
      }
      return read
    })
  }

  /**
   * What a PATCH changes in the store: the whole record of a server hapctl added; state and weight of
   * any other server (one of the configuration's), which is all that survives of it across a reload.
   */
  async #patchChanges (backend: string, server: string, patch: PatchServerInput): Promise<DesiredChange[]> {
    const store = this.#executor.store
    const kept = await store.getServer(backend, server)
    if (kept !== undefined) {
      return [{
        op: 'server.put',
        server: {
          ...kept,
          spec: { ...kept.spec, address: patch.address ?? kept.spec.address, port: patch.port ?? kept.spec.port },
          adminState: patch.state ?? kept.adminState,
          weight: patch.weight ?? kept.weight,
          healthChecks: patch.healthChecks ?? kept.healthChecks,
          agentChecks: patch.agentChecks ?? kept.agentChecks
        }
      }]
    }
    if (patch.state === undefined && patch.weight === undefined) return []
    const settings = await store.getStaticServer(backend, server)
    return [{
      op: 'staticServer.put',
      settings: { backend, name: server, adminState: patch.state ?? settings?.adminState ?? null, weight: patch.weight ?? settings?.weight ?? null }
    }]
  }

  /** Drains and removes a server; a server that does not drain in time is put back as it was (409). */
  async delete (backend: string, server: string, opts: { timeoutMs: number, force: boolean }): Promise<void> {
    checkName('backend', backend)
    checkName('server', server)
    const target = { kind: 'server', id: `${backend}/${server}` }
    await this.#executor.perform({ target, lock: `backend:${backend}` }, async () => {
      const kept = await this.#executor.store.getServer(backend, server)
      let current
      try {
        current = await this.#planned(backend, server)
      } catch (err) {
        // Kept but not in HAProxy (a reload not yet reconciled, a backend the configuration dropped, a
        // spec HAProxy now refuses): deleted from the desired state alone, or it would come back.
        const missing = err instanceof OperationError && (err.reason === 'SERVER_NOT_FOUND' || err.reason === 'BACKEND_NOT_FOUND')
        if (missing && kept !== undefined) return { target, action: 'delete', steps: [], changes: [{ op: 'server.delete', backend, name: server }] }
        throw err
      }
      const notFound = (err: OperationError): OperationError | undefined => rejectionOf(err)?.kind === 'not_found' ? serverNotFound(backend, server) : undefined
      const steps = removeServerSteps(backend, server, { adminState: current.adminState, agentEnabled: current.agentCheck.enabled }, opts)
      return {
        target,
        action: 'delete',
        steps: steps.map(s => ({ ...s, explain: s.explain ?? notFound })),
        changes: [kept !== undefined ? { op: 'server.delete', backend, name: server } : { op: 'staticServer.delete', backend, name: server }]
      }
    })
  }
}

/**
 * Waits until `server` (or any server of `backend`) is UP, for a change already applied and recorded:
 * anything that stops the wait short (the deadline, a stop of hapctl, a failed read) is answered with
 * `outcome: applied`, so that the client knows not to send the change again.
 */
export async function waitOrExplain (runtime: Runtime, target: { kind: string, id: string }, done: string, backend: string, server: string | undefined,
  wait: UpWait, executor: Executor): Promise<void> {
  const state = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ target, outcome: 'applied', ...extra })
  let result
  try {
    result = await waitUntilUp(runtime, backend, server, { ...wait, stopping: () => executor.closing })
  } catch (err) {
    throw toOperationError(err).extend({ prefix: `${done}, but waiting for it to be UP failed: `, outcome: 'applied', state: state() })
  }
  if (result.up) return
  const what = server === undefined ? `no server of backend '${backend}' is UP` : 'it is not UP'
  const why = result.ended === 'stopping'
    ? 'hapctl is stopping, so it stopped waiting'
    : result.ended === 'gone' ? 'when the client went away' : `after ${wait.timeoutMs} ms`
  throw new OperationError('NOT_UP', `${done}, but ${what} ${why} (${describeSeen(result.servers)}); requests reach it once its health checks pass: follow it with GET rather than sending the change again`,
    { outcome: 'applied', state: state({ servers: result.servers }) })
}
