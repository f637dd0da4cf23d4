/**
 * The desired state in memory: for fast tests, and for HAPCTL_STORE=memory, which loses everything
 * when hapctl stops. Same semantics as the SQLite store (the contract tests run against both).
 *
 * A commit works on copies of what it touches and swaps them in at the end, so a change that throws
 * halfway leaves nothing behind. A map is a JS Map, whose iteration order is insertion order: setting
 * an existing key keeps its place, a new key goes last, exactly the store's ordering rule.
 */
import type {
  AuditEntry, AuditPage, AuditPruneLimits, AuditQuery, AuditRecord, CommitMeta, DesiredBackend, DesiredChange, DesiredMap, DesiredServer, DesiredState, DesiredStateStore,
  RevisionRecord, StaticServerSettings
} from './types.ts'
import { checkAuditQuery, checkAuditRecords, checkPruneLimits, newestFirst, pageOf } from './audit.ts'
import { checkChangesSince, checkMeta, duplicateKey, normalizeSpec, recordChange, unknownChange, unmanagedMap } from './changes.ts'

const key = (backend: string, name: string): string => JSON.stringify([backend, name])

type Tables = {
  backends: Map<string, DesiredBackend>
  servers: Map<string, DesiredServer>
  staticServers: Map<string, StaticServerSettings>
  maps: Map<string, Map<string, string>>
}

export class MemoryStore implements DesiredStateStore {
  readonly description = 'memory'
  #tables: Tables = { backends: new Map(), servers: new Map(), staticServers: new Map(), maps: new Map() }
  readonly #revisions: RevisionRecord[] = []
  readonly #createdIn = new Map<string, string>()
  /** Oldest first, in append order. */
  #audit: AuditEntry[] = []
  #auditId = 0
  #closed = false

  async revision (): Promise<number> {
    this.#open()
    return this.#revisions.at(-1)?.revision ?? 0
  }

  async load (): Promise<DesiredState> {
    this.#open()
    const t = this.#tables
    return {
      revision: this.#revisions.at(-1)?.revision ?? 0,
      backends: [...t.backends.values()].sort((a, b) => compare(a.name, b.name)),
      servers: [...t.servers.values()].sort((a, b) => compare(a.backend, b.backend) || compare(a.name, b.name)),
      staticServers: [...t.staticServers.values()].sort((a, b) => compare(a.backend, b.backend) || compare(a.name, b.name)),
      maps: [...t.maps.keys()].sort(compare).map(name => this.#map(name) as DesiredMap)
    }
  }

  async getBackend (name: string): Promise<DesiredBackend | undefined> {
    this.#open()
    return this.#tables.backends.get(name)
  }

  async listBackends (): Promise<DesiredBackend[]> {
    this.#open()
    return [...this.#tables.backends.values()].sort((a, b) => compare(a.name, b.name))
  }

  async getServers (backend: string): Promise<DesiredServer[]> {
    this.#open()
    return [...this.#tables.servers.values()].filter(s => s.backend === backend).sort((a, b) => compare(a.name, b.name))
  }

  async getServer (backend: string, name: string): Promise<DesiredServer | undefined> {
    this.#open()
    return this.#tables.servers.get(key(backend, name))
  }

  async getStaticServer (backend: string, name: string): Promise<StaticServerSettings | undefined> {
    this.#open()
    return this.#tables.staticServers.get(key(backend, name))
  }

  async getMap (name: string): Promise<DesiredMap | undefined> {
    this.#open()
    return this.#map(name)
  }

  async managedMaps (): Promise<string[]> {
    this.#open()
    return [...this.#tables.maps.keys()].sort(compare)
  }

  async getMapEntry (name: string, key: string): Promise<{ managed: false } | { managed: true, value: string | undefined }> {
    this.#open()
    const map = this.#tables.maps.get(name)
    return map === undefined ? { managed: false } : { managed: true, value: map.get(key) }
  }

  async commit (changes: readonly DesiredChange[], meta: CommitMeta): Promise<number> {
    this.#open()
    checkMeta(meta)
    const old = this.#tables
    // Shallow copies of the small tables. A map entry set is written in place, with what undoes it kept
    // until the commit succeeds (Map.set keeps an existing key's position, and deleting a new key puts
    // the order back): copying a 100,000-entry map for every entry written made each write cost as
    // much as the map's size. A delete copies the map first (undoing it could not put the key back in
    // its place). Readers get copies, never the live Map.
    const next: Tables = { backends: new Map(old.backends), servers: new Map(old.servers), staticServers: new Map(old.staticServers), maps: new Map(old.maps) }
    const undo: Array<() => void> = []
    const copied = new Set<string>()
    const writableMap = (op: string, name: string, copy: boolean): Map<string, string> => {
      const entries = next.maps.get(name)
      if (entries === undefined) throw unmanagedMap(op, name)
      if (!copy || copied.has(name)) return entries
      const fresh = new Map(entries)
      next.maps.set(name, fresh)
      copied.add(name)
      return fresh
    }
    const setEntry = (entries: Map<string, string>, key: string, value: string): void => {
      const had = entries.has(key)
      const before = entries.get(key)
      undo.push(() => { if (had) entries.set(key, before as string); else entries.delete(key) })
      entries.set(key, value)
    }
    try {
      for (const change of changes) {
        switch (change.op) {
          case 'backend.put': {
            const { name, from, mode, published } = change.backend
            next.backends.set(name, Object.freeze({ name, from, mode, published }))
            break
          }
          case 'backend.delete':
            next.backends.delete(change.name)
            for (const [k, s] of next.servers) if (s.backend === change.name) next.servers.delete(k)
            break
          case 'server.put': {
            const { backend, name, spec, adminState, weight, healthChecks, agentChecks } = change.server
            next.servers.set(key(backend, name), Object.freeze({
              backend, name, spec: Object.freeze(normalizeSpec(spec)), adminState, weight, healthChecks, agentChecks
            }))
            break
          }
          case 'server.delete':
            next.servers.delete(key(change.backend, change.name))
            break
          case 'staticServer.put': {
            const { backend, name, adminState, weight } = change.settings
            next.staticServers.set(key(backend, name), Object.freeze({ backend, name, adminState, weight }))
            break
          }
          case 'staticServer.delete':
            next.staticServers.delete(key(change.backend, change.name))
            break
          case 'map.replace': {
            const entries = new Map<string, string>()
            for (const e of change.entries) {
              if (entries.has(e.key)) throw duplicateKey(change.name, e.key)
              entries.set(e.key, e.value)
            }
            next.maps.set(change.name, entries)
            copied.add(change.name)
            break
          }
          case 'map.set':
            setEntry(writableMap('map.set', change.name, false), change.key, change.value)
            break
          case 'map.delete':
            writableMap('map.delete', change.name, true).delete(change.key)
            break
          case 'map.forget':
            next.maps.delete(change.name)
            copied.delete(change.name)
            break
          default:
            throw unknownChange(change)
        }
      }
    } catch (err) {
      for (const u of undo.reverse()) u()
      throw err
    }
    const revision = (this.#revisions.at(-1)?.revision ?? 0) + 1
    this.#revisions.push(Object.freeze({
      revision,
      at: new Date().toISOString(),
      actor: meta.actor,
      action: meta.action,
      target: Object.freeze({ kind: meta.target.kind, id: meta.target.id }),
      requestId: meta.requestId,
      // Through JSON, as the SQLite store keeps them, so that both give back the same records.
      changes: Object.freeze(JSON.parse(JSON.stringify(changes.map(recordChange))) as unknown[])
    }))
    this.#tables = next
    return revision
  }

  async changesSince (revision: number, limit: number): Promise<RevisionRecord[]> {
    this.#open()
    checkChangesSince(revision, limit)
    // Revisions are 1, 2, 3…: the one after `revision` is at index `revision`.
    return this.#revisions.slice(revision, revision + limit)
  }

  async setCreatedIn (backend: string, processId: string | undefined): Promise<void> {
    this.#open()
    if (processId === undefined) this.#createdIn.delete(backend)
    else this.#createdIn.set(backend, processId)
  }

  async createdIn (): Promise<Map<string, string>> {
    this.#open()
    return new Map(this.#createdIn)
  }

  async appendAudit (entries: readonly AuditRecord[]): Promise<void> {
    this.#open()
    checkAuditRecords(entries)
    // Through JSON, as the SQLite store keeps them, so that both give back the same entries.
    const copies = entries.map(e => Object.freeze({ ...JSON.parse(JSON.stringify(e)) as AuditRecord, id: ++this.#auditId }))
    this.#audit.push(...copies)
  }

  async listAudit (query: AuditQuery): Promise<AuditPage> {
    this.#open()
    const q = checkAuditQuery(query)
    const matching = this.#audit.filter(e =>
      (q.target === undefined || (e.target?.kind === q.target.kind && e.target.id === q.target.id)) &&
      (q.since === undefined || e.at >= q.since) &&
      (q.until === undefined || e.at < q.until) &&
      (q.after === undefined || newestFirst(q.after, e) < 0)
    ).sort(newestFirst)
    return pageOf(matching, q.limit)
  }

  async pruneAudit (limits: AuditPruneLimits): Promise<number> {
    this.#open()
    checkPruneLimits(limits)
    const before = this.#audit.length
    const olderThan = limits.olderThan.toISOString()
    let kept = this.#audit.filter(e => e.at >= olderThan)
    if (limits.maxUnauthenticated !== undefined) {
      // Appended in id order: the last maxUnauthenticated 401s are the ones kept.
      const unauthenticated = kept.filter(e => e.status === 401)
      const drop = new Set(unauthenticated.slice(0, Math.max(0, unauthenticated.length - limits.maxUnauthenticated)))
      kept = kept.filter(e => !drop.has(e))
    }
    this.#audit = kept.slice(Math.max(0, kept.length - limits.maxEntries))
    return before - this.#audit.length
  }

  async close (): Promise<void> {
    this.#closed = true
  }

  #map (name: string): DesiredMap | undefined {
    const entries = this.#tables.maps.get(name)
    if (entries === undefined) return undefined
    return { name, entries: [...entries].map(([key, value]) => ({ key, value })) }
  }

  #open (): void {
    if (this.#closed) throw new Error('the memory store is closed')
  }
}

/** UTF-8 byte order, as SQLite's default BINARY collation sorts, so both stores list in one order. */
function compare (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}
