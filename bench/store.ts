/**
 * What the desired-state store and the audit trail cost a write, apart from HAProxy and HTTP:
 * - the disk's fsync (fdatasync of a 4 KiB append), which HAPCTL_STORE_SYNC=full pays before a reply;
 * - commits per second, one at a time and with 8 and 64 callers in flight (map.set, one per commit);
 * - a write as the store sees it (its commit, then its audit entry), the same three ways;
 * - a write through the executor and the audit recorder, as a request makes it (plan, one command
 *   answered in the next turn of the event loop as a socket's reply is, commit, audit entry), each
 *   writer on its own map (distinct locks: what 8 or 64 writers to distinct objects can share);
 * - a write through hapctl: `PUT /maps/:m/entries/:key` through buildApp (app.inject, no socket) on a
 *   model of HAProxy's map commands that answers in the next turn of the event loop. Every write to
 *   one map holds the map's lock until its commit is durable, so writers to one map share nothing.
 * Each store variant runs in turn, in alternating blocks (one after the other, the second runs on a
 * warmer JIT), and the median of the blocks is printed. See bench/README.md, "The store's share".
 *
 * npx tsx bench/store.ts                       # the SQLite store (full, normal) and the memory store
 * git show <rev>:src/engine/store/sqlite.ts > .tmp/baseline/store/sqlite.ts   # (and its audit.ts, changes.ts)
 * npx tsx bench/store.ts .tmp/baseline/store/sqlite.ts                        # … and that older one too
 */
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { buildApp } from '../src/app.ts'
import { AuditRecorder } from '../src/audit/recorder.ts'
import type { AuditContext } from '../src/audit/recorder.ts'
import { recordingRuntime } from '../src/audit/recording-runtime.ts'
import { loadConfig } from '../src/config.ts'
import { Executor } from '../src/engine/executor.ts'
import { commandStep } from '../src/engine/plan.ts'
import { MemoryStore } from '../src/engine/store/memory.ts'
import { SqliteStore } from '../src/engine/store/sqlite.ts'
import type { AuditRecord, DesiredStateStore, StoreSync } from '../src/engine/store/types.ts'
import type { Runtime } from '../src/runtime/client.ts'
import { setMapEntry } from '../src/runtime/commands/index.ts'
import { fakeMaps, MAP } from '../test/helpers/fake-maps.ts'
import { mapPutAuditRecord } from '../test/helpers/audit-record.ts'
import { fakeRuntime } from '../test/helpers/fake-runtime.ts'
import { median, pool } from './measure.ts'

type Opener = (file: string, synchronous: StoreSync) => Promise<DesiredStateStore>
type Variant = { name: string, open: () => Promise<DesiredStateStore> }

const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 5)
/** Operations per block and measure. */
const OPS = Number(process.env.BENCH_OPS ?? 300)

const dir = mkdtempSync(join(resolve('.tmp'), 'bench-store-'))
mkdirSync(dir, { recursive: true })
let files = 0

/**
 * The key of operation i: 500 keys, set again and again, so that every map stays at 500 entries
 * whatever the number of blocks, and each block measures the same writes.
 */
let seq = 0
const KEYS = 500

const meta = { actor: 'api', action: 'update', target: { kind: 'map', id: 'virt@bench.map' } }
const entry = (i: number, revision: number | null): AuditRecord => mapPutAuditRecord('virt@bench.map', i, `k${i % KEYS}`, revision)

/** Microseconds of each fdatasync after a 4 KiB append, in a file next to the stores. */
function fsyncTimes (n: number): number[] {
  const fd = openSync(join(dir, 'fsync.probe'), 'w')
  const page = Buffer.alloc(4096, 1)
  const times: number[] = []
  try {
    for (let i = 0; i < n; i++) {
      writeSync(fd, page)
      const t = performance.now()
      fdatasyncSync(fd)
      times.push((performance.now() - t) * 1000)
    }
  } finally {
    closeSync(fd)
  }
  return times
}

/** A runtime answering in the next turn of the event loop (a socket's reply never comes in the same one). */
function nextTurn (runtime: Runtime): Runtime {
  return {
    execute: (async (commands, options) => {
      await new Promise(resolve => setImmediate(resolve))
      return await runtime.execute(commands, options)
    }) as Runtime['execute'],
    close: async () => {}
  }
}

/** Maps m0 … m63, one per writer of the executor measure. */
const WRITER_MAPS = 64

type Rig = {
  app: Awaited<ReturnType<typeof buildApp>>
  executor: Executor
  recorder: AuditRecorder
}
type Measure = { name: string, run: (store: DesiredStateStore, rig: Rig, concurrency: number) => Promise<number> }

async function rigOn (store: DesiredStateStore): Promise<Rig> {
  // The memory config is ignored for the store (given as deps.store); it only keeps loadConfig quiet.
  const maps = fakeMaps([])
  const app = await buildApp({ config: loadConfig({ HAPCTL_STORE: 'memory' }), runtime: nextTurn(maps.runtime), logger: false, reconcile: false, store })
  await app.ready()
  // As app.ts wires them: the recorder's sink on the runtime, the revision from onCommit.
  const recorder = new AuditRecorder({ store, retentionDays: 90, maxEntries: 1_000_000 })
  const executor = new Executor({ runtime: recordingRuntime(nextTurn(fakeRuntime(() => '')), recorder.requestSink('hapctl')), store, lockTimeoutMs: 15_000 })
  executor.onCommit(event => { recorder.committed(event) })
  for (let m = 0; m < WRITER_MAPS; m++) await store.commit([{ op: 'map.replace', name: `m${m}`, entries: [] }], meta)
  return { app, executor, recorder }
}

const context = (i: number): AuditContext => ({
  commands: [], omitted: 0, revision: null, open: true, actor: () => null, requestId: `r${i}`, method: 'PUT', route: '/maps/:map/entries/:key', path: `/maps/m/entries/k${i}`, client: '127.0.0.1'
})

/** ops/s of `op(i)` for OPS operations with `concurrency` in flight. */
async function rate (concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await pool(OPS, concurrency, op)
  return OPS / ((performance.now() - start) / 1000)
}

const measures: Measure[] = [
  {
    name: 'commit (map.set)',
    run: async (store, _rig, concurrency) => await rate(concurrency, async () => {
      const i = seq++
      await store.commit([{ op: 'map.set', name: 'virt@bench.map', key: `k${i % KEYS}`, value: `v${i}` }], meta)
    })
  },
  {
    name: 'commit + audit entry',
    run: async (store, _rig, concurrency) => await rate(concurrency, async () => {
      const i = seq++
      const revision = await store.commit([{ op: 'map.set', name: 'virt@bench.map', key: `k${i % KEYS}`, value: `v${i}` }], meta)
      await store.appendAudit([entry(i, revision)])
    })
  },
  {
    name: 'executor + audit, own map each',
    run: async (_store, rig, concurrency) => await rate(concurrency, async () => {
      const i = seq++
      const map = `m${i % Math.min(concurrency, WRITER_MAPS)}`
      const key = `k${i % KEYS}`
      const ctx = context(i)
      await rig.recorder.context.run(ctx, async () => {
        await rig.executor.perform({ target: { kind: 'map', id: map } }, async () => ({
          target: { kind: 'map', id: map },
          action: 'update',
          steps: [commandStep([setMapEntry(map, key, `v${i}`)], [])],
          changes: [{ op: 'map.set', name: map, key, value: `v${i}` }]
        }))
      })
      ctx.open = false
      await rig.recorder.record({ ...entry(i, ctx.revision), commands: ctx.commands })
    })
  },
  {
    name: 'PUT …/entries/:key via buildApp',
    run: async (_store, { app }, concurrency) => await rate(concurrency, async () => {
      const i = seq++
      const res = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent(MAP)}/entries/k${i % KEYS}`, payload: { value: `v${i}` } })
      if (res.statusCode >= 300) throw new Error(`PUT answered ${res.statusCode}: ${res.body}`)
    })
  }
]

async function main (): Promise<void> {
  const sqliteOpener: Opener = async (file, synchronous) => await SqliteStore.open(file, { synchronous })
  const variants: Variant[] = [
    { name: 'sqlite full', open: async () => await sqliteOpener(join(dir, `${++files}.db`), 'full') },
    { name: 'sqlite normal', open: async () => await sqliteOpener(join(dir, `${++files}.db`), 'normal') },
    { name: 'memory', open: async () => new MemoryStore() }
  ]
  const baseline = process.argv[2]
  if (baseline !== undefined) {
    const mod = await import(resolve(baseline)) as { SqliteStore: { open: (file: string, opts: { synchronous: StoreSync }) => Promise<DesiredStateStore> } }
    variants.unshift({ name: 'baseline full', open: async () => await mod.SqliteStore.open(join(dir, `${++files}.db`), { synchronous: 'full' }) })
  }

  const fsync = fsyncTimes(300)
  const sorted = [...fsync].sort((a, b) => a - b)
  console.log(`fdatasync of a 4 KiB append (${dir}): median ${median(fsync).toFixed(0)} µs, p90 ${sorted[Math.floor(sorted.length * 0.9)]?.toFixed(0)} µs, ` +
    `min ${sorted[0]?.toFixed(0)} µs (${fsync.length} calls)`)

  const opened = await Promise.all(variants.map(async v => {
    const store = await v.open()
    await store.commit([{ op: 'map.replace', name: 'virt@bench.map', entries: [] }], meta)
    return { ...v, store, rig: await rigOn(store) }
  }))
  const results = new Map<string, number[]>()
  const concurrencies = [1, 8, 64]
  // Warm-up: every path once, untimed.
  for (const v of opened) for (const m of measures) await m.run(v.store, v.rig, 8)
  for (let block = 0; block < BLOCKS; block++) {
    for (const m of measures) {
      for (const c of concurrencies) {
        // Alternate the order of the variants from block to block.
        const order = block % 2 === 0 ? opened : [...opened].reverse()
        for (const v of order) {
          const key = `${m.name}|${c}|${v.name}`
          const list = results.get(key) ?? []
          list.push(await m.run(v.store, v.rig, c))
          results.set(key, list)
        }
      }
    }
  }
  const names = opened.map(v => v.name)
  const header = ['measure', 'in flight', ...names.map(n => `${n} ops/s`), ...names.map(n => `${n} µs/op`)]
  const rows = [header]
  for (const m of measures) {
    for (const c of concurrencies) {
      const rates = names.map(n => median(results.get(`${m.name}|${c}|${n}`) ?? [0]))
      rows.push([m.name, String(c), ...rates.map(r => r.toFixed(0)), ...rates.map(r => (1e6 / r).toFixed(0))])
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map(r => (r[i] as string).length)))
  const line = (r: string[]): string => `| ${r.map((cell, i) => i < 2 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)).join(' | ')} |`
  console.log(line(header))
  console.log(`|${widths.map((w, i) => i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`).join('|')}|`)
  for (const r of rows.slice(1)) console.log(line(r))
  console.log(`(median of ${BLOCKS} blocks of ${OPS} operations each; µs/op = 1 / throughput)`)

  for (const v of opened) {
    await v.rig.app.close()
    await v.rig.recorder.close()
    await v.store.close()
  }
}

try {
  await main()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
