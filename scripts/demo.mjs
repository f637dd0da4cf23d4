#!/usr/bin/env node
// The quick start in one command: installs HAProxy 3.4 if needed, starts two tiny HTTP upstreams,
// HAProxy with examples/haproxy.cfg and hapctl against its Runtime API, then waits for Ctrl-C.
//   frontend      http://127.0.0.1:8080   (path → backend through virt@paths.map)
//   upstreams     http://127.0.0.1:8081 (web1, the default), http://127.0.0.1:8082 (app1)
//   Runtime API   tcp://127.0.0.1:9999
//   hapctl        http://127.0.0.1:5555   Swagger UI at /docs
// hapctl listens on loopback, without authentication unless API_TOKEN or HAPCTL_TOKENS_FILE is set
// in the demo's environment (README, Authentication).
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const log = msg => process.stderr.write(`demo: ${msg}\n`)

const haproxy = execFileSync('bash', ['scripts/install-haproxy.sh'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  .toString().trim().split('\n').pop()

const upstreams = [['web1', 8081], ['app1', 8082]].map(([name, port]) => http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain')
  res.end(`srv=${name} path=${req.url}\n`)
}).on('error', err => { log(`upstream ${name} on port ${port}: ${err.message}`); shutdown(1) }).listen(port, '127.0.0.1'))

const children = []
function start (label, cmd, args, extraEnv = {}) {
  const child = spawn(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...extraEnv } })
  child.on('exit', code => { log(`${label} exited (${code})`); shutdown(1) })
  children.push(child)
  return child
}

let stopping = false
function shutdown (code = 0) {
  if (stopping) return
  stopping = true
  for (const c of children) c.kill('SIGTERM')
  for (const u of upstreams) u.close()
  setTimeout(() => process.exit(code), 300).unref()
}
process.on('SIGINT', () => shutdown(0))
process.on('SIGTERM', () => shutdown(0))

async function waitForPort (port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise(resolve => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`)
}

// Master-worker mode, as HAProxy is deployed: `kill -USR2 $(cat .tmp/demo-haproxy.pid)` reloads it,
// which starts a new worker that has forgotten every runtime change (hapctl puts them back).
mkdirSync(`${root}/.tmp`, { recursive: true })
start('haproxy', haproxy, ['-W', '-p', '.tmp/demo-haproxy.pid', '-f', 'examples/haproxy.cfg', '-db'])
await waitForPort(9999)
log('building hapctl')
execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' })
// The walk-through starts from nothing: a desired state left by an earlier demo would be put back
// into this fresh HAProxy, and its first POST would answer 409. HAPCTL_STORE keeps one on purpose.
const store = process.env.HAPCTL_STORE ?? 'data/demo.db'
if (process.env.HAPCTL_STORE === undefined) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${root}/${store}${suffix}`, { force: true })
}
const hapctl = start('hapctl', process.execPath, ['dist/server.js'], { HAPROXY_RUNTIME_API: 'tcp://127.0.0.1:9999', PORT: '5555', HOST: '127.0.0.1', HAPCTL_STORE: store })
await waitForPort(5555)
// Empty values count as unset, as in src/config.ts.
const auth = [process.env.API_TOKEN && 'API_TOKEN', process.env.HAPCTL_TOKENS_FILE && `HAPCTL_TOKENS_FILE=${process.env.HAPCTL_TOKENS_FILE}`].filter(Boolean)
const bearer = auth.length > 0 ? ' -H "authorization: Bearer $TOKEN"' : ''
log(`ready: hapctl http://127.0.0.1:5555, pid ${hapctl.pid} (Swagger UI: http://127.0.0.1:5555/docs), HAProxy frontend http://127.0.0.1:8080
  ${auth.length > 0 ? `authentication: ${auth.join(' and ')}; every route but /health, /docs and /openapi.json needs a token` : 'authentication: none (loopback only; see README, Authentication)'}
  try: curl -s -XPOST localhost:5555/backends${bearer} -H 'content-type: application/json' -d '{"name":"mybackend1","from":"mydefaults"}'
  reload HAProxy: kill -USR2 $(cat .tmp/demo-haproxy.pid)   (hapctl puts back what it was asked; see curl -s localhost:5555/status${bearer})
  Ctrl-C stops everything`)
