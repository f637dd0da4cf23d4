/**
 * hapctl as the benchmark runs it: by default its own process (`node --import tsx src/server.ts`,
 * started with test/helpers/hapctl-process.ts), as it runs in production, so that its peak resident
 * memory is its own and its event loop is not shared with the bench's HTTP and raw clients.
 * `BENCH_HAPCTL=in-process` runs buildApp() inside the bench's process instead (the setup before
 * issue 9; no memory figures then).
 */
import type { AddressInfo } from 'node:net'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { startHapctl } from '../test/helpers/hapctl-process.ts'
import { HttpClient } from './http.ts'

/** Resident memory of the service process (Linux /proc), in bytes. */
export type Memory = { rss: number, peak: number }

export type Service = {
  readonly label: string
  readonly http: HttpClient
  /** http://127.0.0.1:<port> */
  readonly url: string
  readonly pid: number
  /**
   * Restarts the peak (VmHWM) from the current RSS (Linux `clear_refs` 5) and returns that RSS;
   * undefined when the service runs in the bench's own process.
   */
  resetPeak: () => Memory | undefined
  /** VmRSS and VmHWM now; undefined in process. */
  memory: () => Memory | undefined
  /** For a failed run: whether the process still runs, and the end of what it wrote. */
  diagnose: () => string
  stop: () => Promise<void>
}

export type ServiceOptions = {
  label: string
  /** tcp://127.0.0.1:<port> of the Runtime API socket this service uses. */
  runtimeApi: string
  /** A SQLite file, or 'memory'. */
  store: string
  /** HTTP requests the bench keeps in flight at most (the keep-alive pool of its client). */
  maxSockets: number
}

function kib (status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  if (m === null) throw new Error(`no ${field} in /proc/<pid>/status`)
  return Number(m[1]) * 1024
}

function readMemory (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { rss: kib(status, 'VmRSS'), peak: kib(status, 'VmHWM') }
}

/**
 * What the bench passes on to the service from its own environment: the service's settings
 * (HAPROXY_MAX_CONNECTIONS, HAPCTL_STORE_SYNC…), not where it listens, its socket or its store.
 */
function inheritedEnv (): Record<string, string> {
  const skip = new Set(['HAPROXY_RUNTIME_API', 'HAPCTL_STORE', 'HAPCTL_HAPROXY_BIN', 'HAPCTL_TEST_NODE', 'HOST', 'PORT'])
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && /^(HAPCTL|HAPROXY)_/.test(k) && !skip.has(k)) out[k] = v
  }
  return out
}

/**
 * The environment the service gets. The periodic reconcile is pushed to an hour: the raw phases change
 * HAProxy behind hapctl's back on purpose (clear map, raw writes to its servers), and a periodic pass
 * would put hapctl's desired state back in the middle of a measurement. Everything else of the
 * reconciler stays as in production: the pass at start, the identity poll (`show info` every 500 ms)
 * and the passes it triggers after a restart (the bench stops the services before it restarts HAProxy).
 * LOG_LEVEL=warn: no line per request (BENCH_LOG_LEVEL=info measures with them). Idle keep-alive
 * connections are kept 5 minutes instead of 5 s: between two hapctl calls the bench may spend longer
 * than 5 s on raw measurements, and the next call would then race the service closing its connection
 * ("socket hang up").
 */
export function serviceEnv (opts: ServiceOptions): Record<string, string> {
  return {
    HAPCTL_RECONCILE_INTERVAL_MS: '3600000',
    HAPCTL_KEEPALIVE_TIMEOUT_MS: '300000',
    HAPCTL_STORE_SYNC: 'full',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    ...inheritedEnv(),
    HAPROXY_RUNTIME_API: opts.runtimeApi,
    HAPCTL_STORE: opts.store
  }
}

let built = false

/**
 * What the service runs: the build (`npm run build`, then `node dist/server.js`), as `npm start` and the
 * image do, unless BENCH_HAPCTL=source (src/server.ts through tsx: its transform wraps every function
 * and maps every stack trace, which costs measurably per request).
 */
export function serviceEntry (): 'build' | 'source' {
  if (process.env.BENCH_HAPCTL === 'source') return 'source'
  if (!built) {
    execFileSync('npm', ['run', '-s', 'build'], { cwd: fileURLToPath(new URL('../', import.meta.url)), stdio: ['ignore', 'inherit', 'inherit'] })
    built = true
  }
  return 'build'
}

export async function startService (opts: ServiceOptions): Promise<Service> {
  const env = serviceEnv(opts)
  if (process.env.BENCH_HAPCTL === 'in-process') return startInProcess(opts, env)
  // BENCH_HAPCTL_NODE_ARGS='--cpu-prof --cpu-prof-dir=.tmp/prof' profiles the service (written at its graceful stop).
  const nodeArgs = process.env.BENCH_HAPCTL_NODE_ARGS?.split(' ').filter(a => a !== '') ?? []
  const proc = await startHapctl({ env, nodeArgs, readyTimeoutMs: 60_000, entry: serviceEntry() })
  const http = new HttpClient('127.0.0.1', proc.port, opts.maxSockets)
  return {
    label: opts.label,
    http,
    url: proc.url,
    pid: proc.pid,
    resetPeak: () => {
      writeFileSync(`/proc/${proc.pid}/clear_refs`, '5')
      return readMemory(proc.pid)
    },
    memory: () => readMemory(proc.pid),
    diagnose: () => {
      const state = proc.child.exitCode !== null || proc.child.signalCode !== null
        ? `exited (code ${proc.child.exitCode}, signal ${proc.child.signalCode})`
        : 'still running'
      return `${opts.label} (pid ${proc.pid}) ${state}; its last output:\n${proc.output().slice(-3000) || '(none)'}`
    },
    stop: async () => {
      http.close()
      // SIGTERM: a graceful stop closes the store and writes a --cpu-prof profile; SIGKILL after 15 s.
      proc.child.kill('SIGTERM')
      const ended = await Promise.race([proc.exited.then(() => true), delay(15_000).then(() => false)])
      if (!ended) process.stderr.write(`${opts.label}: no exit 15 s after SIGTERM, killed\n${proc.output().slice(-2000)}\n`)
      await proc.kill()
    }
  }
}

async function startInProcess (opts: ServiceOptions, env: Record<string, string>): Promise<Service> {
  // As before issue 9: no reconciler at all (it runs on the bench's event loop), logger off.
  const app = await buildApp({ config: loadConfig(env), logger: false, reconcile: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const http = new HttpClient('127.0.0.1', port, opts.maxSockets)
  return {
    label: `${opts.label} (in the bench's process)`,
    http,
    url: `http://127.0.0.1:${port}`,
    pid: process.pid,
    resetPeak: () => undefined,
    memory: () => undefined,
    diagnose: () => `${opts.label} runs in the bench's process`,
    stop: async () => {
      http.close()
      await app.close()
    }
  }
}
