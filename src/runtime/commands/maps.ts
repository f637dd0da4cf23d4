/**
 * Map commands: listing, single-entry changes and the versioned bulk load (`prepare map`, `add map @N
 * <map> <<` payloads, `commit map`).
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Command, ReplySink } from './core.ts'
import { expectEmpty, line, rejection, showCommand } from './core.ts'
import type { PayloadCommand } from '../client.ts'
import { RuntimeArgumentError, RuntimeProtocolError } from '../errors.ts'
import { MAX_LINE_BYTES, lastLine } from '../protocol.ts'
import { checkMapKey, checkMapName, checkMapValue } from '../validation.ts'

export type MapEntry = { key: string, value: string }

export type MapInfo = {
  /** How commands address the map: `virt@<name>` or the file path as written (without `opt@`). */
  name: string
  /** HAProxy's numeric id (`#<id>`); depends on the configuration layout. */
  id: number
  currentVersion: number | null
  nextVersion: number | null
  /** HAProxy's description (`pattern loaded from file … used by map at file … line …`). */
  description: string
}

// --- composing --------------------------------------------------------------------------------

/**
 * `<verb> <args…> <value>` where the value may hold spaces: each is sent as `\ `, the CLI's escape
 * for a blank inside one argument (docs/runtime-api.md#escaping-and-injection); without it HAProxy keeps only the first
 * word of the value and silently drops the rest. checkMapValue has already refused `\`, `;`, control
 * characters and `<<`, so a space is the only byte escaped.
 */
function lineWithValue (verb: string, args: string[], value: string): string {
  const text = line(verb, ...args) + ' ' + checkMapValue(value).replaceAll(' ', '\\ ')
  if (Buffer.byteLength(text) + 1 > MAX_LINE_BYTES) {
    throw new RuntimeArgumentError(verb, `command would be ${Buffer.byteLength(text)} bytes, over the ${MAX_LINE_BYTES}-byte line limit`)
  }
  return text
}

/** `@<version>` as `prepare map` handed it out. */
function versionArg (version: number): string {
  if (!Number.isInteger(version) || version < 0 || version > 0xffffffff) {
    throw new RuntimeArgumentError('version', 'must be an unsigned 32-bit integer')
  }
  return `@${version}`
}

// --- parsing ----------------------------------------------------------------------------------

const MAP_LIST_LINE = /^(\d+) \((.*?)\) (.*)$/

/** `show map` list: a `# id (file) description` header, then one line per map (docs/runtime-api.md#maps). */
export function parseShowMapList (reply: string): MapInfo[] {
  const lines = reply.split('\n').filter(l => l.length > 0)
  return lines.slice(1).map(l => {
    const m = MAP_LIST_LINE.exec(l)
    if (m === null) throw new RuntimeProtocolError('show map: unexpected line in the map list', { verb: 'show map', reply })
    const description = m[3] as string
    const curr = /\bcurr_ver=(\d+)/.exec(description)
    const next = /\bnext_ver=(\d+)/.exec(description)
    return {
      name: m[2] as string,
      id: Number(m[1]),
      currentVersion: curr === null ? null : Number(curr[1]),
      nextVersion: next === null ? null : Number(next[1]),
      description
    }
  })
}

/**
 * Receives the entries of one `show map` reply, one at a time and in order, as the reply arrives;
 * `end` gives the result. Only what it keeps stays in memory: a page, a count, a digest.
 */
export type MapEntryVisitor<T> = {
  readonly entry: (key: string, value: string) => void
  readonly end: () => T
}

/**
 * The lines of one reply given to `line` as they complete, whatever the pieces they arrive in (a
 * piece may end inside a line, or between the two `\n` of the terminator); empty lines are skipped:
 * one can only end a reply, never be inside one. `validStart` decides from the reply's first two
 * characters whether it is the expected output; any other reply is kept (its first 64 KiB) and ends
 * in `showCommand`'s own verdict on it: HAProxy's refusal, or a protocol error.
 */
function lineSink<T> (verb: string, text: string, validStart: (head: string) => boolean, line: (l: string) => void, end: () => T): ReplySink<T> {
  let partial = ''
  let mode: 'unknown' | 'lines' | 'other' = 'unknown'
  let other = ''
  const lines = (piece: string): void => {
    let start = 0
    let nl = piece.indexOf('\n')
    if (partial !== '') {
      if (nl === -1) { partial += piece; return }
      const l = partial + piece.slice(0, nl)
      partial = ''
      if (l !== '') line(l)
      start = nl + 1
      nl = piece.indexOf('\n', start)
    }
    while (nl !== -1) {
      if (nl > start) line(piece.slice(start, nl))
      start = nl + 1
      nl = piece.indexOf('\n', start)
    }
    partial = piece.slice(start)
  }
  return {
    write: piece => {
      if (piece === '') return
      if (mode === 'unknown') {
        other += piece
        if (other.length < 2) return
        mode = validStart(other) ? 'lines' : 'other'
        if (mode === 'lines') { piece = other; other = '' }
      } else if (mode === 'other') {
        if (other.length < MAX_UNEXPECTED_REPLY) other += piece.slice(0, MAX_UNEXPECTED_REPLY - other.length)
        return
      }
      if (mode === 'lines') lines(piece)
    },
    end: () => {
      // Fewer than two characters: nothing, or a lone `\n` (nothing either), or not the expected output.
      if (mode === 'unknown' && other !== '' && other !== '\n') mode = 'other'
      if (mode === 'other') {
        // Fails by construction (nothing is valid): the same verdict parse() gives a whole reply.
        return showCommand<T>(verb, text, () => { throw new Error('unreachable') }, () => false).parse(other.replace(/\n+$/, ''))
      }
      if (partial !== '') { line(partial); partial = '' }
      return end()
    }
  }
}

/** Text of an unexpected reply kept for its error: enough for any refusal, bounded for garbage. */
const MAX_UNEXPECTED_REPLY = 64 * 1024

/** A command whose reply goes through a sink, piece by piece or (parse) whole: both give the same. */
function sinkCommand<T> (verb: string, text: string, sink: () => ReplySink<T>): Command<T> {
  return {
    text,
    verb,
    sink,
    parse: reply => {
      const s = sink()
      s.write(reply)
      return s.end()
    }
  }
}

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)

/**
 * `show map [@<ver>] <map>` entries to a visitor: `<0x id> <key> <value>` per line, in insertion order
 * (docs/runtime-api.md#maps), split at the first two spaces: keys written through hapctl have no spaces, so
 * the value is the rest of the line, inner spaces included. A line that is not an entry can only be
 * the continuation of a value holding a newline (stored by someone else with `\` + LF); it is joined
 * back to it, so an entry reaches the visitor once the next one starts (or the reply ends).
 */
function entriesSink<T> (verb: string, text: string, visitor: MapEntryVisitor<T>): ReplySink<T> {
  let key: string | undefined
  let value = ''
  const line = (l: string): void => {
    const sp1 = l.indexOf(' ')
    let ok = sp1 > 2 && l.charCodeAt(0) === 0x30 && l.charCodeAt(1) === 0x78
    for (let i = 2; ok && i < sp1; i++) ok = isHex(l.charCodeAt(i))
    const sp2 = ok ? l.indexOf(' ', sp1 + 1) : -1
    if (sp2 !== -1) {
      if (key !== undefined) visitor.entry(key, value)
      key = l.slice(sp1 + 1, sp2)
      value = l.slice(sp2 + 1)
    } else if (key !== undefined) value += '\n' + l
    else throw new RuntimeProtocolError('show map: the reply does not start with an entry', { verb: 'show map', reply: l })
  }
  return lineSink(verb, text, looksLikeEntries, line, () => {
    if (key !== undefined) visitor.entry(key, value)
    key = undefined
    return visitor.end()
  })
}

/** Every entry, as a list. */
function collectEntries (): MapEntryVisitor<MapEntry[]> {
  const entries: MapEntry[] = []
  return { entry: (key, value) => { entries.push({ key, value }) }, end: () => entries }
}

/** Counts the lines that start an entry (`0x…`); nothing else is kept. */
function countSink (verb: string, text: string): ReplySink<number> {
  let n = 0
  return lineSink(verb, text, looksLikeEntries, l => { if (l.startsWith('0x')) n++ }, () => n)
}

const looksLikeEntries = (r: string): boolean => r === '' || r.startsWith('0x')

function showMapText (map: string, version?: number): string {
  return version === undefined ? line('show map', checkMapName(map)) : line('show map', versionArg(version), checkMapName(map))
}

// --- builders ---------------------------------------------------------------------------------

/** `show map` (management §9.3): every map, with its id and versions. Needs level admin (docs/runtime-api.md#privilege-level). */
export function showMaps (): Command<MapInfo[]> {
  return showCommand('show map', 'show map', parseShowMapList, r => r.startsWith('# id'))
}

/**
 * `show map [@<ver>] <map>` (management §9.3): the entries of the current version, or of a pending
 * one. An unknown version answers like an empty map.
 */
export function showMapEntries (map: string, version?: number): Command<MapEntry[]> {
  return scanMapEntries(map, collectEntries, version)
}

/**
 * `show map [@<ver>] <map>` with each entry given to a new visitor from `visitor` as the reply
 * arrives: a page, a digest or a lookup of a million-entry map holds what the visitor keeps, not the
 * map (management §9.3).
 */
export function scanMapEntries<T> (map: string, visitor: () => MapEntryVisitor<T>, version?: number): Command<T> {
  const text = showMapText(map, version)
  return sinkCommand('show map', text, () => entriesSink('show map', text, visitor()))
}

/**
 * `show map [@<ver>] <map>`, counting lines only. Used instead of `entry_cnt`, which counts every
 * version and is wrong for a map used by two converters (docs/runtime-api.md#maps).
 */
export function countMapEntries (map: string, version?: number): Command<number> {
  const text = showMapText(map, version)
  return sinkCommand('show map', text, () => countSink('show map', text))
}

/**
 * `add map <map> <key> <value>` (management §9.3): answers an empty line; never de-duplicates
 * (docs/runtime-api.md#maps). Spaces inside the value are escaped.
 */
export function addMapEntry (map: string, key: string, value: string): Command<void> {
  const verb = 'add map'
  return { text: lineWithValue(verb, [checkMapName(map), checkMapKey(key)], value), verb, parse: expectEmpty(verb) }
}

/**
 * `set map <map> <key> <value>` (management §9.3): changes every entry with that key; `entry not
 * found.` (kind not_found) when there is none, and it does not insert (docs/runtime-api.md#maps).
 */
export function setMapEntry (map: string, key: string, value: string): Command<void> {
  const verb = 'set map'
  return { text: lineWithValue(verb, [checkMapName(map), checkMapKey(key)], value), verb, parse: expectEmpty(verb) }
}

/**
 * `set map` for an upsert: `entry not found.` is an answer here (false: nothing was changed, the caller
 * adds the entry), not a refusal, so the common case of a new key raises no error. Any other reply
 * is refused as setMapEntry's is.
 */
export function setMapEntryIfPresent (map: string, key: string, value: string): Command<boolean> {
  const verb = 'set map'
  const refuse = expectEmpty(verb)
  return {
    text: lineWithValue(verb, [checkMapName(map), checkMapKey(key)], value),
    verb,
    parse: reply => {
      if (reply === 'entry not found.') return false
      refuse(reply)
      return true
    }
  }
}

/** One line of `get map`: the outcome of a lookup for one converter that uses the map. */
export type MapLookup = {
  /** Match method: `beg` (map_beg), `str` (map / map_str), `reg`, `sub`, `dom`, `ip`… */
  match: string
  caseSensitive: boolean
  found: boolean
  /** The entry that matched, when found. */
  key: string | undefined
}

const GET_MAP_LINE = /^type=([a-z_]+), case=(sensitive|insensitive), found=(yes|no)(?:, idx=[a-z]+, key="(.*?)", value=".*", type="[a-z]+")?$/

/**
 * `get map <map> <sample>` (management §9.3): looks the sample up the way the converters that use the
 * map do (a pattern match, not an exact key lookup), one line per converter (docs/runtime-api.md#maps).
 */
export function getMapLookup (map: string, sample: string): Command<MapLookup[]> {
  const verb = 'get map'
  return showCommand(verb, line(verb, checkMapName(map), checkMapKey(sample)), reply => reply.split('\n').filter(l => l !== '').map(l => {
    const m = GET_MAP_LINE.exec(l)
    if (m === null) throw new RuntimeProtocolError('get map: unexpected line', { verb, reply })
    return { match: m[1] as string, caseSensitive: m[2] === 'sensitive', found: m[3] === 'yes', key: m[4] }
  }), r => r.startsWith('type='))
}

/**
 * Whether `key` is an entry of the map, from `get map <map> <key>` alone, when that can be told:
 * with case-sensitive `beg` or `str` matching, an existing entry equal to the sample is always the
 * match (the longest prefix of a string is itself), so another match or none means it is absent.
 * Other methods (`reg`, `sub`, `ip`…) may match another entry first: undefined, read the map instead.
 */
export function exactKeyFromLookup (lookups: readonly MapLookup[], key: string): boolean | undefined {
  if (lookups.length === 0 || !lookups.every(l => (l.match === 'beg' || l.match === 'str') && l.caseSensitive)) return undefined
  return lookups.some(l => l.found && l.key === key)
}

/**
 * `del map <map> <key>` (management §9.3): deletes ONE entry, the oldest, although the manual says all
 * (docs/runtime-api.md#maps). Resolves true when one was deleted, false on `Key not found.`.
 */
export function delMapEntry (map: string, key: string): Command<boolean> {
  const verb = 'del map'
  return {
    text: line(verb, checkMapName(map), checkMapKey(key)),
    verb,
    parse: reply => {
      if (reply === '') return true
      if (lastLine(reply) === 'Key not found.') return false
      throw rejection(verb, reply)
    }
  }
}

/** `prepare map <map>` (management §9.3): a new, empty pending version, `New version created: <N>`. */
export function prepareMap (map: string): Command<number> {
  const verb = 'prepare map'
  return {
    text: line(verb, checkMapName(map)),
    verb,
    parse: reply => {
      const m = /^New version created: (\d+)$/.exec(lastLine(reply))
      if (m === null) throw rejection(verb, reply)
      return Number(m[1])
    }
  }
}

/**
 * `commit map @<ver> <map>` (management §9.3): makes the version current, atomically for lookups
 * (docs/runtime-api.md#versioned-map-loads). `Version number out of range.` when someone committed or prepared after us.
 */
export function commitMap (map: string, version: number): Command<void> {
  const verb = 'commit map'
  return { text: line(verb, versionArg(version), checkMapName(map)), verb, parse: expectEmpty(verb) }
}

/** `clear map @<ver> <map>` (management §9.3): empties a pending version we abandon. */
export function clearMapVersion (map: string, version: number): Command<void> {
  const verb = 'clear map'
  return { text: line(verb, versionArg(version), checkMapName(map)), verb, parse: expectEmpty(verb) }
}

/**
 * `add map @<ver> <map> <<` + payload (management §9.3 "payload", docs/runtime-api.md#escaping-and-injection): one `key value`
 * line per entry. In a payload the key is the first word and the value the rest of the line, spaces
 * kept, escapes NOT processed, so keys and values go raw; checkMapKey/checkMapValue guarantee a line
 * never starts with a blank, holds no newline and has a value (a key-only line would swallow the next).
 */
export function addMapPayload (map: string, version: number, entries: readonly MapEntry[]): PayloadCommand<void> {
  const verb = 'add map payload'
  if (entries.length === 0) throw new RuntimeArgumentError(verb, 'a payload needs at least one entry')
  let payload = ''
  for (const e of entries) payload += `${checkMapKey(e.key)} ${checkMapValue(e.value)}\n`
  return { text: line('add map', versionArg(version), checkMapName(map), '<<'), verb, payload, parse: expectEmpty(verb) }
}

/**
 * Splits entries into `add map @<ver> <map> <<` payload commands whose whole request (command line,
 * payload, final empty line) is at most 16000 bytes (MAX_PAYLOAD_REQUEST_BYTES). Each is sent on its own
 * fresh connection (RuntimeClient.executePayload), so no payload line can end at the 16384-byte stream
 * boundary where HAProxy would cut the payload short (docs/runtime-api.md#payload-boundary). One entry line is at most
 * 2050 bytes (MAP_KEY_MAX_BYTES + MAP_VALUE_MAX_BYTES + 2), so every entry fits in some chunk.
 * Each key and value is checked once, and each payload built as one string as it goes: a million
 * entries are split in one pass.
 */
export function addMapPayloads (map: string, version: number, entries: readonly MapEntry[]): Array<PayloadCommand<void>> {
  const verb = 'add map payload'
  const text = line('add map', versionArg(version), checkMapName(map), '<<')
  const header = Buffer.byteLength(text) + 1
  // MAX_LINE_BYTES (16000) is also the client's MAX_PAYLOAD_REQUEST_BYTES (not imported: client.ts imports this module).
  const budget = MAX_LINE_BYTES - header - 1
  const chunks: Array<PayloadCommand<void>> = []
  const push = (payload: string): void => { chunks.push({ text, verb, payload, parse: expectEmpty(verb) }) }
  let payload = ''
  let size = 0
  for (const e of entries) {
    const entryLine = `${checkMapKey(e.key)} ${checkMapValue(e.value)}\n`
    const bytes = Buffer.byteLength(entryLine)
    if (size + bytes > budget && size > 0) {
      push(payload)
      payload = ''
      size = 0
    }
    payload += entryLine
    size += bytes
  }
  if (size > 0) push(payload)
  return chunks
}
