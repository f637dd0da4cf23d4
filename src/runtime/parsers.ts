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
 * `columns`, rows keep only those: a listing of a thousand backends is ~100 columns per row, and
 * building every one of them dominated GET /backends (measured with bench/run.ts).
 */
export function parseShowStat (reply: string, columns?: readonly string[]): Row[] {
  const lines = reply.split('\n').filter(l => l.length > 0)
  const header = lines[0]
  if (header === undefined || !header.startsWith('# pxname,')) {
    throw new RuntimeProtocolError('show stat: the reply has no CSV header', { verb: 'show stat', reply })
  }
  const names = splitCsvLine(header.slice(2))
  const wanted = names.flatMap((name, i) => name !== '' && (columns === undefined || columns.includes(name)) ? [[name, i] as const] : [])
  return lines.slice(1).map(line => {
    const values = splitCsvLine(line)
    const row: Record<string, string> = {}
    for (const [name, i] of wanted) row[name] = values[i] ?? ''
    return row
  })
}

/** `type` column of `show stat` (0-based field 32); use it, not svname, since a server may be named BACKEND. */
export const StatType = { FRONTEND: '0', BACKEND: '1', SERVER: '2', LISTENER: '3' } as const

/**
 * `show servers state [<backend>]`: a format version line (`1`), a `# be_id be_name …` header, then
 * one space-separated line per server with `-` for empty fields (runtime-notes 4.8).
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
  /** Epoch seconds of the process start; with `pid`, identifies one HAProxy process (runtime-notes 6). */
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
