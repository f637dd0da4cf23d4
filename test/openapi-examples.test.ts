/**
 * Every example of the generated OpenAPI document, sent as Swagger UI's "Try it out" sends it, passes
 * the route's own validation (schemas, body parsers, the handlers' own checks before HAProxy is asked).
 * HAProxy is out of reach here (every Runtime API call fails), so the answer is an error, but never a
 * 400, 413 or 415 (the request's shape refused) nor a 404 route: test/integration/openapi-examples.test.ts
 * runs them against a real HAProxy.
 */
import { describe, expect, it } from 'vitest'
import { generateSpec } from '../src/openapi.ts'
import { RuntimeUnavailableError } from '../src/runtime/errors.ts'
import { buildTestApp } from './helpers/build-test-app.ts'
import { fakeRuntime } from './helpers/fake-runtime.ts'
import { bodyExample, consoleOrder, exampleRequests, parameterValue } from './helpers/openapi-examples.ts'
import type { ExampleRequest, Json } from './helpers/openapi-examples.ts'

const spec: Json = JSON.parse(await generateSpec())
const unreachable = () => fakeRuntime(() => new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED'))

async function send (req: ExampleRequest): Promise<{ status: number, body: string, contentType: string }> {
  const app = await buildTestApp(unreachable())
  if (req.operationId === 'watchEvents') {
    // A stream never ends, so inject would never return: its head is enough.
    await app.listen({ port: 0, host: '127.0.0.1' })
    const ac = new AbortController()
    const res = await fetch(`http://127.0.0.1:${(app.server.address() as { port: number }).port}${req.url}`, { headers: req.headers, signal: ac.signal })
    ac.abort()
    return { status: res.status, body: '', contentType: res.headers.get('content-type') ?? '' }
  }
  const res = await app.inject({ method: req.method as 'GET', url: req.url, headers: req.headers, ...(req.body === undefined ? {} : { payload: req.body }) })
  return { status: res.statusCode, body: res.body, contentType: String(res.headers['content-type'] ?? '') }
}

describe('the OpenAPI examples', () => {
  it('exist for every required parameter and every request body (Swagger UI would make up the rest)', () => {
    for (const { op } of consoleOrder(spec)) {
      for (const param of op.parameters ?? []) {
        if (param.required === true) expect(parameterValue(spec, param), `${op.operationId} ${param.name}`).toBeDefined()
      }
      for (const [mediaType, media] of Object.entries<Json>(op.requestBody?.content ?? {})) {
        expect(bodyExample(spec, media), `${op.operationId} ${mediaType}`).toBeDefined()
      }
    }
  })

  const requests = exampleRequests(spec)
  it('cover every operation', () => {
    const ids = new Set(requests.map(r => r.operationId))
    expect(ids.size).toBe(consoleOrder(spec).length)
  })

  it.each(requests.map(r => [`${r.operationId} ${r.mediaType ?? ''}`.trim(), r] as const))('%s passes the route\'s validation', async (_, req) => {
    const res = await send(req)
    const where = `${req.method} ${req.url} ${req.mediaType ?? ''} → ${res.status} ${res.body}`
    expect([400, 413, 415], where).not.toContain(res.status)
    expect(res.body, where).not.toContain('HAPX_ROUTE_NOT_FOUND')
    expect(req.statuses, where).toContain(String(res.status))
  })

  // The check above means something only if an invalid request does get its 400 in the same setup.
  it('a request the examples would get wrong is refused in this setup', async () => {
    const create = requests.find(r => r.operationId === 'createBackend')
    const server = requests.find(r => r.operationId === 'createServer')
    if (create?.body === undefined || server?.body === undefined) throw new Error('no example for createBackend or createServer')
    const bad: ExampleRequest[] = [
      { ...create, body: JSON.stringify({ ...JSON.parse(create.body), from: 'not a name!' }) },
      { ...server, body: JSON.stringify({ ...JSON.parse(server.body), check: false }) }
    ]
    for (const req of bad) {
      const res = await send(req)
      expect(res.status, res.body).toBe(400)
      expect(res.body).toContain('HAPX_VALIDATION_FAILED')
    }
  })
})
