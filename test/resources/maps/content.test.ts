import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { assertUniqueKeys, checkContent, checkEntries, mapEtag, parseMapFile } from '../../../src/resources/maps/content.ts'
import { mapKeyProblem, mapValueProblem } from '../../../src/runtime/validation.ts'
import type { MapEntry } from '../../../src/runtime/commands/index.ts'

const outcome = (f: () => unknown): unknown => {
  try {
    return { value: f() }
  } catch (err) {
    return { error: (err as Error).message, details: JSON.stringify(err) }
  }
}

const text = fc.string({ unit: fc.constantFrom('a', 'b', ' ', '\t', '\r', '\n', '#', ';', 'é', '€', '\u{1F600}'), maxLength: 30 })

describe('map ETag', () => {
  it('is sha256 over key NUL value NUL of each entry, whatever the batching (clients keep ETags across versions)', () => {
    /** The definition, one update per field. */
    const reference = (entries: readonly MapEntry[]): string => {
      const hash = createHash('sha256')
      for (const e of entries) hash.update(e.key).update('\0').update(e.value).update('\0')
      return `"${hash.digest('base64url').slice(0, 27)}"`
    }
    fc.assert(fc.property(fc.array(fc.record({ key: text, value: text }), { maxLength: 20 }), es => {
      expect(mapEtag(es)).toBe(reference(es))
    }), { numRuns: 300 })
    // Past several 64 KiB batches, with multi-byte characters across their edges.
    const big = Array.from({ length: 30_000 }, (_, i) => ({ key: `/k${i}é`, value: `v${i}${'€'.repeat(i % 11)}` }))
    expect(mapEtag(big)).toBe(reference(big))
    expect(mapEtag([])).toBe(reference([]))
  })
})

describe('parseMapFile', () => {
  /** The rules as first written: split, trim one CR and the leading blanks, one regular expression per line. */
  function reference (t: string): MapEntry[] {
    const entries: MapEntry[] = []
    const errors: Array<{ field: string, message: string }> = []
    let count = 0
    t.split('\n').forEach((raw, i) => {
      const l = (raw.endsWith('\r') ? raw.slice(0, -1) : raw).replace(/^[ \t]+/, '')
      if (l === '' || l.startsWith('#')) return
      const m = /^([^ \t]+)[ \t]+(.*)$/s.exec(l)
      const fail = (message: string): void => { count++; if (errors.length < 20) errors.push({ field: `body.line${i + 1}`, message }) }
      if (m === null) { fail('a line is `<key> <value>`; this one has no value'); return }
      const kp = mapKeyProblem(m[1] as string)
      const vp = mapValueProblem(m[2] as string)
      if (kp !== undefined) fail(`key ${kp}`)
      else if (vp !== undefined) fail(`value ${vp}`)
      else entries.push({ key: m[1] as string, value: m[2] as string })
    })
    if (count > 0) throw new Error(`${count} ${JSON.stringify(errors)}`)
    return entries
  }
  const normalized = (f: () => MapEntry[]): unknown => {
    try {
      return { value: f() }
    } catch (err) {
      const e = err as Error & { errors?: unknown }
      if (e.errors === undefined) return { error: e.message }
      return { error: `${/has (\d+) invalid/.exec(e.message)?.[1]} ${JSON.stringify(e.errors)}` }
    }
  }

  it('reads any text as HAProxy does, entries and refusals alike', () => {
    fc.assert(fc.property(text, t => {
      expect(normalized(() => parseMapFile(t))).toEqual(normalized(() => reference(t)))
    }), { numRuns: 3000 })
    const file = '# routes\n\n/t1 static_unref\r\n  /t2\t\tstatic_ref\n/t3 two  words here\n\r\n \t\n'
    expect(parseMapFile(file)).toEqual([{ key: '/t1', value: 'static_unref' }, { key: '/t2', value: 'static_ref' }, { key: '/t3', value: 'two  words here' }])
    expect(normalized(() => parseMapFile('/ok v\n/novalue\n/x a;b\n/y \n'))).toEqual(normalized(() => reference('/ok v\n/novalue\n/x a;b\n/y \n')))
  })
})

describe('checkContent', () => {
  it('answers as checkEntries then assertUniqueKeys would, in one pass', () => {
    const key = fc.constantFrom('/a', '/b', '/c', 'a b', '#x', '', '/d')
    const value = fc.constantFrom('v', ' v', 'w x', 'a;b')
    fc.assert(fc.property(fc.array(fc.record({ key, value }), { maxLength: 12 }), es => {
      expect(outcome(() => checkContent(es))).toEqual(outcome(() => { checkEntries(es); assertUniqueKeys(es.map(e => e.key), 'body') }))
    }), { numRuns: 2000 })
  })
})
