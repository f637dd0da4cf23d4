import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'
import { httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance, HttpResult } from '../helpers/haproxy.ts'

/*
 * Nothing stranded by a stop of hapctl, on a real HAProxy 3.4 with hapctl as its own process: a
 * SIGTERM in the middle of a draining DELETE /backends answers the client (503, outcome undone) and
 * puts the backend back in traffic before the process exits; a SIGKILL there leaves it to the
 * reconciler of the next start, which puts it back from the desired state (a SQLite file that
 * survives the restart).
 */

let h: HaproxyInstance
let dir: string

beforeAll(async () => {
  h = await startHaproxy({ upstreams: ['web1', 's1', 'r1', 'slow'] })
  dir = await mkdtemp(join(tmpdir(), 'hapctl-shutdown-'))
})

afterAll(async () => {
  await h?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

const GRACE_MS = 8000

function hapctlEnv (store: string): Record<string, string> {
  return {
    HAPROXY_RUNTIME_API: h.runtimeApi,
    HAPCTL_STORE: join(dir, store),
    HAPCTL_STORE_SYNC: 'normal',
    HAPROXY_TIMEOUT_MS: '2000',
    HAPCTL_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    LOG_LEVEL: 'info'
  }
}

async function api (p: HapctlProcess, method: string, path: string, body?: unknown): Promise<{ status: number, headers: Headers, body: any }> {
  const res = await fetch(p.url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(90_000)
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) }
}

/** `show servers state <backend>`: server name → admin state (0 = ready, 1 = maintenance). */
async function adminStates (backend: string): Promise<Record<string, number>> {
  const lines = (await h.cli(`show servers state ${backend}`)).split('\n').filter(l => l !== '' && !l.startsWith('#'))
  return Object.fromEntries(lines.slice(1).map(l => {
    const f = l.split(' ')
    return [f[3], Number(f[6])]
  }))
}

/** Sessions on a server now (`show stat` scur). */
async function sessionsOn (backend: string, server: string): Promise<number> {
  const lines = (await h.cli(`show stat ${backend} -1 -1`)).split('\n').filter(l => l !== '')
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  const row = lines.slice(1).map(l => Object.fromEntries(l.split(',').map((v, i) => [header[i], v]))).find(r => r.svname === server)
  return Number(row?.scur ?? 0)
}

async function published (backend: string): Promise<boolean> {
  // An unpublished backend is skipped by `use_backend`: `/sleep/…` then reaches the default backend (web1).
  const reply = await h.cli('show servers state')
  if (!reply.split('\n').some(l => l.split(' ')[1] === backend)) throw new Error(`HAProxy has no backend ${backend}`)
  const res = await httpGet(h.frontendUrl + '/sleep/1')
  return res.body.startsWith('srv=slow ')
}

/**
 * A published backend on the slow upstream, routed for `/sleep/…`, with a request holding a session on
 * its server: a DELETE with a long timeout then waits in `wait srv-removable`.
 */
async function drainingBackend (p: HapctlProcess, name: string): Promise<{ inflight: Promise<HttpResult> }> {
  const created = await api(p, 'POST', '/backends', {
    name, from: 'mydefaults', published: true, servers: [{ name: 'a1', address: '127.0.0.1', port: h.upstreams.slow!.port }]
  })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  expect(await h.cli(`add map virt@paths.map /sleep/ ${name}`)).toBe('\n')
  onTestFinished(async () => { await h.cli('del map virt@paths.map /sleep/') })
  expect(await published(name)).toBe(true)
  const inflight = httpGet(h.frontendUrl + '/sleep/20000', { timeoutMs: 40_000 })
  inflight.catch(() => {})
  await waitFor(() => sessionsOn(name, 'a1'), n => n > 0, { timeoutMs: 10_000 })
  return { inflight }
}

describe('SIGTERM in the middle of a draining DELETE /backends/:name', () => {
  it('answers the client 503 (outcome undone), puts the backend back in traffic and exits 0 within the grace', async () => {
    const p = await startHapctl({ env: hapctlEnv('term.db') })
    await drainingBackend(p, 'dyn_term')

    const deleting = api(p, 'DELETE', '/backends/dyn_term?timeout=60s')
    deleting.catch(() => {})
    // The drain has begun: unpublished, its server in maintenance.
    await waitFor(() => adminStates('dyn_term'), s => s.a1 === 1, { timeoutMs: 10_000 })

    const signalled = Date.now()
    p.child.kill('SIGTERM')
    const answer = await deleting
    const exit = await p.exited
    const tookMs = Date.now() - signalled

    expect(answer.status, JSON.stringify(answer.body)).toBe(503)
    expect(answer.body).toMatchObject({ code: 'HAPX_SHUTTING_DOWN', outcome: 'undone', state: { target: { kind: 'backend', id: 'dyn_term' }, left: [] } })
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(exit, p.output()).toEqual({ code: 0, signal: null })
    expect(tookMs).toBeLessThan(GRACE_MS)

    // Put back: published, its server ready, and real traffic reaches it again.
    expect(await adminStates('dyn_term')).toEqual({ a1: 0 })
    expect(await published('dyn_term')).toBe(true)
  })
})

describe('SIGKILL in the middle of a draining DELETE /backends/:name', () => {
  it('leaves the backend to the next start, whose reconciler puts it back in traffic from the desired state', async () => {
    const first = await startHapctl({ env: hapctlEnv('kill.db') })
    await drainingBackend(first, 'dyn_kill')

    const deleting = api(first, 'DELETE', '/backends/dyn_kill?timeout=60s')
    deleting.catch(() => {})
    await waitFor(() => adminStates('dyn_kill'), s => s.a1 === 1, { timeoutMs: 10_000 })
    await first.kill()
    await expect(deleting).rejects.toThrow()
    // Stranded for now: unpublished, in maintenance; routes fall back to the default backend.
    expect(await adminStates('dyn_kill')).toEqual({ a1: 1 })
    expect(await published('dyn_kill')).toBe(false)

    await startHapctl({ env: hapctlEnv('kill.db') })
    await waitFor(() => adminStates('dyn_kill'), s => s.a1 === 0, { timeoutMs: 5000 })
    await waitFor(() => published('dyn_kill'), ok => ok, { timeoutMs: 5000 })
  })
})
