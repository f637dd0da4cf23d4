import { describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { fakeRuntime, INFO_REPLY } from '../helpers/fake-runtime.ts'

/*
 * A request that arrives once a stop began (pipelined on a connection that was busy when the server
 * stopped accepting) is answered with a problem document saying so, with Retry-After, and its connection
 * is closed. (app.inject bypasses Fastify's own closing check, so this exercises the hook itself; the
 * app turns Fastify's plain-JSON 503 off so that the hook is what such a request meets.)
 */
describe('requests during a stop', () => {
  it('answer 503 SHUTTING_DOWN with Retry-After and Connection: close', async () => {
    const app = await buildApp({ config: testConfig(), runtime: fakeRuntime(() => INFO_REPLY), logger: false, reconcile: false })
    await app.ready()
    const before = await app.inject({ method: 'GET', url: '/health' })
    expect(before.statusCode).toBe(200)
    const closed = app.close()
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })
    await closed
    expect(res.statusCode).toBe(503)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(res.headers['retry-after']).toBe('5')
    expect(res.headers.connection).toBe('close')
    expect(res.json()).toMatchObject({ status: 503, code: 'HAPX_SHUTTING_DOWN' })
  })
})
