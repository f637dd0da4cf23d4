/**
 * What the SQLite and the in-memory store share, so that they cannot drift apart: the errors a commit
 * throws, how a change is written into its revision record, and the checks made on arguments.
 */
import type { CommitMeta, DesiredChange, ServerSpec } from './types.ts'

/**
 * A change that cannot be applied (map.set on a map that is not managed, a key twice in one
 * map.replace, an unknown op): a programming error in the caller. Nothing of the commit is applied.
 */
export class StoreChangeError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'StoreChangeError'
  }
}

/** A change as its revision record keeps it: map.replace carries a count instead of its entries. */
export type RecordedChange =
  | Exclude<DesiredChange, { op: 'map.replace' }>
  | { readonly op: 'map.replace', readonly name: string, readonly entryCount: number }

export function recordChange (change: DesiredChange): RecordedChange {
  return change.op === 'map.replace' ? { op: 'map.replace', name: change.name, entryCount: change.entries.length } : change
}

export function unmanagedMap (op: string, name: string): StoreChangeError {
  return new StoreChangeError(`${op} on map '${name}': hapctl does not manage that map; adopt it with map.replace first (in the same commit)`)
}

export function duplicateKey (name: string, key: string): StoreChangeError {
  return new StoreChangeError(`map.replace of map '${name}': the key '${key}' appears more than once (the store keeps one value per key)`)
}

export function unknownChange (change: never): StoreChangeError {
  return new StoreChangeError(`unknown change ${JSON.stringify(change)}`)
}

/**
 * The spec as JSON gives it back: without the undefined fields. The in-memory store normalizes too,
 * so that both hand back equal objects.
 */
export function normalizeSpec (spec: ServerSpec): ServerSpec {
  return JSON.parse(JSON.stringify(spec)) as ServerSpec
}

export function checkMeta (meta: CommitMeta): void {
  if (typeof meta?.actor !== 'string' || typeof meta.action !== 'string' || typeof meta.target?.kind !== 'string' || typeof meta.target.id !== 'string') {
    throw new StoreChangeError(`a commit needs { actor, action, target: { kind, id } } strings, got ${JSON.stringify(meta)}`)
  }
}

export function checkChangesSince (revision: number, limit: number): void {
  if (!Number.isSafeInteger(revision) || revision < 0) throw new RangeError(`changesSince: revision must be an integer >= 0, got ${revision}`)
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`changesSince: limit must be an integer >= 1, got ${limit}`)
}
