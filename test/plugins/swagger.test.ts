import { describe, expect, it } from 'vitest'
import { generateSpec } from '../../src/openapi.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

/*
 * Statuses Fastify or a plugin answers before a route's handler are declared on the routes they can
 * reach: 413 and 415 on every method Fastify reads a body for, bodyless DELETEs included, and 503 on
 * /health during a stop.
 */
describe('statuses answered before the handler', () => {
  it('413 and 415 are declared on every POST, PUT, PATCH and DELETE, and happen on a bodyless DELETE', async () => {
    const spec = JSON.parse(await generateSpec())
    for (const [path, item] of Object.entries(spec.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        if (!['post', 'put', 'patch', 'delete'].includes(method)) continue
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(expect.arrayContaining(['413', '415']))
      }
    }
    const app = await buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))
    const big = await app.inject({ method: 'DELETE', url: '/backends/b1', headers: { 'content-type': 'application/json' }, payload: `"${'x'.repeat(100_000)}"` })
    expect(big.statusCode).toBe(413)
    const xml = await app.inject({ method: 'DELETE', url: '/backends/b1', headers: { 'content-type': 'application/xml' }, payload: '<x/>' })
    expect(xml.statusCode).toBe(415)
  })

  it('/health declares the 503 it answers during a stop', async () => {
    const spec = JSON.parse(await generateSpec())
    expect(Object.keys(spec.paths['/health'].get.responses)).toEqual(['200', '503'])
  })
})
