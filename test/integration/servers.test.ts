import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The servers resource against a real HAProxy 3.4, proved with traffic through myfrontend1:
 * `/test…` and `/sleep…` are routed by virt@paths.map to dynamic backends created through the API.
 */
describe('servers on a real HAProxy', () => {
  let h: HaproxyInstance | undefined
  let app: FastifyInstance | undefined
  const haproxy = () => { if (!h) throw new Error('HAProxy did not start'); return h }
  const api = () => { if (!app) throw new Error('no app'); return app }
  const port = (name: string) => haproxy().upstreams[name]!.port

  beforeAll(async () => {
    h = await startHaproxy({ upstreams: ['web1', 's1', 'r1', 'a', 'b', 'slow'] })
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
    for (const name of ['dyn', 'slowbe']) {
      const res = await app.inject({ method: 'POST', url: '/backends', payload: { name, from: 'mydefaults', published: true } })
      expect(res.statusCode, res.body).toBe(201)
    }
    expect(await h.cli('add map virt@paths.map /test dyn')).toBe('\n')
    expect(await h.cli('add map virt@paths.map /sleep slowbe')).toBe('\n')
  })
  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  const get = (url: string) => api().inject({ method: 'GET', url })
  const post = (url: string, payload: unknown) => api().inject({ method: 'POST', url, payload: payload as object })
  const patch = (url: string, payload: unknown) => api().inject({ method: 'PATCH', url, payload: payload as object })
  const del = (url: string) => api().inject({ method: 'DELETE', url })
  const server = async (b: string, s: string) => (await get(`/backends/${b}/servers/${s}`)).json()
  /** Who answers `n` requests to /test, each on a new connection. */
  const answers = async (n: number) => {
    const seen: string[] = []
    for (let i = 0; i < n; i++) {
      const r = await httpGet(haproxy().frontendUrl + '/test')
      seen.push(r.status === 200 ? r.body.split(' ')[0]!.replace('srv=', '') : `HTTP ${r.status}`)
    }
    return seen
  }

  it('reads a static backend and its server, and 404s unknown names', async () => {
    const res = await get('/backends/webservers/servers')
    expect(res.statusCode).toBe(200)
    const [web1] = res.json().items
    expect(web1).toMatchObject({
      name: 'web1',
      backend: 'webservers',
      address: '127.0.0.1',
      port: port('web1'),
      adminState: 'ready',
      status: 'up',
      rawStatus: 'no check',
      weight: { current: 1, initial: 1 },
      backup: false,
      healthCheck: { configured: false, enabled: false, status: null }
    })
    expect((await get('/backends/nosuch/servers')).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
    expect((await get('/backends/webservers/servers/nosuch')).json()).toMatchObject({ status: 404, code: 'HAPX_SERVER_NOT_FOUND' })
  })

  it('adds a health-checked server that takes traffic once UP', async () => {
    const res = await post('/backends/dyn/servers', { name: 'a', address: '127.0.0.1', port: port('a'), check: true, inter: '200ms', rise: 1, fall: 1 })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.headers.location).toBe('/backends/dyn/servers/a')
    expect(res.json()).toMatchObject({ name: 'a', adminState: 'ready', healthCheck: { configured: true, enabled: true } })
    const up = await waitFor(() => server('dyn', 'a'), s => s.status === 'up' && s.healthCheck.status === 'L4OK', { timeoutMs: 10_000 })
    expect(up.healthCheck.description).toMatch(/layer 4/i)
    expect(await answers(3)).toEqual(['a', 'a', 'a'])
  })

  it('drain, maint and weight 0 stop new requests reaching a server', async () => {
    const res = await post('/backends/dyn/servers', { name: 'b', address: '127.0.0.1', port: port('b') })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ status: 'up', rawStatus: 'no check' })
    // Round robin may hand a server that just joined several requests in a row: ask enough times.
    expect(new Set(await answers(20))).toEqual(new Set(['a', 'b']))

    expect((await patch('/backends/dyn/servers/a', { state: 'drain' })).json()).toMatchObject({ adminState: 'drain', status: 'drain' })
    expect(await answers(6)).toEqual(Array(6).fill('b'))
    expect((await patch('/backends/dyn/servers/a', { state: 'ready' })).statusCode).toBe(200)
    await waitFor(() => server('dyn', 'a'), s => s.status === 'up', { timeoutMs: 10_000 })

    expect((await patch('/backends/dyn/servers/b', { state: 'maint' })).json()).toMatchObject({ adminState: 'maint', status: 'maint' })
    expect(await answers(6)).toEqual(Array(6).fill('a'))
    expect((await patch('/backends/dyn/servers/b', { state: 'ready' })).statusCode).toBe(200)

    expect((await patch('/backends/dyn/servers/a', { weight: 0 })).json()).toMatchObject({ weight: { current: 0, initial: 1 } })
    expect(await answers(6)).toEqual(Array(6).fill('b'))
    expect((await patch('/backends/dyn/servers/a', { weight: 1 })).json()).toMatchObject({ weight: { current: 1 } })
    expect(new Set(await answers(20))).toEqual(new Set(['a', 'b']))
  })

  it('health goes DOWN when the upstream stops and UP when it is back', async () => {
    const upstream = haproxy().upstreams.a!
    await upstream.stop()
    try {
      const down = await waitFor(() => server('dyn', 'a'), s => s.status === 'down', { timeoutMs: 10_000 })
      expect(down.healthCheck.status).toBe('L4CON')
      expect(down.healthCheck.description).toMatch(/connection problem/)
      expect(await answers(4)).toEqual(Array(4).fill('b'))
    } finally {
      await upstream.start()
    }
    await waitFor(() => server('dyn', 'a'), s => s.status === 'up', { timeoutMs: 10_000 })
  })

  it('changes the address/port and refuses check changes a server was not added with', async () => {
    const moved = await patch('/backends/dyn/servers/b', { port: port('a') })
    expect(moved.json()).toMatchObject({ port: port('a'), address: '127.0.0.1' })
    await patch('/backends/dyn/servers/a', { state: 'maint' })
    expect(await answers(3)).toEqual(['a', 'a', 'a']) // b now points at upstream a
    expect((await patch('/backends/dyn/servers/b', { address: '127.0.0.1', port: port('b') })).json()).toMatchObject({ port: port('b') })
    expect(await answers(3)).toEqual(['b', 'b', 'b'])
    await patch('/backends/dyn/servers/a', { state: 'ready' })
    // Back from maintenance a checked server is DOWN until its check passes again; disabling checks then would freeze it DOWN.
    await waitFor(() => server('dyn', 'a'), s => s.status === 'up', { timeoutMs: 10_000 })

    const health = await patch('/backends/dyn/servers/b', { healthChecks: false })
    expect(health.json()).toMatchObject({ status: 409, code: 'HAPX_CHECKS_NOT_CONFIGURED' })
    const agent = await patch('/backends/dyn/servers/b', { agentChecks: true })
    expect(agent.json()).toMatchObject({ status: 409, code: 'HAPX_AGENT_NOT_CONFIGURED' })
    const off = await patch('/backends/dyn/servers/a', { healthChecks: false })
    expect(off.json()).toMatchObject({ healthCheck: { configured: true, enabled: false } })
    expect((await patch('/backends/dyn/servers/a', { healthChecks: true })).json()).toMatchObject({ healthCheck: { enabled: true } })
    expect((await patch('/backends/dyn/servers/nosuch', { weight: 2 })).statusCode).toBe(404)
  })

  it('refuses bad servers before or as HAProxy does', async () => {
    const base = { address: '127.0.0.1', port: port('a') }
    expect((await post('/backends/dyn/servers', { ...base, name: 'x', address: 'localhost' })).json()).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    expect((await post('/backends/dyn/servers', { ...base, name: 'x', weight: 300 })).statusCode).toBe(400)
    expect((await post('/backends/dyn/servers', { ...base, name: 'BACKEND' })).statusCode).toBe(400)
    expect((await post('/backends/dyn/servers', { ...base, name: 'a' })).json()).toMatchObject({ status: 409, code: 'HAPX_SERVER_EXISTS' })
    expect((await post('/backends/nosuch/servers', { ...base, name: 'x' })).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
    const ssl = await post('/backends/dyn/servers', { ...base, name: 'x', ssl: true, sslVerify: 'required' })
    expect(ssl.json()).toMatchObject({ status: 400, code: 'HAPX_SERVER_REJECTED', haproxyMessage: expect.stringMatching(/no CA file specified/) })

    const rr = await post('/backends', { name: 'rrbe', from: 'staticrr' })
    expect(rr.statusCode).toBe(201)
    const refused = await post('/backends/rrbe/servers', { ...base, name: 'x' })
    expect(refused.json()).toMatchObject({ status: 400, code: 'HAPX_NO_DYNAMIC_SERVERS', haproxyMessage: expect.stringMatching(/does not support dynamic servers/) })
    expect(await haproxy().cli('show servers state dyn')).not.toMatch(/ x /)
  })

  it('adds servers with a separate check address and port, TLS options, and to static backends', async () => {
    const res = await post('/backends/static_unref/servers', {
      name: 'chk', address: '127.0.0.1', port: port('b'), check: true, checkAddr: '127.0.0.1', checkPort: port('a'), weight: 7, maxconn: 5, backup: true, enabled: false
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({
      adminState: 'maint',
      weight: { current: 7, initial: 7 },
      maxconn: 5,
      backup: true,
      healthCheck: { configured: true, port: port('a'), address: '127.0.0.1' }
    })
    // An IPv6 check address goes in brackets on the add line, and HAProxy reports it bare.
    const v6 = await post('/backends/static_unref/servers', { name: 'chk6', address: '127.0.0.1', port: port('b'), check: true, checkAddr: '::1', enabled: false })
    expect(v6.statusCode, v6.body).toBe(201)
    expect(v6.json().healthCheck).toMatchObject({ configured: true, address: '::1' })
    expect((await del('/backends/static_unref/servers/chk6')).statusCode).toBe(204)
    const tls = await post('/backends/static_unref/servers', { name: 'tls', address: '::1', port: 443, ssl: true, sslVerify: 'none', sni: 'api.example.com', enabled: false })
    expect(tls.json()).toMatchObject({ address: '::1', port: 443, ssl: true })
    for (const s of ['chk', 'tls']) expect((await del(`/backends/static_unref/servers/${s}`)).statusCode).toBe(204)
    expect((await get('/backends/static_unref/servers')).json().items.map((s: { name: string }) => s.name)).toEqual(['s1'])
  })

  it('delete waits for a running request, then removes the server', async () => {
    expect((await post('/backends/slowbe/servers', { name: 'slow1', address: '127.0.0.1', port: port('slow') })).statusCode).toBe(201)
    let finishedAt = 0
    const request = httpGet(haproxy().frontendUrl + '/sleep/3000').then(r => { finishedAt = Date.now(); return r })
    await waitFor(() => server('slowbe', 'slow1'), s => s.sessions >= 1, { timeoutMs: 5000, intervalMs: 20 })
    const res = await del('/backends/slowbe/servers/slow1?timeout=20s')
    const deletedAt = Date.now()
    expect(res.statusCode, res.body).toBe(204)
    expect(await request).toMatchObject({ status: 200, body: 'srv=slow path=/sleep/3000\n' })
    expect(finishedAt).toBeGreaterThan(0)
    expect(finishedAt).toBeLessThanOrEqual(deletedAt)
    expect((await get('/backends/slowbe/servers/slow1')).statusCode).toBe(404)
    expect(await haproxy().cli('show servers state slowbe')).not.toMatch(/slow1/)
  })

  it('delete answers 409 at the deadline and puts the server back in service', async () => {
    expect((await post('/backends/slowbe/servers', { name: 'slow2', address: '127.0.0.1', port: port('slow') })).statusCode).toBe(201)
    const request = httpGet(haproxy().frontendUrl + '/sleep/3000')
    await waitFor(() => server('slowbe', 'slow2'), s => s.sessions >= 1, { timeoutMs: 5000, intervalMs: 20 })
    const res = await del('/backends/slowbe/servers/slow2?timeout=500ms')
    expect(res.json()).toMatchObject({ status: 409, code: 'HAPX_NOT_REMOVABLE', outcome: 'undone' })
    expect(await server('slowbe', 'slow2')).toMatchObject({ adminState: 'ready' })
    expect((await request).status).toBe(200)
    expect((await del('/backends/slowbe/servers/slow2')).statusCode).toBe(204)
  })

  it('POST /backends with published servers under health checks publishes once one is UP', async () => {
    // The route exists before the backend does: until it is published, /ready1 falls back to web1.
    expect(await haproxy().cli('add map virt@paths.map /ready1 readybe')).toBe('\n')
    const res = await post('/backends', {
      name: 'readybe',
      from: 'mydefaults',
      published: true,
      servers: [{ name: 'r', address: '127.0.0.1', port: port('a'), check: true, inter: '300ms', rise: 2 }]
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ published: true, warnings: [] })
    // No 503 window: the first request after the 201 already reaches the new server.
    expect(await httpGet(haproxy().frontendUrl + '/ready1')).toMatchObject({ status: 200, body: 'srv=a path=/ready1\n' })
    expect(await haproxy().cli('del map virt@paths.map /ready1')).toBe('\n')
  })

  it('POST /backends with servers is all or nothing', async () => {
    const good = { name: 'g1', address: '127.0.0.1', port: port('a') }
    const bad = { name: 'g2', address: '127.0.0.1', port: port('b'), ssl: true, sslVerify: 'required' }
    const res = await post('/backends', { name: 'allornot', from: 'mydefaults', servers: [good, bad] })
    expect(res.json()).toMatchObject({ status: 400, code: 'HAPX_SERVER_REJECTED', outcome: 'undone', state: { left: [] } })
    expect(res.json().detail).toMatch(/was put back/)
    expect(await haproxy().cli('show backend')).not.toMatch(/allornot/)
    expect((await get('/backends/allornot')).statusCode).toBe(404)

    const ok = await post('/backends', { name: 'allornot', from: 'mydefaults', published: true, servers: [good, { ...bad, ssl: false, sslVerify: undefined }] })
    expect(ok.statusCode, ok.body).toBe(201)
    expect(ok.json()).toMatchObject({ servers: 2, published: true })
    expect((await get('/backends/allornot/servers')).json().items.map((s: { name: string }) => s.name).sort()).toEqual(['g1', 'g2'])

    const rr = await post('/backends', { name: 'rr2', from: 'staticrr', servers: [good] })
    expect(rr.json()).toMatchObject({ status: 400, code: 'HAPX_NO_DYNAMIC_SERVERS' })
    expect(await haproxy().cli('show backend')).not.toMatch(/rr2/)
  })
})
