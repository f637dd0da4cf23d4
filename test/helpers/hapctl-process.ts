/**
 * hapctl as its own process (`node --import tsx src/server.ts`), for what an in-process app cannot
 * show: its resident memory under a hostile body, its connections under stalled clients, and what a
 * signal does to it. The child's stdout/stderr are kept (pino JSON lines) so tests can read the logs.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { onTestFinished } from 'vitest'
import { freePort } from './haproxy.ts'
import { nodeCommand } from './node.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type HapctlProcess = {
  readonly pid: number
  readonly port: number
  /** http://127.0.0.1:<port> */
  readonly url: string
  readonly child: ChildProcess
  /** Everything the process wrote so far (stdout and stderr interleaved). */
  output: () => string
  /** Resident memory now and at its peak (VmRSS, VmHWM from /proc/<pid>/status), in bytes. */
  memory: () => { rss: number, peak: number }
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** SIGKILL if still running; done by onTestFinished when started inside a test. */
  kill: () => Promise<void>
}

export type StartHapctlOptions = {
  /** Environment on top of a minimal one (PATH, HOME); PORT and HOST are filled in unless given. */
  env?: Record<string, string>
  /** Node options such as ['--max-old-space-size=256']. */
  nodeArgs?: string[]
  /** How long to wait for GET /health to answer (default 20 s). */
  readyTimeoutMs?: number
  /** Wait for /health (default true); false returns as soon as the process is spawned. */
  waitReady?: boolean
  /** `source` (default): src/server.ts through tsx; `build`: dist/server.js, as `npm start` runs it (build it first). */
  entry?: 'source' | 'build'
}

const running = new Set<ChildProcess>()
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

function kib (status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return m === null ? 0 : Number(m[1]) * 1024
}

/**
 * Whether process `pid` holds the listening TCP socket of `port` on 127.0.0.1: the port comes from
 * freePort() and is bound a second later, so another test's process may have taken it meanwhile, and
 * a /health answer alone would then come from that process.
 */
export function listensOn (pid: number, port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set<string>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(table, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f[1]?.endsWith(`:${hexPort}`) === true && f[3] === '0A') inodes.add(f[9] as string)
    }
  }
  let fds: string[] = []
  try { fds = readdirSync(`/proc/${pid}/fd`) } catch { return false }
  return fds.some(fd => {
    try { return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '') } catch { return false }
  })
}

export async function startHapctl (opts: StartHapctlOptions = {}): Promise<HapctlProcess> {
  // A port someone else took between freePort() and the bind: try another one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts)
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt === 3) throw err
    }
  }
}

class PortTaken extends Error {}

async function startOnce (opts: StartHapctlOptions): Promise<HapctlProcess> {
  const port = opts.env?.PORT !== undefined ? Number(opts.env.PORT) : await freePort()
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    HOST: '127.0.0.1',
    PORT: String(port),
    HAPCTL_STORE: 'memory',
    LOG_LEVEL: 'info',
    ...opts.env
  }
  const node = nodeCommand()
  // The build (`npm run build`) is what `npm start` and the image run; the sources through tsx are what
  // the tests change without a build step.
  const entry = opts.entry === 'build' ? ['dist/server.js'] : ['--import', 'tsx', 'src/server.ts']
  const child = spawn(node.command, [...node.args, ...(opts.nodeArgs ?? []), ...entry], {
    cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString('utf8') })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString('utf8') })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  let done = false
  exited.then(() => { done = true }, () => {})
  const kill = async (): Promise<void> => {
    if (!done) child.kill('SIGKILL')
    await exited
  }
  // Inside a test, killed when it ends; from beforeAll the caller kills it (afterAll), and a process
  // left anyway dies with the test worker.
  try { onTestFinished(kill) } catch {}
  running.add(child)
  exited.then(() => running.delete(child), () => {})
  const proc: HapctlProcess = {
    pid: child.pid as number,
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    memory: () => {
      const status = readFileSync(`/proc/${child.pid as number}/status`, 'utf8')
      return { rss: kib(status, 'VmRSS'), peak: kib(status, 'VmHWM') }
    },
    exited,
    kill
  }
  if (opts.waitReady === false) return proc
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000)
  for (;;) {
    if (done) {
      if (opts.env?.PORT === undefined && out.includes('EADDRINUSE')) throw new PortTaken(out)
      throw new Error(`hapctl exited before it was ready:\n${out}`)
    }
    try {
      const res = await fetch(`${proc.url}/health`, { signal: AbortSignal.timeout(1000) })
      if (res.status === 200) {
        if (listensOn(proc.pid, port)) return proc
        if (opts.env?.PORT === undefined) { await kill(); throw new PortTaken(`port ${port} answered, but not from hapctl ${proc.pid}`) }
      }
    } catch (err) {
      if (err instanceof PortTaken) throw err
    }
    if (Date.now() > deadline) {
      await kill()
      throw new Error(`hapctl did not answer /health within ${opts.readyTimeoutMs ?? 20_000} ms:\n${out}`)
    }
    await delay(100)
  }
}
