/**
 * Maps: entries of HAProxy maps, one at a time (`add/set/del map`) or replaced as a whole through a
 * prepared version (`prepare map` → `add map @N <map> <<` payloads → count → `commit map @N`), which
 * lookups see switch atomically (runtime-notes 5.8). Map versions are global per map, so every writer
 * of a map runs under the KeyedLock key `map:<name>` (pitfall 10); hapctl cannot stop other CLI users.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import { createHash } from 'node:crypto'
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import type { MapEntry } from '../runtime/commands/index.ts'
import { exactKeyFromLookup } from '../runtime/commands/index.ts'
import { RuntimeArgumentError, RuntimeCommandError } from '../runtime/errors.ts'
import { checkMapKey, checkMapName, checkMapValue, mapKeyProblem, mapValueProblem } from '../runtime/validation.ts'
import { ApiError, asApiError, rejectionOf } from '../errors.ts'
import type { KeyedLock } from './locks.ts'

export type { MapEntry }

export type MapSummary = {
  name: string
  id: number
  kind: 'virtual' | 'file'
  /** Counted from `show map <map>`; null when the name cannot be addressed safely. */
  entries: number | null
  currentVersion: number | null
  nextVersion: number | null
  description: string
}

export type EntryPage = { items: MapEntry[], next?: string, etag: string }
export type ReplaceResult = { entries: number, etag: string }
export type MapChange = { key: string, value: string } | { key: string, delete: true }

/** Most problems listed in one 400 answer; a 100k-line file full of mistakes would otherwise answer megabytes. */
const MAX_REPORTED_ERRORS = 20
/** Upper bound of `del map` calls for one key (each removes one duplicate, runtime-notes 5.6). */
const MAX_DUPLICATES = 10_000

/** A strong entity tag over the map's keys and values in HAProxy's order (not the `0x…` ids, which are addresses). */
export function mapEtag (entries: readonly MapEntry[]): string {
  const hash = createHash('sha256')
  for (const e of entries) hash.update(e.key).update('\0').update(e.value).update('\0')
  return `"${hash.digest('base64url').slice(0, 27)}"`
}

/** RFC 9110 §13.1.1: `*` or a list of strong tags; weak tags never match. */
export function ifMatchSatisfied (header: string, etag: string): boolean {
  const tags = header.split(',').map(t => t.trim()).filter(t => t.length > 0)
  return tags.includes('*') || tags.includes(etag)
}

/**
 * A map file as HAProxy reads one: per line, leading blanks skipped, empty lines and `#` comments
 * ignored, the key up to the first blank, the value the rest of the line after the blanks between
 * (CR of CRLF dropped). Entries HAProxy could not store exactly are refused, with their line numbers.
 */
export function parseMapFile (text: string): MapEntry[] {
  const entries: MapEntry[] = []
  const errors: Array<{ field: string, message: string }> = []
  let errorCount = 0
  const fail = (n: number, message: string): void => {
    errorCount++
    if (errors.length < MAX_REPORTED_ERRORS) errors.push({ field: `body.line${n}`, message })
  }
  const lines = text.split('\n')
  lines.forEach((raw, i) => {
    const n = i + 1
    const l = (raw.endsWith('\r') ? raw.slice(0, -1) : raw).replace(/^[ \t]+/, '')
    if (l === '' || l.startsWith('#')) return
    const m = /^([^ \t]+)[ \t]+(.*)$/s.exec(l)
    if (m === null) { fail(n, 'a line is `<key> <value>`; this one has no value'); return }
    const entry = { key: m[1] as string, value: m[2] as string }
    const keyProblem = mapKeyProblem(entry.key)
    const valueProblem = mapValueProblem(entry.value)
    if (keyProblem !== undefined) fail(n, `key ${keyProblem}`)
    else if (valueProblem !== undefined) fail(n, `value ${valueProblem}`)
    else entries.push(entry)
  })
  if (errorCount > 0) {
    throw new ApiError(400, 'HAPX_VALIDATION_FAILED',
      `the map file has ${errorCount} invalid line(s): ${errors.slice(0, 3).map(e => `${e.field}: ${e.message}`).join('; ')}`, { errors })
  }
  return entries
}

function mapNotFound (map: string, r?: RuntimeCommandError): ApiError {
  return new ApiError(404, 'HAPX_MAP_NOT_FOUND',
    `HAProxy has no map '${map}' (maps cannot be created at runtime: a virt@ map must appear in the configuration; address a file map by its path as written there)`,
    r === undefined ? {} : { haproxyMessage: r.haproxyMessage, command: r.verb })
}

function entryNotFound (map: string, key: string): ApiError {
  return new ApiError(404, 'HAPX_MAP_ENTRY_NOT_FOUND', `map '${map}' has no entry with key '${key}'`)
}

const isUnknownMap = (r: RuntimeCommandError | undefined): boolean => r !== undefined && /^Unknown map identifier/.test(r.haproxyMessage)

function preconditionFailed (map: string): ApiError {
  return new ApiError(412, 'HAPX_PRECONDITION_FAILED', `map '${map}' changed since the ETag given in If-Match; read it again and retry`)
}

/** Rejects duplicate keys: a map written through hapctl has at most one entry per key. */
function assertUniqueKeys (entries: readonly MapEntry[], field: string): void {
  const seen = new Set<string>()
  const dups: string[] = []
  for (const e of entries) {
    if (seen.has(e.key)) dups.push(e.key)
    seen.add(e.key)
  }
  if (dups.length > 0) {
    const shown = [...new Set(dups)].slice(0, MAX_REPORTED_ERRORS)
    throw new ApiError(400, 'HAPX_DUPLICATE_KEYS', `${field} gives ${dups.length} duplicate key(s): ${shown.join(', ')}`,
      { errors: shown.map(k => ({ field, message: `duplicate key '${k}'` })) })
  }
}

/** Refuses, before anything is sent, what HAProxy could not store exactly. */
function checkEntries (entries: readonly MapEntry[]): void {
  entries.forEach((e, i) => {
    try {
      checkMapKey(e.key)
      checkMapValue(e.value)
    } catch (err) {
      if (err instanceof RuntimeArgumentError) {
        throw new ApiError(400, 'HAPX_VALIDATION_FAILED', `body.${i}.${err.field}: ${err.message}`, { errors: [{ field: `body.${i}.${err.field}`, message: err.message }] })
      }
      throw err
    }
  })
}

type Cursor = { i: number, k: string }

function encodeCursor (c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url')
}

function decodeCursor (s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor>
    if (Number.isInteger(c.i) && (c.i as number) >= 0 && typeof c.k === 'string') return c as Cursor
  } catch { /* below */ }
  throw new ApiError(400, 'HAPX_INVALID_CURSOR', 'cursor is not one this API handed out; start again without it')
}

export class MapService {
  readonly #runtime: Runtime
  readonly #locks: KeyedLock

  constructor (deps: { runtime: Runtime, locks: KeyedLock }) {
    this.#runtime = deps.runtime
    this.#locks = deps.locks
  }

  /**
   * Every map. Entry counts come from one `show map <map>` per map, on one connection (a line count,
   * cheap: 100k entries are ~3 MB that HAProxy writes in ~10 ms); `entry_cnt` is not used because it
   * counts pending versions too and is wrong for a map used by two converters (runtime-notes 5.1).
   */
  async list (): Promise<MapSummary[]> {
    try {
      const [maps] = await this.#runtime.execute([cmd.showMaps()])
      const addressable = maps.filter(m => { try { checkMapName(m.name); return true } catch { return false } })
      const counts = addressable.length === 0 ? [] : await this.#runtime.execute(addressable.map(m => cmd.countMapEntries(m.name)))
      const countOf = new Map(addressable.map((m, i) => [m.name, counts[i] as number]))
      return maps.map(m => ({
        name: m.name,
        id: m.id,
        kind: m.name.startsWith('virt@') ? 'virtual' : 'file',
        entries: countOf.get(m.name) ?? null,
        currentVersion: m.currentVersion,
        nextVersion: m.nextVersion,
        description: m.description
      }))
    } catch (err) {
      throw asApiError(err)
    }
  }

  /** The current entries in HAProxy's order, and their ETag. */
  async read (map: string): Promise<{ entries: MapEntry[], etag: string }> {
    checkMapName(map)
    try {
      const [entries] = await this.#runtime.execute([cmd.showMapEntries(map)])
      return { entries, etag: mapEtag(entries) }
    } catch (err) {
      const r = rejectionOf(err)
      if (r?.kind === 'not_found') throw mapNotFound(map, r)
      throw asApiError(err)
    }
  }

  /**
   * One page of entries, optionally only keys starting with `prefix`. The cursor remembers the
   * position and the last key returned; if that key is no longer there, the map changed too much to
   * resume and the answer is 409.
   */
  async page (map: string, opts: { limit: number, cursor?: string | undefined, prefix?: string | undefined }): Promise<EntryPage> {
    const { entries, etag } = await this.read(map)
    const prefix = opts.prefix
    const list = prefix === undefined ? entries : entries.filter(e => e.key.startsWith(prefix))
    let start = 0
    if (opts.cursor !== undefined) {
      const c = decodeCursor(opts.cursor)
      if (c.i > 0 && list[c.i - 1]?.key === c.k) start = c.i
      else {
        const at = list.findIndex(e => e.key === c.k)
        if (at === -1) throw new ApiError(409, 'HAPX_CURSOR_STALE', `map '${map}' changed so much since the previous page that it cannot be resumed; start again without cursor`)
        start = at + 1
      }
    }
    const items = list.slice(start, start + opts.limit)
    const end = start + items.length
    const last = items[items.length - 1]
    return end < list.length && last !== undefined ? { items, next: encodeCursor({ i: end, k: last.key }), etag } : { items, etag }
  }

  /** The entry whose key is exactly `key` (the oldest, which lookups use, if there are duplicates). */
  async get (map: string, key: string): Promise<{ entry: MapEntry, etag: string }> {
    const { entries, etag } = await this.read(map)
    const entry = entries.find(e => e.key === key)
    if (entry === undefined) throw entryNotFound(map, key)
    return { entry, etag }
  }

  /** Adds an entry; 409 when the key exists (`add map` never de-duplicates, runtime-notes 5.4). */
  async create (map: string, entry: MapEntry, ifMatch?: string): Promise<MapEntry> {
    checkMapName(map)
    return this.#locks.run(await this.#lockKey(map), async () => {
      // Without If-Match, one `get map` usually settles whether the key exists; reading the whole
      // map (megabytes for 100k entries) is the fallback, and what an ETag check needs anyway.
      let exists = ifMatch === undefined ? exactKeyFromLookup(await this.#run(map, cmd.getMapLookup(map, entry.key)), entry.key) : undefined
      if (exists === undefined) {
        const { entries, etag } = await this.read(map)
        if (ifMatch !== undefined && !ifMatchSatisfied(ifMatch, etag)) throw preconditionFailed(map)
        exists = entries.some(e => e.key === entry.key)
      }
      if (exists) {
        throw new ApiError(409, 'HAPX_MAP_ENTRY_EXISTS', `map '${map}' already has an entry with key '${entry.key}'; use PUT to change its value`)
      }
      await this.#run(map, cmd.addMapEntry(map, entry.key, entry.value))
      return entry
    })
  }

  /** `set map`, or `add map` when HAProxy says `entry not found.` (runtime-notes 8 "upsert"). */
  async put (map: string, entry: MapEntry, ifMatch?: string): Promise<'created' | 'updated'> {
    checkMapName(map)
    return this.#locks.run(await this.#lockKey(map), async () => {
      if (ifMatch !== undefined) await this.#checkIfMatch(map, ifMatch)
      try {
        await this.#runtime.execute([cmd.setMapEntry(map, entry.key, entry.value)])
        return 'updated'
      } catch (err) {
        const r = rejectionOf(err)
        if (isUnknownMap(r)) throw mapNotFound(map, r)
        if (r === undefined || !/^entry not found\./.test(r.haproxyMessage)) throw asApiError(err)
      }
      await this.#run(map, cmd.addMapEntry(map, entry.key, entry.value))
      return 'created'
    })
  }

  /** Deletes every entry with the key: `del map` removes one duplicate per call (runtime-notes 5.6). */
  async delete (map: string, key: string, ifMatch?: string): Promise<void> {
    checkMapName(map)
    return this.#locks.run(await this.#lockKey(map), async () => {
      if (ifMatch !== undefined) await this.#checkIfMatch(map, ifMatch)
      for (let deleted = 0; deleted <= MAX_DUPLICATES; deleted++) {
        const gone = await this.#run(map, cmd.delMapEntry(map, key))
        if (!gone) {
          if (deleted === 0) throw entryNotFound(map, key)
          return
        }
      }
      throw new ApiError(502, 'HAPX_RUNTIME_PROTOCOL', `'del map' kept deleting entries with key '${key}' after ${MAX_DUPLICATES} calls`)
    })
  }

  /** Replaces the whole content atomically (prepare → payloads → count → commit). */
  async replace (map: string, entries: MapEntry[], ifMatch?: string): Promise<ReplaceResult> {
    checkMapName(map)
    checkEntries(entries)
    assertUniqueKeys(entries, 'body')
    return this.#locks.run(await this.#lockKey(map), async () => {
      if (ifMatch !== undefined) await this.#checkIfMatch(map, ifMatch)
      await this.#applyVersion(map, entries)
      return { entries: entries.length, etag: mapEtag(entries) }
    })
  }

  /**
   * Applies sets and deletes together: the new content is the current one with the changes made
   * (a changed key keeps its place; a new key goes last; deleting an absent key is a no-op), loaded
   * and committed like a replace, so lookups see all changes at once or none.
   */
  async patch (map: string, changes: MapChange[], ifMatch?: string): Promise<ReplaceResult> {
    checkMapName(map)
    checkEntries(changes.map(c => ({ key: c.key, value: 'delete' in c ? 'x' : c.value })))
    assertUniqueKeys(changes.map(c => ({ key: c.key, value: '' })), 'body')
    return this.#locks.run(await this.#lockKey(map), async () => {
      const { entries, etag } = await this.read(map)
      if (ifMatch !== undefined && !ifMatchSatisfied(ifMatch, etag)) throw preconditionFailed(map)
      const byKey = new Map(changes.map(c => [c.key, c]))
      const next: MapEntry[] = []
      const placed = new Set<string>()
      for (const e of entries) {
        const c = byKey.get(e.key)
        if (c === undefined) { next.push(e); continue }
        if ('delete' in c || placed.has(e.key)) continue
        next.push({ key: e.key, value: c.value })
        placed.add(e.key)
      }
      for (const c of changes) if (!('delete' in c) && !placed.has(c.key)) next.push({ key: c.key, value: c.value })
      // Entries written by other tools (a regex key with `\`, a `#` key…) could not be written back
      // exactly through a payload: refuse before preparing anything rather than mangle them.
      const unwritable = next.filter(e => mapKeyProblem(e.key) !== undefined || mapValueProblem(e.value) !== undefined)
      if (unwritable.length > 0) {
        throw new ApiError(409, 'HAPX_MAP_UNWRITABLE',
          `map '${map}' holds ${unwritable.length} entr${unwritable.length === 1 ? 'y' : 'ies'} hapctl cannot write back exactly (e.g. key '${unwritable[0]?.key}'); change them with PUT /maps/{map}/entries or directly, nothing was changed`,
          { errors: unwritable.slice(0, MAX_REPORTED_ERRORS).map(e => ({ field: e.key, message: mapKeyProblem(e.key) ?? mapValueProblem(e.value) ?? 'unwritable' })) })
      }
      await this.#applyVersion(map, next)
      return { entries: next.length, etag: mapEtag(next) }
    })
  }

  async #checkIfMatch (map: string, ifMatch: string): Promise<void> {
    const { etag } = await this.read(map)
    if (!ifMatchSatisfied(ifMatch, etag)) throw preconditionFailed(map)
  }

  /** `#<id>` and the name are the same map: lock on the name so that both forms serialize. */
  async #lockKey (map: string): Promise<string> {
    if (!map.startsWith('#')) return `map:${map}`
    let maps
    try {
      [maps] = await this.#runtime.execute([cmd.showMaps()])
    } catch (err) {
      throw asApiError(err)
    }
    const found = maps.find(m => `#${m.id}` === map)
    if (found === undefined) throw mapNotFound(map)
    return `map:${found.name}`
  }

  /** Runs one command, with `Unknown map identifier` turned into the map's 404. */
  async #run<T> (map: string, command: cmd.Command<T>): Promise<T> {
    try {
      const [result] = await this.#runtime.execute([command])
      return result
    } catch (err) {
      const r = rejectionOf(err)
      if (isUnknownMap(r)) throw mapNotFound(map, r)
      throw asApiError(err)
    }
  }

  /**
   * prepare → `add map @N <map> <<` payloads, each on its own non-interactive connection and at most
   * 16000 bytes (runtime-notes 5.10) → `show map @N` must count exactly the entries sent → commit.
   * Any failure after prepare clears version N, so that its entries do not linger as a pending version.
   */
  async #applyVersion (map: string, entries: MapEntry[]): Promise<void> {
    const runtime = this.#runtime
    if (runtime.executePayload === undefined) {
      throw new ApiError(501, 'HAPX_NOT_IMPLEMENTED', 'this runtime cannot send payload commands, which replacing a map needs')
    }
    let version: number
    try {
      [version] = await runtime.execute([cmd.prepareMap(map)])
    } catch (err) {
      const r = rejectionOf(err)
      if (r?.kind === 'not_found') throw mapNotFound(map, r)
      throw asApiError(err)
    }
    try {
      for (const c of cmd.addMapPayloads(map, version, entries)) await runtime.executePayload(c)
      const [count] = await runtime.execute([cmd.countMapEntries(map, version)])
      if (count !== entries.length) {
        throw new ApiError(502, 'HAPX_MAP_LOAD_INCOMPLETE',
          `HAProxy holds ${count} entries in the prepared version of '${map}' instead of ${entries.length}; nothing was committed`)
      }
    } catch (err) {
      return this.#abandon(map, version, err)
    }
    try {
      await runtime.execute([cmd.commitMap(map, version)])
    } catch (err) {
      if (rejectionOf(err) !== undefined) return this.#abandon(map, version, err)
      // The commit went out and no verdict came back (timeout, cut connection): HAProxy may have
      // applied it. Clearing version N then would empty the live map, so ask which version is live.
      const live = await this.#currentVersion(map)
      if (live !== undefined && live >= version) return
      if (live !== undefined) return this.#abandon(map, version, err)
      const api = asApiError(err)
      if (api instanceof ApiError) {
        throw new ApiError(api.status, api.code, `${api.message}; whether map '${map}' was replaced is unknown: read it before retrying`,
          { ...api.extras, state: { map, version, committed: 'unknown' } }, { cause: err })
      }
      throw api
    }
  }

  /** The live version of a map (`curr_ver` in `show map`), or undefined when HAProxy cannot tell us now. */
  async #currentVersion (map: string): Promise<number | undefined> {
    try {
      const [maps] = await this.#runtime.execute([cmd.showMaps()])
      return maps.find(m => m.name === map || `#${m.id}` === map)?.currentVersion ?? undefined
    } catch {
      return undefined
    }
  }

  /**
   * Clears the pending version N (it was not committed) and throws `err` with what was left. Whether
   * the clear worked is read back: HAProxy 3.4.7 answers `clear map @N` with success but keeps the
   * entries once the map has had a committed version (verified on 3.4.7); they stay invisible to
   * lookups and are purged by the next successful commit of this map.
   */
  async #abandon (map: string, version: number, err: unknown): Promise<never> {
    let cleared = false
    try {
      const [, left] = await this.#runtime.execute([cmd.clearMapVersion(map, version), cmd.countMapEntries(map, version)])
      cleared = left === 0
    } catch {
      cleared = false
    }
    const state = cleared
      ? { map, version, committed: false, pendingVersionCleared: true }
      : { map, version, committed: false, pendingVersionCleared: false, note: 'the prepared version still holds entries (invisible to lookups); the next successful replace of this map purges them' }
    const r = rejectionOf(err)
    if (r !== undefined && /Version number out of range/.test(r.haproxyMessage)) {
      throw new ApiError(409, 'HAPX_MAP_VERSION_CONFLICT',
        `another client prepared or committed a version of '${map}' while this replace ran; nothing was changed, retry`,
        { haproxyMessage: r.haproxyMessage, command: r.verb, state })
    }
    const api = asApiError(err)
    if (api instanceof ApiError) throw new ApiError(api.status, api.code, api.message, { ...api.extras, state }, { cause: err })
    throw api
  }
}
