/**
 * Pages of a map's entries. HAProxy has no paging of its own (`show map` dumps everything), so a page
 * is cut from one dump; the opaque cursor remembers the position and the last key returned, so that a
 * map that changed between two pages resumes after that key, or says it cannot.
 */
import type { MapEntry } from '../../runtime/commands/index.ts'
import { OperationError } from '../../engine/outcomes.ts'

export type EntryPage = { items: MapEntry[], next?: string, etag: string }

type Cursor = { i: number, k: string }

function encodeCursor (c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url')
}

function decodeCursor (s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Partial<Cursor>
    if (Number.isInteger(c.i) && (c.i as number) >= 0 && typeof c.k === 'string') return c as Cursor
  } catch { /* below */ }
  throw new OperationError('INVALID_CURSOR', 'cursor is not one this API handed out; start again without it')
}

/**
 * One page of `entries` (optionally only keys starting with `prefix`). When the cursor's last key is no
 * longer where it was, the page resumes after it; when it is gone, CURSOR_STALE.
 */
export function pageOf (map: string, entries: readonly MapEntry[], etag: string, opts: { limit: number, cursor?: string | undefined, prefix?: string | undefined }): EntryPage {
  const prefix = opts.prefix
  const list = prefix === undefined ? entries : entries.filter(e => e.key.startsWith(prefix))
  let start = 0
  if (opts.cursor !== undefined) {
    const c = decodeCursor(opts.cursor)
    if (c.i > 0 && list[c.i - 1]?.key === c.k) start = c.i
    else {
      const at = list.findIndex(e => e.key === c.k)
      if (at === -1) throw new OperationError('CURSOR_STALE', `map '${map}' changed so much since the previous page that it cannot be resumed; start again without cursor`)
      start = at + 1
    }
  }
  const items = list.slice(start, start + opts.limit)
  const end = start + items.length
  const last = items[items.length - 1]
  return end < list.length && last !== undefined ? { items, next: encodeCursor({ i: end, k: last.key }), etag } : { items, etag }
}
