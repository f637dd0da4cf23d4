/**
 * The OpenAPI document's examples, run as Swagger UI's "Try it out" would run them, in the console's
 * order, against a real HAProxy 3.4 with the demo's own configuration (examples/haproxy.cfg on this
 * test's ports): each one succeeds (2xx), and each response carries the headers the document says it
 * carries, and none of the documented ones it does not declare.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { generateSpec } from '../../src/openapi.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyConfigContext, HaproxyInstance } from '../helpers/haproxy.ts'
import { exampleRequests } from '../helpers/openapi-examples.ts'
import type { ExampleRequest, Json } from '../helpers/openapi-examples.ts'

const DEMO_CONFIG = readFileSync(new URL('../../examples/haproxy.cfg', import.meta.url), 'utf8')

/** examples/haproxy.cfg with this test's ports, plus the unix socket the harness talks to. */
function demoConfig (ctx: HaproxyConfigContext): string {
  const web1 = ctx.upstreams.web1
  if (web1 === undefined) throw new Error('no web1 upstream')
  const lines: Array<[RegExp, string]> = [
    [/^ *stats socket .*$/m, `    stats socket ipv4@127.0.0.1:${ctx.runtime} level admin\n    stats socket ${ctx.dir}/admin.sock mode 600 level admin`],
    [/^ *bind .*$/m, `    bind 127.0.0.1:${ctx.frontend}`],
    [/^ *server web1 .*$/m, `    server web1 127.0.0.1:${web1.port}`]
  ]
  return lines.reduce((text, [line, replacement]) => {
    if (!line.test(text)) throw new Error(`examples/haproxy.cfg has no line matching ${line}`)
    return text.replace(line, replacement)
  }, DEMO_CONFIG)
}

/** Headers the document may declare, lower-cased. */
const DOCUMENTED = ['x-request-id', 'etag', 'location', 'www-authenticate', 'retry-after']

const spec: Json = JSON.parse(await generateSpec())
const requests = exampleRequests(spec)

describe('OpenAPI examples against the demo configuration (real HAProxy)', () => {
  let h: HaproxyInstance | undefined
  let app: FastifyInstance | undefined
  let base = ''

  beforeAll(async () => {
    h = await startHaproxy({ config: demoConfig, upstreams: ['web1'] })
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, HAPROXY_TIMEOUT_MS: '20000' }), logger: false, reconcile: false })
    await app.listen({ port: 0, host: '127.0.0.1' })
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  })
  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  async function send (req: ExampleRequest): Promise<{ status: number, headers: Headers, body: string }> {
    const ac = new AbortController()
    const res = await fetch(base + req.url, { method: req.method, headers: req.headers, body: req.body, signal: ac.signal })
    // GET /events streams until the client leaves: its head is the answer.
    const body = req.operationId === 'watchEvents' ? '' : await res.text()
    ac.abort()
    return { status: res.status, headers: res.headers, body }
  }

  it('runs every operation as prefilled, in the order Swagger UI lists them', async () => {
    expect(requests.length).toBeGreaterThan(25)
    for (const req of requests) {
      const res = await send(req)
      const where = `${req.method} ${req.url} ${req.mediaType ?? ''} → ${res.status} ${res.body}`
      expect(res.status, where).toBeGreaterThanOrEqual(200)
      expect(res.status, where).toBeLessThan(300)
      const documented = Object.keys(spec.paths[req.path][req.method.toLowerCase()].responses[String(res.status)]?.headers ?? {}).map(k => k.toLowerCase())
      for (const name of DOCUMENTED) {
        // Response headers a document declares may be absent; these ones are always sent where declared.
        expect(res.headers.has(name), `${where}: header ${name}`).toBe(documented.includes(name))
      }
    }
    // The demo still works afterwards: its frontend answers through web1, left as it was.
    const frontend = await httpGet(`${h?.frontendUrl ?? ''}/static/x`)
    expect(frontend.body).toContain('srv=web1')
    const servers = await app?.inject({ method: 'GET', url: '/backends/webservers/servers' })
    expect(servers?.json().items.map((s: { name: string, adminState: string }) => `${s.name}:${s.adminState}`)).toEqual(['web1:ready'])
  })
})
