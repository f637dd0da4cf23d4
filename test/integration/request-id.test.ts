import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * A request id sent in comes back and appears in the log lines of that request, Fastify's own and the
 * Runtime API client's (at debug level), the calls to a real HAProxy 3.4 included.
 */

type Line = { reqId?: string, module?: string, msg: string, commands?: string[], level: number }

let h: HaproxyInstance
let app: FastifyInstance
const lines: Line[] = []

beforeAll(async () => {
  h = await startHaproxy()
  const stream = new Writable({ write (chunk, _enc, cb) { for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l)); cb() } })
  // No reconciler: every Runtime API call of this app is made for a request of the test.
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: pino({ level: 'debug' }, stream), reconcile: false })
  await app.ready()
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

describe('request ids', () => {
  it('echoes x-request-id and puts it on every log line of the request, the Runtime API calls\' included', async () => {
    lines.length = 0
    const res = await app.inject({ method: 'POST', url: '/backends', headers: { 'x-request-id': 'abc-123' }, payload: { name: 'rid_b1', from: 'mydefaults' } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.headers['x-request-id']).toBe('abc-123')
    const mine = lines.filter(l => l.reqId === 'abc-123')
    expect(mine.map(l => l.msg)).toEqual(expect.arrayContaining(['incoming request', 'request completed']))
    const calls = lines.filter(l => l.module === 'runtime')
    expect(calls.length).toBeGreaterThan(0)
    expect(calls.flatMap(l => l.commands ?? [])).toContain('add backend')
    // Every line written while it ran is the request's: Fastify's, the runtime client's, the executor's.
    expect(lines.filter(l => l.reqId !== 'abc-123')).toEqual([])
  })

  it('gives a request without one a new id, and keeps concurrent requests\' lines apart', async () => {
    lines.length = 0
    const [a, b] = await Promise.all([
      app.inject({ method: 'GET', url: '/backends', headers: { 'x-request-id': 'rid-a' } }),
      app.inject({ method: 'GET', url: '/backends/rid_b1' })
    ])
    expect(a?.statusCode).toBe(200)
    expect(b?.statusCode).toBe(200)
    const generated = b?.headers['x-request-id'] as string
    expect(generated).toMatch(/^[0-9a-f-]{36}$/)
    const calls = lines.filter(l => l.module === 'runtime')
    expect(calls.filter(l => l.reqId === 'rid-a').length).toBeGreaterThan(0)
    expect(calls.filter(l => l.reqId === generated).length).toBeGreaterThan(0)
    expect(calls.filter(l => l.reqId !== 'rid-a' && l.reqId !== generated)).toEqual([])
  })

  it('replaces an id that could forge a log line or a header', async () => {
    const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'a b' } })
    expect(res.headers['x-request-id']).not.toBe('a b')
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })
})
