/**
 * The desired state in one SQLite file (better-sqlite3), the default store.
 *
 * better-sqlite3 is synchronous: each method runs to completion before the event loop goes on, so a
 * commit or a load never interleaves with another one of this process. The methods are async anyway,
 * because the interface is shared with stores that will need the network (PostgreSQL).
 *
 * Settings, chosen at open:
 * - WAL: readers do not block the writer nor the other way round, and a commit is one append.
 * - synchronous=FULL (HAPCTL_STORE_SYNC=full, the default): a commit is fsynced before it returns.
 *   With NORMAL, WAL stays consistent and survives a crash of hapctl, but the last commits can vanish
 *   on a power loss or an OS crash, and a client that got its 201 would find hapctl no longer
 *   restores what it asked for. The fsync costs 0.2-0.7 ms a commit on an idle disk here, several ms
 *   on a busy one (bench/store.ts); HAPCTL_STORE_SYNC=normal trades that durability for it, as
 *   PostgreSQL's synchronous_commit=off does.
 * - Group commit (./group-commit.ts): commits asked for in the same turn of the event loop are
 *   written as one transaction, one savepoint each, so concurrent writes share one fsync. A change
 *   that fails rolls back to its savepoint and fails alone; when the group itself cannot be written
 *   (an I/O error, a full disk), each commit is tried again in a transaction of its own.
 * - Only desired-state commits are fsynced. An audit entry (appendAudit) and createdIn are written
 *   with synchronous=NORMAL: in the WAL before the call returns (they survive a crash of hapctl), on
 *   the disk with the fsync of the next commit, which covers the whole WAL, or at most
 *   AUDIT_SYNC_DELAY_MS later when no commit comes (an fdatasync of the WAL off the event loop). So a
 *   write costs one fsync, not two; what an OS crash or a power loss can take is the audit entries
 *   of the last moments, never an acknowledged change. PostgreSQL's asynchronous commit
 *   (synchronous_commit=off for the audit's transactions) is the same trade.
 * - busy_timeout: another process holding the file (a second hapctl, the sqlite3 shell of an
 *   operator) makes a commit wait up to 5 s instead of failing at once with SQLITE_BUSY.
 * - foreign_keys: on, so that a foreign key a later migration declares is enforced (SQLite ignores
 *   them unless asked, per connection). Schema 1 has none: see map_entries.
 */
import { accessSync, constants, mkdirSync, realpathSync, statSync } from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import type { StoreSync } from './types.ts'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import type {
  AuditEntry, AuditPruneLimits, AuditPage, AuditQuery, AuditRecord, CommitMeta, DesiredBackend, DesiredChange, DesiredMap, DesiredMapEntry, DesiredServer, DesiredState,
  DesiredStateStore, RevisionRecord, ServerSpec, StaticServerSettings
} from './types.ts'
import type { ServerAdminState } from '../../runtime/commands/index.ts'
import type { ProxyMode } from '../../runtime/validation.ts'
import { checkAuditQuery, checkAuditRecords, checkPruneLimits, pageOf } from './audit.ts'
import { checkChangesSince, checkMeta, duplicateKey, normalizeSpec, recordChange, unknownChange, unmanagedMap } from './changes.ts'
import { GroupCommit } from './group-commit.ts'
import type { Settled } from './group-commit.ts'

/** `PRAGMA application_id`: 'hapc'. Tells a hapctl store from some other application's SQLite file. */
const APPLICATION_ID = 0x68617063

const BUSY_TIMEOUT_MS = 5000

/**
 * How long an audit entry written without a commit after it stays in the OS's cache at most before
 * it is fsynced (PostgreSQL's wal_writer_delay is 200 ms). Writes followed by other writes never wait
 * for it: the next commit's fsync carries them.
 */
export const AUDIT_SYNC_DELAY_MS = 100

/**
 * Schema migrations, applied in order in one transaction at open; `PRAGMA user_version` is the number
 * applied. Never edit one that has shipped: append a new one. A file whose user_version is higher
 * than this list is long comes from a newer hapctl and is refused rather than misread.
 */
const MIGRATIONS: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE revisions (
    revision INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: a number is never given twice
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    request_id TEXT,
    changes TEXT NOT NULL -- JSON, map.replace entries reduced to a count
  ) STRICT;

  CREATE TABLE backends (
    name TEXT PRIMARY KEY,
    from_defaults TEXT NOT NULL,
    mode TEXT,
    published INTEGER NOT NULL CHECK (published IN (0, 1))
  ) STRICT, WITHOUT ROWID;

  -- Not a foreign key to backends: a server can be added to a static backend, which is not there.
  CREATE TABLE servers (
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL, -- JSON ServerSpec
    admin_state TEXT NOT NULL,
    weight INTEGER,
    health_checks INTEGER CHECK (health_checks IN (0, 1)),
    agent_checks INTEGER CHECK (agent_checks IN (0, 1)),
    PRIMARY KEY (backend, name)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE static_servers (
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    admin_state TEXT,
    weight INTEGER,
    PRIMARY KEY (backend, name)
  ) STRICT, WITHOUT ROWID;

  -- The managed maps; a map without a row here is not managed, even with no entries. next_position
  -- is the position the next new key takes.
  CREATE TABLE maps (
    name TEXT PRIMARY KEY,
    next_position INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;

  -- position orders the entries (first match wins in HAProxy); gaps are fine. It has no index on
  -- purpose: one B-tree per row instead of two makes a 100,000-entry map.replace about a third
  -- cheaper, and reading a map in order sorts it instead (tens of ms for 100,000 entries).
  -- map is not a foreign key either: the parent lookup on each insert cost another quarter of a
  -- large replace; the store writes entries only to a map it has just checked or adopted, and
  -- map.forget deletes them with the map.
  CREATE TABLE map_entries (
    map TEXT NOT NULL,
    key TEXT NOT NULL,
    position INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (map, key)
  ) STRICT, WITHOUT ROWID;

  -- Not desired state (no revision): which HAProxy process hapctl created a backend in.
  CREATE TABLE created_in (
    backend TEXT PRIMARY KEY,
    process_id TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;
  `,
  // 2: the audit trail (#10): one row per write, accepted or refused. Not desired state.
  `
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused after a prune: cursors stay unambiguous
    at TEXT NOT NULL, -- ISO 8601 UTC, millisecond precision: sorts as text
    actor TEXT,
    client TEXT,
    request_id TEXT,
    method TEXT,
    route TEXT,
    path TEXT,
    target_kind TEXT,
    target_id TEXT,
    commands TEXT NOT NULL, -- JSON AuditCommand[]
    commands_omitted INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    code TEXT,
    revision INTEGER,
    duration_ms INTEGER
  ) STRICT;
  -- Pages are newest first by (at, id); each index ends with the rowid, so both orders come from the
  -- index without a sort, with or without a target.
  CREATE INDEX audit_at ON audit (at);
  CREATE INDEX audit_target ON audit (target_kind, target_id, at);
  -- Unauthenticated refusals are pruned apart (their own, smaller limit).
  CREATE INDEX audit_unauthenticated ON audit (id) WHERE status = 401;
  `
]

/** The newest schema version this hapctl knows. */
export const SCHEMA_VERSION = MIGRATIONS.length

/** Why a file cannot be used as the store, and what the operator should do about it. */
class OpenProblem extends Error {
  readonly todo: string
  constructor (problem: string, todo: string) {
    super(problem)
    this.todo = todo
  }
}

const START_AFRESH = 'restore it from a backup, or move it away to start with an empty desired state ' +
  '(hapctl then no longer restores what it was asked to keep)'

type Sql = Database.Database
type Commit = { readonly changes: readonly DesiredChange[], readonly meta: CommitMeta }
type BackendRow = { name: string, from: string, mode: string | null, published: number }
type ServerRow = {
  backend: string,
  name: string,
  spec: string,
  admin_state: string,
  weight: number | null,
  health_checks: number | null,
  agent_checks: number | null
}
type StaticServerRow = { backend: string, name: string, admin_state: string | null, weight: number | null }
type AuditRow = {
  id: number,
  at: string,
  actor: string | null,
  client: string | null,
  request_id: string | null,
  method: string | null,
  route: string | null,
  path: string | null,
  target_kind: string | null,
  target_id: string | null,
  commands: string,
  commands_omitted: number,
  outcome: string,
  status: number | null,
  code: string | null,
  revision: number | null,
  duration_ms: number | null
}
type RevisionRow = {
  revision: number,
  at: string,
  actor: string,
  action: string,
  target_kind: string,
  target_id: string,
  request_id: string | null,
  changes: string
}

export class SqliteStore implements DesiredStateStore {
  readonly description: string
  readonly #db: Sql
  readonly #synchronous: StoreSync
  readonly #s: ReturnType<typeof prepare>
  readonly #commit: Database.Transaction<(changes: readonly DesiredChange[], meta: CommitMeta) => number>
  readonly #commitGroup: Database.Transaction<(commits: readonly Commit[]) => Array<Settled<number>>>
  readonly #load: Database.Transaction<() => DesiredState>
  readonly #getMap: Database.Transaction<(name: string) => DesiredMap | undefined>
  readonly #getMapEntry: Database.Transaction<(name: string, key: string) => { managed: false } | { managed: true, value: string | undefined }>
  readonly #appendAudit: Database.Transaction<(entries: readonly AuditRecord[]) => void>
  readonly #pruneAudit: Database.Transaction<(olderThan: string, maxEntries: number, maxUnauthenticated: number | undefined) => number>
  /** One prepared statement per combination of filters (at most 8). */
  readonly #auditQueries = new Map<string, Database.Statement>()
  readonly #group = new GroupCommit<Commit, number>(commits => this.#writeGroup(commits))
  /** The WAL file, fsynced by itself for audit entries no commit followed. */
  readonly #wal: string
  /** Something was written unsynced since the last fsynced commit. */
  #unsynced = false
  #walSync: NodeJS.Timeout | undefined

  private constructor (db: Sql, file: string, synchronous: StoreSync) {
    this.#db = db
    this.#synchronous = synchronous
    this.description = `sqlite:${file}`
    // SQLite names the WAL after the file with symbolic links resolved.
    this.#wal = `${realpathSync(file)}-wal`
    this.#s = prepare(db)
    this.#commit = db.transaction((changes: readonly DesiredChange[], meta: CommitMeta) => this.#apply(changes, meta))
    this.#commitGroup = db.transaction((commits: readonly Commit[]) => commits.map((c): Settled<number> => {
      try {
        // Nested: better-sqlite3 runs it in a savepoint, rolled back alone when it throws.
        return { ok: true, value: this.#commit(c.changes, c.meta) }
      } catch (error) {
        // Some errors (a full disk, an I/O error) end the whole transaction: the commits before this
        // one are gone too, and the rest would run outside any transaction.
        if (!db.inTransaction) throw error
        return { ok: false, error }
      }
    }))
    this.#load = db.transaction(() => ({
      revision: this.#revision(),
      backends: (this.#s.backends.all() as BackendRow[]).map(backendOf),
      servers: (this.#s.servers.all() as ServerRow[]).map(serverOf),
      staticServers: (this.#s.staticServers.all() as StaticServerRow[]).map(staticServerOf),
      maps: this.#maps()
    }))
    // One read transaction, so that "managed" and the value belong to the same revision.
    this.#getMapEntry = db.transaction((name: string, key: string) => {
      if (this.#s.mapExists.get(name) === undefined) return { managed: false as const }
      const row = this.#s.mapEntry.get(name, key) as { value: string } | undefined
      return { managed: true as const, value: row?.value }
    })
    this.#getMap = db.transaction((name: string) => {
      if (this.#s.mapExists.get(name) === undefined) return undefined
      const entries = (this.#s.mapEntries.raw().all(name) as Array<[string, string]>).map(([key, value]) => ({ key, value }))
      return { name, entries }
    })
    this.#appendAudit = db.transaction((entries: readonly AuditRecord[]) => {
      for (const e of entries) {
        this.#s.auditInsert.run(e.at, e.actor, e.client, e.requestId, e.method, e.route, e.path, e.target?.kind ?? null, e.target?.id ?? null,
          JSON.stringify(e.commands), e.commandsOmitted, e.outcome, e.status, e.code, e.revision, e.durationMs)
      }
    })
    this.#pruneAudit = db.transaction((olderThan: string, maxEntries: number, maxUnauthenticated: number | undefined) =>
      this.#s.auditPruneAge.run(olderThan).changes +
      (maxUnauthenticated === undefined ? 0 : this.#s.auditPruneUnauthenticated.run(maxUnauthenticated).changes) +
      this.#s.auditPruneCount.run(maxEntries).changes)
  }

  /**
   * Opens the store at `path`, creating the file and its folder when missing, and brings its schema
   * up to date. A file that cannot be used (unreadable, not SQLite, corrupt, from a newer hapctl)
   * throws an Error naming the path and what to do: starting empty instead would silently drop
   * everything hapctl was asked to keep.
   */
  static async open (path: string, opts: { synchronous?: StoreSync } = {}): Promise<SqliteStore> {
    const synchronous = opts.synchronous ?? 'full'
    const file = resolve(path)
    let db: Sql | undefined
    try {
      checkFile(file)
      db = new Database(file)
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
      // Only reads until the file is known to be a sound hapctl store (or a new one): a refused file
      // is left exactly as it was. The first read of garbage fails here with SQLITE_NOTADB.
      const check = db.pragma('quick_check', { simple: false }) as Array<Record<string, string>>
      const problems = check.map(row => Object.values(row)[0]).filter(text => text !== 'ok')
      if (problems.length > 0) throw new OpenProblem(`it is corrupt (quick_check: ${problems.slice(0, 3).join('; ')})`, START_AFRESH)
      checkOwner(db)
      const journal = db.pragma('journal_mode = WAL', { simple: true })
      if (journal !== 'wal') throw new OpenProblem(`SQLite refused WAL mode (journal_mode is '${String(journal)}')`, 'put it on a local file system')
      db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
      db.pragma('foreign_keys = ON')
      migrate(db)
      return new SqliteStore(db, file, synchronous)
    } catch (err) {
      try { db?.close() } catch { /* already failing; the first error is the one to report */ }
      throw openError(file, err)
    }
  }

  async revision (): Promise<number> {
    return this.#revision()
  }

  async load (): Promise<DesiredState> {
    // A read transaction: one snapshot, even with another process writing the file meanwhile.
    return this.#load.deferred()
  }

  async getBackend (name: string): Promise<DesiredBackend | undefined> {
    const row = this.#s.backend.get(name) as BackendRow | undefined
    return row === undefined ? undefined : backendOf(row)
  }

  async listBackends (): Promise<DesiredBackend[]> {
    return (this.#s.backends.all() as BackendRow[]).map(backendOf)
  }

  async getServers (backend: string): Promise<DesiredServer[]> {
    return (this.#s.serversOf.all(backend) as ServerRow[]).map(serverOf)
  }

  async getServer (backend: string, name: string): Promise<DesiredServer | undefined> {
    const row = this.#s.server.get(backend, name) as ServerRow | undefined
    return row === undefined ? undefined : serverOf(row)
  }

  async getStaticServer (backend: string, name: string): Promise<StaticServerSettings | undefined> {
    const row = this.#s.staticServer.get(backend, name) as StaticServerRow | undefined
    return row === undefined ? undefined : staticServerOf(row)
  }

  async getMap (name: string): Promise<DesiredMap | undefined> {
    return this.#getMap.deferred(name)
  }

  async managedMaps (): Promise<string[]> {
    // pluck() as in #maps(): it switches the shared prepared statement for good, so every use of
    // a statement must ask for the same shape (after a load(), rows came back as bare strings).
    return this.#s.mapNames.pluck().all() as string[]
  }

  async getMapEntry (name: string, key: string): Promise<{ managed: false } | { managed: true, value: string | undefined }> {
    return this.#getMapEntry.deferred(name, key)
  }

  async commit (changes: readonly DesiredChange[], meta: CommitMeta): Promise<number> {
    checkMeta(meta)
    return await this.#group.submit({ changes, meta })
  }

  async changesSince (revision: number, limit: number): Promise<RevisionRecord[]> {
    checkChangesSince(revision, limit)
    return (this.#s.revisionsAfter.all(revision, limit) as RevisionRow[]).map(row => ({
      revision: row.revision,
      at: row.at,
      actor: row.actor,
      action: row.action,
      target: { kind: row.target_kind, id: row.target_id },
      requestId: row.request_id ?? undefined,
      changes: JSON.parse(row.changes) as unknown[]
    }))
  }

  async setCreatedIn (backend: string, processId: string | undefined): Promise<void> {
    // Not fsynced: it is an observation of one HAProxy process, and what loses it unsynced (a power
    // loss, an OS crash) also ends that process. The next synced commit carries it to disk anyway.
    // One fsync per created backend made a 1,000-backend replay a second slower.
    this.#withoutFsync(() => {
      if (processId === undefined) this.#s.createdInDelete.run(backend)
      else this.#s.createdInPut.run(backend, processId)
    })
  }

  async createdIn (): Promise<Map<string, string>> {
    return new Map(this.#s.createdIn.raw().all() as Array<[string, string]>)
  }

  async appendAudit (entries: readonly AuditRecord[]): Promise<void> {
    checkAuditRecords(entries)
    // Not fsynced (see the header): the next commit's fsync, or the WAL's own one soon after,
    // carries the entries to disk, so that a write costs one fsync and not two.
    if (entries.length > 0) this.#withoutFsync(() => { this.#appendAudit.immediate(entries) })
  }

  async listAudit (query: AuditQuery): Promise<AuditPage> {
    const q = checkAuditQuery(query)
    const shape = `${q.target !== undefined ? 't' : ''}${q.since !== undefined ? 's' : ''}${q.until !== undefined ? 'u' : ''}${q.after !== undefined ? 'a' : ''}`
    let statement = this.#auditQueries.get(shape)
    if (statement === undefined) {
      const where = [
        q.target !== undefined ? 'target_kind = @kind AND target_id = @id' : undefined,
        q.since !== undefined ? 'at >= @since' : undefined,
        q.until !== undefined ? 'at < @until' : undefined,
        q.after !== undefined ? '(at, id) < (@afterAt, @afterId)' : undefined
      ].filter(w => w !== undefined)
      statement = this.#db.prepare(`SELECT * FROM audit ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id DESC LIMIT @limit`)
      this.#auditQueries.set(shape, statement)
    }
    const params: Record<string, string | number> = { limit: q.limit + 1 }
    if (q.target !== undefined) { params.kind = q.target.kind; params.id = q.target.id }
    if (q.since !== undefined) params.since = q.since
    if (q.until !== undefined) params.until = q.until
    if (q.after !== undefined) { params.afterAt = q.after.at; params.afterId = q.after.id }
    return pageOf((statement.all(params) as AuditRow[]).map(auditEntryOf), q.limit)
  }

  async pruneAudit (limits: AuditPruneLimits): Promise<number> {
    checkPruneLimits(limits)
    return this.#pruneAudit.immediate(limits.olderThan.toISOString(), limits.maxEntries, limits.maxUnauthenticated)
  }

  async close (): Promise<void> {
    // Commits already asked for are written (and fsynced) first; closing the last connection
    // checkpoints the WAL into the file with its fsyncs, so nothing unsynced is left behind.
    if (this.#db.open) await this.#group.drain()
    clearTimeout(this.#walSync)
    this.#walSync = undefined
    if (this.#db.open) this.#db.close()
  }

  /**
   * Writes one group of commits: one IMMEDIATE transaction (it takes the write lock first: a deferred
   * transaction that reads, then writes, can fail with SQLITE_BUSY without waiting when another
   * connection wrote in between), one savepoint per commit, one fsync. A lone commit is its own
   * transaction.
   */
  #writeGroup (commits: readonly Commit[]): Array<Settled<number>> {
    const one = (c: Commit): Settled<number> => {
      try {
        return { ok: true, value: this.#commit.immediate(c.changes, c.meta) }
      } catch (error) {
        return { ok: false, error }
      }
    }
    let results: Array<Settled<number>>
    if (commits.length === 1) results = [one(commits[0] as Commit)]
    else {
      try {
        results = this.#commitGroup.immediate(commits)
      } catch (error) {
        // Another process kept the write lock past busy_timeout: nothing was tried, and each commit
        // alone would wait as long again, the event loop with it.
        if ((error as { code?: unknown }).code === 'SQLITE_BUSY') results = commits.map(() => ({ ok: false, error }))
        // The group could not be written as one: each commit alone, so that only the ones that
        // cannot be written fail (a huge map.replace on a full disk, not the small writes with it).
        else results = commits.map(one)
      }
    }
    // Every frame written before this commit's is now on disk too (the fsync covers the whole WAL).
    if (this.#synchronous === 'full' && results.some(r => r.ok)) this.#unsynced = false
    return results
  }

  /**
   * Runs `write` with synchronous=NORMAL: in the WAL when it returns, not fsynced. With
   * HAPCTL_STORE_SYNC=full, the WAL is fsynced AUDIT_SYNC_DELAY_MS later if no commit did it meanwhile.
   */
  #withoutFsync (write: () => void): void {
    if (this.#synchronous !== 'full') { write(); return }
    this.#db.pragma('synchronous = NORMAL')
    try {
      write()
    } finally {
      this.#db.pragma('synchronous = FULL')
    }
    this.#unsynced = true
    if (this.#walSync !== undefined) return
    this.#walSync = setTimeout(() => { this.#syncWal().catch(() => {}) }, AUDIT_SYNC_DELAY_MS)
    this.#walSync.unref()
  }

  /** fdatasync of the WAL on libuv's thread pool: the event loop goes on meanwhile. */
  async #syncWal (): Promise<void> {
    this.#walSync = undefined
    if (!this.#unsynced || !this.#db.open) return
    this.#unsynced = false
    try {
      const handle = await openFile(this.#wal, 'r+')
      try {
        await handle.datasync()
      } finally {
        await handle.close()
      }
    } catch {
      // No WAL (checkpointed into the file, with its fsyncs), or it cannot be synced now: the next
      // commit's fsync or checkpoint carries the entries, as it would have without this.
      this.#unsynced = true
    }
  }

  /** sqlite_sequence, not MAX(revision): it stays right if old revisions are ever pruned. */
  #revision (): number {
    return this.#s.revision.pluck().get() as number
  }

  #maps (): DesiredMap[] {
    const maps = new Map<string, DesiredMapEntry[]>()
    for (const name of this.#s.mapNames.pluck().all() as string[]) maps.set(name, [])
    let current: DesiredMapEntry[] | undefined
    let currentName: string | undefined
    for (const [map, key, value] of this.#s.allMapEntries.raw().iterate() as IterableIterator<[string, string, string]>) {
      if (map !== currentName) { currentName = map; current = maps.get(map) }
      current?.push({ key, value })
    }
    return [...maps].map(([name, entries]) => ({ name, entries }))
  }

  /** Runs inside the commit transaction: a throw rolls every change back. */
  #apply (changes: readonly DesiredChange[], meta: CommitMeta): number {
    const s = this.#s
    const managed = (op: string, name: string): void => {
      if (s.mapExists.get(name) === undefined) throw unmanagedMap(op, name)
    }
    /** The position a new key of a managed map takes; a position is never handed out twice. */
    const nextPosition = (name: string): number => {
      const position = s.mapNextPosition.pluck().get(name) as number | undefined
      if (position === undefined) throw unmanagedMap('map.set', name)
      return position
    }
    for (const change of changes) {
      switch (change.op) {
        case 'backend.put': {
          const b = change.backend
          s.backendPut.run(b.name, b.from, b.mode, b.published ? 1 : 0)
          break
        }
        case 'backend.delete':
          s.backendDelete.run(change.name)
          s.serversDeleteOf.run(change.name)
          break
        case 'server.put': {
          const v = change.server
          s.serverPut.run(v.backend, v.name, JSON.stringify(normalizeSpec(v.spec)), v.adminState, v.weight, bit(v.healthChecks), bit(v.agentChecks))
          break
        }
        case 'server.delete':
          s.serverDelete.run(change.backend, change.name)
          break
        case 'staticServer.put': {
          const v = change.settings
          s.staticServerPut.run(v.backend, v.name, v.adminState, v.weight)
          break
        }
        case 'staticServer.delete':
          s.staticServerDelete.run(change.backend, change.name)
          break
        case 'map.replace': {
          // One prepared INSERT run per entry, inside the commit's transaction. Measured: 100,000
          // entries (keys like /api/v1/customers/N/orders) in 0.18 to 0.23 s per commit, whether the
          // map was empty or held 100,000 others (0.25 to 0.33 s for the first commits of a process,
          // before the JIT warms up), with WAL and synchronous=FULL, on this project's 2-core
          // machine while other work ran on it (load average 2.5); load() of that map 0.16 s. The
          // SQLite test prints its own numbers. The schema of map_entries is what made it this fast
          // (see its comment); multi-row INSERTs saved only another 10%, not worth the code.
          s.mapAdopt.run(change.name, change.entries.length)
          s.mapEntriesClear.run(change.name)
          const insert = s.mapEntryInsert
          const name = change.name
          let position = 0
          for (const e of change.entries) {
            try {
              insert.run(name, position++, e.key, e.value)
            } catch (err) {
              if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw duplicateKey(name, e.key)
              throw err
            }
          }
          break
        }
        case 'map.set':
          // Takes a position even when the key exists (and keeps its own): a gap, which is harmless.
          s.mapEntrySet.run(change.name, nextPosition(change.name), change.key, change.value)
          break
        case 'map.delete':
          managed('map.delete', change.name)
          s.mapEntryDelete.run(change.name, change.key)
          break
        case 'map.forget':
          s.mapEntriesClear.run(change.name)
          s.mapForget.run(change.name)
          break
        default:
          throw unknownChange(change)
      }
    }
    const recorded = JSON.stringify(changes.map(recordChange))
    const info = s.revisionInsert.run(new Date().toISOString(), meta.actor, meta.action, meta.target.kind, meta.target.id, meta.requestId ?? null, recorded)
    return Number(info.lastInsertRowid)
  }
}

function prepare (db: Sql) {
  const q = (sql: string) => db.prepare(sql)
  return {
    revision: q("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'revisions'), 0)"),
    revisionInsert: q(`INSERT INTO revisions (at, actor, action, target_kind, target_id, request_id, changes)
      VALUES (?, ?, ?, ?, ?, ?, ?)`),
    revisionsAfter: q('SELECT * FROM revisions WHERE revision > ? ORDER BY revision LIMIT ?'),

    backends: q('SELECT name, from_defaults AS "from", mode, published FROM backends ORDER BY name'),
    backend: q('SELECT name, from_defaults AS "from", mode, published FROM backends WHERE name = ?'),
    backendPut: q(`INSERT INTO backends (name, from_defaults, mode, published) VALUES (?, ?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET from_defaults = excluded.from_defaults, mode = excluded.mode, published = excluded.published`),
    backendDelete: q('DELETE FROM backends WHERE name = ?'),

    servers: q('SELECT * FROM servers ORDER BY backend, name'),
    serversOf: q('SELECT * FROM servers WHERE backend = ? ORDER BY name'),
    server: q('SELECT * FROM servers WHERE backend = ? AND name = ?'),
    serverPut: q(`INSERT INTO servers (backend, name, spec, admin_state, weight, health_checks, agent_checks) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (backend, name) DO UPDATE SET spec = excluded.spec, admin_state = excluded.admin_state, weight = excluded.weight,
        health_checks = excluded.health_checks, agent_checks = excluded.agent_checks`),
    serverDelete: q('DELETE FROM servers WHERE backend = ? AND name = ?'),
    serversDeleteOf: q('DELETE FROM servers WHERE backend = ?'),

    staticServers: q('SELECT * FROM static_servers ORDER BY backend, name'),
    staticServer: q('SELECT * FROM static_servers WHERE backend = ? AND name = ?'),
    staticServerPut: q(`INSERT INTO static_servers (backend, name, admin_state, weight) VALUES (?, ?, ?, ?)
      ON CONFLICT (backend, name) DO UPDATE SET admin_state = excluded.admin_state, weight = excluded.weight`),
    staticServerDelete: q('DELETE FROM static_servers WHERE backend = ? AND name = ?'),

    mapNames: q('SELECT name FROM maps ORDER BY name'),
    mapExists: q('SELECT 1 FROM maps WHERE name = ?'),
    mapAdopt: q(`INSERT INTO maps (name, next_position) VALUES (?, ?)
      ON CONFLICT (name) DO UPDATE SET next_position = excluded.next_position`),
    mapNextPosition: q('UPDATE maps SET next_position = next_position + 1 WHERE name = ? RETURNING next_position - 1'),
    mapForget: q('DELETE FROM maps WHERE name = ?'),
    mapEntries: q('SELECT key, value FROM map_entries WHERE map = ? ORDER BY position'),
    mapEntry: q('SELECT value FROM map_entries WHERE map = ? AND key = ?'),
    allMapEntries: q('SELECT map, key, value FROM map_entries ORDER BY map, position'),
    mapEntriesClear: q('DELETE FROM map_entries WHERE map = ?'),
    mapEntryInsert: q('INSERT INTO map_entries (map, position, key, value) VALUES (?, ?, ?, ?)'),
    // An existing key keeps its position (the upsert only changes the value); a new one goes last.
    mapEntrySet: q(`INSERT INTO map_entries (map, position, key, value) VALUES (?, ?, ?, ?)
      ON CONFLICT (map, key) DO UPDATE SET value = excluded.value`),
    mapEntryDelete: q('DELETE FROM map_entries WHERE map = ? AND key = ?'),

    createdIn: q('SELECT backend, process_id FROM created_in ORDER BY backend'),
    createdInPut: q(`INSERT INTO created_in (backend, process_id) VALUES (?, ?)
      ON CONFLICT (backend) DO UPDATE SET process_id = excluded.process_id`),
    createdInDelete: q('DELETE FROM created_in WHERE backend = ?'),

    auditInsert: q(`INSERT INTO audit (at, actor, client, request_id, method, route, path, target_kind, target_id, commands,
      commands_omitted, outcome, status, code, revision, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    auditPruneAge: q('DELETE FROM audit WHERE at < ?'),
    // The oldest beyond the newest N, by id (append order); OFFSET N finds the newest one to delete.
    auditPruneCount: q('DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)'),
    auditPruneUnauthenticated: q('DELETE FROM audit WHERE status = 401 AND id <= (SELECT id FROM audit WHERE status = 401 ORDER BY id DESC LIMIT 1 OFFSET ?)')
  }
}

function checkFile (file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true })
  } catch (err) {
    throw new OpenProblem(`cannot create its folder (${(err as Error).message})`, 'create the folder, or set HAPCTL_STORE to a path hapctl can write')
  }
  let isFile: boolean
  try {
    isFile = statSync(file).isFile()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return // a new store
    throw new OpenProblem(`cannot read it (${(err as Error).message})`, 'fix the permissions of the file and its folder')
  }
  if (!isFile) throw new OpenProblem('it is not a file', 'set HAPCTL_STORE to the path of a file')
  try {
    // SQLite opens an unwritable file read-only without a word; the first commit would then fail.
    accessSync(file, constants.R_OK | constants.W_OK)
  } catch (err) {
    throw new OpenProblem(`cannot read and write it (${(err as Error).message})`, 'give hapctl read and write access to the file and its folder')
  }
}

function refuseNewer (version: number): void {
  if (version > SCHEMA_VERSION) {
    throw new OpenProblem(`it was written by a newer hapctl (schema version ${version}; this hapctl knows versions up to ${SCHEMA_VERSION})`,
      'run that newer hapctl, or set HAPCTL_STORE to another file')
  }
}

/** Refuses a file from a newer hapctl or from another application (reads only). */
function checkOwner (db: Sql): void {
  const version = db.pragma('user_version', { simple: true }) as number
  refuseNewer(version)
  const applicationId = db.pragma('application_id', { simple: true }) as number
  const tables = db.prepare("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").pluck().get() as number
  if (applicationId !== APPLICATION_ID && (applicationId !== 0 || version !== 0 || tables > 0)) {
    throw new OpenProblem('it is an SQLite database of another application, not a hapctl store', 'set HAPCTL_STORE to another file')
  }
}

function migrate (db: Sql): void {
  if (db.pragma('user_version', { simple: true }) === SCHEMA_VERSION) return
  db.transaction(() => {
    // Read again under the write lock: another process may have migrated the file meanwhile.
    const from = db.pragma('user_version', { simple: true }) as number
    refuseNewer(from)
    for (let v = from; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v] as string)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
    db.pragma(`application_id = ${APPLICATION_ID}`)
  }).immediate()
}

function openError (file: string, err: unknown): Error {
  let problem: string
  let todo: string
  if (err instanceof OpenProblem) {
    problem = err.message
    todo = err.todo
  } else {
    const code = (err as { code?: unknown }).code
    const message = (err as Error).message
    if (code === 'SQLITE_NOTADB') {
      problem = 'it is not an SQLite database'
      todo = 'set HAPCTL_STORE to another file, or move this one away if it is a damaged hapctl store'
    } else if (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT')) {
      problem = `it is corrupt (${message})`
      todo = START_AFRESH
    } else if (code === 'SQLITE_BUSY') {
      problem = `another process holds it locked (${message})`
      todo = 'stop that process, or set HAPCTL_STORE to another file'
    } else {
      problem = `${message}${typeof code === 'string' ? ` (${code})` : ''}`
      todo = 'check that the file and its folder are readable and writable by hapctl'
    }
  }
  return new Error(`cannot open the hapctl store ${file}: ${problem}; ${todo}`, { cause: err })
}

const bit = (value: boolean | null): number | null => value === null ? null : value ? 1 : 0
const bool = (value: number | null): boolean | null => value === null ? null : value === 1

function backendOf (row: BackendRow): DesiredBackend {
  return { name: row.name, from: row.from, mode: row.mode as ProxyMode | null, published: row.published === 1 }
}

function serverOf (row: ServerRow): DesiredServer {
  return {
    backend: row.backend,
    name: row.name,
    spec: JSON.parse(row.spec) as ServerSpec,
    adminState: row.admin_state as ServerAdminState,
    weight: row.weight,
    healthChecks: bool(row.health_checks),
    agentChecks: bool(row.agent_checks)
  }
}

function staticServerOf (row: StaticServerRow): StaticServerSettings {
  return { backend: row.backend, name: row.name, adminState: row.admin_state as ServerAdminState | null, weight: row.weight }
}

function auditEntryOf (row: AuditRow): AuditEntry {
  return {
    id: row.id,
    at: row.at,
    actor: row.actor,
    client: row.client,
    requestId: row.request_id,
    method: row.method,
    route: row.route,
    path: row.path,
    target: row.target_kind === null || row.target_id === null ? null : { kind: row.target_kind, id: row.target_id },
    commands: JSON.parse(row.commands) as AuditEntry['commands'],
    commandsOmitted: row.commands_omitted,
    outcome: row.outcome as AuditEntry['outcome'],
    status: row.status,
    code: row.code,
    revision: row.revision,
    durationMs: row.duration_ms
  }
}
