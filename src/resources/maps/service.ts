/**
 * Maps: reads straight from HAProxy (the live truth), and planners for writes, which the executor runs
 * under the lock `map:<name>` (map versions are global per map, so every writer of one map is
 * serialized; hapctl cannot stop other CLI users):
 * - single entries: `add map`, `set map`, `del map` (management §9.3);
 * - the whole content: the versioned load (../pattern-refs/versioned-load.ts), which lookups see
 *   switch atomically.
 *
 * Desired state: a map becomes managed (the store keeps its whole content, and the reconciler puts it
 * back after every reload or restart) the first time it is written through hapctl. A single-entry write
 * to a map not yet managed adopts it in the same commit: its current content, read under the lock,
 * then the change.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { MapEntry } from '../../runtime/commands/index.ts'
import { exactKeyFromLookup } from '../../runtime/commands/index.ts'
import { checkMapName } from '../../runtime/validation.ts'
import type { Executor } from '../../engine/executor.ts'
import type { Step } from '../../engine/plan.ts'
import { commandStep } from '../../engine/plan.ts'
import { OperationError, toOperationError } from '../../engine/outcomes.ts'
import type { DesiredChange } from '../../engine/store/types.ts'
import { MAP_REFERENCES, loadContentStep, mapNotFound, readContent, readReference, unknownReference } from '../pattern-refs/versioned-load.ts'
import type { MapChange } from './content.ts'
import {
  EtagDigest, assertWritable, checkChanges, checkContent, checkIfMatch, firstOfEachKey, mapEtag, patched, unwritableEntries
} from './content.ts'
import type { EntryPage } from './pagination.ts'
import { decodeCursor, pageVisitor } from './pagination.ts'

export type { MapEntry }
export type { MapChange } from './content.ts'
export type { EntryPage } from './pagination.ts'
export { ifMatchSatisfied, mapEtag, parseMapFile } from './content.ts'

/** Which lock a write holds: its entry's (sharing the map's with other entries), or the map's alone. */
type MapLock = 'entry' | 'map'

/** Thrown by a planner under an entry's lock that finds it needs the map's lock alone; #write retries. */
class NeedsMapLock extends Error {}

export type MapSummary = {
  name: string
  id: number
  kind: 'virtual' | 'file'
  /** Counted from `show map <map>`; null when the name cannot be addressed safely. */
  entries: number | null
  currentVersion: number | null
  nextVersion: number | null
  description: string
  /** Whether hapctl keeps the map's content (it was written through hapctl). */
  managed: boolean
}

export type ReplaceResult = { entries: number, etag: string }

/** How commands address a map (what the client gave: a name or `#<id>`), and its name (lock, target, store). */
type MapRef = { readonly address: string, readonly name: string }

/** Upper bound of `del map` calls for one key (each removes one duplicate). */
const MAX_DUPLICATES = 10_000

function entryNotFound (map: string, key: string): OperationError {
  return new OperationError('MAP_ENTRY_NOT_FOUND', `map '${map}' has no entry with key '${key}'`)
}

/** `Unknown map identifier` from any map command is the map's 404. */
function explainUnknownMap (map: string): (err: OperationError) => OperationError | undefined {
  return err => unknownReference(MAP_REFERENCES, map, err)
}

/** What the plan of one write gives back to run: its steps, its desired-state change, and the reply. */
type Planned<T> = { steps: Step[], changes: DesiredChange[], result: () => T }

export class MapService {
  readonly #runtime: Runtime
  readonly #executor: Executor

  constructor (deps: { runtime: Runtime, executor: Executor }) {
    this.#runtime = deps.runtime
    this.#executor = deps.executor
  }

  /**
   * Every map. Entry counts come from one `show map <map>` per map, on one connection (a line count,
   * cheap: 100k entries are ~3 MB that HAProxy writes in ~10 ms); `entry_cnt` is not used because it
   * counts pending versions too and is wrong for a map used by two converters.
   */
  async list (): Promise<MapSummary[]> {
    let maps
    const counts = new Map<string, number>()
    try {
      [maps] = await this.#runtime.execute([cmd.showMaps()])
      const addressable = maps.filter(m => { try { checkMapName(m.name); return true } catch { return false } })
      if (addressable.length > 0) {
        const found = await this.#runtime.execute(addressable.map(m => cmd.countMapEntries(m.name)))
        addressable.forEach((m, i) => counts.set(m.name, found[i] as number))
      }
    } catch (err) {
      throw toOperationError(err)
    }
    let managed: Set<string>
    try {
      managed = new Set(await this.#executor.store.managedMaps())
    } catch (err) {
      throw new OperationError('STORE_UNAVAILABLE', `the desired-state store could not be read (${(err as Error).message})`, { cause: err })
    }
    return maps.map(m => ({
      name: m.name,
      id: m.id,
      kind: m.name.startsWith('virt@') ? 'virtual' : 'file',
      entries: counts.get(m.name) ?? null,
      currentVersion: m.currentVersion,
      nextVersion: m.nextVersion,
      description: m.description,
      managed: managed.has(m.name)
    }))
  }

  /** The current entries in HAProxy's order, and their ETag. */
  async read (map: string): Promise<{ entries: MapEntry[], etag: string }> {
    checkMapName(map)
    const entries = await readContent(this.#runtime, map)
    return { entries, etag: mapEtag(entries) }
  }

  /**
   * One page of entries, optionally only keys starting with `prefix` (./pagination.ts), cut from the
   * dump as it arrives: only the page and the ETag's digest are kept.
   */
  async page (map: string, opts: { limit: number, cursor?: string | undefined, prefix?: string | undefined }): Promise<EntryPage> {
    checkMapName(map)
    const cursor = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor)
    const page = await readReference(this.#runtime, MAP_REFERENCES, map,
      cmd.scanMapEntries(map, () => pageVisitor({ limit: opts.limit, cursor, prefix: opts.prefix })))
    if ('stale' in page) throw new OperationError('CURSOR_STALE', `map '${map}' changed so much since the previous page that it cannot be resumed; start again without cursor`)
    return page
  }

  /** The entry whose key is exactly `key` (the oldest, which lookups use, if there are duplicates). */
  async get (map: string, key: string): Promise<{ entry: MapEntry, etag: string }> {
    checkMapName(map)
    const { entry, etag } = await readReference(this.#runtime, MAP_REFERENCES, map, cmd.scanMapEntries(map, () => {
      const digest = new EtagDigest()
      let found: MapEntry | undefined
      return {
        entry: (k, value) => {
          digest.add(k, value)
          if (found === undefined && k === key) found = { key: k, value }
        },
        end: () => ({ entry: found, etag: digest.digest() })
      }
    }))
    if (entry === undefined) throw entryNotFound(map, key)
    return { entry, etag }
  }

  /** `add map`; MAP_ENTRY_EXISTS when the key exists (`add map` never de-duplicates). */
  async create (map: string, entry: MapEntry, ifMatch?: string): Promise<MapEntry> {
    const ref = await this.#resolve(map)
    return this.#write(ref, 'create', async (lock) => {
      const { managed } = await this.#kept(ref.name, entry.key, lock)
      // On a managed map without If-Match, one `get map` usually settles whether the key exists;
      // reading the whole map (megabytes for 100k entries) is the fallback, and what an ETag check
      // and an adoption need anyway.
      let exists = ifMatch === undefined && managed
        ? exactKeyFromLookup(await this.#read(ref, cmd.getMapLookup(ref.address, entry.key)), entry.key)
        : undefined
      let current: MapEntry[] | undefined
      if (exists === undefined) {
        current = await readContent(this.#runtime, ref.address)
        checkIfMatch(ref.address, ifMatch, current)
        exists = current.some(e => e.key === entry.key)
      }
      if (exists) {
        throw new OperationError('MAP_ENTRY_EXISTS', `map '${ref.address}' already has an entry with key '${entry.key}'; use PUT to change its value`)
      }
      return {
        steps: [commandStep([cmd.addMapEntry(ref.address, entry.key, entry.value)], [cmd.delMapEntry(ref.address, entry.key)], { explain: explainUnknownMap(ref.address) })],
        changes: [...this.#adoption(ref, managed, current), { op: 'map.set', name: ref.name, key: entry.key, value: entry.value }],
        result: () => entry
      }
    }, { key: entry.key, ifMatch })
  }

  /** `set map`, or `add map` when HAProxy answers `entry not found.` (`set map` never inserts). */
  async put (map: string, entry: MapEntry, ifMatch?: string): Promise<'created' | 'updated'> {
    const ref = await this.#resolve(map)
    return this.#write(ref, 'update', async (lock) => {
      const kept = await this.#kept(ref.name, entry.key, lock)
      const current = ifMatch !== undefined || !kept.managed ? await readContent(this.#runtime, ref.address) : undefined
      if (current !== undefined) checkIfMatch(ref.address, ifMatch, current)
      const changes = [...this.#adoption(ref, kept.managed, current), { op: 'map.set', name: ref.name, key: entry.key, value: entry.value } as const]
      // What undoing puts back: the value HAProxy had, or the one the store keeps.
      const before = current !== undefined ? current.find(e => e.key === entry.key)?.value : kept.managed ? kept.value : undefined
      let outcome: 'created' | 'updated' = 'updated'
      const step: Step = {
        label: 'set map (add map if absent)',
        apply: async ({ runtime }) => {
          const [found] = await runtime.execute([cmd.setMapEntryIfPresent(ref.address, entry.key, entry.value)])
          if (found) {
            outcome = 'updated'
            return
          }
          await runtime.execute([cmd.addMapEntry(ref.address, entry.key, entry.value)])
          outcome = 'created'
        },
        undo: async ({ runtime }) => {
          if (outcome === 'created') await runtime.execute([cmd.delMapEntry(ref.address, entry.key)])
          else if (before !== undefined) await runtime.execute([cmd.setMapEntry(ref.address, entry.key, before)])
          else throw new Error(`the value key '${entry.key}' had before is not known`)
        },
        explain: explainUnknownMap(ref.address)
      }
      return { steps: [step], changes, result: () => outcome }
    }, { key: entry.key, ifMatch })
  }

  /**
   * Deletes every entry with the key: `del map` removes one duplicate per call. A key the store keeps
   * but HAProxy lacks (a reload not yet reconciled) is deleted from the store alone.
   */
  async delete (map: string, key: string, ifMatch?: string): Promise<void> {
    const ref = await this.#resolve(map)
    return this.#write(ref, 'delete', async (lock) => {
      const entry = await this.#kept(ref.name, key, lock)
      const current = ifMatch !== undefined || !entry.managed ? await readContent(this.#runtime, ref.address) : undefined
      if (current !== undefined) checkIfMatch(ref.address, ifMatch, current)
      const kept = entry.managed && entry.value !== undefined ? { key, value: entry.value } : undefined
      if (current !== undefined && kept === undefined && !current.some(e => e.key === key)) throw entryNotFound(ref.address, key)
      // What undoing adds back, one per deleted entry.
      const values = current !== undefined ? current.filter(e => e.key === key).map(e => e.value) : kept !== undefined ? [kept.value] : []
      let deleted = 0
      const step: Step = {
        label: 'del map',
        apply: async ({ runtime }) => {
          for (deleted = 0; deleted <= MAX_DUPLICATES; deleted++) {
            const [gone] = await runtime.execute([cmd.delMapEntry(ref.address, key)])
            if (gone) continue
            if (deleted === 0 && kept === undefined) throw entryNotFound(ref.address, key)
            return
          }
          throw new OperationError('RUNTIME_PROTOCOL', `'del map' kept deleting entries with key '${key}' after ${MAX_DUPLICATES} calls`)
        },
        undo: async ({ runtime }) => {
          if (deleted === 0) return
          if (values.length === 0) throw new Error(`the value key '${key}' had is not known`)
          const adds = Array.from({ length: deleted }, (_, i) => cmd.addMapEntry(ref.address, key, values[Math.min(i, values.length - 1)] as string))
          await runtime.execute(adds)
        },
        explain: explainUnknownMap(ref.address)
      }
      return {
        steps: [step],
        changes: [...this.#adoption(ref, entry.managed, current), { op: 'map.delete', name: ref.name, key }],
        result: () => undefined
      }
    }, { key, ifMatch })
  }

  /** Replaces the whole content atomically (the versioned load). */
  async replace (map: string, entries: MapEntry[], ifMatch?: string): Promise<ReplaceResult> {
    checkMapName(map)
    checkContent(entries)
    const ref = await this.#resolve(map)
    return this.#write(ref, 'replace', async () => {
      // Read for If-Match, and for what undoing loads back should the store refuse the change.
      const current = await readContent(this.#runtime, ref.address)
      checkIfMatch(ref.address, ifMatch, current)
      return {
        steps: [loadContentStep(ref.address, entries, unwritableEntries(current).length === 0 ? current : undefined)],
        changes: [{ op: 'map.replace', name: ref.name, entries }],
        result: () => ({ entries: entries.length, etag: mapEtag(entries) })
      }
    })
  }

  /**
   * Applies sets and deletes together: the new content is the current one with the changes made
   * (./content.ts `patched`), loaded and committed like a replace, so lookups see all changes at once
   * or none.
   */
  async patch (map: string, changes: MapChange[], ifMatch?: string): Promise<ReplaceResult> {
    checkMapName(map)
    checkChanges(changes)
    const ref = await this.#resolve(map)
    return this.#write(ref, 'patch', async () => {
      const current = await readContent(this.#runtime, ref.address)
      checkIfMatch(ref.address, ifMatch, current)
      const next = patched(current, changes)
      // Entries written by other tools (a regex key with `\`, a `#` key…) could not be written back
      // exactly through a payload: refuse before preparing anything rather than mangle them.
      assertWritable(ref.address, next, 'change them with PUT /maps/{map}/entries or directly')
      return {
        steps: [loadContentStep(ref.address, next, unwritableEntries(current).length === 0 ? current : undefined)],
        changes: [{ op: 'map.replace', name: ref.name, entries: next }],
        result: () => ({ entries: next.length, etag: mapEtag(next) })
      }
    })
  }

  /**
   * Plans and runs one write under the map's lock, with the map's name as the target. A write to one
   * entry of a managed map, without If-Match, locks only its entry and shares the map's lock with
   * writes to other entries (they touch different keys in HAProxy and in the store); a whole-map
   * write, an If-Match (the whole content must stay as seen) and the first write to a map hapctl does
   * not keep yet (it adopts the whole content) take the map's lock alone.
   */
  async #write<T> (ref: MapRef, action: string, plan: (lock: MapLock) => Promise<Planned<T>>, entry?: { key: string, ifMatch: string | undefined }): Promise<T> {
    const target = { kind: 'map', id: ref.name }
    let result: (() => T) | undefined
    const run = (lock: MapLock): Promise<T> => this.#executor.perform({
      target,
      ...(lock === 'entry' ? { lock: `map entry:${ref.name} ${entry?.key ?? ''}`, sharedLock: `map:${ref.name}` } : { lock: `map:${ref.name}` })
    }, async () => {
      const planned = await plan(lock)
      result = planned.result
      return { target, action, steps: planned.steps, changes: planned.changes }
    }, async () => (result as () => T)())
    if (entry === undefined || entry.ifMatch !== undefined) return await run('map')
    try {
      return await run('entry')
    } catch (err) {
      if (!(err instanceof OperationError && err.cause instanceof NeedsMapLock)) throw err
      return await run('map')
    }
  }

  /**
   * The change that makes a map managed, when it is not yet: its current content, with only the first
   * entry of each key (the one lookups use; the store keeps one value per key). A content hapctl could
   * not write back is refused: the reconciler could not put it back after a reload.
   */
  #adoption (ref: MapRef, managed: boolean, current: MapEntry[] | undefined): DesiredChange[] {
    if (managed) return []
    if (current === undefined) throw new Error('adopting a map needs its current content')
    const content = firstOfEachKey(current)
    assertWritable(ref.address, content,
      'hapctl keeps the whole content of a map it writes to and could not put these back after a reload: replace the whole content (PUT /maps/{map}/entries) or change those entries directly')
    return [{ op: 'map.replace', name: ref.name, entries: content }]
  }

  /**
   * Whether the store keeps the map, and the value it keeps for `key` (one row read, not the whole map).
   * Under an entry's lock, a map not kept yet needs the map's lock (see #write): nothing was sent yet.
   */
  async #kept (name: string, key: string, lock: MapLock): Promise<{ managed: false } | { managed: true, value: string | undefined }> {
    let kept
    try {
      kept = await this.#executor.store.getMapEntry(name, key)
    } catch (err) {
      throw new OperationError('STORE_UNAVAILABLE', `the desired-state store could not be read (${(err as Error).message}); nothing was changed`, { cause: err })
    }
    if (!kept.managed && lock === 'entry') throw new NeedsMapLock()
    return kept
  }

  /** `#<id>` and the name are the same map: lock, target and store use the name, so both forms serialize. */
  async #resolve (map: string): Promise<MapRef> {
    checkMapName(map)
    if (!map.startsWith('#')) return { address: map, name: map }
    let maps
    try {
      [maps] = await this.#runtime.execute([cmd.showMaps()])
    } catch (err) {
      throw toOperationError(err)
    }
    const found = maps.find(m => `#${m.id}` === map)
    if (found === undefined) throw mapNotFound(map)
    // Commands then address it by name: a reload may renumber the maps, and `#<id>` would then name
    // another map than the one the store records (a name that cannot be sent keeps the id).
    let addressable = true
    try { checkMapName(found.name) } catch { addressable = false }
    return { address: addressable ? found.name : map, name: found.name }
  }

  /** One read command, with `Unknown map identifier` as the map's 404. */
  async #read<T> (ref: MapRef, command: cmd.Command<T>): Promise<T> {
    return await readReference(this.#runtime, MAP_REFERENCES, ref.address, command)
  }
}
