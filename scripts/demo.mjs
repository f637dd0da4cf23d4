#!/usr/bin/env node
// The quick start in one command: installs HAProxy 3.4 if needed, starts two tiny HTTP upstreams,
// HAProxy with examples/haproxy.cfg and hapctl against its Runtime API, prints "ready" once every one
// of them answers, and runs until SIGINT (Ctrl-C) or SIGTERM, which stop everything it started.
//
// Ports, on 127.0.0.1, from the environment (README, Quick start):
//   DEMO_HAPCTL_PORT     5555   hapctl (Swagger UI at /docs)
//   DEMO_FRONTEND_PORT   8080   HAProxy frontend myfrontend1 (path → backend through virt@paths.map)
//   DEMO_RUNTIME_PORT    9999   HAProxy Runtime API (level admin)
//   DEMO_WEB1_PORT       8081   upstream web1, the server of backend webservers
//   DEMO_APP1_PORT       8082   upstream app1, for the walk-through's dynamic server
// DEMO_HAPROXY_PID_FILE (default .tmp/demo-haproxy.pid): the HAProxy master's pid, for reloads.
// HAPCTL_STORE (default data/demo.db, emptied at each start): hapctl's desired state.
// hapctl listens on loopback, without authentication unless API_TOKEN or HAPCTL_TOKENS_FILE is set
// in the demo's environment (README, Authentication).
//
// Exit status: 0 after a requested stop, 1 when a part could not start or stopped by itself (a port
// in use is said before anything starts); in every case what was started is stopped first.
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join, resolve as resolvePath } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { startUpstream } from './demo-upstream.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const log = msg => process.stderr.write(`demo: ${msg}\n`)
const READY_TIMEOUT_MS = 60_000
// hapctl finishes (or puts back) running operations within HAPCTL_SHUTDOWN_GRACE_MS, 30 s by
// default; HAProxy stops at once on SIGTERM.
const STOP_TIMEOUT_MS = { hapctl: 40_000, haproxy: 5_000 }

const PORTS = [
  { key: 'hapctl', env: 'DEMO_HAPCTL_PORT', fallback: 5555, what: 'hapctl' },
  { key: 'frontend', env: 'DEMO_FRONTEND_PORT', fallback: 8080, what: 'the HAProxy frontend' },
  { key: 'runtime', env: 'DEMO_RUNTIME_PORT', fallback: 9999, what: "HAProxy's Runtime API" },
  { key: 'web1', env: 'DEMO_WEB1_PORT', fallback: 8081, what: 'upstream web1' },
  { key: 'app1', env: 'DEMO_APP1_PORT', fallback: 8082, what: 'upstream app1' }
]

function fail (msg) {
  log(msg)
  process.exit(1)
}

// Empty values count as unset, as in src/config.ts.
const port = {}
for (const p of PORTS) {
  const raw = process.env[p.env] || String(p.fallback)
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) fail(`${p.env}=${raw}: not a port number (1-65535)`)
  const twin = PORTS.find(q => port[q.key] === Number(raw))
  if (twin) fail(`${p.env} and ${twin.env} are both ${raw}: each part needs its own port`)
  port[p.key] = Number(raw)
}
const pidFile = process.env.DEMO_HAPROXY_PID_FILE || '.tmp/demo-haproxy.pid'
const authEnv = [process.env.API_TOKEN && 'API_TOKEN', process.env.HAPCTL_TOKENS_FILE && `HAPCTL_TOKENS_FILE=${process.env.HAPCTL_TOKENS_FILE}`].filter(Boolean)

// ---- stopping -----------------------------------------------------------------------------------
// HAProxy and hapctl run in process groups of their own (detached): Ctrl-C in the terminal reaches
// this process only, which stops them in order and waits until they are gone, and one signal to a
// group reaches HAProxy's master and all its workers at once.
const parts = [] // { label, child, exited: Promise, gone: boolean, how: 'exit code 0' | 'SIGKILL' … }
const servers = []
const steps = new Set() // setup steps running (install, addon build)
let stopping = false
let forced = false

function signalGroup (part, signal) {
  try { process.kill(-part.child.pid, signal) } catch { /* already gone */ }
}

/** Live (not zombie) processes of process group `pgid`, from /proc. */
function groupMembers (pgid) {
  const pids = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // Fields after the command (which is in parentheses and may hold spaces): state ppid pgrp …
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(pgrp) === pgid && state !== 'Z') pids.push(Number(entry))
    } catch { /* gone meanwhile */ }
  }
  return pids
}

async function stopPart (part) {
  const deadline = Date.now() + STOP_TIMEOUT_MS[part.label]
  signalGroup(part, 'SIGTERM')
  while (groupMembers(part.child.pid).length > 0) {
    if (forced || Date.now() > deadline) {
      if (!forced) log(`${part.label} did not stop within ${STOP_TIMEOUT_MS[part.label] / 1000} s: killing it`)
      signalGroup(part, 'SIGKILL')
    }
    await delay(50)
  }
  await part.exited
  log(`${part.label} stopped (${part.how})`)
}

async function shutdown (code, why) {
  if (stopping) return
  stopping = true
  if (why) log(why)
  log('stopping')
  for (const child of steps) child.kill('SIGTERM')
  // hapctl first: it may still be putting back into HAProxy what an operation changed.
  for (const label of ['hapctl', 'haproxy']) {
    const part = parts.find(p => p.label === label)
    if (part) await stopPart(part)
  }
  await Promise.all(servers.map(s => new Promise(resolve => {
    s.close(resolve)
    s.closeAllConnections()
  })))
  rmSync(resolvePath(root, pidFile), { force: true })
  log(code === 0 ? 'stopped' : 'stopped everything it had started')
  process.exit(code)
}

// SIGHUP: the terminal was closed.
let firstSignalAt = 0
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (stopping) {
      // A second Ctrl-C: do not wait for hapctl's grace period. One Ctrl-C arrives twice (from the
      // terminal to the whole foreground job, and forwarded by npm): only a later one counts.
      if (Date.now() - firstSignalAt > 1000) forced = true
      return
    }
    firstSignalAt = Date.now()
    shutdown(0, `${signal} received`)
  })
}
// The shell or npm that started the demo died without passing a signal on (`sh -c 'a && b'` does
// not forward one to b): the demo is an orphan nobody can stop with Ctrl-C any more.
const parentPid = process.ppid
setInterval(() => { if (process.ppid !== parentPid) shutdown(0, `its parent process (${parentPid}) is gone`) }, 500).unref()
// Last resort (an exception in this script): nothing it started may outlive it.
process.on('exit', () => { for (const part of parts) signalGroup(part, 'SIGKILL') })
process.on('uncaughtException', err => {
  if (!stopping) return shutdown(1, `unexpected error: ${err.stack ?? err}`)
  log(`unexpected error while stopping: ${err.stack ?? err}`)
  process.exit(1) // the 'exit' handler kills what is left
})

function start (label, cmd, args, env) {
  const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], detached: true, env: { ...process.env, ...env } })
  const part = { label, child, gone: false }
  part.exited = new Promise(resolve => {
    child.once('exit', (code, signal) => {
      part.gone = true
      part.how = signal ?? `exit code ${code}`
      if (!stopping) shutdown(1, `${label} exited (${signal ?? `exit code ${code}`}); its messages are above`)
      resolve()
    })
    child.once('error', err => {
      part.gone = true
      if (!stopping) shutdown(1, `cannot start ${label}: ${err.message}`)
      resolve()
    })
  })
  parts.push(part)
  return child
}

/** Runs a setup step to its end; its stdout is returned, its stderr shown. */
function step (label, cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    steps.add(child)
    child.once('exit', () => steps.delete(child))
    let out = ''
    child.stdout.on('data', chunk => { out += chunk })
    child.once('error', reject)
    child.once('exit', (code, signal) => code === 0 ? resolve(out) : reject(new Error(`${label} failed (${signal ?? `exit code ${code}`})`)))
  })
}

// ---- checks -------------------------------------------------------------------------------------

/** Whether 127.0.0.1:<p> can be bound right now. */
function bindable (p) {
  return new Promise(resolve => {
    const server = net.createServer()
    server.once('error', err => resolve(err.code === 'EADDRINUSE' ? false : err))
    server.listen(p, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * Whether every socket listening on <p> for 127.0.0.1 (on 127.0.0.1, 0.0.0.0 or ::) belongs to one of
 * `pids`: HAProxy binds with SO_REUSEPORT, so an HAProxy left over from an earlier run could share a
 * port with this one and answer half of its requests.
 */
function ownsPort (p, pids) {
  const hexPort = p.toString(16).toUpperCase().padStart(4, '0')
  const local = new Set(['0100007F', '00000000', '00000000000000000000000000000000', '0000000000000000FFFF00000100007F'])
  const listening = new Set()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(table, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      const [addr, lport] = (f[1] ?? '').split(':')
      if (lport === hexPort && f[3] === '0A' && local.has(addr)) listening.add(f[9])
    }
  }
  if (listening.size === 0) return false
  const ours = new Set()
  for (const pid of pids) {
    let fds = []
    try { fds = readdirSync(`/proc/${pid}/fd`) } catch { continue }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        if (m) ours.add(m[1])
      } catch { /* closed meanwhile */ }
    }
  }
  return [...listening].every(inode => ours.has(inode))
}

function httpGet (p, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: p, path, headers, agent: false }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', chunk => { body += chunk })
      res.once('end', () => resolve({ status: res.statusCode, body }))
    })
    req.setTimeout(2000, () => req.destroy(new Error('no answer within 2 s')))
    req.once('error', reject)
  })
}

/** `show info` on a new Runtime API connection (non-interactive: HAProxy answers and closes). */
function showInfo (p) {
  return new Promise((resolve, reject) => {
    let reply = ''
    const socket = net.connect(p, '127.0.0.1', () => socket.write('show info\n'))
    socket.setTimeout(2000, () => socket.destroy(new Error('no answer within 2 s')))
    socket.setEncoding('utf8')
    socket.on('data', chunk => { reply += chunk })
    socket.once('end', () => resolve(reply))
    socket.once('error', reject)
  })
}

/** What is not answering yet, or undefined when every part answers as it should. */
async function notReady (haproxy, hapctl) {
  for (const name of ['web1', 'app1']) {
    const res = await httpGet(port[name], '/').catch(err => ({ status: 0, body: err.message }))
    if (res.body !== `srv=${name} path=/\n`) return `upstream ${name} on port ${port[name]} (${res.status} ${res.body.trim()})`
    if (!ownsPort(port[name], [process.pid])) return `upstream ${name}: port ${port[name]} is held by another process too`
  }
  const info = await showInfo(port.runtime).catch(err => err.message)
  const workerPid = Number(/^Pid: (\d+)$/m.exec(info)?.[1])
  const haproxyPids = groupMembers(haproxy.pid)
  if (!haproxyPids.includes(workerPid)) return `HAProxy's Runtime API on port ${port.runtime} (${info.trim().split('\n')[0] || 'no answer'})`
  for (const key of ['runtime', 'frontend']) {
    if (!ownsPort(port[key], haproxyPids)) return `HAProxy on port ${port[key]}: not listening yet, or another process listens there too`
  }
  const front = await httpGet(port.frontend, '/').catch(err => ({ status: 0, body: err.message }))
  if (front.body !== 'srv=web1 path=/\n') return `the HAProxy frontend on port ${port.frontend} (${front.status} ${front.body.trim().split('\n')[0]})`
  if (!ownsPort(port.hapctl, [hapctl.pid])) return `hapctl on port ${port.hapctl}: not listening yet`
  if (process.env.API_TOKEN || !process.env.HAPCTL_TOKENS_FILE) {
    const headers = process.env.API_TOKEN ? { authorization: `Bearer ${process.env.API_TOKEN}` } : {}
    const ready = await httpGet(port.hapctl, '/ready', headers).catch(err => ({ status: 0, body: err.message }))
    let seen
    try { seen = JSON.parse(ready.body).haproxy?.pid } catch { /* not JSON */ }
    if (ready.status !== 200 || seen !== workerPid) return `hapctl /ready on port ${port.hapctl} (${ready.status} ${ready.body.slice(0, 200)})`
  } else {
    // Only hashes are in a tokens file: no token to ask /ready with, so its 401 says that hapctl
    // answers (HAProxy's Runtime API was checked above).
    const ready = await httpGet(port.hapctl, '/ready').catch(err => ({ status: 0, body: err.message }))
    if (ready.status !== 401) return `hapctl /ready on port ${port.hapctl} (${ready.status} ${ready.body.slice(0, 200)})`
  }
  return undefined
}

// ---- start --------------------------------------------------------------------------------------

for (const p of PORTS) {
  const free = await bindable(port[p.key])
  if (free !== true) {
    fail(free === false
      ? `port ${port[p.key]} (${p.what}) is already in use on 127.0.0.1: stop what listens there (an earlier demo?) or choose another port, e.g. ${p.env}=${port[p.key] < 55536 ? port[p.key] + 10000 : port[p.key] - 10000} npm run demo`
      : `port ${port[p.key]} (${p.what}, ${p.env}) cannot be used: ${free.message}`)
  }
}

let haproxyBin
try {
  // The SQLite addon, as `npm test` and `npm start` do (scripts/ensure-native.mjs says why).
  await step('scripts/ensure-native.mjs', process.execPath, ['scripts/ensure-native.mjs'])
  haproxyBin = (await step('scripts/install-haproxy.sh', 'bash', ['scripts/install-haproxy.sh'])).trim().split('\n').pop()
} catch (err) {
  if (!stopping) fail(err.message)
}
if (stopping) await new Promise(() => {}) // shutdown() exits

for (const name of ['web1', 'app1']) {
  try {
    servers.push(await startUpstream(name, port[name]))
  } catch (err) {
    await shutdown(1, `upstream ${name} cannot listen on 127.0.0.1:${port[name]} (DEMO_${name.toUpperCase()}_PORT): ${err.message}`)
  }
}

// Master-worker mode, as HAProxy is deployed: `kill -USR2 $(cat .tmp/demo-haproxy.pid)` reloads it,
// which starts a new worker that has forgotten every runtime change (hapctl puts them back).
// examples/haproxy.cfg reads its ports from these variables ("${VAR-default}", HAProxy
// configuration manual, 2.3 Environment variables).
mkdirSync(join(root, '.tmp'), { recursive: true })
const haproxy = start('haproxy', haproxyBin, ['-W', '-p', pidFile, '-f', 'examples/haproxy.cfg', '-db'], {
  DEMO_FRONTEND_ADDR: '127.0.0.1',
  DEMO_FRONTEND_PORT: String(port.frontend),
  DEMO_RUNTIME_PORT: String(port.runtime),
  DEMO_WEB1_PORT: String(port.web1)
})

// The walk-through starts from nothing: a desired state left by an earlier demo would be put back
// into this fresh HAProxy, and its first POST would answer 409. HAPCTL_STORE keeps one on purpose.
const store = process.env.HAPCTL_STORE || 'data/demo.db'
if (!process.env.HAPCTL_STORE) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(join(root, `${store}${suffix}`), { force: true })
}
// From the sources (as `npm run dev`): no build step, nothing written to dist/.
const hapctl = start('hapctl', process.execPath, ['--import', 'tsx', 'src/server.ts'], {
  HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${port.runtime}`,
  PORT: String(port.hapctl),
  HOST: '127.0.0.1',
  HAPCTL_STORE: store
})

const deadline = Date.now() + READY_TIMEOUT_MS
for (;;) {
  const waiting = await notReady(haproxy, hapctl)
  if (stopping) await new Promise(() => {}) // shutdown() exits
  if (waiting === undefined) break
  if (Date.now() > deadline) await shutdown(1, `not ready within ${READY_TIMEOUT_MS / 1000} s: ${waiting}`)
  await delay(100)
}

const bearer = authEnv.length > 0 ? ' -H "authorization: Bearer $TOKEN"' : ''
const api = `localhost:${port.hapctl}`
log(`ready: hapctl http://127.0.0.1:${port.hapctl}, pid ${hapctl.pid} (Swagger UI: http://127.0.0.1:${port.hapctl}/docs), HAProxy frontend http://127.0.0.1:${port.frontend}
  Runtime API tcp://127.0.0.1:${port.runtime}, upstreams web1 127.0.0.1:${port.web1} and app1 127.0.0.1:${port.app1}
  ${authEnv.length > 0 ? `authentication: ${authEnv.join(' and ')}; every route but /health, /docs and /openapi.json needs a token` : 'authentication: none (loopback only; see README, Authentication)'}
  try: curl -s -XPOST ${api}/backends${bearer} -H 'content-type: application/json' -d '{"name":"mybackend1","from":"mydefaults"}'
  reload HAProxy: kill -USR2 $(cat ${pidFile})   (hapctl puts back what it was asked; see curl -s ${api}/status${bearer})
  Ctrl-C stops everything`)
