import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { freePort, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * hapctl when HAProxy is up, gone, restarted, or silent: /ready and /backends answer with problem
 * details (503/504) instead of hanging, /health stays 200, and what was created before a restart is
 * no longer claimed. This file restarts and stops its own HAProxy instance, so it shares it with no one.
 */

const PROBLEM_JSON = /^application\/problem\+json/
const TOKEN = 'an-api-token-of-32-characters-xx'

let h: HaproxyInstance
const apps: FastifyInstance[] = []

async function appFor (env: Record<string, string>, opts: { reconcile?: boolean } = {}): Promise<FastifyInstance> {
  const app = await buildApp({ config: testConfig(env), logger: false, ...opts })
  await app.ready()
  apps.push(app)
  return app
}

beforeAll(async () => {
  h = await startHaproxy()
})

afterAll(async () => {
  await Promise.allSettled(apps.map(a => a.close()))
  await h?.stop()
})

async function expectProblem (app: FastifyInstance, method: 'GET' | 'POST' | 'DELETE', url: string, status: number, code: string): Promise<void> {
  const res = await app.inject({ method, url, ...(method === 'POST' ? { payload: { name: 'dyn_x', from: 'mydefaults' } } : {}) })
  expect(res.statusCode, `${method} ${url}`).toBe(status)
  expect(res.headers['content-type']).toMatch(PROBLEM_JSON)
  expect(res.json()).toMatchObject({ status, code })
}

async function expectHealthy (app: FastifyInstance): Promise<void> {
  const res = await app.inject({ method: 'GET', url: '/health' })
  expect(res.statusCode).toBe(200)
  expect(res.json()).toEqual({ status: 'ok' })
}

describe('readiness against a real HAProxy', () => {
  it('is ready with HAProxy\'s version and pid', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: h.runtimeApi })
    const res = await app.inject({ method: 'GET', url: '/ready' })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.status).toBe('ready')
    expect(body.haproxy.version).toMatch(/^3\.4\.\d+/)
    expect(body.haproxy.pid).toBe(h.pid)
    expect(body.haproxy.stopping).toBe(false)
    await expectHealthy(app)
  })

  it('answers 503 when nothing listens on the Runtime API port, and stays alive', async () => {
    const port = await freePort()
    const app = await appFor({ HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${port}` })
    await expectProblem(app, 'GET', '/ready', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'GET', '/backends', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'GET', '/backends/webservers', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'POST', '/backends', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'DELETE', '/backends/webservers', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectHealthy(app)
    // The same app still answers the next time, it did not wedge on the failures.
    await expectProblem(app, 'GET', '/ready', 503, 'HAPX_RUNTIME_UNAVAILABLE')
  })

  it('answers 503 for a unix socket path that does not exist', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: `unix://${h.dir}/no-such.sock` })
    await expectProblem(app, 'GET', '/ready', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'GET', '/backends', 503, 'HAPX_RUNTIME_UNAVAILABLE')
  })
})

describe('a Runtime API that accepts connections but never answers', () => {
  let silent: Server
  const sockets = new Set<Socket>()
  let port: number

  beforeAll(async () => {
    silent = createServer((socket) => {
      sockets.add(socket)
      socket.on('data', () => { /* swallowed */ })
      socket.once('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    port = (silent.address() as { port: number }).port
  })

  afterAll(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => silent.close(() => resolve()))
  })

  it('answers 504 within HAPROXY_TIMEOUT_MS and closes the connection it opened', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${port}`, HAPROXY_TIMEOUT_MS: '500' })
    for (const [method, url] of [['GET', '/ready'], ['GET', '/backends'], ['DELETE', '/backends/webservers']] as const) {
      const started = Date.now()
      await expectProblem(app, method, url, 504, 'HAPX_RUNTIME_TIMEOUT')
      // Far below the 5 s default: the configured deadline, not some other timeout, ended the wait.
      expect(Date.now() - started, `${method} ${url}`).toBeLessThan(3_000)
    }
    await expectHealthy(app)
    // The client gave up on its connections rather than leaving them open.
    await expect.poll(() => sockets.size, { timeout: 5_000 }).toBe(0)
  })
})

describe('bearer token', () => {
  it('keeps /health open and guards everything else', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: h.runtimeApi, API_TOKEN: TOKEN })
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200)
    for (const headers of [{}, { authorization: 'Bearer wrong-token-of-enough-length' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }]) {
      for (const url of ['/backends', '/ready']) {
        const res = await app.inject({ method: 'GET', url, headers })
        expect(res.statusCode, `${url} ${JSON.stringify(headers)}`).toBe(401)
        expect(res.headers['content-type']).toMatch(PROBLEM_JSON)
        expect(res.headers['www-authenticate']).toMatch(/^Bearer /)
        expect(res.json()).toMatchObject({ code: 'HAPX_UNAUTHORIZED' })
      }
    }
    const ok = await app.inject({ method: 'GET', url: '/backends', headers: { authorization: `Bearer ${TOKEN}` } })
    expect(ok.statusCode).toBe(200)
    expect(ok.json().items.map((b: { name: string }) => b.name)).toContain('webservers')
  })
})

// Last: these restart and then stop the file's HAProxy.
describe('HAProxy restarted, then stopped', () => {
  it('is ready again with the new pid, and puts back the backends it created before the restart, never answering 404 for them', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: h.runtimeApi })
    const created = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_before', from: 'mydefaults' } })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject({ dynamic: true, from: 'mydefaults' })
    const oldPid = h.pid

    await h.restart()
    expect(h.pid).not.toBe(oldPid)

    const ready = await app.inject({ method: 'GET', url: '/ready' })
    expect(ready.statusCode).toBe(200)
    expect(ready.json().haproxy.pid).toBe(h.pid)

    // Until the reconciler has put it back: 503 RESTORING (retry), never 404 (gone).
    const statuses = new Set<number>()
    await waitFor(async () => {
      const res = await app.inject({ method: 'GET', url: '/backends/dyn_before' })
      statuses.add(res.statusCode)
      if (res.statusCode === 503) expect(res.json().code).toBe('HAPX_RESTORING')
      return res
    }, res => res.statusCode === 200 && res.json().dynamic === true, { timeoutMs: 2000, intervalMs: 20 })
    expect([...statuses].filter(s => s !== 200 && s !== 503)).toEqual([])
    const list = await app.inject({ method: 'GET', url: '/backends' })
    expect((list.json().items as Array<{ name: string, dynamic: boolean }>).filter(b => b.dynamic).map(b => b.name)).toEqual(['dyn_before'])
    expect((await app.inject({ method: 'DELETE', url: '/backends/dyn_before' })).statusCode).toBe(204)
    await expectHealthy(app)
  })

  it('keeps a backend recreated through hapctl after a restart it has not noticed yet as its own', async () => {
    // No reconciler: the client, not hapctl, recreates it.
    const app = await appFor({ HAPROXY_RUNTIME_API: h.runtimeApi }, { reconcile: false })
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_twice', from: 'mydefaults' } })).statusCode).toBe(201)
    await h.restart()
    expect((await app.inject({ method: 'GET', url: '/backends/dyn_twice' })).json()).toMatchObject({ status: 503, code: 'HAPX_RESTORING' })
    // Created again in the new process, it must not be taken for a leftover of the old one.
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_twice', from: 'mydefaults' } })).statusCode).toBe(201)
    const after = await app.inject({ method: 'GET', url: '/backends/dyn_twice' })
    expect(after.json()).toMatchObject({ name: 'dyn_twice', dynamic: true, from: 'mydefaults' })
    expect((await app.inject({ method: 'DELETE', url: '/backends/dyn_twice' })).statusCode).toBe(204)
  })

  it('answers 503 once HAProxy is stopped, and /health stays 200', async () => {
    const app = await appFor({ HAPROXY_RUNTIME_API: h.runtimeApi })
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200)
    await h.stop()
    await expectProblem(app, 'GET', '/ready', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'GET', '/backends', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectProblem(app, 'POST', '/backends', 503, 'HAPX_RUNTIME_UNAVAILABLE')
    await expectHealthy(app)
  })
})
