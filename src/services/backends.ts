/**
 * Backends: turns resource operations into Runtime API command sequences, in the right order, with
 * rollback when a later step fails. Routes call this; it calls the runtime client. Locks, the catalog
 * of runtime-created backends and (later) the audit trail and desired state live at this layer.
 */
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import type { ProcessInfo, Row } from '../runtime/parsers.ts'
import { AdminStateBits, CheckStateBits, StatType } from '../runtime/parsers.ts'
import type { ProxyMode } from '../runtime/validation.ts'
import { PROXY_MODES, checkName } from '../runtime/validation.ts'
import { ApiError, asApiError, rejectionOf } from '../errors.ts'
import type { BackendCatalog } from './catalog.ts'
import type { KeyedLock } from './locks.ts'
import type { ServerService } from './servers.ts'
import type { CreateServerInput } from '../schemas/servers.ts'

export type Backend = {
  name: string
  mode: ProxyMode | null
  published: boolean
  status: string
  dynamic: boolean
  from: string | null
  balance: string | null
  acceptsDynamicServers: boolean | null
  servers: number
  warnings: string[]
}

export type CreateBackendInput = {
  name: string
  from: string
  mode?: ProxyMode | undefined
  published: boolean
  /** Added before publishing, all or nothing together with the backend. */
  servers?: CreateServerInput[] | undefined
}

const UNPUB_SUFFIX = ' (UNPUB)'

/** What a backend's view needs from `show stat`: its BACKEND row and its server rows. */
const BACKEND_STAT = { columns: ['pxname', 'svname', 'type', 'status', 'mode', 'algo'], backendsAndServersOnly: true } as const

export const TCP_MODE_WARNING = 'mode tcp: an HTTP frontend that routes to this backend gives its clients an empty reply; use mode http for backends behind HTTP frontends'

/** Balance algorithms HAProxy accepts dynamic servers with; hash-based ones depend on hash-type. */
const DYNAMIC_ALGOS = new Set(['roundrobin', 'leastconn', 'first', 'random', 'unknown'])

export class BackendService {
  readonly #runtime: Runtime
  readonly #catalog: BackendCatalog
  readonly #locks: KeyedLock
  readonly #servers: ServerService | undefined

  constructor (deps: { runtime: Runtime, catalog: BackendCatalog, locks: KeyedLock, servers?: ServerService }) {
    this.#runtime = deps.runtime
    this.#catalog = deps.catalog
    this.#locks = deps.locks
    this.#servers = deps.servers
  }

  async list (): Promise<Backend[]> {
    let info, stat
    try {
      [info, stat] = await this.#runtime.execute([cmd.showInfo(), cmd.showStat(undefined, BACKEND_STAT)])
    } catch (err) {
      throw asApiError(err)
    }
    this.#catalog.observe(info)
    const backends = this.#fromStat(stat)
    this.#catalog.retain(new Set(backends.map(b => b.name)))
    return backends
  }

  async get (name: string): Promise<Backend> {
    checkName('backend', name)
    try {
      const [info, stat] = await this.#runtime.execute([cmd.showInfo(), cmd.showStat(name, BACKEND_STAT)])
      this.#catalog.observe(info)
      const found = this.#fromStat(stat).find(b => b.name === name)
      if (found !== undefined) return found
    } catch (err) {
      // `show stat <unknown>` says `No such proxy.`; a frontend's name finds no BACKEND row.
      if (rejectionOf(err)?.kind !== 'not_found') throw asApiError(err)
    }
    throw notFound(name)
  }

  async create (input: CreateBackendInput): Promise<Backend> {
    return this.#locks.run(`backend:${input.name}`, async () => {
      let created: cmd.AddBackendResult
      try {
        // `show info` first, on the same connection: the catalog entry must belong to the process that
        // created the backend, or a restart noticed later would wipe the fresh entry with the stale ones.
        let info
        [info, created] = await this.#runtime.execute([cmd.showInfo(), cmd.addBackend(input.name, input.from, input.mode)])
        this.#catalog.observe(info)
      } catch (err) {
        const r = rejectionOf(err)
        if (r?.kind === 'not_found') {
          throw new ApiError(422, 'HAPX_DEFAULTS_NOT_FOUND', `there is no defaults section named '${input.from}' in HAProxy's configuration (backends are created from a named defaults section)`, { haproxyMessage: r.haproxyMessage, command: r.verb })
        }
        if (r?.kind === 'exists') {
          throw new ApiError(409, 'HAPX_BACKEND_EXISTS', `the name '${input.name}' is already used by another proxy`, { haproxyMessage: r.haproxyMessage, command: r.verb })
        }
        if (r !== undefined && /^Mode is required/.test(r.haproxyMessage)) {
          throw new ApiError(400, 'HAPX_MODE_REQUIRED', `defaults section '${input.from}' sets no mode: give "mode": "http" or "tcp"`, { haproxyMessage: r.haproxyMessage, command: r.verb })
        }
        throw asApiError(err)
      }
      this.#catalog.add(input.name, {
        from: input.from,
        createdAt: new Date().toISOString(),
        dynamicServers: created.dynamicServers,
        dynamicServersNote: created.note
      })
      const servers = input.servers ?? []
      if (servers.length > 0) {
        // Servers go in before publishing, so no request reaches a half-built backend. addAll removes
        // the servers it added when one fails; the backend is removed here. We hold the lock already.
        try {
          if (!created.dynamicServers) {
            throw new ApiError(400, 'HAPX_NO_DYNAMIC_SERVERS', `defaults section '${input.from}' uses a load-balancing algorithm that does not allow servers to be added at runtime (${created.note ?? 'static algorithm'})`)
          }
          if (this.#servers === undefined) throw new Error('BackendService was built without a ServerService')
          await this.#servers.addAll(input.name, servers)
        } catch (err) {
          await this.#undoCreate(input.name, err, '; the backend was removed again, nothing was left behind')
        }
      }
      const warnings: string[] = []
      if (input.published) {
        // Health-checked servers start DOWN (init-state down); published before one is UP, the backend
        // would answer 503 to routes already pointing at it instead of their fallback (runtime-notes 8).
        const checked = servers.filter(s => s.check === true)
        if (checked.length > 0 && !(await this.#waitForUpServer(input.name, publishWaitMs(checked)))) {
          warnings.push('published before any server passed its health check: requests routed here get 503 until one does')
        }
        try {
          await this.#runtime.execute([cmd.publishBackend(input.name)])
        } catch (err) {
          await this.#undoCreate(input.name, err)
        }
      }
      const backend = await this.get(input.name)
      return { ...backend, warnings: [...backend.warnings, ...warnings] }
    })
  }

  /** Polls `show stat` until a server of the backend is UP; false when `withinMs` runs out first. */
  async #waitForUpServer (name: string, withinMs: number): Promise<boolean> {
    const deadline = Date.now() + withinMs
    for (;;) {
      try {
        const [rows] = await this.#runtime.execute([cmd.showStat(name, BACKEND_STAT)])
        if (rows.some(r => r.type === StatType.SERVER && (r.status ?? '').startsWith('UP'))) return true
      } catch (err) {
        throw asApiError(err)
      }
      if (Date.now() >= deadline) return false
      await new Promise(resolve => setTimeout(resolve, Math.min(100, Math.max(1, deadline - Date.now()))))
    }
  }

  /** Removes a backend whose creation could not be completed; the caller's error is what the client sees. */
  async #undoCreate (name: string, cause: unknown, removedNote?: string): Promise<never> {
    try {
      // Unpublish first: if the failed step was a publish that timed out, HAProxy may have applied it,
      // and `del backend` refuses a published backend.
      await this.#runtime.execute([cmd.unpublishBackend(name), cmd.delBackend(name)])
      this.#catalog.delete(name)
    } catch (undoErr) {
      const api = asApiError(cause)
      if (api instanceof ApiError) {
        throw new ApiError(api.status, api.code, `${api.message}; removing the half-created backend failed too (${(undoErr as Error).message})`,
          { ...api.extras, state: { backend: name, exists: true, published: false } }, { cause })
      }
    }
    const api = asApiError(cause)
    if (removedNote !== undefined && api instanceof ApiError) {
      throw new ApiError(api.status, api.code, `${api.message}${removedNote}`, { ...api.extras, state: { ...api.extras.state, backend: name, exists: false } }, { cause })
    }
    throw api
  }

  async setPublished (name: string, published: boolean): Promise<Backend> {
    checkName('backend', name)
    return this.#locks.run(`backend:${name}`, async () => {
      try {
        await this.#runtime.execute([published ? cmd.publishBackend(name) : cmd.unpublishBackend(name)])
      } catch (err) {
        if (rejectionOf(err)?.kind === 'not_found') throw notFound(name)
        throw asApiError(err)
      }
      return this.get(name)
    })
  }

  /**
   * The seed's removal sequence (management §9.3 `del backend`, runtime-notes 8): unpublish, put every
   * server in maintenance, wait until each is removable, delete them, wait until the backend is
   * removable, delete it. Until the first server is deleted everything can be undone, so a server
   * that does not drain in time restores the backend as it was; after that the error says what is left.
   */
  async delete (name: string, opts: { timeoutMs: number, force: boolean }): Promise<void> {
    checkName('backend', name)
    return this.#locks.run(`backend:${name}`, async () => {
      const deadline = Date.now() + opts.timeoutMs
      const [info, stat, servers] = await this.#preflight(name)
      this.#catalog.observe(info)
      const backend = this.#fromStat(stat).find(b => b.name === name)
      if (backend === undefined) throw notFound(name)
      if (!backend.dynamic && !opts.force) {
        throw new ApiError(409, 'HAPX_BACKEND_STATIC',
          `backend '${name}' comes from HAProxy's configuration (or was not created through this hapctl): deleting it lasts only until the next reload; pass force=true to delete it anyway`)
      }

      const prior = servers.map(s => ({
        name: s.srv_name as string,
        admin: Number(s.srv_admin_state),
        agentEnabled: (Number(s.srv_agent_state) & CheckStateBits.ENABLED) !== 0
      }))
      const quiesce: Array<cmd.Command<void>> = [cmd.unpublishBackend(name)]
      for (const s of prior) {
        if (s.agentEnabled) quiesce.push(cmd.disableAgent(name, s.name))
        if ((s.admin & AdminStateBits.FMAINT) === 0) quiesce.push(cmd.setServerState(name, s.name, 'maint'))
      }
      const restore = async (): Promise<string | undefined> => {
        const undo: Array<cmd.Command<void>> = []
        for (const s of prior) {
          if ((s.admin & AdminStateBits.FMAINT) === 0) undo.push(cmd.setServerState(name, s.name, (s.admin & AdminStateBits.FDRAIN) !== 0 ? 'drain' : 'ready'))
          if (s.agentEnabled) undo.push(cmd.enableAgent(name, s.name))
        }
        if (backend.published) undo.push(cmd.publishBackend(name))
        try {
          if (undo.length > 0) await this.#runtime.execute(undo)
          return undefined
        } catch (err) {
          return (err as Error).message
        }
      }

      try {
        await this.#runtime.execute(quiesce)
        for (const s of prior) {
          await this.#runtime.execute([cmd.waitServerRemovable(name, s.name, remaining(deadline))])
        }
      } catch (err) {
        const failure = await restore()
        const r = rejectionOf(err)
        const state = failure === undefined
          ? { backend: name, restored: true, published: backend.published }
          : { backend: name, restored: false, restoreError: failure }
        if (r !== undefined && r.verb === 'wait srv-removable') {
          throw new ApiError(409, 'HAPX_NOT_REMOVABLE',
            `a server of '${name}' still had connections when the ${opts.timeoutMs} ms timeout ran out; ${failure === undefined ? 'the backend and its servers were put back as they were' : `putting the backend back failed: ${failure}`}`,
            { haproxyMessage: r.haproxyMessage, command: r.verb, state })
        }
        const api = asApiError(err)
        if (api instanceof ApiError) throw new ApiError(api.status, api.code, api.message, { ...api.extras, state }, { cause: err })
        throw api
      }

      // Past this point servers are being deleted: nothing can be put back, only reported.
      const deleted: string[] = []
      try {
        for (const s of prior) {
          await this.#runtime.execute([cmd.delServer(name, s.name)])
          deleted.push(s.name)
        }
        await this.#runtime.execute([cmd.waitBackendRemovable(name, remaining(deadline)), cmd.delBackend(name)])
      } catch (err) {
        const r = rejectionOf(err)
        const state = { backend: name, published: false, serversDeleted: deleted, serversLeft: prior.map(s => s.name).filter(n => !deleted.includes(n)) }
        if (r !== undefined) {
          throw new ApiError(409, r.verb === 'wait be-removable' ? 'HAPX_NOT_REMOVABLE' : 'HAPX_CONFLICT',
            `backend '${name}' could not be deleted: ${r.haproxyMessage} It was left unpublished, with ${state.serversLeft.length} server(s) left.`,
            { haproxyMessage: r.haproxyMessage, command: r.verb, state })
        }
        const api = asApiError(err)
        if (api instanceof ApiError) throw new ApiError(api.status, api.code, api.message, { ...api.extras, state }, { cause: err })
        throw api
      }
      this.#catalog.delete(name)
    })
  }

  /**
   * Reads what the removal needs, and asks HAProxy whether the backend can ever be removed before
   * touching it: `wait … be-removable` reports references from the configuration first (verified on
   * 3.4.7: before the published and has-servers checks), so a referenced backend is refused unchanged.
   */
  async #preflight (name: string): Promise<[ProcessInfo, Row[], Row[]]> {
    let info, stat, servers
    try {
      [info, stat, servers] = await this.#runtime.execute([cmd.showInfo(), cmd.showStat(name, BACKEND_STAT), cmd.showServersState(name)])
    } catch (err) {
      const r = rejectionOf(err)
      if (r?.kind === 'not_found') throw notFound(name)
      throw asApiError(err)
    }
    try {
      await this.#runtime.execute([cmd.waitBackendRemovable(name, 1)])
    } catch (err) {
      const r = rejectionOf(err)
      if (r === undefined) throw asApiError(err)
      const transient = /must be unpublished|Only a backend without server|still has attached streams|Wait delay expired/.test(r.haproxyMessage)
      if (!transient) {
        throw new ApiError(409, 'HAPX_BACKEND_NOT_REMOVABLE', `HAProxy cannot remove backend '${name}' at runtime; nothing was changed`,
          { haproxyMessage: r.haproxyMessage, command: r.verb, state: { backend: name, changed: false } })
      }
    }
    return [info, stat, servers]
  }

  #fromStat (rows: Row[]): Backend[] {
    const serverCount = new Map<string, number>()
    for (const r of rows) {
      if (r.type === StatType.SERVER) serverCount.set(r.pxname as string, (serverCount.get(r.pxname as string) ?? 0) + 1)
    }
    return rows.filter(r => r.type === StatType.BACKEND).map(r => {
      const name = r.pxname as string
      const rawStatus = r.status ?? ''
      const meta = this.#catalog.get(name)
      const mode = (PROXY_MODES as readonly string[]).includes(r.mode ?? '') ? r.mode as ProxyMode : null
      const balance = r.algo === undefined || r.algo === '' ? null : r.algo
      let accepts: boolean | null
      if (meta !== undefined && !meta.dynamicServers) accepts = false
      else if (balance === null) accepts = null
      else if (DYNAMIC_ALGOS.has(balance)) accepts = true
      else if (balance === 'static-rr') accepts = false
      else accepts = null
      const warnings: string[] = []
      if (meta !== undefined && !meta.dynamicServers) warnings.push(`no dynamic servers: HAProxy will refuse every 'add server' on it (${meta.dynamicServersNote ?? 'static load-balancing algorithm'})`)
      if (mode === 'tcp') warnings.push(TCP_MODE_WARNING)
      return {
        name,
        mode,
        published: !rawStatus.endsWith(UNPUB_SUFFIX),
        status: rawStatus.endsWith(UNPUB_SUFFIX) ? rawStatus.slice(0, -UNPUB_SUFFIX.length) : rawStatus,
        dynamic: meta !== undefined,
        from: meta?.from ?? null,
        balance,
        acceptsDynamicServers: accepts,
        servers: serverCount.get(name) ?? 0,
        warnings
      }
    })
  }
}

/** How long a new backend's checked servers need to come UP: about inter × rise each, at most 30 s. */
function publishWaitMs (servers: ReadonlyArray<{ inter?: number | undefined, rise?: number | undefined }>): number {
  const longest = Math.max(...servers.map(s => (s.inter ?? 2000) * (s.rise ?? 2)))
  return Math.min(30_000, longest + 1000)
}

function remaining (deadline: number): number {
  return Math.max(1, deadline - Date.now())
}

function notFound (name: string): ApiError {
  return new ApiError(404, 'HAPX_BACKEND_NOT_FOUND', `there is no backend named '${name}'`)
}
