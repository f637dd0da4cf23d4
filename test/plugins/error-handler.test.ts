import { describe, expect, it } from 'vitest'
import { routePattern } from '../../src/plugins/error-handler.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

describe('routePattern', () => {
  it('matches a path as the router does: one segment per parameter, optional trailing slash', () => {
    const p = routePattern('/maps/:map/entries/:key')
    expect(p.test('/maps/virt%40paths.map/entries/%2Fa')).toBe(true)
    expect(p.test('/maps/virt%40paths.map/entries/%2Fa/')).toBe(true)
    expect(p.test('/maps/virt%40paths.map/entries')).toBe(false)
    expect(p.test('/maps/a/b/entries/k')).toBe(false)
    expect(routePattern('/backends/').test('/backends')).toBe(true)
    expect(routePattern('/docs/*').test('/docs/static/index.html')).toBe(true)
    expect(routePattern('/openapi.json').test('/openapiXjson')).toBe(false)
  })
})

describe('405 Method Not Allowed', () => {
  const app = async () => buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))

  it('answers 405 with Allow and a problem body for a known path, 404 for an unknown one', async () => {
    const a = await app()
    const cases: Array<[string, string, string]> = [
      ['PUT', '/backends', 'GET, HEAD, POST'],
      ['POST', '/backends/b1', 'DELETE, GET, HEAD, PATCH'],
      ['DELETE', '/maps/virt%40paths.map/entries', 'GET, HEAD, PATCH, POST, PUT'],
      ['POST', '/maps/virt%40paths.map/entries/%2Fa', 'DELETE, GET, HEAD, PUT'],
      ['DELETE', '/health', 'GET, HEAD'],
      ['POST', '/openapi.json', 'GET, HEAD']
    ]
    for (const [method, url, allow] of cases) {
      const res = await a.inject({ method: method as 'GET', url })
      expect(res.statusCode, `${method} ${url}`).toBe(405)
      expect(res.headers.allow).toBe(allow)
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(res.json()).toMatchObject({ status: 405, code: 'HAPX_METHOD_NOT_ALLOWED', title: 'Method Not Allowed', detail: expect.stringContaining(allow) })
    }
    const missing = await a.inject({ method: 'GET', url: '/nothing/here' })
    expect(missing.statusCode).toBe(404)
    expect(missing.headers.allow).toBeUndefined()
    expect(missing.json().code).toBe('HAPX_ROUTE_NOT_FOUND')
  })
})
