/**
 * Injection-proofing of every command builder, by property: whatever string lands at any argument
 * position, the builder either refuses it with RuntimeArgumentError or composes a line that HAProxy's
 * tokenizer splits into exactly the intended arguments (docs/runtime-api.md#escaping-and-injection).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError } from '../../src/runtime/errors.ts'
import { MAP_NAME_PATTERN, NAME_PATTERN } from '../../src/runtime/validation.ts'

const RUNS = 600

/** Plain strings of every kind, and strings made of the bytes the CLI treats specially. */
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map(c => String.fromCharCode(c)), maxLength: 20 }),
  fc.string({
    unit: fc.constantFrom(';', '\n', '\r', '\0', ' ', '\t', '\\', '#', '<', 'é', '€', '🚀', '\u0085', '\u2028', '\ud800', 'a', 'Z', '0', '_', '.', ':', '-', '/', '@', '%'),
    maxLength: 30
  }),
  // Valid names with one special character somewhere.
  fc.tuple(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,20}$/), fc.constantFrom(';', '\n', '\r', '\0', ' ', '\t', '\\', '#', 'é', ''), fc.nat(25))
    .map(([s, c, i]) => s.slice(0, i) + c + s.slice(i))
)

type Kind = 'name' | 'map' | 'key' | 'value' | 'other'

type Builder = {
  name: string
  /** Valid arguments; each position in turn is replaced by an arbitrary string. */
  valid: string[]
  kinds: Kind[]
  build: (a: string[]) => Command<unknown>
  /** The tokens the line must split into. */
  tokens: (a: string[]) => string[]
}

const s = (a: string[], i: number): string => a[i] as string
/** How a map value goes on the command line: its spaces escaped as `\ ` (docs/runtime-api.md#escaping-and-injection). */
const escaped = (v: string): string => v.replaceAll(' ', '\\ ')

const builders: Builder[] = [
  { name: 'showStat', valid: ['webservers'], kinds: ['name'], build: a => cmd.showStat(s(a, 0)), tokens: a => ['show', 'stat', s(a, 0), '-1', '-1'] },
  { name: 'showServersState', valid: ['webservers'], kinds: ['name'], build: a => cmd.showServersState(s(a, 0)), tokens: a => ['show', 'servers', 'state', s(a, 0)] },
  { name: 'addBackend', valid: ['dyn1', 'mydefaults'], kinds: ['name', 'name'], build: a => cmd.addBackend(s(a, 0), s(a, 1)), tokens: a => ['add', 'backend', s(a, 0), 'from', s(a, 1)] },
  {
    name: 'addBackend with mode',
    valid: ['dyn1', 'mydefaults', 'http'],
    kinds: ['name', 'name', 'other'],
    build: a => cmd.addBackend(s(a, 0), s(a, 1), s(a, 2) as 'http'),
    tokens: a => ['add', 'backend', s(a, 0), 'from', s(a, 1), 'mode', s(a, 2)]
  },
  { name: 'publishBackend', valid: ['dyn1'], kinds: ['name'], build: a => cmd.publishBackend(s(a, 0)), tokens: a => ['publish', 'backend', s(a, 0)] },
  { name: 'unpublishBackend', valid: ['dyn1'], kinds: ['name'], build: a => cmd.unpublishBackend(s(a, 0)), tokens: a => ['unpublish', 'backend', s(a, 0)] },
  { name: 'delBackend', valid: ['dyn1'], kinds: ['name'], build: a => cmd.delBackend(s(a, 0)), tokens: a => ['del', 'backend', s(a, 0)] },
  { name: 'waitBackendRemovable', valid: ['dyn1'], kinds: ['name'], build: a => cmd.waitBackendRemovable(s(a, 0), 1000), tokens: a => ['wait', '1000ms', 'be-removable', s(a, 0)] },
  {
    name: 'setServerState',
    valid: ['b', 's', 'maint'],
    kinds: ['name', 'name', 'other'],
    build: a => cmd.setServerState(s(a, 0), s(a, 1), s(a, 2) as 'maint'),
    tokens: a => ['set', 'server', `${s(a, 0)}/${s(a, 1)}`, 'state', s(a, 2)]
  },
  { name: 'shutdownSessions', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.shutdownSessions(s(a, 0), s(a, 1)), tokens: a => ['shutdown', 'sessions', 'server', `${s(a, 0)}/${s(a, 1)}`] },
  { name: 'disableAgent', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.disableAgent(s(a, 0), s(a, 1)), tokens: a => ['disable', 'agent', `${s(a, 0)}/${s(a, 1)}`] },
  { name: 'enableAgent', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.enableAgent(s(a, 0), s(a, 1)), tokens: a => ['enable', 'agent', `${s(a, 0)}/${s(a, 1)}`] },
  { name: 'enableHealth', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.enableHealth(s(a, 0), s(a, 1)), tokens: a => ['enable', 'health', `${s(a, 0)}/${s(a, 1)}`] },
  { name: 'disableHealth', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.disableHealth(s(a, 0), s(a, 1)), tokens: a => ['disable', 'health', `${s(a, 0)}/${s(a, 1)}`] },
  {
    name: 'waitServerRemovable',
    valid: ['b', 's'],
    kinds: ['name', 'name'],
    build: a => cmd.waitServerRemovable(s(a, 0), s(a, 1), 250),
    tokens: a => ['wait', '250ms', 'srv-removable', `${s(a, 0)}/${s(a, 1)}`]
  },
  { name: 'delServer', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.delServer(s(a, 0), s(a, 1)), tokens: a => ['del', 'server', `${s(a, 0)}/${s(a, 1)}`] },
  {
    name: 'addServer',
    valid: ['b', 's', '127.0.0.1', '10.0.0.2', 'api.example.com', 'none'],
    kinds: ['name', 'name', 'other', 'other', 'other', 'other'],
    build: a => cmd.addServer(s(a, 0), s(a, 1), { address: s(a, 2), port: 80, check: true, checkAddr: s(a, 3), ssl: true, sni: s(a, 4), sslVerify: s(a, 5) as 'none' }),
    // IPv6 goes in brackets both as the address and as the check `addr` (3.4.7 refuses a bare `addr ::1`);
    // an accepted value holding ':' is IPv6 (e.g. fast-check's 'a::', which once failed this test).
    tokens: a => ['add', 'server', `${s(a, 0)}/${s(a, 1)}`, s(a, 2).includes(':') ? `[${s(a, 2)}]:80` : `${s(a, 2)}:80`, 'check', 'addr', s(a, 3).includes(':') ? `[${s(a, 3)}]` : s(a, 3), 'init-state', 'down', 'ssl', 'verify', s(a, 5), 'sni', `str(${s(a, 4)})`]
  },
  { name: 'setServerWeight', valid: ['b', 's'], kinds: ['name', 'name'], build: a => cmd.setServerWeight(s(a, 0), s(a, 1), 10), tokens: a => ['set', 'server', `${s(a, 0)}/${s(a, 1)}`, 'weight', '10'] },
  {
    name: 'setServerAddr',
    valid: ['b', 's', '::1'],
    kinds: ['name', 'name', 'other'],
    build: a => cmd.setServerAddr(s(a, 0), s(a, 1), s(a, 2), 8080),
    tokens: a => ['set', 'server', `${s(a, 0)}/${s(a, 1)}`, 'addr', s(a, 2), 'port', '8080']
  },
  { name: 'showMapEntries', valid: ['virt@paths.map'], kinds: ['map'], build: a => cmd.showMapEntries(s(a, 0), 2), tokens: a => ['show', 'map', '@2', s(a, 0)] },
  { name: 'countMapEntries', valid: ['virt@paths.map'], kinds: ['map'], build: a => cmd.countMapEntries(s(a, 0)), tokens: a => ['show', 'map', s(a, 0)] },
  {
    name: 'addMapEntry',
    valid: ['virt@paths.map', '/alpha', 'dyn1'],
    kinds: ['map', 'key', 'value'],
    build: a => cmd.addMapEntry(s(a, 0), s(a, 1), s(a, 2)),
    tokens: a => ['add', 'map', s(a, 0), s(a, 1), escaped(s(a, 2))]
  },
  {
    name: 'setMapEntry',
    valid: ['virt@paths.map', '/alpha', 'dyn1'],
    kinds: ['map', 'key', 'value'],
    build: a => cmd.setMapEntry(s(a, 0), s(a, 1), s(a, 2)),
    tokens: a => ['set', 'map', s(a, 0), s(a, 1), escaped(s(a, 2))]
  },
  { name: 'delMapEntry', valid: ['virt@paths.map', '/alpha'], kinds: ['map', 'key'], build: a => cmd.delMapEntry(s(a, 0), s(a, 1)), tokens: a => ['del', 'map', s(a, 0), s(a, 1)] },
  { name: 'prepareMap', valid: ['virt@paths.map'], kinds: ['map'], build: a => cmd.prepareMap(s(a, 0)), tokens: a => ['prepare', 'map', s(a, 0)] },
  { name: 'commitMap', valid: ['virt@paths.map'], kinds: ['map'], build: a => cmd.commitMap(s(a, 0), 3), tokens: a => ['commit', 'map', '@3', s(a, 0)] },
  { name: 'clearMapVersion', valid: ['virt@paths.map'], kinds: ['map'], build: a => cmd.clearMapVersion(s(a, 0), 4), tokens: a => ['clear', 'map', '@4', s(a, 0)] },
  {
    name: 'addMapPayload',
    valid: ['virt@paths.map', '/k', 'v'],
    kinds: ['map', 'key', 'value'],
    build: a => cmd.addMapPayload(s(a, 0), 5, [{ key: s(a, 1), value: s(a, 2) }]),
    tokens: a => ['add', 'map', '@5', s(a, 0), '<<']
  }
]

/** HAProxy's tokenizer on our output: split at blanks not escaped by `\`, then drop the escapes. */
function tokenize (text: string): string[] {
  return text.split(/(?<!\\) /).map(t => t.replaceAll('\\ ', ' '))
}

function checkLine (b: Builder, args: string[], position: number): void {
  let command: Command<unknown>
  try {
    command = b.build(args)
  } catch (err) {
    // Refused: only ever with a RuntimeArgumentError, raised before any command exists.
    expect(err).toBeInstanceOf(RuntimeArgumentError)
    return
  }
  const { text } = command
  expect(text).not.toMatch(/[;\0\r\n]/)
  // The only backslash allowed is the `\ ` escape of a blank inside a map value.
  expect(text.replaceAll('\\ ', '')).not.toContain('\\')
  expect(text).not.toMatch(/ {2}|^ | $/)
  const tokens = tokenize(text)
  const expected = b.tokens(args).map(t => t.replaceAll('\\ ', ' '))
  expect(tokens).toEqual(expected)
  // What reaches the socket is UTF-8: the line must survive the round trip unchanged.
  expect(Buffer.from(text, 'utf8').toString('utf8')).toBe(text)
  const value = args[position] as string
  const kind = b.kinds[position]
  if (kind === 'name') expect(value).toMatch(NAME_PATTERN)
  if (kind === 'map') expect(value).toMatch(MAP_NAME_PATTERN)
  if (kind === 'key') expect(value).not.toMatch(/^#| /)
}

describe.each(builders)('$name', b => {
  it('composes the intended tokens from the valid arguments', () => {
    expect(tokenize(b.build(b.valid).text)).toEqual(b.tokens(b.valid).map(t => t.replaceAll('\\ ', ' ')))
  })

  it.each(b.kinds.map((kind, position) => ({ kind, position })))('argument $position ($kind): refused, or exactly one verbatim token', ({ position }) => {
    fc.assert(fc.property(hostile, value => {
      const args = [...b.valid]
      args[position] = value
      checkLine(b, args, position)
    }), { numRuns: RUNS })
  })
})

describe('names', () => {
  it('every name a builder accepts matches NAME_PATTERN', () => {
    fc.assert(fc.property(hostile, fc.constantFrom(...builders.filter(b => b.kinds.includes('name'))), (value, b) => {
      for (const [position, kind] of b.kinds.entries()) {
        if (kind !== 'name') continue
        const args = [...b.valid]
        args[position] = value
        let accepted = true
        try { b.build(args) } catch (err) {
          expect(err).toBeInstanceOf(RuntimeArgumentError)
          accepted = false
        }
        if (accepted) expect(value).toMatch(NAME_PATTERN)
      }
    }), { numRuns: RUNS })
  })

  it('every string matching NAME_PATTERN is accepted as a backend name', () => {
    fc.assert(fc.property(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/), name => {
      expect(cmd.delBackend(name).text).toBe(`del backend ${name}`)
    }), { numRuns: RUNS })
  })
})

describe('numbers', () => {
  it('wait delays outside 1..3600000 ms or not integers are refused', () => {
    fc.assert(fc.property(fc.oneof(fc.double().filter(d => !Number.isInteger(d)), fc.integer({ min: -1e9, max: 0 }), fc.integer({ min: 3_600_001, max: 1e12 })), ms => {
      expect(() => cmd.waitBackendRemovable('b', ms)).toThrow(RuntimeArgumentError)
      expect(() => cmd.waitServerRemovable('b', 's', ms)).toThrow(RuntimeArgumentError)
    }), { numRuns: RUNS })
  })

  it('integer wait delays in range become `<n>ms`', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 3_600_000 }), ms => {
      expect(cmd.waitBackendRemovable('b', ms).text).toBe(`wait ${ms}ms be-removable b`)
      expect(cmd.waitBackendRemovable('b', ms).extraTimeMs).toBe(ms)
    }), { numRuns: RUNS })
  })
})
