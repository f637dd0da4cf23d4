import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * HAProxy's CLI idle timer (`stats timeout`) also interrupts a running `wait` with "Interrupted. …".
 * With a 1 s stats timeout, a drain that needs ~2.5 s must still be waited for, because the client
 * raises the timer on the connection that waits (`set timeout cli`).
 */
let h: HaproxyInstance
let app: FastifyInstance

beforeAll(async () => {
  h = await startHaproxy({
    upstreams: ['web1', 's1', 'r1', 'slow'],
    config: ctx => defaultConfig(ctx).replace(/stats timeout \S+/, 'stats timeout 1s')
  })
  expect(h.config).toMatch(/stats timeout 1s/)
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

describe('a wait longer than stats timeout', () => {
  it('is not cut short: DELETE of a busy server waits for its request, then removes it', async () => {
    const port = h.upstreams.slow?.port as number
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: 'slowbe', from: 'mydefaults', published: true } })).statusCode).toBe(201)
    expect((await app.inject({ method: 'POST', url: '/backends/slowbe/servers', payload: { name: 'x', address: '127.0.0.1', port } })).statusCode).toBe(201)
    expect(await h.cli('add map virt@paths.map /sleep slowbe')).toBe('\n')

    const request = httpGet(h.frontendUrl + '/sleep/2500')
    await waitFor(async () => (await app.inject({ url: '/backends/slowbe/servers/x' })).json(), s => s.sessions >= 1, { timeoutMs: 5000, intervalMs: 20 })
    const started = Date.now()
    const res = await app.inject({ method: 'DELETE', url: '/backends/slowbe/servers/x?timeout=10s' })
    expect(res.statusCode, res.body).toBe(204)
    expect(Date.now() - started).toBeGreaterThan(1200)
    expect(await request).toMatchObject({ status: 200, body: 'srv=slow path=/sleep/2500\n' })
  })
})
