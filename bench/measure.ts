/**
 * Timing, bounded concurrency and the result table of the benchmark.
 */

/** Wall-clock seconds that `fn` takes. */
export async function seconds (fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await fn()
  return (performance.now() - start) / 1000
}

/** Runs fn(0) … fn(n - 1) with at most `concurrency` in flight; rejects at the first failure. */
export async function pool (n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      await fn(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
}

export function median (values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/**
 * One line of the table: a hapctl call and the raw ways of doing the same work, measured in the same
 * run. `unit` 'ops/s' holds rates; 's' holds durations of one whole operation.
 */
export type Row = {
  /** Stable name of the line (bench/targets.ts and the JSON file refer to it). */
  id: string
  operation: string
  hapctl: string
  unit: 'ops/s' | 's'
  raw: { a?: number, b?: number, c?: number }
  value: number
  /**
   * The service's resident memory over the measurement: `before` is its RSS when the peak was reset,
   * `peak` the highest RSS reached (VmHWM) during the worst of the runs. Absent when not measured.
   */
  memory?: { before: number, peak: number }
}

/** hapctl's throughput divided by raw's: 1 = as fast, 0.25 = hapctl takes 4× as long. */
export function ratio (row: Row, raw: number | undefined): number | undefined {
  if (raw === undefined || raw === 0 || row.value === 0) return undefined
  return row.unit === 's' ? raw / row.value : row.value / raw
}

function fmt (v: number | undefined, unit: Row['unit']): string {
  if (v === undefined) return '—'
  if (unit === 's') return `${v.toFixed(3)} s`
  return v >= 100 ? String(Math.round(v)) : v.toPrecision(3)
}

function fmtRatio (v: number | undefined): string {
  if (v === undefined) return '—'
  return v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)
}

const MIB = 1024 * 1024

/** `peak MiB (+growth over the RSS at the start)`, e.g. `182 (+41)`. */
function fmtMemory (m: Row['memory']): string {
  if (m === undefined) return ''
  return `${Math.round(m.peak / MIB)} (+${Math.round(Math.max(0, m.peak - m.before) / MIB)})`
}

/** A Markdown table (readable in a terminal, pasteable into bench/README.md). */
export function table (rows: readonly Row[]): string {
  const header = ['operation', 'hapctl call', 'unit', 'raw (a)', 'raw (b)', 'raw (c)', 'hapctl', 'hapctl/(a)', 'hapctl/(b)', 'hapctl/(c)', 'peak RSS MiB']
  const body = rows.map(r => [
    r.operation, r.hapctl, r.unit,
    fmt(r.raw.a, r.unit), fmt(r.raw.b, r.unit), fmt(r.raw.c, r.unit), fmt(r.value, r.unit),
    fmtRatio(ratio(r, r.raw.a)), fmtRatio(ratio(r, r.raw.b)), fmtRatio(ratio(r, r.raw.c)), fmtMemory(r.memory)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map(b => (b[i] as string).length)))
  const numeric = (i: number): boolean => i >= 3
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => numeric(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => numeric(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2)).join('|') + '|'
  return [line(header), sep, ...body.map(line)].join('\n')
}

/** One row as the JSON result file holds it: the same numbers, ratios computed, memory in MiB. */
export function rowJson (r: Row): Record<string, unknown> {
  const round = (v: number | undefined, digits = 4): number | null => v === undefined ? null : Number(v.toPrecision(digits))
  return {
    id: r.id,
    operation: r.operation,
    hapctl: r.hapctl,
    unit: r.unit,
    raw: { a: round(r.raw.a), b: round(r.raw.b), c: round(r.raw.c) },
    value: round(r.value),
    ratio: { a: round(ratio(r, r.raw.a), 3), b: round(ratio(r, r.raw.b), 3), c: round(ratio(r, r.raw.c), 3) },
    memoryMiB: r.memory === undefined
      ? null
      : { before: round(r.memory.before / MIB), peak: round(r.memory.peak / MIB), growth: round(Math.max(0, r.memory.peak - r.memory.before) / MIB) }
  }
}
