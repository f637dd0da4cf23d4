import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { MapEntry } from '../../../src/runtime/commands/index.ts'
import { mapEtag } from '../../../src/resources/maps/content.ts'
import { decodeCursor, pageVisitor } from '../../../src/resources/maps/pagination.ts'
import type { Cursor, StreamedPage } from '../../../src/resources/maps/pagination.ts'
import { OperationError } from '../../../src/engine/outcomes.ts'

/*
 * pageVisitor cuts a page out of `show map` as the entries stream by. The model below is the page as
 * defined on the whole list: the matching entries after the cursor's position when the entry just
 * before it still has the cursor's key, else after the first entry with that key, else stale.
 */
function model (entries: readonly MapEntry[], opts: { limit: number, cursor?: Cursor, prefix?: string }): StreamedPage {
  const etag = mapEtag(entries)
  const list = opts.prefix === undefined ? entries : entries.filter(e => e.key.startsWith(opts.prefix as string))
  let start = 0
  const c = opts.cursor
  if (c !== undefined) {
    if (c.i > 0 && list[c.i - 1]?.key === c.k) start = c.i
    else {
      const at = list.findIndex(e => e.key === c.k)
      if (at === -1) return { stale: true, etag }
      start = at + 1
    }
  }
  const items = list.slice(start, start + opts.limit)
  const end = start + items.length
  const last = items[items.length - 1]
  return end < list.length && last !== undefined
    ? { items, next: Buffer.from(JSON.stringify({ i: end, k: last.key })).toString('base64url'), etag }
    : { items, etag }
}

function streamed (entries: readonly MapEntry[], opts: { limit: number, cursor?: Cursor, prefix?: string }): StreamedPage {
  const v = pageVisitor(opts)
  for (const e of entries) v.entry(e.key, e.value)
  return v.end()
}

describe('pageVisitor', () => {
  it('cuts the same page as the whole list gives, for any cursor, shifted or stale', () => {
    const key = fc.constantFrom('/a', '/ab', '/b', '/ba', '/c', 'x', '/a')
    const entries = fc.array(fc.record({ key, value: fc.constantFrom('v', 'w x') }), { maxLength: 15 })
    const cursor = fc.option(fc.record({ i: fc.nat(17), k: key }), { nil: undefined })
    fc.assert(fc.property(entries, fc.integer({ min: 1, max: 6 }), cursor, fc.option(fc.constantFrom('/a', '/b', ''), { nil: undefined }), (es, limit, c, prefix) => {
      const opts = { limit, ...(c === undefined ? {} : { cursor: c }), ...(prefix === undefined ? {} : { prefix }) }
      expect(streamed(es, opts)).toEqual(model(es, opts))
    }), { numRuns: 2000 })
  })

  it('walks a map page by page, every entry once, with the ETag of the whole map', () => {
    const entries = Array.from({ length: 2503 }, (_, i) => ({ key: `/k${i}`, value: `value ${i} ${'é'.repeat(i % 5)}` }))
    const seen: MapEntry[] = []
    let cursor: Cursor | undefined
    for (let pages = 0; pages < 100; pages++) {
      const page = streamed(entries, { limit: 100, ...(cursor === undefined ? {} : { cursor }) })
      if ('stale' in page) throw new Error('stale')
      expect(page.etag).toBe(mapEtag(entries))
      seen.push(...page.items)
      if (page.next === undefined) break
      cursor = decodeCursor(page.next)
    }
    expect(seen).toEqual(entries)
  })

  it('resumes after the last key returned when entries before it went away, and says stale when it is gone', () => {
    const entries = Array.from({ length: 10 }, (_, i) => ({ key: `/k${i}`, value: 'v' }))
    const first = streamed(entries, { limit: 4 })
    if ('stale' in first || first.next === undefined) throw new Error('no next page')
    const cursor = decodeCursor(first.next)
    expect(streamed(entries.slice(2), { limit: 4, cursor })).toMatchObject({ items: entries.slice(4, 8) })
    expect(streamed(entries.filter(e => e.key !== '/k3'), { limit: 4, cursor })).toMatchObject({ stale: true })
  })

  it('refuses a cursor it did not hand out', () => {
    for (const bad of ['garbage', Buffer.from('{"i":-1,"k":"a"}').toString('base64url'), Buffer.from('{"i":1}').toString('base64url')]) {
      expect(() => decodeCursor(bad)).toThrow(OperationError)
    }
  })
})
