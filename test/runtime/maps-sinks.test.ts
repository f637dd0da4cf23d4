import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { Command, MapEntryVisitor } from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError, RuntimeProtocolError } from '../../src/runtime/errors.ts'

/*
 * The `show map` commands consume their reply through a sink, piece by piece as it arrives, or whole
 * through parse(); both must give the same, wherever the pieces are cut: inside a line, right after a
 * `\n`, or with a lone `\n` (the first half of the terminator) as the last piece.
 */

const MAP = 'virt@paths.map'

/** Feeds `pieces` to a new sink of `c` and returns its result (or throws what it throws). */
function viaSink<T> (c: Command<T>, pieces: readonly string[]): T {
  if (c.sink === undefined) throw new Error(`${c.text} has no sink`)
  const s = c.sink()
  for (const p of pieces) s.write(p)
  return s.end()
}

/** `reply` cut at the given offsets. */
const cut = (reply: string, at: readonly number[]): string[] => {
  const points = [...new Set(at)].filter(i => i > 0 && i < reply.length).sort((a, b) => a - b)
  return [0, ...points].map((p, i) => reply.slice(p, points[i] ?? reply.length))
}

/** Every way of cutting the reply in two, then one character at a time, each with and without a trailing `\n` piece. */
function splits (reply: string): string[][] {
  const out: string[][] = [[reply], reply.split('')]
  for (let i = 1; i < reply.length; i++) out.push([reply.slice(0, i), reply.slice(i)])
  return [...out, ...out.map(p => [...p, '\n'])]
}

const outcome = (f: () => unknown): unknown => {
  try {
    return { value: f() }
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message }
  }
}

const collect = (): MapEntryVisitor<string[]> => {
  const seen: string[] = []
  return { entry: (k, v) => { seen.push(`${k}=${v}`) }, end: () => seen }
}

const REPLY = '0x7f7ac047b000 /alpha dyn1\n0x7f7ac1c239a0 /b a b  c\n0x7f261d27c240  static_ref\n0x1 /nl a\nb\n0x2 /é ü€'
const ENTRIES = [
  { key: '/alpha', value: 'dyn1' }, { key: '/b', value: 'a b  c' }, { key: '', value: 'static_ref' }, { key: '/nl', value: 'a\nb' }, { key: '/é', value: 'ü€' }
]

describe('show map sinks', () => {
  it('give the entries, the count and each visited entry whatever the pieces', () => {
    for (const pieces of splits(REPLY)) {
      expect(viaSink(cmd.showMapEntries(MAP), pieces)).toEqual(ENTRIES)
      expect(viaSink(cmd.countMapEntries(MAP, 3), pieces)).toBe(5)
      expect(viaSink(cmd.scanMapEntries(MAP, collect), pieces)).toEqual(ENTRIES.map(e => `${e.key}=${e.value}`))
    }
    expect(cmd.showMapEntries(MAP).parse(REPLY)).toEqual(ENTRIES)
    expect(cmd.countMapEntries(MAP).parse(REPLY)).toBe(5)
    expect(cmd.scanMapEntries(MAP, collect, 2).text).toBe(`show map @2 ${MAP}`)
  })

  it('give an empty map for an empty reply, however it is delivered', () => {
    for (const pieces of [[], [''], ['\n'], ['', '\n', '']]) {
      expect(viaSink(cmd.showMapEntries(MAP), pieces)).toEqual([])
      expect(viaSink(cmd.countMapEntries(MAP), pieces)).toBe(0)
    }
  })

  it("turn HAProxy's refusal and garbage into the errors parse() gives, whatever the pieces", () => {
    const refusal = 'Unknown map identifier. Please use #<id> or <file>.'
    for (const reply of [refusal, 'garbage', 'x', '0', '0xzz not an entry']) {
      const whole = outcome(() => cmd.showMapEntries(MAP).parse(reply))
      expect(whole).toMatchObject({ error: reply === refusal ? RuntimeCommandError.name : RuntimeProtocolError.name })
      for (const pieces of splits(reply)) {
        expect(outcome(() => viaSink(cmd.showMapEntries(MAP), pieces))).toEqual(whole)
        expect(outcome(() => viaSink(cmd.countMapEntries(MAP), pieces))).toEqual(reply.startsWith('0x') ? { value: 1 } : whole)
      }
    }
  })

  it('agree with parse() on any reply cut anywhere', () => {
    const word = fc.string({ unit: fc.constantFrom('a', 'b', '/', 'é', '€', '0', 'x', ' '), maxLength: 6 })
    const line = fc.oneof(
      fc.tuple(fc.nat(0xffff), word.filter(w => !w.includes(' ')), word).map(([id, k, v]) => `0x${id.toString(16)} ${k} ${v}`),
      word.filter(w => w.length > 0)
    )
    fc.assert(fc.property(fc.array(line, { maxLength: 12 }), fc.array(fc.nat(200)), (lines, at) => {
      const reply = lines.join('\n')
      const pieces = cut(reply, at)
      for (const c of [cmd.showMapEntries(MAP), cmd.countMapEntries(MAP)] as Array<Command<unknown>>) {
        expect(outcome(() => viaSink(c, pieces))).toEqual(outcome(() => c.parse(reply)))
        expect(outcome(() => viaSink(c, [...pieces, '\n']))).toEqual(outcome(() => c.parse(reply)))
      }
    }), { numRuns: 500 })
  })

  it('consume a 100,000-entry reply given in 64 KiB pieces', () => {
    const reply = Array.from({ length: 100_000 }, (_, i) => `0x${i.toString(16)} /k${i} v${i}`).join('\n')
    const pieces = cut(reply, Array.from({ length: Math.ceil(reply.length / 65_536) }, (_, i) => i * 65_536))
    let last = ''
    const n = viaSink(cmd.scanMapEntries(MAP, () => {
      let count = 0
      return { entry: (k) => { count++; last = k }, end: () => count }
    }), pieces)
    expect([n, last]).toEqual([100_000, '/k99999'])
    expect(viaSink(cmd.countMapEntries(MAP), pieces)).toBe(100_000)
  })
})

describe('add map payloads', () => {
  it('hold every entry once, in order, each request within 16000 bytes', () => {
    const entries = Array.from({ length: 5000 }, (_, i) => ({ key: `/k${i}${'é'.repeat(i % 7)}`, value: `v ${i} x${'€'.repeat(i % 300)}` }))
    const payloads = cmd.addMapPayloads(MAP, 4, entries)
    expect(payloads.length).toBeGreaterThan(1)
    for (const p of payloads) {
      expect(p.text).toBe(`add map @4 ${MAP} <<`)
      expect(Buffer.byteLength(p.text + '\n' + p.payload + '\n')).toBeLessThanOrEqual(16_000)
      expect(p.parse('')).toBeUndefined()
    }
    expect(payloads.map(p => p.payload).join('')).toBe(entries.map(e => `${e.key} ${e.value}\n`).join(''))
    expect(() => cmd.addMapPayloads(MAP, 4, [{ key: '/ok', value: 'v' }, { key: 'a b', value: 'v' }])).toThrow(/key/)
  })
})
