/**
 * `show stat` is read without splitting every field of every line (parsers.ts ShowStatReader): what
 * it gives must be what splitting each line with splitCsvLine gives, for any columns asked, for any
 * way the reply is cut into pieces, and for fields quoted as HAProxy quotes them (management §9.1).
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError, RuntimeProtocolError } from '../../src/runtime/errors.ts'
import { ShowStatReader, parseShowStat, splitCsvLine } from '../../src/runtime/parsers.ts'
import type { Row } from '../../src/runtime/parsers.ts'

/** The reading before ShowStatReader: every line split whole, then the wanted columns picked. */
function reference (reply: string, columns?: readonly string[]): Row[] {
  const lines = reply.split('\n').filter(l => l.length > 0)
  const names = splitCsvLine((lines[0] as string).slice(2))
  const wanted = names.flatMap((name, i) => name !== '' && (columns === undefined || columns.includes(name)) ? [[name, i] as const] : [])
  return lines.slice(1).map(line => {
    const values = splitCsvLine(line)
    const row: Record<string, string> = {}
    for (const [name, i] of wanted) row[name] = values[i] ?? ''
    return row
  })
}

const NAMES = ['pxname', 'svname', 'scur', 'status', 'type', 'check_status', 'mode', 'algo', '-', 'ssl_sess']

/** A field as HAProxy writes it: bare, or quoted (with `""`) when it holds a comma or a quote. */
const field = fc.oneof(
  fc.constantFrom('', '0', 'UP', 'UP 1/2', '* L4OK', 'no check', 'http'),
  fc.string({ unit: fc.constantFrom('a', ' ', ',', '"', '/', 'é'), maxLength: 8 })
    .map(v => /[",]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v)
)

/** Lines of 0 to NAMES.length + 2 fields (short rows, and rows longer than the header), with or without the trailing comma. */
const csvLine = fc.tuple(fc.array(field, { maxLength: NAMES.length + 2 }), fc.boolean()).map(([fields, trailing]) => fields.join(',') + (trailing ? ',' : ''))

// HAProxy's header always starts with pxname; the other columns come and go between versions.
const reply = fc.tuple(fc.subarray(NAMES.slice(1)), fc.array(csvLine, { maxLength: 8 }), fc.boolean())
  .map(([names, lines, blankLines]) => [`# pxname,${names.join(',')},`, ...lines.flatMap(l => blankLines ? [l, ''] : [l])].join('\n'))

/** `text` cut at the given offsets. */
function pieces (text: string, cuts: number[]): string[] {
  const at = [...new Set(cuts.map(c => c % (text.length + 1)))].sort((a, b) => a - b)
  const out: string[] = []
  let prev = 0
  for (const c of at) { out.push(text.slice(prev, c)); prev = c }
  out.push(text.slice(prev))
  return out
}

describe('show stat, read without splitting every line', () => {
  it('gives what splitting every line gives, for any columns and any cut of the reply', () => {
    fc.assert(fc.property(reply, fc.option(fc.subarray(NAMES)), fc.array(fc.nat(), { maxLength: 6 }), (text, columns, cuts) => {
      const expected = reference(text, columns ?? undefined)
      expect(parseShowStat(text, columns ?? undefined)).toEqual(expected)
      const reader = new ShowStatReader(columns ?? undefined)
      for (const p of pieces(text, cuts)) reader.write(p)
      expect(reader.end()).toEqual(expected)
      // Key order is the header's, as with a whole-line split.
      for (const [i, row] of parseShowStat(text, columns ?? undefined).entries()) expect(Object.keys(row)).toEqual(Object.keys(expected[i] as Row))
    }), { numRuns: 500 })
  })

  it('the command judges a reply streamed through its sink as parse() does', () => {
    const replies = [
      '# pxname,svname,status,type,\nwebservers,BACKEND,UP,1,\nwebservers,web1,"DOWN, really",2,',
      'No such proxy.',
      'Unknown command: \'show\'',
      '',
      'webservers,web1,0,0'
    ]
    fc.assert(fc.property(fc.constantFrom(...replies), fc.array(fc.nat(), { maxLength: 4 }), (text, cuts) => {
      const command = cmd.showStat('webservers', { columns: ['pxname', 'status'] })
      const outcome = (fn: () => unknown): unknown => {
        try { return fn() } catch (err) { return { error: (err as Error).constructor.name, message: (err as Error).message, kind: (err as RuntimeCommandError).kind } }
      }
      const sink = (command.sink as NonNullable<typeof command.sink>)()
      const streamed = outcome(() => { for (const p of pieces(text, cuts)) sink.write(p); return sink.end() })
      expect(streamed).toEqual(outcome(() => command.parse(text)))
    }), { numRuns: 200 })
    expect(() => cmd.showStat('webservers').parse('No such proxy.')).toThrow(RuntimeCommandError)
    expect(() => cmd.showStat('webservers').parse('garbage')).toThrow(RuntimeProtocolError)
  })
})
