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

describe("requests Node's HTTP parser refuses", () => {
  /** Sends raw bytes on a new connection and returns everything the server wrote before closing. */
  async function raw (port: number, bytes: string): Promise<string> {
    const { connect } = await import('node:net')
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => { socket.write(bytes) })
      let received = ''
      socket.on('data', b => { received += b.toString('utf8') })
      socket.on('close', () => resolve(received))
      socket.on('error', reject)
    })
  }

  it('get a problem document of the catalog: 400 for a malformed request, 431 for headers too large', async () => {
    const a = await buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))
    await a.listen({ host: '127.0.0.1', port: 0 })
    const { port } = a.server.address() as { port: number }
    const bad = await raw(port, 'GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n')
    expect(bad).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(JSON.parse(bad.slice(bad.indexOf('\r\n\r\n') + 4))).toEqual({
      type: 'https://hapctl.dev/problems/bad-http-request', title: 'Bad Request', status: 400, detail: 'the HTTP request could not be parsed', code: 'HAPX_BAD_HTTP_REQUEST'
    })
    const big = await raw(port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(big).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
    expect(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 431, code: 'HAPX_HEADERS_TOO_LARGE', type: 'https://hapctl.dev/problems/headers-too-large' })
  })
})
