/**
 * Issue 9's targets, checked against the lines of one run: a ratio of hapctl's throughput to raw (a)'s
 * or raw (b)'s, or a comparison of two lines. A target whose lines did not run (BENCH_ONLY) is skipped.
 */
import { ratio } from './measure.ts'
import type { Row } from './measure.ts'

export type TargetResult = {
  target: string
  /** What was measured against what was needed, one entry per check. */
  checks: Array<{ line: string, measured: string, needed: string, met: boolean }>
  met: boolean
}

type Check = (rows: ReadonlyMap<string, Row>) => TargetResult['checks'][number] | undefined

const MIB = 1024 * 1024

/** hapctl ÷ raw (way) of line `id` at least `min`. */
function atLeast (id: string, way: 'a' | 'b', min: number): Check {
  return rows => {
    const row = rows.get(id)
    if (row === undefined) return undefined
    const r = ratio(row, row.raw[way])
    if (r === undefined) return undefined
    return { line: `${row.hapctl} ÷ raw (${way})`, measured: r.toFixed(2), needed: `≥ ${min}`, met: r >= min }
  }
}

/** Line `more` (in flight) does at least the throughput of line `base` (one at a time). */
function notSlower (more: string, base: string): Check {
  return rows => {
    const m = rows.get(more)
    const b = rows.get(base)
    if (m === undefined || b === undefined) return undefined
    return { line: `${m.hapctl} ÷ ${b.hapctl}`, measured: (m.value / b.value).toFixed(2), needed: '≥ 1', met: m.value >= b.value }
  }
}

/**
 * Listing a 100,000-entry map page by page makes the service grow by less than twice what listing a
 * 10,000-entry map page by page does (plus 8 MiB for the noise of a garbage-collected heap): ten
 * times the map, same page: it grows with the page, not the map.
 */
const flatListing: Check = rows => {
  const page = rows.get('list-small-map')?.memory
  const map = rows.get('list-whole-map')?.memory
  if (page === undefined || map === undefined) return undefined
  const growth = (m: { before: number, peak: number }): number => Math.max(0, m.peak - m.before) / MIB
  const limit = 2 * growth(page) + 8
  return {
    line: 'RSS growth listing the 100,000-entry map, against the 10,000-entry one',
    measured: `+${growth(map).toFixed(0)} MiB (10,000 entries: +${growth(page).toFixed(0)} MiB)`,
    needed: `≤ +${limit.toFixed(0)} MiB`,
    met: growth(map) <= limit
  }
}

const TARGETS: Array<{ target: string, checks: Check[] }> = [
  {
    target: 'one map-entry write, sequential (POST and PUT): ≥ 1.0 of raw (a), ≥ 0.3 of raw (b)',
    checks: ['write-post-seq', 'write-put-seq'].flatMap(id => [atLeast(id, 'a', 1), atLeast(id, 'b', 0.3)])
  },
  {
    target: '8 and 64 writers in flight, distinct keys: ≥ 2.0 of raw (a), ≥ 0.5 of raw (b)',
    checks: ['write-post-8', 'write-post-64', 'write-put-8', 'write-put-64'].flatMap(id => [atLeast(id, 'a', 2), atLeast(id, 'b', 0.5)])
  },
  {
    target: 'server weight/state change, sequential: ≥ 1.0 of raw (a)',
    checks: [atLeast('server-weight-seq', 'a', 1), atLeast('server-state-seq', 'a', 1)]
  },
  {
    target: 'backend create + server + publish; delete: ≥ 1.0 of raw (a)',
    checks: [atLeast('backend-create-seq', 'a', 1), atLeast('backend-delete-seq', 'a', 1)]
  },
  {
    target: 'GET /backends (1,000 backends) and GET …/servers: ≥ 0.8 of raw (a), 8 in flight not slower than 1',
    checks: [
      atLeast('read-backends-seq', 'a', 0.8), atLeast('read-servers-seq', 'a', 0.8),
      notSlower('read-backends-8', 'read-backends-seq'), notSlower('read-servers-8', 'read-servers-seq')
    ]
  },
  {
    target: '100,000-entry replace, JSON and text/plain: ≥ 0.67 of raw (a) (≤ 1.5× the time)',
    checks: [atLeast('replace-json', 'a', 0.67), atLeast('replace-text', 'a', 0.67)]
  },
  {
    target: 'listing 100,000 entries page by page: RSS grows with the page, not the map',
    checks: [flatListing]
  }
]

export function evaluateTargets (rows: readonly Row[]): TargetResult[] {
  const byId = new Map(rows.map(r => [r.id, r]))
  const out: TargetResult[] = []
  for (const t of TARGETS) {
    const checks = t.checks.map(c => c(byId)).filter(c => c !== undefined)
    if (checks.length > 0) out.push({ target: t.target, checks, met: checks.every(c => c.met) })
  }
  return out
}

/** The targets as lines of text: `met`/`MISSED`, then each check. */
export function formatTargets (results: readonly TargetResult[]): string {
  return results.map(t => `${t.met ? 'met   ' : 'MISSED'} ${t.target}\n` +
    t.checks.map(c => `         ${c.met ? ' ' : '✗'} ${c.line}: ${c.measured} (${c.needed})`).join('\n')).join('\n')
}
