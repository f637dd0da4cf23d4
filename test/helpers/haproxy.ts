import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { get as httpRequestGet } from 'node:http'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inject } from 'vitest'
import { startUpstream } from './upstream.ts'
import type { Upstream } from './upstream.ts'

/*
 * Real HAProxy 3.4 processes for the integration suite. Each test file starts its own instance on free
 * loopback ports with a fresh temp dir (config + unix admin socket), in the foreground (`-db`), and stops
 * it in afterAll. The dummy upstreams it routes to run in the test process (./upstream.ts).
 *
 *   let h: HaproxyInstance | undefined
 *   beforeAll(async () => { h = await startHaproxy() })
 *   afterAll(() => h?.stop())
 *
 * `startHaproxy({ masterWorker: true })` runs the master-worker model production uses (`-W -S
 * <dir>/master.sock`), so desired-state tests can reload() (new worker, runtime changes gone,
 * docs/runtime-api.md#reload-and-restart), kill() + start() (HAProxy down for a while) and watch identity() change.
 */

export interface HaproxyPorts {
  /** TCP Runtime API (`stats socket ipv4@127.0.0.1:<runtime> level admin`). */
  runtime: number
  /** `myfrontend1` (routes with `map_beg(virt@paths.map)`, default backend `webservers`). */
  frontend: number
  /** `fe_ref` (`use_backend static_ref if { path_beg /ref }`, default backend `webservers`). */
  refFrontend: number
}

export type HaproxyConfigContext = HaproxyPorts & {
  upstreams: Record<string, Upstream>
  /** The instance's temp dir; the unix admin socket must be `<dir>/admin.sock`. */
  dir: string
}

export interface StartHaproxyOptions {
  /** Builds the configuration text; default {@link defaultConfig}. */
  config?: (ctx: HaproxyConfigContext) => string
  /** Upstreams to start before HAProxy, by name; default `['web1', 's1', 'r1']`. */
  upstreams?: string[]
  /**
   * Master-worker mode: `-W -S <dir>/master.sock -db`. The worker's sockets are the same as in the default
   * mode; the master CLI adds reload(). Default false (a single foreground process).
   */
  masterWorker?: boolean
}

/** What `show info` says about the process answering the Runtime API (docs/runtime-api.md#reload-and-restart). */
export interface HaproxyIdentity {
  /** `Pid`: the worker in master-worker mode. */
  pid: number
  /** `Start_time_sec`: epoch seconds of that process's start (same second for two quick reloads). */
  startTimeSec: number
  /** `Stopping: 1`: an old worker finishing its connections after a reload. */
  stopping: boolean
}

export interface ReloadOptions {
  /**
   * New configuration, written to haproxy.cfg before the reload (a function gets the instance's ports,
   * upstreams and dir). When HAProxy rejects it, the previous file is put back.
   */
  config?: string | ((ctx: HaproxyConfigContext) => string)
  /** How long to wait for the new worker to answer; default 10 s. */
  timeoutMs?: number
}

export interface HaproxyInstance {
  /** `tcp://127.0.0.1:<port>` */
  readonly runtimeApi: string
  /** `unix://<dir>/admin.sock` */
  readonly unixRuntimeApi: string
  /** `http://127.0.0.1:<port>` of `myfrontend1` */
  readonly frontendUrl: string
  /** `http://127.0.0.1:<port>` of `fe_ref` */
  readonly refFrontendUrl: string
  readonly ports: HaproxyPorts
  readonly upstreams: Record<string, Upstream>
  /**
   * PID of the process serving the Runtime API (`show info` Pid: the current WORKER in master-worker mode),
   * as of the last start, restart or reload. Keeps the last value while HAProxy is killed.
   */
  readonly pid: number
  /** PID of the master process in master-worker mode (changes on start/restart, not on reload); else undefined. */
  readonly masterPid: number | undefined
  readonly masterWorker: boolean
  /** Path of the master CLI unix socket (`<dir>/master.sock`) in master-worker mode; else undefined. */
  readonly masterSocket: string | undefined
  readonly dir: string
  /** The configuration text HAProxy runs with (changes on a successful `reload({ config })`). */
  readonly config: string
  /** HAProxy's recent stdout + stderr (last 64 KiB), for assertion messages. */
  logs(): string
  /**
   * SIGTERM (SIGKILL after 3 s), wait for the exit (of the master AND its workers), stop the upstreams,
   * remove the temp dir. Idempotent.
   */
  stop(): Promise<void>
  /** Stops the HAProxy process only (upstreams keep running) and starts it again: same config and ports, new pid. */
  restart(): Promise<void>
  /**
   * SIGKILL HAProxy (the master and every worker at once in master-worker mode) and wait until it is gone;
   * upstreams, temp dir and ports stay, so start() can bring it back. No-op when it is not running.
   */
  kill(): Promise<void>
  /** Starts HAProxy again after kill(), with the current config on the same ports. Rejects when it is running. */
  start(): Promise<void>
  /**
   * Master-worker only: `reload` on the master CLI, then waits until a new connection to the Runtime API is
   * answered by a new worker (`show info`: another Pid, `Stopping: 0`). Rejects with HAProxy's reply and logs
   * when the reload fails or the new worker does not show up in time.
   */
  reload(opts?: ReloadOptions): Promise<void>
  /** `show info` on a new Runtime API connection: who answers right now. */
  identity(): Promise<HaproxyIdentity>
  /**
   * Master-worker only: one command on a new master CLI connection (half-closed after the line, which is
   * what makes the master answer and close), resolving with the whole reply.
   */
  masterCli(line: string, opts?: { timeoutMs?: number }): Promise<string>
  /**
   * Sends `line + '\n'` on a new non-interactive TCP Runtime API connection and resolves with everything
   * received until HAProxy closes it (the test's own view of HAProxy, independent of the code under test).
   */
  cli(line: string, opts?: { timeoutMs?: number }): Promise<string>
}

export interface HttpResult {
  /** 0 when the server closed the connection without any reply. */
  status: number
  body: string
}

const DEFAULT_UPSTREAMS = ['web1', 's1', 'r1']
const READY_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const CLI_TIMEOUT_MS = 5_000
const RELOAD_TIMEOUT_MS = 10_000
const LOG_LIMIT = 64 * 1024

// Everything started here, so stopAll() and the exit hook can clean up after a failed run. Kept on
// globalThis so that several copies of this module in one process share one registry and one exit hook.
interface Registry {
  instances: Set<HaproxyInstance>
  processes: Set<ChildProcess>
  upstreams: Set<Upstream>
  dirs: Set<string>
}
const REGISTRY = Symbol.for('hapctl.test.haproxy')
const globals = globalThis as { [REGISTRY]?: Registry }
const registry: Registry = globals[REGISTRY] ??= createRegistry()
const { instances, processes, dirs } = registry
const upstreamsStarted = registry.upstreams

function createRegistry (): Registry {
  const r: Registry = { instances: new Set(), processes: new Set(), upstreams: new Set(), dirs: new Set() }
  const reap = () => {
    for (const child of r.processes) signalHaproxy(child, 'SIGKILL')
    r.processes.clear()
    for (const dir of r.dirs) {
      try { rmSync(dir, { recursive: true, force: true }) } catch { /* best effort */ }
    }
    r.dirs.clear()
  }
  // Last resort when a run ends without afterAll: nothing may outlive the test process.
  process.once('exit', reap)
  // vitest ends its fork workers with SIGTERM, which skips 'exit' handlers: reap, then let the
  // signal do what it would have done (re-raised once no other handler is left).
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, function onSignal () {
      reap()
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    })
  }
  return r
}

/** Stops every HAProxy instance and upstream this module started and that is still running. */
export async function stopAll (): Promise<void> {
  await Promise.allSettled([...instances].map((h) => h.stop()))
  await Promise.allSettled([...upstreamsStarted].map(async (u) => {
    await u.stop()
    upstreamsStarted.delete(u)
  }))
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function upstreamPort (ctx: HaproxyConfigContext, name: string): number {
  const upstream = ctx.upstreams[name]
  if (!upstream) {
    throw new Error(`defaultConfig needs an upstream named ${JSON.stringify(name)} (started: ${Object.keys(ctx.upstreams).join(', ') || 'none'})`)
  }
  return upstream.port
}

/**
 * runtime-evidence/base.cfg on the instance's ports: admin CLI on TCP and on `<dir>/admin.sock`, the named
 * defaults `mydefaults` (http), `nomode`, `tcpdefaults` (tcp) and `staticrr` (http, static-rr) for
 * `add backend ... from`, the map-routed frontend, and the static backends `webservers` (web1),
 * `static_unref` (s1), `static_empty` (no server) and `static_ref` (r1, referenced by `fe_ref`).
 */
export function defaultConfig (ctx: HaproxyConfigContext): string {
  return `# hapctl integration test instance (generated by test/helpers/haproxy.ts)
global
    stats socket ipv4@127.0.0.1:${ctx.runtime} level admin
    stats socket ${ctx.dir}/admin.sock mode 600 level admin
    stats timeout 30s

defaults mydefaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

# a named defaults section WITHOUT a mode ("add backend ... from nomode" needs "mode")
defaults nomode
    timeout connect 5s
    timeout client 30s
    timeout server 30s

defaults tcpdefaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

# a non-dynamic balance algorithm: backends created from it refuse "add server"
defaults staticrr
    mode http
    balance static-rr
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend myfrontend1 from mydefaults
    bind 127.0.0.1:${ctx.frontend}
    use_backend %[path,map_beg(virt@paths.map)]
    default_backend webservers

backend webservers from mydefaults
    server web1 127.0.0.1:${upstreamPort(ctx, 'web1')}

# static backend referenced only via a map (not by name in the config)
backend static_unref from mydefaults
    balance roundrobin
    server s1 127.0.0.1:${upstreamPort(ctx, 's1')}

# static backend with no servers, referenced by nothing
backend static_empty from mydefaults

# static backend explicitly referenced by a use_backend rule
frontend fe_ref from mydefaults
    bind 127.0.0.1:${ctx.refFrontend}
    use_backend static_ref if { path_beg /ref }
    default_backend webservers

backend static_ref from mydefaults
    server r1 127.0.0.1:${upstreamPort(ctx, 'r1')}
`
}

function haproxyBinary (): string {
  let bin: string | undefined
  try {
    bin = inject('haproxyBin')
  } catch {
    // not inside a vitest worker with the integration global setup
  }
  bin ||= process.env.HAPCTL_HAPROXY_BIN
  if (!bin) {
    throw new Error('No HAProxy binary: run the tests through the vitest `integration` project (its global setup installs it) or set HAPCTL_HAPROXY_BIN')
  }
  return bin
}

/** Keeps the last `limit` characters of a stream of chunks. */
function ringBuffer (limit: number): { push(chunk: string): void, text(): string } {
  let chunks: string[] = []
  let size = 0
  return {
    push (chunk) {
      chunks.push(chunk)
      size += chunk.length
      while (size > limit && chunks.length > 1) size -= chunks.shift()!.length
      if (size > limit) {
        chunks = [chunks[0]!.slice(size - limit)]
        size = limit
      }
    },
    text: () => chunks.join('')
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** One non-interactive Runtime API exchange on a new TCP connection. */
function runtimeCommand (port: number, line: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`Runtime API ${JSON.stringify(line)}: HAProxy did not close the connection within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('utf8'))}`))
    }, timeoutMs)
    socket.once('connect', () => socket.write(line + '\n'))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/**
 * One exchange on a new master CLI connection. Unlike the worker's CLI, the 3.4 master only answers and
 * closes once the client has half-closed its side: a plain write + wait hangs until the CLI timeout.
 */
function masterCommand (path: string, line: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = connect({ path })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`master CLI ${JSON.stringify(line)}: no complete reply within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('utf8'))}`))
    }, timeoutMs)
    socket.once('connect', () => socket.end(line + '\n'))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Parses `show info` (docs/runtime-api.md#reload-and-restart); throws with the reply when a field is missing. */
function parseIdentity (reply: string): HaproxyIdentity {
  const fields = new Map<string, string>()
  for (const line of reply.split('\n')) {
    const sep = line.indexOf(': ')
    if (sep > 0) fields.set(line.slice(0, sep), line.slice(sep + 2).trim())
  }
  const num = (name: string) => {
    const value = Number(fields.get(name))
    if (!fields.has(name) || !Number.isInteger(value)) throw new Error(`show info: no numeric ${name} in ${JSON.stringify(reply.slice(0, 500))}`)
    return value
  }
  return { pid: num('Pid'), startTimeSec: num('Start_time_sec'), stopping: num('Stopping') !== 0 }
}

interface Running {
  child: ChildProcess
  /** Resolves once the process (and, through the shared output pipes, every worker it forked) is gone. */
  exited: Promise<void>
  isGone(): boolean
}

function exitDescription (child: ChildProcess): string {
  return child.signalCode ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`
}

// Master-worker children are spawned as their own process group so that a signal reaches the master and
// every worker at once (a SIGKILLed master leaves its workers to notice on their own, ~100 ms later).
const groupLeaders = new WeakSet<ChildProcess>()

function signalHaproxy (child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (groupLeaders.has(child) && child.pid) process.kill(-child.pid, signal)
    else child.kill(signal)
  } catch { /* already gone */ }
}

interface LaunchSpec {
  bin: string
  args: string[]
  /** Own process group (master-worker), see signalHaproxy(). */
  group: boolean
  runtimePort: number
  log: ReturnType<typeof ringBuffer>
}

/** Spawns HAProxy in the foreground and resolves once its TCP Runtime API answers `show version` with 3.x. */
async function launch ({ bin, args, group, runtimePort, log }: LaunchSpec): Promise<Running> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: group })
  if (group) groupLeaders.add(child)
  processes.add(child)
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk))
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => log.push(chunk))
  const state: { gone: boolean, spawnError?: Error } = { gone: false }
  const exited = new Promise<void>((resolve) => {
    const gone = () => {
      state.gone = true
      processes.delete(child)
      resolve()
    }
    child.once('error', (err) => {
      state.spawnError = err
      gone()
    })
    // 'close' (not 'exit') so that the last stderr lines are in the log when we report an early exit, and
    // so that in master-worker mode we also wait for the workers, which inherit stdout/stderr under -db.
    child.once('close', gone)
  })
  const running: Running = { child, exited, isGone: () => state.gone }

  const deadline = Date.now() + READY_TIMEOUT_MS
  let lastProbe = ''
  while (!state.gone) {
    if (Date.now() > deadline) {
      await stopProcess(running)
      throw new Error(`HAProxy did not answer "show version" on 127.0.0.1:${runtimePort} within ${READY_TIMEOUT_MS} ms (last probe: ${lastProbe}).\n--- HAProxy output ---\n${log.text()}`)
    }
    try {
      const reply = await runtimeCommand(runtimePort, 'show version', 1_000)
      if (reply.startsWith('3.')) return running
      lastProbe = JSON.stringify(reply)
    } catch (err) {
      lastProbe = (err as Error).message
    }
    await delay(50)
  }
  if (state.spawnError) throw new Error(`Cannot start HAProxy (${bin}): ${state.spawnError.message}`)
  throw new Error(`HAProxy exited during startup (${exitDescription(child)}).\n--- HAProxy output ---\n${log.text()}`)
}

async function stopProcess (running: Running): Promise<void> {
  if (!running.isGone()) {
    signalHaproxy(running.child, 'SIGTERM')
    const killTimer = setTimeout(() => signalHaproxy(running.child, 'SIGKILL'), STOP_GRACE_MS)
    await running.exited
    clearTimeout(killTimer)
  }
}

async function killProcess (running: Running): Promise<void> {
  signalHaproxy(running.child, 'SIGKILL')
  await running.exited
}

/**
 * The binary to run in master-worker mode. On reload the master re-executes itself through its argv[0].
 * scripts/install-haproxy.sh's wrapper runs the binary through a private dynamic loader, which sets
 * argv[0] to the bare binary: re-executed without that loader it fails ("error while loading shared
 * libraries") and takes the master and the worker down. So for such a wrapper we write a copy into the
 * instance dir that passes `--argv0 "$0"`, making every re-exec go through the wrapper again.
 */
async function masterWorkerBinary (bin: string, dir: string): Promise<string> {
  let text: string
  try {
    // A real binary (MBs) re-executes itself fine; only a small script can be such a wrapper.
    if ((await stat(bin)).size > 64 * 1024) return bin
    text = await readFile(bin, 'utf8')
  } catch {
    return bin
  }
  if (!text.startsWith('#!')) return bin
  const loaderExec = /^(\s*exec\s+"[^"\n]*\/ld-linux[^"\n]*")(?![^\n]*--argv0)/m
  if (!loaderExec.test(text)) return bin
  const wrapper = join(dir, 'haproxy-mw.sh')
  await writeFile(wrapper, text.replace(loaderExec, (exec) => `${exec} --argv0 "$0"`), { mode: 0o755 })
  return wrapper
}

async function pickPorts (): Promise<HaproxyPorts> {
  const seen = new Set<number>()
  const next = async () => {
    for (;;) {
      const port = await freePort()
      if (!seen.has(port)) {
        seen.add(port)
        return port
      }
    }
  }
  return { runtime: await next(), frontend: await next(), refFrontend: await next() }
}

/**
 * Starts the named upstreams, then HAProxy with `opts.config` (default {@link defaultConfig}) on free ports,
 * and resolves once its Runtime API answers. Rejects with HAProxy's output when it exits during startup.
 */
export async function startHaproxy (opts: StartHaproxyOptions = {}): Promise<HaproxyInstance> {
  const bin = haproxyBinary()
  const masterWorker = opts.masterWorker ?? false
  const buildConfig = opts.config ?? defaultConfig
  const upstreams: Record<string, Upstream> = {}
  const dir = await mkdtemp(join(tmpdir(), 'hapctl-it-'))
  dirs.add(dir)
  const cfgPath = join(dir, 'haproxy.cfg')
  const masterSocket = masterWorker ? join(dir, 'master.sock') : undefined
  const log = ringBuffer(LOG_LIMIT)

  const cleanupUpstreams = async () => {
    await Promise.allSettled(Object.values(upstreams).map(async (u) => {
      await u.stop()
      upstreamsStarted.delete(u)
    }))
  }

  let ports: HaproxyPorts
  let config: string
  let running: Running
  let workerPid: number
  let spec: LaunchSpec
  // Started = answering `show version`, and we know which pid answers (the worker in master-worker mode).
  const launchAndIdentify = async () => {
    const started = await launch(spec)
    try {
      workerPid = parseIdentity(await runtimeCommand(spec.runtimePort, 'show info', CLI_TIMEOUT_MS)).pid
    } catch (err) {
      await stopProcess(started)
      throw err
    }
    running = started
  }

  try {
    for (const name of opts.upstreams ?? DEFAULT_UPSTREAMS) {
      const upstream = await startUpstream(name)
      upstreams[name] = upstream
      upstreamsStarted.add(upstream)
    }
    const runBin = masterWorker ? await masterWorkerBinary(bin, dir) : bin
    // -db keeps the master in the foreground too, so its output and its workers' stay on our pipes.
    const args = masterSocket ? ['-W', '-S', masterSocket, '-f', cfgPath, '-db'] : ['-f', cfgPath, '-db']
    // A port picked by freePort() can be taken by someone else before HAProxy binds it; retry with new ones.
    for (let attempt = 1; ; attempt++) {
      ports = await pickPorts()
      config = buildConfig({ ...ports, upstreams, dir })
      await writeFile(cfgPath, config)
      spec = { bin: runBin, args, group: masterWorker, runtimePort: ports.runtime, log }
      try {
        await launchAndIdentify()
        break
      } catch (err) {
        if (attempt >= 3 || !/cannot bind|address already in use/i.test((err as Error).message)) throw err
      }
    }
  } catch (err) {
    await cleanupUpstreams()
    await rm(dir, { recursive: true, force: true })
    dirs.delete(dir)
    throw err
  }

  const context = (): HaproxyConfigContext => ({ ...ports, upstreams, dir })
  const withLogs = (message: string) => new Error(`${message}\n--- HAProxy output ---\n${log.text()}`)
  const needMaster = (what: string): string => {
    if (!masterSocket) throw new Error(`${what} needs a master-worker instance: startHaproxy({ masterWorker: true })`)
    return masterSocket
  }

  let stopped = false
  const instance: HaproxyInstance = {
    runtimeApi: `tcp://127.0.0.1:${ports.runtime}`,
    unixRuntimeApi: `unix://${join(dir, 'admin.sock')}`,
    frontendUrl: `http://127.0.0.1:${ports.frontend}`,
    refFrontendUrl: `http://127.0.0.1:${ports.refFrontend}`,
    ports,
    upstreams,
    get pid () { return workerPid },
    get masterPid () { return masterWorker ? running.child.pid : undefined },
    masterWorker,
    masterSocket,
    dir,
    get config () { return config },
    logs: () => log.text(),
    async stop () {
      if (stopped) return
      stopped = true
      await stopProcess(running)
      await cleanupUpstreams()
      await rm(dir, { recursive: true, force: true })
      dirs.delete(dir)
      instances.delete(instance)
    },
    async restart () {
      if (stopped) throw new Error('restart() after stop()')
      await stopProcess(running)
      await launchAndIdentify()
    },
    async kill () {
      if (stopped) throw new Error('kill() after stop()')
      if (!running.isGone()) await killProcess(running)
    },
    async start () {
      if (stopped) throw new Error('start() after stop()')
      if (!running.isGone()) throw new Error(`start(): HAProxy is still running (pid ${running.child.pid}); kill() or restart() it`)
      await launchAndIdentify()
    },
    async reload (reloadOpts = {}) {
      const socketPath = needMaster('reload()')
      if (stopped) throw new Error('reload() after stop()')
      if (running.isGone()) throw new Error('reload(): HAProxy is not running; start() it first')
      const timeoutMs = reloadOpts.timeoutMs ?? RELOAD_TIMEOUT_MS
      // The pid to move away from: ask, as the cached one may predate a reload done through masterCli().
      const oldPid = (await instance.identity().catch(() => undefined))?.pid ?? workerPid

      const previousConfig = config
      const nextConfig = typeof reloadOpts.config === 'function' ? reloadOpts.config(context()) : reloadOpts.config
      if (nextConfig !== undefined) await writeFile(cfgPath, nextConfig)

      let reply: string
      try {
        reply = await masterCommand(socketPath, 'reload', timeoutMs)
      } catch (err) {
        reply = `(${(err as Error).message})`
      }
      // 3.4 answers once the new worker has loaded (or failed to): `Success=1\n--\n<its startup output>`,
      // `Success=0\n--\n<its alerts>` for a rejected configuration, and nothing when the master died.
      if (!reply.startsWith('Success=1\n')) {
        if (nextConfig !== undefined) await writeFile(cfgPath, previousConfig)
        await delay(100) // let a dying master be seen as gone, so the message says so
        const state = running.isGone() ? `HAProxy exited (${exitDescription(running.child)})` : 'HAProxy is still running the previous worker'
        throw withLogs(`reload(): the master CLI answered ${JSON.stringify(reply)}; ${state}.`)
      }
      if (nextConfig !== undefined) config = nextConfig

      try {
        const next = await waitFor(() => instance.identity(), (id) => id.pid !== oldPid && !id.stopping, { timeoutMs, intervalMs: 25 })
        workerPid = next.pid
      } catch (err) {
        throw withLogs(`reload(): the master reported success but no new worker (pid other than ${oldPid}, Stopping: 0) answered the Runtime API: ${(err as Error).message}`)
      }
    },
    identity: async () => parseIdentity(await runtimeCommand(ports.runtime, 'show info', CLI_TIMEOUT_MS)),
    masterCli: async (line, cliOpts) => masterCommand(needMaster('masterCli()'), line, cliOpts?.timeoutMs ?? CLI_TIMEOUT_MS),
    cli: (line, cliOpts) => runtimeCommand(ports.runtime, line, cliOpts?.timeoutMs ?? CLI_TIMEOUT_MS)
  }
  instances.add(instance)
  return instance
}

/**
 * GET over a new connection each time (`agent: false`), so routing changes are seen at once. Resolves
 * `{ status: 0, body: '' }` when the server closes without replying (HAProxy does that when an HTTP
 * frontend routes to a mode tcp backend); other network errors and the timeout (default 10 s, above
 * HAProxy's ~3 s of connect retries before a 503) reject.
 */
export function httpGet (url: string, opts: { timeoutMs?: number } = {}): Promise<HttpResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  return new Promise((resolve, reject) => {
    let responded = false
    const req = httpRequestGet(url, { agent: false }, (res) => {
      responded = true
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.once('error', reject)
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url}: no reply within ${timeoutMs} ms`)))
    req.once('error', (err: NodeJS.ErrnoException) => {
      if (!responded && err.code === 'ECONNRESET') resolve({ status: 0, body: '' })
      else reject(err)
    })
  })
}

/**
 * Calls `fn` every `intervalMs` until `predicate` accepts its value, and returns that value. A throwing
 * `fn` counts as a miss. Throws after `timeoutMs` with the last value (or error) seen.
 */
export async function waitFor<T> (
  fn: () => Promise<T>,
  predicate: (v: T) => boolean,
  { timeoutMs = 5000, intervalMs = 50 }: { timeoutMs?: number, intervalMs?: number } = {}
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: string
  for (;;) {
    try {
      const value = await fn()
      if (predicate(value)) return value
      last = `last value: ${JSON.stringify(value)}`
    } catch (err) {
      last = `last error: ${(err as Error).message}`
    }
    if (Date.now() + intervalMs > deadline) throw new Error(`waitFor: condition not met within ${timeoutMs} ms; ${last}`)
    await delay(intervalMs)
  }
}
