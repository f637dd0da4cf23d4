/**
 * Pages of a map's entries. HAProxy has no paging of its own (`show map` dumps everything), so a page
 * is cut from one dump; the opaque cursor remembers the position and the last key returned, so that a
 * map that changed between two pages resumes after that key, or says it cannot.
 *
 * pageVisitor cuts the page from the dump as it streams by (runtime/commands/maps.ts scanMapEntries),
 * keeping at most two pages of entries and the ETag's running digest: a listing of a million-entry map
 * holds a page, not the map.
 */
import type { MapEntry, MapEntryVisitor } from '../../runtime/commands/index.ts'
import { OperationError } from '../../engine/outcomes.ts'
import { EtagDigest } from './content.ts'

export type EntryPage = { items: MapEntry[], next?: string, etag: string }

export type Cursor = { i: number, k: string }

function encodeCursor (c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url')
}

export function decodeCursor (s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor>
    if (Number.isInteger(c.i) && (c.i as number) >= 0 && typeof c.k === 'string') return c as Cursor
  } catch { /* below */ }
  throw new OperationError('INVALID_CURSOR', 'cursor is not one this API handed out; start again without it')
}

/** A copy of `s` that does not keep alive the larger reply text it was cut from (V8 slices share it). */
function own (s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8')
}

export type StreamedPage = EntryPage | { stale: true, etag: string }

/**
 * One page, from entries given one at a time: the entries after the cursor's
 * position (used when the entry just before it still has the cursor's key), and those after the first
 * entry with that key (used otherwise), each up to `limit`; the number of entries matching the prefix
 * says whether a next page exists. `stale` when the cursor's key is gone (CURSOR_STALE).
 */
export function pageVisitor (opts: { limit: number, cursor?: Cursor | undefined, prefix?: string | undefined }): MapEntryVisitor<StreamedPage> {
  const { limit, cursor, prefix } = opts
  const digest = new EtagDigest()
  // Index (among matching entries) of the next one, and where each candidate page starts.
  let index = 0
  const atPosition: MapEntry[] = []
  let positionHolds = false
  const afterKey: MapEntry[] = []
  let keyAt = -1
  return {
    entry: (key, value) => {
      digest.add(key, value)
      if (prefix !== undefined && !key.startsWith(prefix)) return
      const i = index++
      if (cursor === undefined) {
        if (atPosition.length < limit) atPosition.push({ key: own(key), value: own(value) })
        return
      }
      if (i === cursor.i - 1 && key === cursor.k) positionHolds = true
      if (i >= cursor.i && atPosition.length < limit) atPosition.push({ key: own(key), value: own(value) })
      if (keyAt !== -1 && afterKey.length < limit) afterKey.push({ key: own(key), value: own(value) })
      else if (keyAt === -1 && key === cursor.k) keyAt = i
    },
    end: () => {
      const etag = digest.digest()
      let start = 0
      let items = atPosition
      if (cursor !== undefined) {
        if (cursor.i > 0 && positionHolds) start = cursor.i
        else if (keyAt !== -1) { start = keyAt + 1; items = afterKey } else return { stale: true, etag }
      }
      const end = start + items.length
      const last = items[items.length - 1]
      return end < index && last !== undefined ? { items, next: encodeCursor({ i: end, k: last.key }), etag } : { items, etag }
    }
  }
}
