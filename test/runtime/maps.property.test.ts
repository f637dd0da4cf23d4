import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError } from '../../src/runtime/errors.ts'
import { parseMapFile } from '../../src/resources/maps/content.ts'
import { OperationError } from '../../src/engine/outcomes.ts'

/*
 * Whatever the strings, a map builder either throws RuntimeArgumentError before composing anything, or
 * composes exactly one command whose tokens give back the key and value: nothing the CLI tokenizer
 * treats specially (docs/runtime-api.md#escaping-and-injection) and no payload header can slip through.
 */
const awkward = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', ' ', ';', '\\', '\n', '\r', '\t', '\0', '#', '<', '/', 'é', '\u2028', '\uD800', '"'), maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 })
)

/** The CLI's tokenizer (docs/runtime-api.md#escaping-and-injection): blanks split, `\x` is x, `;` and NUL end the command. */
function tokenize (line: string): { commands: number, words: string[] } {
  const words: string[] = []
  let word = ''
  let inWord = false
  let commands = 1
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string
    if (c === '\\' && i + 1 < line.length) { word += line[++i]; inWord = true } else if (c === ';' || c === '\0' || c === '\n' || c === '\r') commands++
    else if (c === ' ' || c === '\t') { if (inWord) words.push(word); word = ''; inWord = false } else { word += c; inWord = true }
  }
  if (inWord) words.push(word)
  return { commands, words }
}

function composes (build: () => { text: string }): { text: string } | undefined {
  try {
    return build()
  } catch (err) {
    expect(err).toBeInstanceOf(RuntimeArgumentError)
    return undefined
  }
}

describe('map builders under random input', () => {
  it('add/set map: one command whose words are exactly map, key and value', () => {
    fc.assert(fc.property(awkward, awkward, (key, value) => {
      for (const [verb, build] of [['add map', cmd.addMapEntry], ['set map', cmd.setMapEntry]] as const) {
        const c = composes(() => build('virt@paths.map', key, value))
        if (c === undefined) continue
        const t = tokenize(c.text)
        expect(t.commands).toBe(1)
        expect(t.words).toEqual([...verb.split(' '), 'virt@paths.map', key, value])
        expect(c.text.trimEnd().endsWith('<<') || /\s<</.test(c.text)).toBe(false)
        expect(Buffer.from(c.text, 'utf8').toString('utf8')).toBe(c.text)
      }
    }), { numRuns: 3000 })
  })

  it('del map: one command, and never an entry reference', () => {
    fc.assert(fc.property(awkward, key => {
      const c = composes(() => cmd.delMapEntry('virt@paths.map', key))
      if (c === undefined) return
      expect(tokenize(c.text)).toEqual({ commands: 1, words: ['del', 'map', 'virt@paths.map', key] })
      expect(key.startsWith('#')).toBe(false)
    }), { numRuns: 2000 })
  })

  it('payloads: one line per entry, key then value, no blank lines or leading blanks', () => {
    fc.assert(fc.property(fc.array(fc.record({ key: awkward, value: awkward }), { minLength: 1, maxLength: 20 }), entries => {
      const chunks = composes(() => ({ text: '', chunks: cmd.addMapPayloads('virt@paths.map', 4, entries) })) as { chunks: ReturnType<typeof cmd.addMapPayloads> } | undefined
      if (chunks === undefined) return
      const lines = chunks.chunks.flatMap(c => {
        expect(c.text).toBe('add map @4 virt@paths.map <<')
        expect(c.payload.endsWith('\n')).toBe(true)
        return c.payload.slice(0, -1).split('\n')
      })
      expect(lines.map(l => {
        expect(l).not.toMatch(/^[ \t]|^$|[\r\0]/)
        const i = l.indexOf(' ')
        return { key: l.slice(0, i), value: l.slice(i + 1) }
      })).toEqual(entries)
    }), { numRuns: 1000 })
  })

  it('map files: every accepted entry is one the builders accept', () => {
    fc.assert(fc.property(fc.array(fc.tuple(awkward, fc.constantFrom(' ', '\t', '  '), awkward)), rows => {
      const text = rows.map(([k, sep, v]) => k + sep + v).join('\n')
      let entries
      try {
        entries = parseMapFile(text)
      } catch (err) {
        expect(err).toBeInstanceOf(OperationError)
        return
      }
      if (entries.length > 0) expect(() => cmd.addMapPayloads('virt@paths.map', 1, entries)).not.toThrow()
    }), { numRuns: 1000 })
  })
})
