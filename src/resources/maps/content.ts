/**
 * A map's content as hapctl handles it: entity tags, map files, validation of what is to be written,
 * the result of a PATCH, and whether a content can be kept (written back exactly by the reconciler).
 * Pure functions: no HAProxy, no store.
 */
import { createHash } from 'node:crypto'
import type { MapEntry } from '../../runtime/commands/index.ts'
import { mapKeyProblem, mapValueProblem } from '../../runtime/validation.ts'
import { OperationError } from '../../engine/outcomes.ts'

export type { MapEntry }

/** `{ key, value }` sets (a new key goes last); `{ key, delete: true }` deletes. */
export type MapChange = { key: string, value: string } | { key: string, delete: true }

/** Most problems listed in one answer; a 100k-line file full of mistakes would otherwise answer megabytes. */
const MAX_REPORTED_ERRORS = 20

/**
 * A strong entity tag over the map's keys and values in HAProxy's order (not the `0x…` ids, which are
 * addresses), built entry by entry: sha256 over `key NUL value NUL` of each entry. The text is hashed
 * in batches (one update per ~64 KiB, the same bytes as one update per field), so a listing can tag a
 * map it never holds whole.
 */
export class EtagDigest {
  readonly #hash = createHash('sha256')
  #batch = ''

  add (key: string, value: string): void {
    this.#batch += key + '\0' + value + '\0'
    if (this.#batch.length >= ETAG_BATCH) { this.#hash.update(this.#batch); this.#batch = '' }
  }

  digest (): string {
    this.#hash.update(this.#batch)
    this.#batch = ''
    return `"${this.#hash.digest('base64url').slice(0, 27)}"`
  }
}

const ETAG_BATCH = 64 * 1024

/** The entity tag of a whole content (see EtagDigest). */
export function mapEtag (entries: readonly MapEntry[]): string {
  const digest = new EtagDigest()
  for (const e of entries) digest.add(e.key, e.value)
  return digest.digest()
}

/** RFC 9110 §13.1.1: `*` or a list of strong tags; weak tags never match. */
export function ifMatchSatisfied (header: string, etag: string): boolean {
  const tags = header.split(',').map(t => t.trim()).filter(t => t.length > 0)
  return tags.includes('*') || tags.includes(etag)
}

function preconditionFailed (map: string): OperationError {
  return new OperationError('PRECONDITION_FAILED', `map '${map}' changed since the ETag given in If-Match; read it again and retry`)
}

/** Throws PRECONDITION_FAILED unless `ifMatch` (when given) names this content. */
export function checkIfMatch (map: string, ifMatch: string | undefined, entries: readonly MapEntry[]): void {
  if (ifMatch !== undefined && !ifMatchSatisfied(ifMatch, mapEtag(entries))) throw preconditionFailed(map)
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
  // One pass of indexOf over the text (a 1,000,000-line file is not split into an array of lines).
  const isBlank = (c: number): boolean => c === 0x20 || c === 0x09
  for (let start = 0, n = 1; start <= text.length; n++) {
    let end = text.indexOf('\n', start)
    if (end === -1) end = text.length
    const next = end + 1
    if (end > start && text.charCodeAt(end - 1) === 0x0d) end--
    let k = start
    while (k < end && isBlank(text.charCodeAt(k))) k++
    start = next
    if (k === end || text.charCodeAt(k) === 0x23 /* # */) continue
    let b = k
    while (b < end && !isBlank(text.charCodeAt(b))) b++
    if (b === end) { fail(n, 'a line is `<key> <value>`; this one has no value'); continue }
    let v = b
    while (v < end && isBlank(text.charCodeAt(v))) v++
    const entry = { key: text.slice(k, b), value: text.slice(v, end) }
    const keyProblem = mapKeyProblem(entry.key)
    const valueProblem = keyProblem === undefined ? mapValueProblem(entry.value) : undefined
    if (keyProblem !== undefined) fail(n, `key ${keyProblem}`)
    else if (valueProblem !== undefined) fail(n, `value ${valueProblem}`)
    else entries.push(entry)
  }
  if (errorCount > 0) {
    throw new OperationError('VALIDATION_FAILED',
      `the map file has ${errorCount} invalid line(s): ${errors.slice(0, 3).map(e => `${e.field}: ${e.message}`).join('; ')}`, { errors })
  }
  return entries
}

/** Refuses duplicate keys: a map written through hapctl has at most one entry per key. */
export function assertUniqueKeys (keys: readonly string[], field: string): void {
  const seen = new Set<string>()
  const dups: string[] = []
  for (const k of keys) {
    if (seen.has(k)) dups.push(k)
    seen.add(k)
  }
  if (dups.length > 0) refuseDuplicates(dups, field)
}

/** `dups`: every occurrence of a key after its first. */
function refuseDuplicates (dups: readonly string[], field: string): never {
  const shown = [...new Set(dups)].slice(0, MAX_REPORTED_ERRORS)
  throw new OperationError('DUPLICATE_KEYS', `${field} gives ${dups.length} duplicate key(s): ${shown.join(', ')}`,
    { errors: shown.map(k => ({ field, message: `duplicate key '${k}'` })) })
}

/** Refuses, before anything is sent, what HAProxy could not store exactly. */
export function checkEntries (entries: readonly MapEntry[]): void {
  for (let i = 0; i < entries.length; i++) checkEntry(entries[i] as MapEntry, i)
}

function checkEntry (e: MapEntry, i: number): void {
  const keyProblem = mapKeyProblem(e.key)
  const [field, problem] = keyProblem !== undefined ? ['key', keyProblem] : ['value', mapValueProblem(e.value)]
  if (problem !== undefined) {
    // The words checkMapKey / checkMapValue would say.
    const message = `invalid ${field}: ${problem}`
    throw new OperationError('VALIDATION_FAILED', `body.${i}.${field}: ${message}`, { errors: [{ field: `body.${i}.${field}`, message }] })
  }
}

/**
 * A whole content to write, in one pass: checkEntries, then assertUniqueKeys(keys, 'body'), with the
 * same answers, without a list of keys beside the entries.
 */
export function checkContent (entries: readonly MapEntry[]): void {
  const seen = new Set<string>()
  let dups: string[] | undefined
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as MapEntry
    checkEntry(e, i)
    if (seen.has(e.key)) (dups ??= []).push(e.key)
    else seen.add(e.key)
  }
  if (dups !== undefined) refuseDuplicates(dups, 'body')
}

/** Checks a PATCH body: each key and value storable, each key once. */
export function checkChanges (changes: readonly MapChange[]): void {
  checkContent(changes.map(c => ({ key: c.key, value: 'delete' in c ? 'x' : c.value })))
}

/**
 * The content with only the first entry of each key: the one lookups use (HAProxy returns the
 * oldest of duplicates). What the store keeps has one value per key.
 */
export function firstOfEachKey (entries: readonly MapEntry[]): MapEntry[] {
  const seen = new Set<string>()
  return entries.filter(e => { if (seen.has(e.key)) return false; seen.add(e.key); return true })
}

/**
 * The content after a PATCH: a changed key keeps its place, a new key goes last, deleting an absent key
 * is a no-op, and the duplicates lookups never see are dropped.
 */
export function patched (entries: readonly MapEntry[], changes: readonly MapChange[]): MapEntry[] {
  const byKey = new Map(changes.map(c => [c.key, c]))
  const next: MapEntry[] = []
  const present = new Set<string>()
  for (const e of entries) {
    if (present.has(e.key)) continue
    present.add(e.key)
    const c = byKey.get(e.key)
    if (c === undefined) next.push(e)
    else if (!('delete' in c)) next.push({ key: e.key, value: c.value })
  }
  for (const c of changes) if (!('delete' in c) && !present.has(c.key)) next.push({ key: c.key, value: c.value })
  return next
}

/** Entries a payload could not write back exactly (a regex key with `\`, a `#` key, written by other tools). */
export function unwritableEntries (entries: readonly MapEntry[]): MapEntry[] {
  return entries.filter(e => mapKeyProblem(e.key) !== undefined || mapValueProblem(e.value) !== undefined)
}

/**
 * Refuses a content hapctl could not write back exactly: a replace would mangle those entries, and a
 * kept (managed) map must be one the reconciler can load again after a reload.
 */
export function assertWritable (map: string, entries: readonly MapEntry[], what: string): void {
  const unwritable = unwritableEntries(entries)
  if (unwritable.length === 0) return
  throw new OperationError('MAP_UNWRITABLE',
    `map '${map}' holds ${unwritable.length} entr${unwritable.length === 1 ? 'y' : 'ies'} hapctl cannot write back exactly (e.g. key '${unwritable[0]?.key}'); ${what}, nothing was changed`,
    { errors: unwritable.slice(0, MAX_REPORTED_ERRORS).map(e => ({ field: e.key, message: mapKeyProblem(e.key) ?? mapValueProblem(e.value) ?? 'unwritable' })) })
}
