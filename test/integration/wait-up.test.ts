import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { freePort, httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * `?wait=up` against a real HAProxy 3.4: the answer comes once traffic really reaches the server,
 * proved by an HTTP request through myfrontend1 sent right after it, which must reach the upstream
 * and never get HAProxy's 503. The same request right after an answer without wait=up gets the 503,
 * which is what the wait is for.
 */
describe('wait=up on a real HAProxy', () => {
  let h: HaproxyInstance | undefined
  let app: FastifyInstance | undefined
  const store = new MemoryStore()
  const haproxy = () => { if (!h) throw new Error('HAProxy did not start'); return h }
  const api = () => { if (!app) throw new Error('no app'); return app }
  const appPort = () => haproxy().upstreams.app!.port

  beforeAll(async () => {
    h = await startHaproxy({ upstreams: ['web1', 's1', 'r1', 'app'] })
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false, store, reconcile: false })
  })
  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  const send = (method: 'POST' | 'PATCH', url: string, payload: object) => api().inject({ method, url, payload })
  /** A backend routed from `/<name>` by virt@paths.map. */
  const routedBackend = async (name: string, published: boolean) => {
    const res = await send('POST', '/backends', { name, from: 'mydefaults', published })
    expect(res.statusCode, res.body).toBe(201)
    expect(await haproxy().cli(`add map virt@paths.map /${name} ${name}`)).toBe('\n')
  }
  const through = (name: string) => httpGet(`${haproxy().frontendUrl}/${name}`)

  it('POST …/servers?wait=up answers once the checked server is UP: the next request reaches it', async () => {
    // Several rounds: a race between the answer and HAProxy's state would show in one of them.
    for (let round = 1; round <= 4; round++) {
      const name = `w${round}`
      await routedBackend(name, true)
      const started = Date.now()
      const res = await send('POST', `/backends/${name}/servers?wait=up`, { name: 'app1', address: '127.0.0.1', port: appPort(), check: true, inter: '200ms' })
      const elapsed = Date.now() - started
      const next = await through(name)
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json()).toMatchObject({ name: 'app1', status: 'up', rawStatus: 'UP', healthCheck: { status: 'L4OK' } })
      expect(next, `round ${round}, answered after ${elapsed} ms`).toEqual({ status: 200, body: `srv=app path=/${name}\n` })
    }
  })

  it('without wait=up the same request right after the answer gets HAProxy\'s 503 (what the wait is for)', async () => {
    await routedBackend('nowait', true)
    const res = await send('POST', '/backends/nowait/servers', { name: 'app1', address: '127.0.0.1', port: appPort(), check: true, inter: '1s' })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ status: 'down' })
    expect((await through('nowait')).status).toBe(503)
  })

  it('at the deadline answers 504 NOT_UP; the server stays added, in service and kept', async () => {
    await routedBackend('dead', true)
    const closed = await freePort()
    const started = Date.now()
    const res = await send('POST', '/backends/dead/servers?wait=up&waitTimeout=1s', { name: 'gone1', address: '127.0.0.1', port: closed, check: true, inter: '200ms' })
    const elapsed = Date.now() - started
    expect(res.statusCode, res.body).toBe(504)
    expect(res.json()).toMatchObject({ code: 'HAPX_NOT_UP', outcome: 'applied', state: { servers: [{ name: 'gone1', status: expect.stringMatching(/^DOWN/) }] } })
    expect(res.json().detail).toMatch(/^server 'dead\/gone1' was added and is kept, but it is not UP after 1000 ms/)
    expect(elapsed).toBeGreaterThanOrEqual(1000)
    expect(elapsed).toBeLessThan(5000)
    const read = await api().inject({ method: 'GET', url: '/backends/dead/servers/gone1' })
    expect(read.json()).toMatchObject({ adminState: 'ready', status: 'down', healthCheck: { enabled: true } })
    expect(await store.getServer('dead', 'gone1')).toMatchObject({ adminState: 'ready' })
  })

  it('PATCH /backends/:name?wait=up with published: true answers once a server is UP: the next request reaches it', async () => {
    for (const [name, wait] of [['pubwait', true], ['pubnowait', false]] as const) {
      await routedBackend(name, false)
      // Added right before: DOWN (init-state down) until two checks 300 ms apart have passed.
      const add = await send('POST', `/backends/${name}/servers`, { name: 'app1', address: '127.0.0.1', port: appPort(), check: true, inter: '300ms' })
      expect(add.json()).toMatchObject({ status: 'down' })
      const res = await send('PATCH', `/backends/${name}${wait ? '?wait=up' : ''}`, { published: true })
      const next = await through(name)
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json()).toMatchObject({ published: true })
      if (wait) expect(next).toEqual({ status: 200, body: `srv=app path=/${name}\n` })
      else expect(next.status).toBe(503)
    }
  })
})
