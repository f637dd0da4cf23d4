/**
 * `npx tsx bench/maps-large.ts`: the two large-map lines of issue 9, measured on their own, with
 * hapctl as its own process (so that its resident memory is its own):
 *
 *   replace  a 100,000-entry `PUT /maps/:m/entries` (JSON and text/plain) against the raw sequence
 *            (`prepare map`, payloads of < 16000 bytes each on a fresh connection, `commit map`),
 *            alternating in blocks, the median of each reported;
 *   listing  every page of `GET /maps/:m/entries?limit=<n>` over a 100,000-entry map, with hapctl's
 *            resident memory (VmRSS) sampled while it runs, for several page sizes: it should grow
 *            with the page, not with the map.
 *
 * Environment: RUNS (replace runs per variant, default 5), N (entries, default 100000), ONLY
 * (`replace` or `listing`), LIMITS (page sizes, default 1000,10000), PROFILE=1 (hapctl runs with
 * --cpu-prof; the profile is written to .tmp/profiles/ when it exits), HAPCTL_STORE_SYNC (default
 * full), HAPCTL_HAPROXY_BIN. BASE_ROOT=<dir>: a second hapctl from another copy of the project
 * (another version of the code), on its own map, measured in the same blocks (A/B on a busy machine).
 * See bench/README.md.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { freePort, startHaproxy } from '../test/helpers/haproxy.ts'
import type { HaproxyConfigContext } from '../test/helpers/haproxy.ts'
import { HttpClient, json, text } from './http.ts'
import { median } from './measure.ts'
import { body, mapEntries, oneShot, payloadRequests } from './raw.ts'
import type { Target } from './raw.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const N = Number(process.env.N ?? 100_000)
const RUNS = Number(process.env.RUNS ?? 5)
const HAPCTL_MAP = 'virt@hapctl.map'
const BASE_MAP = 'virt@base.map'
const RAW_MAP = 'virt@raw.map'
const pathOf = (map: string): string => `/maps/${encodeURIComponent(map)}/entries`

function config (ctx: HaproxyConfigContext): string {
  return `global
    stats socket ipv4@127.0.0.1:${ctx.runtime} level admin
    stats timeout 2m

defaults d
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend f from d
    bind 127.0.0.1:${ctx.frontend}
    http-request set-var(txn.a) path,map(${HAPCTL_MAP},none)
    http-request set-var(txn.b) path,map(${RAW_MAP},none)
    http-request set-var(txn.c) path,map(${BASE_MAP},none)
    http-request return status 200 content-type text/plain lf-string "%[var(txn.a)] %[var(txn.b)] %[var(txn.c)]\\n"
`
}

function haproxyBinary (): string {
  if (process.env.HAPCTL_HAPROXY_BIN) return process.env.HAPCTL_HAPROXY_BIN
  const out = execFileSync('bash', ['scripts/install-haproxy.sh'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return out.trim().split('\n').at(-1) as string
}

const log = (msg: string): void => { process.stdout.write(msg + '\n') }
const check = (ok: boolean, what: string): void => { if (!ok) throw new Error(`check failed: ${what}`) }
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

function memory (pid: number): { rss: number, peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (f: string): number => Number(new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}
/** CPU seconds (user + system) process `pid` has used: its own work, whatever else runs on the machine. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`

async function rawReplace (t: Target, lines: string[]): Promise<void> {
  const prepared = body(await oneShot(t, `prepare map ${RAW_MAP}\n`))
  const version = /^New version created: (\d+)\n$/.exec(prepared)?.[1]
  check(version !== undefined, `prepare map → ${prepared}`)
  for (const r of payloadRequests(`add map @${version} ${RAW_MAP} <<`, lines)) check(await oneShot(t, r) === '\n', 'payload')
  check(await oneShot(t, `commit map @${version} ${RAW_MAP}\n`) === '\n', 'commit map')
}

type Service = { name: string, map: string, path: string, pid: number, http: HttpClient, stop: () => Promise<void> }

async function startService (name: string, root: string, map: string, runtimeApi: string, dir: string): Promise<Service> {
  const port = await freePort()
  const profileDir = join(ROOT, '.tmp', 'profiles')
  const nodeArgs = ['--import', 'tsx']
  if (process.env.PROFILE === '1') { mkdirSync(profileDir, { recursive: true }); nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`) }
  const child = spawn(process.execPath, [...nodeArgs, 'src/server.ts'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      HAPROXY_RUNTIME_API: runtimeApi,
      HAPCTL_STORE: join(dir, `${name}.db`),
      HAPCTL_STORE_SYNC: process.env.HAPCTL_STORE_SYNC ?? 'full',
      HAPCTL_RECONCILE_INTERVAL_MS: '3600000',
      // Between two blocks a connection may idle longer than the default 5 s; a request on one the
      // server is closing fails its write (EPIPE).
      HAPCTL_KEEPALIVE_TIMEOUT_MS: '600000'
    }
  })
  const http = new HttpClient('127.0.0.1', port, 4)
  for (let i = 0; ; i++) {
    try { if ((await http.request('GET', '/health')).status === 200) break } catch { /* not yet */ }
    if (i > 300) throw new Error(`hapctl ${name} did not start`)
    await delay(100)
  }
  return {
    name,
    map,
    path: pathOf(map),
    pid: child.pid as number,
    http,
    stop: async () => {
      http.close()
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
    }
  }
}

// A request whose answer came early (an error) can still fail its body's write: say where, and stop.
process.on('uncaughtException', err => { log(`uncaught: ${err.stack ?? String(err)} (during ${current})`); process.exit(1) })
let current = ''

async function main (): Promise<void> {
  process.env.HAPCTL_HAPROXY_BIN = haproxyBinary()
  const h = await startHaproxy({ config, upstreams: [] })
  const dir = mkdtempSync(join(tmpdir(), 'hapctl-maps-large-'))
  const target = { host: '127.0.0.1', port: h.ports.runtime }
  const services: Service[] = []
  try {
    services.push(await startService('hapctl', ROOT, HAPCTL_MAP, h.runtimeApi, dir))
    if (process.env.BASE_ROOT !== undefined) services.push(await startService('base', process.env.BASE_ROOT, BASE_MAP, h.runtimeApi, dir))
    log(`HAProxy ${h.runtimeApi}, ${services.map(s => `${s.name} pid ${s.pid}`).join(', ')}, Node ${process.version}, ${N} entries`)
    const only = process.env.ONLY
    let run = 0
    const lines = (): { tag: string, lines: string[] } => {
      const tag = `r${run++}_`
      return { tag, lines: range(N).map(i => `k${i} ${tag}${i}`) }
    }
    const toEntries = (ls: string[]): Array<{ key: string, value: string }> => ls.map(l => {
      const sp = l.indexOf(' ')
      return { key: l.slice(0, sp), value: l.slice(sp + 1) }
    })
    const verify = async (map: string, tag: string): Promise<void> => {
      const es = await mapEntries(target, map)
      check(es.length === N && es.every(([k, v]) => v === tag + k.slice(1)), `${map} holds what run ${tag} wrote`)
    }

    if (only === undefined || only === 'replace') {
      type Variant = { label: string, run: (ls: string[]) => Promise<void>, map: string, pid?: number }
      const variants: Variant[] = [{ label: 'raw (a)', map: RAW_MAP, run: ls => rawReplace(target, ls) }]
      for (const s of services) {
        variants.push({ label: `${s.name} JSON`, map: s.map, pid: s.pid, run: async ls => { await s.http.expect(200, 'PUT', s.path, json(toEntries(ls))) } })
        variants.push({ label: `${s.name} text`, map: s.map, pid: s.pid, run: async ls => { await s.http.expect(200, 'PUT', s.path, text(ls.join('\n') + '\n')) } })
      }
      // Warm-up (not measured): the JIT of every side.
      for (let w = 0; w < 2; w++) for (const v of variants) { current = `${v.label} warm-up`; await v.run(lines().lines) }
      const times = new Map<string, number[]>(variants.map(v => [v.label, []]))
      const cpu = new Map<string, number[]>(variants.map(v => [v.label, []]))
      for (let r = 0; r < RUNS; r++) {
        // One block: every variant once, in turn (their inputs are built before each clock starts).
        for (const v of variants) {
          const { tag, lines: ls } = lines()
          current = `${v.label} run ${r}`
          const cpuBefore = v.pid === undefined ? 0 : cpuSeconds(v.pid)
          const start = performance.now()
          await v.run(ls)
          times.get(v.label)?.push((performance.now() - start) / 1000)
          if (v.pid !== undefined) cpu.get(v.label)?.push(cpuSeconds(v.pid) - cpuBefore)
          await verify(v.map, tag)
        }
      }
      const raw = median(times.get('raw (a)') ?? [])
      for (const v of variants) {
        const t = times.get(v.label) ?? []
        const m = median(t)
        log(`replace ${v.label.padEnd(12)}: ${t.map(x => x.toFixed(3)).join(' ')} s, median ${m.toFixed(3)} s` + (v.map === RAW_MAP ? '' : `, raw/this ${(raw / m).toFixed(2)}, hapctl CPU median ${median(cpu.get(v.label) ?? []).toFixed(2)} s`))
      }
      for (const s of services) log(`${s.name} peak RSS so far: ${mib(memory(s.pid).peak)}`)
    }

    if (only === undefined || only === 'listing') {
      const limits = (process.env.LIMITS ?? '1000,10000').split(',').map(Number)
      for (const s of services) {
        const { tag, lines: ls } = lines()
        await s.http.expect(200, 'PUT', s.path, text(ls.join('\n') + '\n'))
        await verify(s.map, tag)
      }
      for (const limit of limits) {
        for (const s of services) {
          await delay(200)
          const before = memory(s.pid).rss
          let max = before
          const sampler = setInterval(() => { max = Math.max(max, memory(s.pid).rss) }, 5)
          const start = performance.now()
          let cursor: string | undefined
          let seen = 0
          let pages = 0
          const keys = new Set<string>()
          do {
            const q = `?limit=${limit}` + (cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`)
            const page = JSON.parse(await s.http.expect(200, 'GET', s.path + q)) as { items: Array<{ key: string }>, next?: string }
            for (const e of page.items) keys.add(e.key)
            seen += page.items.length
            pages++
            cursor = page.next
          } while (cursor !== undefined)
          clearInterval(sampler)
          const secs = (performance.now() - start) / 1000
          check(seen === N && keys.size === N, `listing saw ${seen} entries (${keys.size} distinct), expected ${N}`)
          log(`listing ${s.name.padEnd(6)} limit=${String(limit).padStart(5)}: ${pages} pages in ${secs.toFixed(2)} s (${(secs / pages * 1000).toFixed(1)} ms/page), ` +
            `RSS ${mib(before)} before, ${mib(max)} at most (+${mib(max - before)})`)
        }
      }
    }
  } finally {
    for (const s of services) await s.stop()
    await h.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
