/**
 * Parsers of `show …` output into typed objects. Columns are looked up by the header HAProxy prints,
 * never by position, so a build with more or fewer columns still parses.
 * @see https://docs.haproxy.org/3.4/management.html#9.1 (CSV format), #9.3 (show servers state, show info)
 */
import { RuntimeProtocolError } from './errors.ts'

export type Row = Readonly<Record<string, string>>

/** One CSV line as `show stat` writes it: fields are quoted only when they contain `,` or `"`. */
export function splitCsvLine (line: string): string[] {
  const fields: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { field += '"'; i++ } else if (c === '"') quoted = false
      else field += c
    } else if (c === '"' && field.length === 0) quoted = true
    else if (c === ',') { fields.push(field); field = '' } else field += c
  }
  fields.push(field)
  return fields
}

/**
 * `show stat` CSV: a `# pxname,svname,…` header, then one row per proxy, server and listener. With
 * `columns`, rows keep only those, and only those fields are cut out of each line: a row has 213
 * fields on 3.4.7, and a listing of a thousand backends splitting every one of them into a string
 * was most of GET /backends' time and garbage (bench/README.md, finding 2).
 */
export function parseShowStat (reply: string, columns?: readonly string[]): Row[] {
  const reader = new ShowStatReader(columns)
  reader.write(reply)
  return reader.end()
}

/**
 * parseShowStat() over a reply given in pieces (a piece may end anywhere, even inside a line): only
 * the unfinished last line of a piece is kept until the next one. end() returns the rows, or throws
 * RuntimeProtocolError when the reply did not start with the CSV header.
 */
export class ShowStatReader {
  readonly #columns: readonly string[] | undefined
  readonly #rows: Row[] = []
  /** Wanted columns, in the header's order: names and field positions. */
  #names: string[] | undefined
  #positions: number[] = []
  /** The unfinished line at the end of the last piece. */
  #carry = ''
  /** Set when the first line is not the CSV header: the text is kept for the error. */
  #invalid: string | undefined

  constructor (columns?: readonly string[]) {
    this.#columns = columns
  }

  write (text: string): void {
    if (this.#invalid !== undefined) { this.#invalid += text; return }
    let start = 0
    if (this.#carry !== '') {
      const nl = text.indexOf('\n')
      if (nl === -1) { this.#carry += text; return }
      const line = this.#carry + text.slice(0, nl)
      this.#carry = ''
      if (!this.#line(line, 0, line.length)) { this.#notCsv(text.slice(nl)); return }
      start = nl + 1
    }
    for (;;) {
      const nl = text.indexOf('\n', start)
      if (nl === -1) break
      if (!this.#line(text, start, nl)) { this.#notCsv(text.slice(nl)); return }
      start = nl + 1
    }
    if (start < text.length) this.#carry = text.slice(start)
  }

  /** Keeps the rest of a reply that is not CSV, for the error. */
  #notCsv (rest: string): void {
    this.#invalid = (this.#invalid ?? '') + rest
  }

  end (): Row[] {
    if (this.#carry !== '' && this.#invalid === undefined) this.#line(this.#carry, 0, this.#carry.length)
    this.#carry = ''
    if (this.#invalid !== undefined || this.#names === undefined) {
      throw new RuntimeProtocolError('show stat: the reply has no CSV header', { verb: 'show stat', reply: this.#invalid ?? '' })
    }
    return this.#rows
  }

  /** The line text[start, end) (no newline in it); false when the reply turned out not to be CSV. */
  #line (text: string, start: number, end: number): boolean {
    if (start === end) return true
    if (this.#names === undefined) {
      const header = text.slice(start, end)
      if (!header.startsWith('# pxname,')) { this.#invalid = header; return false }
      const names = splitCsvLine(header.slice(2))
      this.#names = []
      names.forEach((name, i) => {
        if (name !== '' && (this.#columns === undefined || this.#columns.includes(name))) {
          (this.#names as string[]).push(name)
          this.#positions.push(i)
        }
      })
      return true
    }
    const names = this.#names
    const positions = this.#positions
    const row: Record<string, string> = {}
    let field = 0
    let pos = start
    for (let w = 0; w < names.length; w++) {
      const wanted = positions[w] as number
      // Skip to the wanted field; a skipped field is cut only when quoted (it may hold a comma).
      while (field < wanted && pos <= end) {
        if (text.charCodeAt(pos) === QUOTE) pos = quotedField(text, pos, end)[1]
        else while (pos < end && text.charCodeAt(pos) !== COMMA) pos++
        pos++
        field++
      }
      if (pos > end) {
        row[names[w] as string] = ''
        continue
      }
      if (text.charCodeAt(pos) === QUOTE) {
        const [value, next] = quotedField(text, pos, end)
        row[names[w] as string] = value
        pos = next + 1
      } else {
        const next = fieldEnd(text, pos, end)
        row[names[w] as string] = text.slice(pos, next)
        pos = next + 1
      }
      field++
    }
    this.#rows.push(row)
    return true
  }
}

const QUOTE = 0x22
const COMMA = 0x2c

/** Where the unquoted field starting at `pos` ends: its comma, or the end of the line. */
function fieldEnd (text: string, pos: number, end: number): number {
  const comma = text.indexOf(',', pos)
  return comma === -1 || comma > end ? end : comma
}

/**
 * A field starting with a quote, read as splitCsvLine() does: `""` is a quote inside quotes, and
 * what follows the closing quote up to the comma belongs to the field. Its value and its comma's
 * position (or the end of the line).
 */
function quotedField (text: string, pos: number, end: number): [string, number] {
  let value = ''
  let quoted = true
  let i = pos + 1
  for (; i < end; i++) {
    const c = text[i]
    if (quoted) {
      if (c === '"' && i + 1 < end && text[i + 1] === '"') { value += '"'; i++ } else if (c === '"') quoted = false
      else value += c
    } else if (c === '"' && value.length === 0) quoted = true
    else if (c === ',') break
    else value += c
  }
  return [value, i]
}

/** `type` column of `show stat` (0-based field 32); use it, not svname, since a server may be named BACKEND. */
export const StatType = { FRONTEND: '0', BACKEND: '1', SERVER: '2', LISTENER: '3' } as const

/**
 * `show servers state [<backend>]`: a format version line (`1`), a `# be_id be_name …` header, then
 * one space-separated line per server with `-` for empty fields (docs/runtime-api.md#show-servers-state).
 */
export function parseServersState (reply: string): Row[] {
  const lines = reply.split('\n').filter(l => l.length > 0)
  if (lines[0] !== '1' || lines[1] === undefined || !lines[1].startsWith('# be_id ')) {
    throw new RuntimeProtocolError('show servers state: unexpected format (expected version 1 and a header)', { verb: 'show servers state', reply })
  }
  const names = lines[1].slice(2).split(' ')
  return lines.slice(2).map(line => {
    const values = line.split(' ')
    const row: Record<string, string> = {}
    names.forEach((name, i) => {
      const v = values[i] ?? '-'
      row[name] = v === '-' ? '' : v
    })
    return row
  })
}

export type ProcessInfo = {
  version: string
  releaseDate: string
  pid: number
  uptimeSec: number
  /** Epoch seconds of the process start; with `pid`, identifies one HAProxy process (docs/runtime-api.md#reload-and-restart). */
  startTimeSec: number
  /** 1 on an old worker after a reload: whatever is sent to it is lost. */
  stopping: boolean
  nodeName: string
}

/**
 * Bits of `show servers state` srv_admin_state (management §9.3): forced, inherited and config
 * maintenance, forced and inherited drain, maintenance from DNS resolution and from an FQDN set on the CLI.
 */
export const AdminStateBits = {
  FMAINT: 0x01,
  IMAINT: 0x02,
  CMAINT: 0x04,
  FDRAIN: 0x08,
  IDRAIN: 0x10,
  RMAINT: 0x20,
  HMAINT: 0x40,
  ANY_MAINT: 0x01 | 0x02 | 0x04 | 0x20 | 0x40,
  ANY_DRAIN: 0x08 | 0x10
} as const

/** Bits of srv_check_state and srv_agent_state (management §9.3). */
export const CheckStateBits = { INPROGRESS: 0x01, CONFIGURED: 0x02, ENABLED: 0x04, PAUSED: 0x08 } as const

/** `show info`: `Name: value` lines. */
export function parseShowInfo (reply: string): ProcessInfo {
  const fields = new Map<string, string>()
  for (const line of reply.split('\n')) {
    const i = line.indexOf(':')
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1).trim())
  }
  const num = (k: string): number => {
    // Number('') is 0: an empty field must not pass for pid 0.
    const v = fields.get(k) === '' ? NaN : Number(fields.get(k))
    if (!Number.isFinite(v)) throw new RuntimeProtocolError(`show info: field ${k} is missing or not a number`, { verb: 'show info', reply })
    return v
  }
  const version = fields.get('Version')
  if (version === undefined) throw new RuntimeProtocolError('show info: no Version field', { verb: 'show info', reply })
  return {
    version,
    releaseDate: fields.get('Release_date') ?? '',
    pid: num('Pid'),
    uptimeSec: num('Uptime_sec'),
    startTimeSec: num('Start_time_sec'),
    stopping: fields.get('Stopping') === '1',
    nodeName: fields.get('node') ?? ''
  }
}

/** `show backend`: `# name` then one backend name per line, configuration order then creation order. */
export function parseShowBackend (reply: string): string[] {
  const lines = reply.split('\n').filter(l => l.length > 0)
  if (lines[0] !== '# name') throw new RuntimeProtocolError('show backend: unexpected header', { verb: 'show backend', reply })
  return lines.slice(1)
}
