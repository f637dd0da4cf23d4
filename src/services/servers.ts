/**
 * Servers: list/get from one `show servers state` + `show stat` round trip, and the add, change and
 * remove sequences with their rollbacks (runtime-notes 4, 8). BackendService reuses `addAll` so that
 * POST /backends with servers is written once. Every change runs under the backend's lock
 * (`backend:<name>`, the key BackendService uses), so a server cannot be added to a backend being deleted.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import type { RuntimeCommandError } from '../runtime/errors.ts'
import type { Row } from '../runtime/parsers.ts'
import { AdminStateBits, CheckStateBits, StatType } from '../runtime/parsers.ts'
import { checkName } from '../runtime/validation.ts'
import { ApiError, asApiError, fromRuntimeError, rejectionOf } from '../errors.ts'
import type { CreateServerInput, OPERATIONAL_STATUSES, PatchServerInput } from '../schemas/servers.ts'
import type { KeyedLock } from './locks.ts'

export type OperationalStatus = typeof OPERATIONAL_STATUSES[number]

export type Server = {
  name: string
  backend: string
  id: number
  address: string | null
  fqdn: string | null
  port: number
  weight: { current: number, initial: number }
  adminState: cmd.ServerAdminState
  status: OperationalStatus
  rawStatus: string
  healthCheck: {
    configured: boolean
    enabled: boolean
    paused: boolean
    status: string | null
    description: string | null
    inProgress: boolean
    port: number | null
    address: string | null
  }
  agentCheck: { configured: boolean, enabled: boolean }
  sessions: number
  maxconn: number | null
  backup: boolean
  ssl: boolean
}

const { INPROGRESS: CHECK_INPROGRESS, CONFIGURED: CHECK_CONFIGURED, ENABLED: CHECK_ENABLED, PAUSED: CHECK_PAUSED } = CheckStateBits

/** How long a rollback waits for a server that was briefly in service to lose its connections. */
const ROLLBACK_WAIT_MS = 2000

/** `check_status` words and their meaning, from the management guide §9.1 (field 36). */
export const CHECK_STATUS_DESCRIPTIONS: Readonly<Record<string, string>> = {
  UNK: 'Unknown',
  INI: 'Initializing',
  SOCKERR: 'Socket error',
  L4OK: 'Check passed on layer 4, no upper layers testing enabled',
  L4TOUT: 'Layer 1-4 timeout',
  L4CON: 'Layer 1-4 connection problem, e.g. "Connection refused" (tcp rst) or "No route to host" (icmp)',
  L6OK: 'Check passed on layer 6',
  L6TOUT: 'Layer 6 (SSL) timeout',
  L6RSP: 'Layer 6 invalid response - protocol error',
  L7OK: 'Check passed on layer 7',
  L7OKC: 'Check conditionally passed on layer 7, e.g. 404 with disable-on-404',
  L7TOUT: 'Layer 7 (HTTP/SMTP) timeout',
  L7RSP: 'Layer 7 invalid response - protocol error',
  L7STS: 'Layer 7 response error, e.g. HTTP 5xx',
  CHECKED: 'Agent check: checked',
  HANA: 'Health analyze: too many errors observed on live traffic',
  PROCERR: 'External check: process error',
  PROCTOUT: 'External check: process timeout',
  PROCOK: 'External check passed'
}

export function normalizeStatus (raw: string): OperationalStatus {
  if (raw.startsWith('MAINT')) return 'maint'
  if (raw.startsWith('DRAIN')) return 'drain'
  if (raw.startsWith('NOLB')) return 'nolb'
  if (raw === 'no check' || raw.startsWith('UP')) return 'up'
  if (raw.startsWith('DOWN')) return 'down'
  return 'unknown'
}

export function adminStateOf (adminBits: number): cmd.ServerAdminState {
  if ((adminBits & AdminStateBits.ANY_MAINT) !== 0) return 'maint'
  if ((adminBits & AdminStateBits.ANY_DRAIN) !== 0) return 'drain'
  return 'ready'
}

/** `show stat` check_status: `* ` in front while a check runs (runtime-notes 4.9). */
export function parseCheckStatus (field: string | undefined): { status: string | null, inProgress: boolean } {
  const raw = field ?? ''
  const inProgress = raw.startsWith('* ')
  const status = inProgress ? raw.slice(2) : raw
  return { status: status === '' ? null : status, inProgress }
}

const num = (v: string | undefined): number => {
  const n = Number(v)
  return Number.isFinite(n) ? n : 0
}
const orNull = (v: string | undefined): string | null => v === undefined || v === '' ? null : v

/** One server from its `show servers state` row and its `show stat` row (absent in a race: zeros). */
export function toServer (backend: string, st: Row, stat: Row | undefined): Server {
  const checkState = num(st.srv_check_state)
  const agentState = num(st.srv_agent_state)
  const check = parseCheckStatus(stat?.check_status)
  const rawStatus = stat?.status ?? ''
  const checkPort = num(st.srv_check_port)
  return {
    name: st.srv_name as string,
    backend,
    id: num(st.srv_id),
    address: orNull(st.srv_addr),
    fqdn: orNull(st.srv_fqdn),
    port: num(st.srv_port),
    weight: { current: num(st.srv_uweight), initial: num(st.srv_iweight) },
    adminState: adminStateOf(num(st.srv_admin_state)),
    status: normalizeStatus(rawStatus),
    rawStatus,
    healthCheck: {
      configured: (checkState & CHECK_CONFIGURED) !== 0,
      enabled: (checkState & CHECK_ENABLED) !== 0,
      paused: (checkState & CHECK_PAUSED) !== 0,
      status: check.status,
      description: check.status === null ? null : CHECK_STATUS_DESCRIPTIONS[check.status] ?? null,
      inProgress: check.inProgress || (checkState & CHECK_INPROGRESS) !== 0,
      port: checkPort === 0 ? null : checkPort,
      address: orNull(st.srv_check_addr)
    },
    agentCheck: { configured: (agentState & CHECK_CONFIGURED) !== 0, enabled: (agentState & CHECK_ENABLED) !== 0 },
    sessions: num(stat?.scur),
    maxconn: stat === undefined || stat.slim === '' || stat.slim === undefined ? null : num(stat.slim),
    backup: stat?.bck === '1',
    ssl: st.srv_use_ssl === '1'
  }
}

/** Joins the two views by server name; servers-state order (newest dynamic server first, runtime-notes 4.8). */
export function joinServers (backend: string, state: Row[], stat: Row[]): Server[] {
  const byName = new Map<string, Row>()
  for (const r of stat) {
    if (r.type === StatType.SERVER && r.pxname === backend) byName.set(r.svname as string, r)
  }
  return state.filter(r => r.be_name === backend).map(r => toServer(backend, r, byName.get(r.srv_name as string)))
}

/** Re-throws `err` as an ApiError with more context in its detail and `state`. */
function withContext (err: unknown, prefix: string, suffix: string, state: Record<string, unknown>): unknown {
  const api = asApiError(err)
  if (!(api instanceof ApiError)) return api
  return new ApiError(api.status, api.code, `${prefix}${api.message}${suffix}`, { ...api.extras, state: { ...api.extras.state, ...state } }, { cause: err })
}

function backendNotFound (backend: string): ApiError {
  return new ApiError(404, 'HAPX_BACKEND_NOT_FOUND', `there is no backend named '${backend}'`)
}

function serverNotFound (backend: string, server: string): ApiError {
  return new ApiError(404, 'HAPX_SERVER_NOT_FOUND', `backend '${backend}' has no server named '${server}'`)
}

export function toAddOptions (input: CreateServerInput): cmd.AddServerOptions {
  return {
    address: input.address,
    port: input.port,
    check: input.check,
    checkPort: input.checkPort,
    checkAddr: input.checkAddr,
    interMs: input.inter,
    rise: input.rise,
    fall: input.fall,
    weight: input.weight,
    maxconn: input.maxconn,
    backup: input.backup,
    ssl: input.ssl,
    sslVerify: input.sslVerify,
    sni: input.sni
  }
}

export class ServerService {
  readonly #runtime: Runtime
  readonly #locks: KeyedLock

  constructor (deps: { runtime: Runtime, locks: KeyedLock }) {
    this.#runtime = deps.runtime
    this.#locks = deps.locks
  }

  async list (backend: string): Promise<Server[]> {
    checkName('backend', backend)
    let state, stat
    try {
      [state, stat] = await this.#runtime.execute([cmd.showServersState(backend), cmd.showStat(backend)])
    } catch (err) {
      if (rejectionOf(err)?.kind === 'not_found') throw backendNotFound(backend)
      throw asApiError(err)
    }
    return joinServers(backend, state, stat)
  }

  async get (backend: string, server: string): Promise<Server> {
    checkName('server', server)
    const found = (await this.list(backend)).find(s => s.name === server)
    if (found === undefined) throw serverNotFound(backend, server)
    return found
  }

  async create (backend: string, input: CreateServerInput): Promise<Server> {
    checkName('backend', backend)
    return this.#locks.run(`backend:${backend}`, async () => {
      await this.addUnlocked(backend, input)
      return this.get(backend, input.name)
    })
  }

  /**
   * Adds servers one after another, all or nothing: when one fails, those added before it are removed
   * again. The caller must hold `backend:<backend>` (BackendService.create does).
   */
  async addAll (backend: string, inputs: CreateServerInput[]): Promise<void> {
    const added: string[] = []
    for (const [i, input] of inputs.entries()) {
      try {
        await this.addUnlocked(backend, input)
        added.push(input.name)
      } catch (err) {
        const left: string[] = []
        for (const name of added) {
          if (await this.#removeQuietly(backend, name) !== undefined) left.push(name)
        }
        const suffix = added.length === 0
          ? ''
          : left.length === 0
            ? `; the ${added.length} server(s) added before it were removed again`
            : `; removing the servers added before it failed for ${left.join(', ')}`
        throw withContext(err, `server '${input.name}' (${i + 1} of ${inputs.length}): `, suffix,
          { backend, failedServer: input.name, serversRemoved: added.filter(n => !left.includes(n)), serversLeft: left })
      }
    }
  }

  /**
   * `add server … [check … init-state down]` → `enable health` (with check) → `set server … state ready`
   * (when enabled), on one connection (runtime-notes 8). If a step after `add server` fails, the server
   * is removed again. The caller holds the backend's lock.
   */
  async addUnlocked (backend: string, input: CreateServerInput): Promise<void> {
    let add: cmd.Command<void>
    try {
      add = cmd.addServer(backend, input.name, toAddOptions(input))
    } catch (err) {
      throw asApiError(err)
    }
    const follow: Array<cmd.Command<void>> = []
    if (input.check) follow.push(cmd.enableHealth(backend, input.name))
    if (input.enabled) follow.push(cmd.setServerState(backend, input.name, 'ready'))
    try {
      await this.#runtime.execute([add, ...follow])
    } catch (err) {
      const r = rejectionOf(err)
      if (r !== undefined && r.verb === 'add server') throw addRejection(backend, input.name, r)
      if (r === undefined) {
        // No verdict (timeout, cut connection): `add server` and what followed may have been applied,
        // so remove whatever exists; "No such server" means nothing was created.
        const failure = await this.#removeQuietly(backend, input.name)
        const gone = failure === undefined || /No such server/.test(failure)
        throw withContext(err, `adding server '${input.name}' got no complete answer: `,
          gone ? '; no server was left behind' : `; it may exist in maintenance (removing it failed: ${failure})`,
          { backend, server: input.name, removed: gone ? true : 'unknown' })
      }
      const failure = await this.#removeQuietly(backend, input.name)
      throw withContext(err, `server '${input.name}' was added but '${r.verb}' failed: `,
        failure === undefined ? '; the server was removed again' : `; removing it again failed too (${failure}), it is left in maintenance`,
        { backend, server: input.name, removed: failure === undefined })
    }
  }

  /** Maintenance, wait briefly, delete; returns the error message instead of throwing. */
  async #removeQuietly (backend: string, server: string): Promise<string | undefined> {
    try {
      await this.#runtime.execute([
        cmd.setServerState(backend, server, 'maint'),
        cmd.waitServerRemovable(backend, server, ROLLBACK_WAIT_MS),
        cmd.delServer(backend, server)
      ])
      return undefined
    } catch (err) {
      return (err as Error).message
    }
  }

  /**
   * Applies a PATCH: address/port, weight, health and agent checks, then the admin state (so checks are
   * on before a server goes back into service, pitfall 12). Everything is validated and the server read
   * before the first command is sent: `disable health` on a server without checks would answer
   * success and do nothing (pitfall 5).
   */
  async update (backend: string, server: string, patch: PatchServerInput): Promise<Server> {
    checkName('backend', backend)
    checkName('server', server)
    return this.#locks.run(`backend:${backend}`, async () => {
      const current = await this.get(backend, server)
      if (patch.healthChecks !== undefined && !current.healthCheck.configured) {
        throw new ApiError(409, 'HAPX_CHECKS_NOT_CONFIGURED', `server '${backend}/${server}' was added without health checks ("check"); they cannot be ${patch.healthChecks ? 'enabled' : 'disabled'}. Delete and re-add it with "check": true`)
      }
      if (patch.agentChecks !== undefined && !current.agentCheck.configured) {
        throw new ApiError(409, 'HAPX_AGENT_NOT_CONFIGURED', `server '${backend}/${server}' has no agent check configured; it cannot be ${patch.agentChecks ? 'enabled' : 'disabled'}`)
      }
      // Each step with the command that puts back what it changes, read from the server before.
      const steps: Array<{ apply: cmd.Command<void>, undo: cmd.Command<void> | undefined }> = []
      try {
        if (patch.address !== undefined || patch.port !== undefined) {
          const address = patch.address ?? current.address
          if (address === null) {
            throw new ApiError(409, 'HAPX_SERVER_HAS_NO_IP', `server '${backend}/${server}' has no IP address (an FQDN or socket server): give "address" too, or delete and re-add it`)
          }
          steps.push({
            apply: cmd.setServerAddr(backend, server, address, patch.port),
            // Port 0 ("the client's port") cannot be set back through `port`, and needs not be when unchanged.
            undo: current.address === null ? undefined : cmd.setServerAddr(backend, server, current.address, current.port === 0 ? undefined : current.port)
          })
        }
        if (patch.weight !== undefined) {
          steps.push({ apply: cmd.setServerWeight(backend, server, patch.weight), undo: cmd.setServerWeight(backend, server, current.weight.current) })
        }
        if (patch.healthChecks !== undefined) {
          const toggle = (on: boolean): cmd.Command<void> => on ? cmd.enableHealth(backend, server) : cmd.disableHealth(backend, server)
          steps.push({ apply: toggle(patch.healthChecks), undo: toggle(current.healthCheck.enabled) })
        }
        if (patch.agentChecks !== undefined) {
          const toggle = (on: boolean): cmd.Command<void> => on ? cmd.enableAgent(backend, server) : cmd.disableAgent(backend, server)
          steps.push({ apply: toggle(patch.agentChecks), undo: toggle(current.agentCheck.enabled) })
        }
        if (patch.state !== undefined) {
          steps.push({ apply: cmd.setServerState(backend, server, patch.state), undo: cmd.setServerState(backend, server, current.adminState) })
        }
      } catch (err) {
        throw asApiError(err)
      }
      try {
        await this.#runtime.execute(steps.map(s => s.apply))
      } catch (err) {
        const r = rejectionOf(err)
        if (r?.kind === 'not_found') throw serverNotFound(backend, server)
        // A refusal says how many steps ran; without a verdict (timeout, cut connection) any may have,
        // and undoing one that did not run only sets the value it already has.
        const ran = r === undefined ? steps : steps.slice(0, r.index ?? 0)
        if (ran.length === 0) throw withContext(err, '', '; nothing was changed', { backend, server, changed: false })
        const undo = ran.map(s => s.undo).reverse()
        let undone = !undo.includes(undefined)
        if (undone) {
          try {
            await this.#runtime.execute(undo as Array<cmd.Command<void>>)
          } catch {
            undone = false
          }
        }
        const verbs = ran.map(s => s.apply.verb)
        throw withContext(err, '', undone
          ? `; ${r === undefined ? 'whatever had been applied' : verbs.join(', ')} was put back as it was`
          : `; putting back ${verbs.join(', ')} failed, the server may be left changed`,
        { backend, server, restored: undone, ...(undone ? {} : { mayHaveApplied: verbs }) })
      }
      return this.get(backend, server)
    })
  }

  /**
   * Removal (runtime-notes 4.7, 8): `disable agent` (when enabled: an agent would undo the maintenance,
   * pitfall 14) → `set server … state maint` → `shutdown sessions server` (force) →
   * `wait <timeout> srv-removable` → `del server`. Not removable in time: 409, server left in maintenance.
   */
  async delete (backend: string, server: string, opts: { timeoutMs: number, force: boolean }): Promise<void> {
    checkName('backend', backend)
    checkName('server', server)
    return this.#locks.run(`backend:${backend}`, async () => {
      const current = await this.get(backend, server)
      const commands: Array<cmd.Command<void>> = []
      if (current.agentCheck.enabled) commands.push(cmd.disableAgent(backend, server))
      commands.push(cmd.setServerState(backend, server, 'maint'))
      if (opts.force) commands.push(cmd.shutdownSessions(backend, server))
      commands.push(cmd.waitServerRemovable(backend, server, opts.timeoutMs), cmd.delServer(backend, server))
      try {
        await this.#runtime.execute(commands)
      } catch (err) {
        const r = rejectionOf(err)
        const reached = r?.index ?? 0
        const inMaint = commands.slice(0, reached).some(c => c.verb === 'set server state')
        const state = { backend, server, adminState: inMaint ? 'maint' : current.adminState, agentDisabled: current.agentCheck.enabled && reached > 0 }
        if (r?.verb === 'wait srv-removable' && r.kind === 'conflict') {
          throw new ApiError(409, 'HAPX_NOT_REMOVABLE',
            `server '${backend}/${server}' still had connections when the ${opts.timeoutMs} ms timeout ran out; it was left in maintenance (retry the DELETE, or pass force=true to close its sessions)`,
            { haproxyMessage: r.haproxyMessage, command: r.verb, state })
        }
        if (r?.kind === 'not_found') throw serverNotFound(backend, server)
        throw withContext(err, '', inMaint ? '; the server was left in maintenance' : '', state)
      }
    })
  }
}

/** What a refused `add server` means for the client (runtime-notes 4.1). */
function addRejection (backend: string, server: string, r: RuntimeCommandError): ApiError {
  const extras = { haproxyMessage: r.haproxyMessage, command: r.verb }
  if (r.kind === 'not_found') return new ApiError(404, 'HAPX_BACKEND_NOT_FOUND', `there is no backend named '${backend}'`, extras)
  if (r.kind === 'exists') return new ApiError(409, 'HAPX_SERVER_EXISTS', `backend '${backend}' already has a server named '${server}'`, extras)
  if (/does not support dynamic servers/.test(r.haproxyMessage)) {
    return new ApiError(400, 'HAPX_NO_DYNAMIC_SERVERS', `backend '${backend}' uses a load-balancing algorithm that does not allow servers to be added at runtime`, extras)
  }
  if (r.kind === 'forbidden' || r.kind === 'unsupported') return fromRuntimeError(r)
  return new ApiError(400, 'HAPX_SERVER_REJECTED', `HAProxy refused server '${server}': ${r.haproxyMessage}`, extras)
}
