/**
 * The desired state: what hapctl was asked to keep in HAProxy, independent of any HAProxy process.
 * HAProxy forgets everything done through its Runtime API on a restart or a reload; the store does
 * not, and the reconciler (../reconciler.ts) puts it back. The interface is asynchronous and speaks in
 * changes and revisions, not SQL, so that a PostgreSQL implementation shared by several hapctl
 * replicas can follow the SQLite one without touching the executor or the planners.
 */
import type { ServerAdminState } from '../../runtime/commands/index.ts'
import type { ProxyMode } from '../../runtime/validation.ts'
import { PROBLEM_OUTCOMES } from '../outcomes.ts'

/** When a commit reaches the disk: fsynced before it returns (full), or by the OS later (normal). */
export type StoreSync = 'full' | 'normal'

/** A backend created through hapctl (`add backend <name> from <from> [mode <mode>]`). */
export type DesiredBackend = {
  readonly name: string
  readonly from: string
  readonly mode: ProxyMode | null
  readonly published: boolean
}

/** What `add server` was given: every field the client sent, durations in milliseconds. */
export type ServerSpec = {
  readonly address: string
  readonly port: number
  readonly check: boolean
  readonly checkPort?: number | undefined
  readonly checkAddr?: string | undefined
  readonly inter?: number | undefined
  readonly rise?: number | undefined
  readonly fall?: number | undefined
  readonly weight?: number | undefined
  readonly maxconn?: number | undefined
  readonly backup?: boolean | undefined
  readonly ssl?: boolean | undefined
  readonly sslVerify?: 'none' | 'required' | undefined
  readonly sni?: string | undefined
}

/**
 * A server added through hapctl, to a backend created through hapctl or to a static one. `weight`,
 * `healthChecks` and `agentChecks` are null while they are what `add server` left them.
 */
export type DesiredServer = {
  readonly backend: string
  readonly name: string
  readonly spec: ServerSpec
  readonly adminState: ServerAdminState
  readonly weight: number | null
  readonly healthChecks: boolean | null
  readonly agentChecks: boolean | null
}

/** Settings made through hapctl on a server of HAProxy's configuration; null = never set. */
export type StaticServerSettings = {
  readonly backend: string
  readonly name: string
  readonly adminState: ServerAdminState | null
  readonly weight: number | null
}

export type DesiredMapEntry = { readonly key: string, readonly value: string }

/** A map written through hapctl: its whole content, in order (first match wins in lookups). */
export type DesiredMap = {
  readonly name: string
  readonly entries: readonly DesiredMapEntry[]
}

/** Everything, as of one revision. */
export type DesiredState = {
  readonly revision: number
  readonly backends: readonly DesiredBackend[]
  readonly servers: readonly DesiredServer[]
  readonly staticServers: readonly StaticServerSettings[]
  readonly maps: readonly DesiredMap[]
}

/**
 * One change to the desired state. A commit is a list of them, applied in order in one transaction.
 * - backend.delete also deletes the backend's servers;
 * - map.replace makes the map managed (its whole content is known from then on);
 * - map.set on an existing key keeps its position, on a new key appends it; map.set and map.delete
 *   need a managed map (adopt it with map.replace first, in the same commit);
 * - map.forget makes a map unmanaged again (its content is no longer kept).
 */
export type DesiredChange =
  | { readonly op: 'backend.put', readonly backend: DesiredBackend }
  | { readonly op: 'backend.delete', readonly name: string }
  | { readonly op: 'server.put', readonly server: DesiredServer }
  | { readonly op: 'server.delete', readonly backend: string, readonly name: string }
  | { readonly op: 'staticServer.put', readonly settings: StaticServerSettings }
  | { readonly op: 'staticServer.delete', readonly backend: string, readonly name: string }
  | { readonly op: 'map.replace', readonly name: string, readonly entries: readonly DesiredMapEntry[] }
  | { readonly op: 'map.set', readonly name: string, readonly key: string, readonly value: string }
  | { readonly op: 'map.delete', readonly name: string, readonly key: string }
  | { readonly op: 'map.forget', readonly name: string }

/** Who asked for a commit and why; kept with the revision (the audit trail reads it later). */
export type CommitMeta = {
  /** `api` for requests (a token's name once tokens exist), `reconciler`, `import`. */
  readonly actor: string
  /** `create`, `update`, `delete`, `replace`, … */
  readonly action: string
  readonly target: { readonly kind: string, readonly id: string }
  /** The HTTP request id, when there is one. */
  readonly requestId?: string | undefined
}

/** One committed revision, as `changesSince` returns it (for the watch stream to come). */
export type RevisionRecord = CommitMeta & {
  readonly revision: number
  /** ISO 8601. */
  readonly at: string
  /** The changes, with map.replace entries reduced to a count (a revision record stays small). */
  readonly changes: readonly unknown[]
}

export type AuditPruneLimits = { readonly olderThan: Date, readonly maxEntries: number, readonly maxUnauthenticated?: number | undefined }

/**
 * How one Runtime API command of an audited write went: `ok` (HAProxy accepted it), `refused`
 * (HAProxy answered with a refusal; the commands after it were not sent), `unknown` (it went out, or
 * may have, and no verdict came: a timeout or a cut connection), `interrupted` (a `wait` cut short).
 * The one list: the audit schema derives its own from it.
 */
export const AUDIT_COMMAND_RESULTS = ['ok', 'refused', 'unknown', 'interrupted'] as const
export type AuditCommandResult = typeof AUDIT_COMMAND_RESULTS[number]

/** One command as the audit trail keeps it: its text exactly as sent, a payload summarised. */
export type AuditCommand = {
  readonly text: string
  readonly result: AuditCommandResult
  /** For `… <<` commands: the payload's size and its first line, not the payload (a map file is MBs). */
  readonly payload?: { readonly lines: number, readonly bytes: number, readonly firstLine: string } | undefined
}

/**
 * What a write ended as: `applied` (2xx), the problem body's `outcome` for a failure that reached
 * HAProxy (refused, undone, left, unknown, or applied when only the read-back failed), `rejected`
 * for a request refused before anything was sent to HAProxy (authentication, validation, 404, 405…).
 */
export const AUDIT_OUTCOMES = [...PROBLEM_OUTCOMES, 'rejected'] as const

export type AuditOutcome = typeof AUDIT_OUTCOMES[number]

/**
 * One audited write, as appended. Requests carry method, path, route, client, requestId and status;
 * entries of the reconciler (actor `reconciler`) and of hapctl itself (commands sent outside any
 * request) have them null.
 */
export type AuditRecord = {
  /** When the outcome was known (ISO 8601, UTC, as Date.toISOString writes it). */
  readonly at: string
  /** The token's name; null when no token was presented or authentication is off. Never a secret. */
  readonly actor: string | null
  readonly client: string | null
  readonly requestId: string | null
  readonly method: string | null
  /** The route's pattern (`/backends/:name`); null when no route matched. */
  readonly route: string | null
  /** The URL path, without the query string. */
  readonly path: string | null
  readonly target: { readonly kind: string, readonly id: string } | null
  /** The commands that can change HAProxy, in the order sent (reads are not kept). */
  readonly commands: readonly AuditCommand[]
  /** Commands sent beyond the ones kept (an entry keeps at most a few hundred). */
  readonly commandsOmitted: number
  readonly outcome: AuditOutcome
  readonly status: number | null
  /** The problem's `code` (HAPX_…) for a failure. */
  readonly code: string | null
  /** The desired-state revision the write committed, if any. */
  readonly revision: number | null
  readonly durationMs: number | null
}

/**
 * An audit entry as listed: the record and its id, unique and never reused. In one process ids grow
 * in append order; a store shared by several hapctl replicas (a sequence under concurrent
 * transactions) and `at` (each replica's clock) give no commit order: a reader following the trail
 * with `since` re-reads an overlapping window rather than trusting either.
 */
export type AuditEntry = AuditRecord & { readonly id: number }

export type AuditQuery = {
  /** Only entries about this target (exact kind and id). */
  readonly target?: { readonly kind: string, readonly id: string } | undefined
  /** Only entries at or after this time. */
  readonly since?: Date | undefined
  /** Only entries before this time. */
  readonly until?: Date | undefined
  /** Page size, 1 to 1000. */
  readonly limit: number
  /** `next` of the previous page. */
  readonly cursor?: string | undefined
}

/** A page of entries, newest first; `next` is set when there may be more. */
export type AuditPage = { readonly items: AuditEntry[], readonly next?: string | undefined }

export interface DesiredStateStore {
  /** What the store is (`sqlite:/path/to/hapctl.db`, `memory`), for logs and /status. */
  readonly description: string
  /** The latest committed revision; 0 for a new store. */
  revision (): Promise<number>
  /** Everything, consistent at one revision. */
  load (): Promise<DesiredState>
  getBackend (name: string): Promise<DesiredBackend | undefined>
  /** Every backend kept, without servers or maps (cheap: GET /backends reads it on every call). */
  listBackends (): Promise<DesiredBackend[]>
  /** Servers kept for one backend (dynamic servers, in a managed or a static backend). */
  getServers (backend: string): Promise<DesiredServer[]>
  getServer (backend: string, name: string): Promise<DesiredServer | undefined>
  getStaticServer (backend: string, name: string): Promise<StaticServerSettings | undefined>
  /** The map's content when it is managed, undefined when it is not. */
  getMap (name: string): Promise<DesiredMap | undefined>
  /** Names of the managed maps (cheap: no entries are read). */
  managedMaps (): Promise<string[]>
  /**
   * One entry of a map, without reading the others: what a single-entry write needs (100,000
   * entries cost ~0.2 s to read from SQLite, one costs microseconds).
   */
  getMapEntry (name: string, key: string): Promise<{ managed: false } | { managed: true, value: string | undefined }>
  /**
   * Applies the changes in one transaction and returns the new revision (strictly increasing),
   * once the commit is durable as HAPCTL_STORE_SYNC says (full: on disk). Concurrent commits may
   * share a transaction and its fsync (group commit); each still gets its own revision, in the order
   * the calls were made, and fails only for its own changes.
   */
  commit (changes: readonly DesiredChange[], meta: CommitMeta): Promise<number>
  /** Revisions after `revision`, oldest first, at most `limit`. */
  changesSince (revision: number, limit: number): Promise<RevisionRecord[]>
  /**
   * Which HAProxy process (`pid@start_time`) hapctl created a backend in: not desired state (no
   * revision) but what tells, after a restart of hapctl, a backend hapctl created from one that
   * HAProxy's configuration now defines under the same name. undefined forgets it.
   */
  setCreatedIn (backend: string, processId: string | undefined): Promise<void>
  createdIn (): Promise<Map<string, string>>
  /**
   * The audit trail: appends the entries in one transaction, in the order given, written (readable,
   * and surviving a crash of hapctl) when it resolves. Not desired state: no revision, and no fsync of
   * its own: the entries reach the disk with the next commit's, or within a fraction of a second
   * when no commit follows (PostgreSQL's asynchronous commit), so that a write costs one fsync.
   */
  appendAudit (entries: readonly AuditRecord[]): Promise<void>
  /** Entries newest first (by time, then id), filtered, one page at a time. */
  listAudit (query: AuditQuery): Promise<AuditPage>
  /**
   * Deletes entries before `olderThan`, then the oldest unauthenticated refusals (status 401) beyond
   * `maxUnauthenticated` (default: no such limit), then the oldest of all beyond `maxEntries`; how
   * many were deleted. The separate limit is what keeps a flood of requests without a token (cheap:
   * refused before the body is read) from pushing the trail of real writes out.
   */
  pruneAudit (limits: AuditPruneLimits): Promise<number>
  close (): Promise<void>
}
