import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import type { Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort, httpGet, waitFor } from '../helpers/haproxy.ts'

/*
 * `npm run demo` as a user runs it (scripts/demo.mjs): HAProxy 3.4 with examples/haproxy.cfg, two
 * upstreams and hapctl, on ports given in the environment. "ready" is printed only once every part
 * answers; SIGTERM or SIGINT to the npm process stops everything it started (HAProxy's master and
 * workers, hapctl, the upstreams) and frees the ports; a port in use, or a part that stops by
 * itself, ends it with exit code 1 and nothing left running.
 *
 * Every process of a run is found through a marker in its environment (inherited by all it starts,
 * reparented or not), so "nothing left" does not depend on the demo's own bookkeeping.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PORT_VARS = ['DEMO_HAPCTL_PORT', 'DEMO_FRONTEND_PORT', 'DEMO_RUNTIME_PORT', 'DEMO_WEB1_PORT', 'DEMO_APP1_PORT'] as const
type Ports = Record<typeof PORT_VARS[number], number>

interface DemoRun {
  npm: ChildProcess
  marker: string
  ports: Ports
  pidFile: string
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Every process (not a zombie) seen so far with the run's marker: pid → command line. */
  seen: Map<number, string>
}

const runs: DemoRun[] = []
const dirs: string[] = []

afterEach(async () => {
  // A failed assertion must not leave a demo running: stop what is left of each run, by its marker.
  for (const run of runs.splice(0)) {
    for (const pid of marked(run.marker).keys()) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

/** Live processes whose environment holds DEMO_TEST_RUN=<marker>: pid → command line. */
function marked (marker: string): Map<number, string> {
  const found = new Map<number, string>()
  const needle = `DEMO_TEST_RUN=${marker}\0`
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue
      if (!readFileSync(`/proc/${entry}/environ`, 'latin1').includes(needle)) continue
      found.set(Number(entry), readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim())
    } catch { /* gone meanwhile, or not ours to read */ }
  }
  return found
}

/** Whether 127.0.0.1:<port> can be bound now (nothing listens there). */
function bindable (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

async function distinctFreePorts (): Promise<Ports> {
  const taken = new Set<number>()
  while (taken.size < PORT_VARS.length) taken.add(await freePort())
  const list = [...taken]
  return Object.fromEntries(PORT_VARS.map((name, i) => [name, list[i]])) as Ports
}

async function startDemo (ports: Ports, extraEnv: Record<string, string> = {}): Promise<DemoRun> {
  const dir = await mkdtemp(join(tmpdir(), 'hapctl-demo-'))
  dirs.push(dir)
  const marker = randomUUID()
  const pidFile = join(dir, 'haproxy.pid')
  const npm = spawn('npm', ['run', 'demo'], {
    cwd: ROOT,
    // Its own process group, as a shell gives a foreground job: Ctrl-C signals the whole group.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      // In memory: the user's data/demo.db is neither read nor emptied.
      HAPCTL_STORE: 'memory',
      DEMO_HAPROXY_PID_FILE: pidFile,
      DEMO_TEST_RUN: marker,
      ...extraEnv
    }
  })
  let out = ''
  npm.stdout?.on('data', (b: Buffer) => { out += b.toString('utf8') })
  npm.stderr?.on('data', (b: Buffer) => { out += b.toString('utf8') })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    npm.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const run: DemoRun = { npm, marker, ports, pidFile, output: () => out, exited, seen: new Map() }
  runs.push(run)
  // What was running at one time or another, for the checks after the end.
  const watch = setInterval(() => { for (const [pid, cmd] of marked(marker)) run.seen.set(pid, cmd) }, 50)
  exited.then(() => clearInterval(watch), () => {})
  return run
}

/** Resolves once "ready" is printed; rejects with the output when the run ends first or takes too long. */
async function ready (run: DemoRun, timeoutMs = 90_000): Promise<void> {
  let ended = false
  run.exited.then(() => { ended = true }, () => {})
  const deadline = Date.now() + timeoutMs
  while (!/^demo: ready:/m.test(run.output())) {
    if (ended) throw new Error(`npm run demo ended before "ready":\n${run.output()}`)
    if (Date.now() > deadline) throw new Error(`no "ready" within ${timeoutMs} ms:\n${run.output()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function endsWithin (run: DemoRun, ms: number): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`npm run demo still running after ${ms} ms:\n${run.output()}`)), ms)
  })
  try {
    return await Promise.race([run.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Nothing of the run is left (zombies aside: init reaps what it inherited) and every port is free again. */
async function nothingLeft (run: DemoRun): Promise<void> {
  await waitFor(async () => [...marked(run.marker).entries()], left => left.length === 0, { timeoutMs: 5000 })
  for (const [name, port] of Object.entries(run.ports)) {
    expect(await bindable(port), `${name} ${port} is free again`).toBe(true)
  }
}

/** One non-interactive Runtime API exchange on a new connection (HAProxy answers and closes). */
function runtimeCommand (port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let reply = ''
    const socket = connect(port, '127.0.0.1', () => socket.write(line + '\n'))
    socket.setEncoding('utf8')
    socket.setTimeout(5000, () => socket.destroy(new Error(`${line}: no answer within 5 s`)))
    socket.on('data', (chunk: string) => { reply += chunk })
    socket.once('end', () => resolve(reply))
    socket.once('error', reject)
  })
}

// Under `npm run test:node24`, npm and the demo would run on the host's Node while node_modules holds
// Node 24's SQLite addon (scripts/test-node24.sh): the demo is what a user runs, on one Node.
const otherNode = process.env.HAPCTL_TEST_NODE !== undefined && process.env.HAPCTL_TEST_NODE !== ''
if (otherNode) console.warn('npm run demo tests skipped: HAPCTL_TEST_NODE is set (npm would run the demo on the host\'s Node, not on the one under test)')

describe.skipIf(otherNode)('npm run demo', () => {
  it.each([
    ['SIGTERM', 'to the npm process'],
    // A terminal's Ctrl-C reaches npm and the demo (npm forwards it too): one stop, not a forced one.
    ['SIGINT', "to npm's process group, as Ctrl-C in a terminal"]
  ] as const)('prints "ready" once every part answers, and %s %s stops all it started', async (signal, target) => {
    const ports = await distinctFreePorts()
    const run = await startDemo(ports)
    await ready(run)

    // Every part answers at the moment "ready" is printed.
    const front = await httpGet(`http://127.0.0.1:${ports.DEMO_FRONTEND_PORT}/demo-check`)
    expect(front).toEqual({ status: 200, body: 'srv=web1 path=/demo-check\n' })
    expect(await httpGet(`http://127.0.0.1:${ports.DEMO_WEB1_PORT}/x`)).toEqual({ status: 200, body: 'srv=web1 path=/x\n' })
    expect(await httpGet(`http://127.0.0.1:${ports.DEMO_APP1_PORT}/x`)).toEqual({ status: 200, body: 'srv=app1 path=/x\n' })
    const info = await runtimeCommand(ports.DEMO_RUNTIME_PORT, 'show info')
    const workerPid = Number(/^Pid: (\d+)$/m.exec(info)?.[1])
    expect(workerPid, info).toBeGreaterThan(0)
    const readyRes = await fetch(`http://127.0.0.1:${ports.DEMO_HAPCTL_PORT}/ready`)
    expect(readyRes.status).toBe(200)
    expect((await readyRes.json() as { haproxy: { pid: number } }).haproxy.pid).toBe(workerPid)
    expect(run.output()).toContain(`hapctl http://127.0.0.1:${ports.DEMO_HAPCTL_PORT}`)
    expect(run.output()).toContain(`kill -USR2 $(cat ${run.pidFile})`)

    // What runs: the HAProxy master (pid file) and its worker, hapctl (pid in the "ready" line).
    const masterPid = Number(readFileSync(run.pidFile, 'utf8').trim())
    const hapctlPid = Number(/^demo: ready: hapctl \S+, pid (\d+)/m.exec(run.output())?.[1])
    const running = marked(run.marker)
    for (const pid of [masterPid, workerPid, hapctlPid]) expect(running.has(pid), `pid ${pid} runs: ${JSON.stringify([...running])}`).toBe(true)

    if (target === 'to the npm process') run.npm.kill(signal)
    else process.kill(-(run.npm.pid as number), signal)
    const { code } = await endsWithin(run, 60_000)
    expect(code, run.output()).toBe(0)
    expect(run.output()).toMatch(/^demo: stopped$/m)
    // Stopped by signals they handle, not killed: hapctl finishes or undoes running operations first.
    expect(run.output()).toMatch(/"signal":"SIGTERM",[^\n]*"msg":"shutting down"/)
    expect(run.output()).toContain('demo: hapctl stopped (exit code 0)')
    expect(run.output()).toContain('demo: haproxy stopped (exit code 0)')
    await nothingLeft(run)
    expect(existsSync(run.pidFile), 'the pid file is removed').toBe(false)
  }, 180_000)

  it('with a port in use, says which and exits 1 before starting anything', async () => {
    const ports = await distinctFreePorts()
    const blocker: Server = createServer()
    await new Promise<void>(resolve => blocker.listen(ports.DEMO_FRONTEND_PORT, '127.0.0.1', resolve))
    try {
      const run = await startDemo(ports)
      const { code } = await endsWithin(run, 60_000)
      expect(code, run.output()).toBe(1)
      expect(run.output()).toContain(`port ${ports.DEMO_FRONTEND_PORT} (the HAProxy frontend) is already in use on 127.0.0.1`)
      expect(run.output()).toContain('DEMO_FRONTEND_PORT=')
      expect(run.output()).not.toMatch(/^demo: ready/m)
      expect([...run.seen.values()].filter(cmd => /haproxy|src\/server\.ts/.test(cmd)), 'nothing was started').toEqual([])
      await waitFor(async () => [...marked(run.marker).keys()], left => left.length === 0, { timeoutMs: 5000 })
      for (const name of PORT_VARS.filter(n => n !== 'DEMO_FRONTEND_PORT')) expect(await bindable(ports[name]), name).toBe(true)
    } finally {
      await new Promise(resolve => blocker.close(resolve))
    }
  }, 120_000)

  it('when a part stops by itself (hapctl refuses its configuration), stops the others and exits 1', async () => {
    const ports = await distinctFreePorts()
    // HAProxy and the upstreams start first; hapctl then exits at once (exit code 1).
    const run = await startDemo(ports, { HAPCTL_REQUEST_TIMEOUT_MS: '1' })
    const { code } = await endsWithin(run, 90_000)
    expect(code, run.output()).toBe(1)
    expect(run.output()).toContain('demo: hapctl exited (exit code 1)')
    expect(run.output()).not.toMatch(/^demo: ready/m)
    expect([...run.seen.values()].some(cmd => cmd.includes(`-p ${run.pidFile}`)), `HAProxy had started: ${JSON.stringify([...run.seen])}`).toBe(true)
    await nothingLeft(run)
  }, 120_000)
})
