import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { TCP_MODE_WARNING } from '../../src/resources/backends/view.ts'
import { httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance, HttpResult } from '../helpers/haproxy.ts'

/*
 * /backends end to end: hapctl (through app.inject) drives a real HAProxy 3.4, and every claim is
 * checked with real HTTP traffic through HAProxy's frontend and with the test's own Runtime API view
 * (`h.cli`). Servers and map routes are added with the CLI because hapctl has no resource for them yet.
 */

const PROBLEM_JSON = /^application\/problem\+json/

let h: HaproxyInstance
let app: FastifyInstance

beforeAll(async () => {
  // alpha and slow serve the dynamic backends; web1 is the default backend's server.
  h = await startHaproxy({ upstreams: ['web1', 's1', 'r1', 'alpha', 'slow'] })
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

function upstreamPort (name: string): number {
  const u = h.upstreams[name]
  if (u === undefined) throw new Error(`no upstream ${name}`)
  return u.port
}

/**
 * A server in service, added through the API (`add server` + `set server … state ready`): hapctl owns
 * the backends it creates, and its reconciler would remove a server added behind its back.
 */
async function addServer (backend: string, server: string, upstream: string): Promise<void> {
  const res = await app.inject({ method: 'POST', url: `/backends/${backend}/servers`, payload: { name: server, address: '127.0.0.1', port: upstreamPort(upstream) } })
  expect(res.statusCode, res.body).toBe(201)
}

/** Routes paths starting with `prefix` to `backend` through myfrontend1's map, for this test only. */
async function route (prefix: string, backend: string): Promise<void> {
  expect(await h.cli(`add map virt@paths.map ${prefix} ${backend}`)).toBe('\n')
  onTestFinished(async () => { await h.cli(`del map virt@paths.map ${prefix}`) })
}

async function backendNames (): Promise<string[]> {
  const reply = await h.cli('show backend')
  expect(reply.startsWith('# name\n')).toBe(true)
  return reply.split('\n').slice(1).filter(l => l !== '')
}

/** `show stat <backend> -1 -1` as objects keyed by the CSV header (the test's own reading). */
async function statRows (backend: string): Promise<Array<Record<string, string>>> {
  const lines = (await h.cli(`show stat ${backend} -1 -1`)).split('\n').filter(l => l !== '')
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  expect(header[0]).toBe('pxname')
  return lines.slice(1).map(l => {
    const cells = l.split(',')
    return Object.fromEntries(header.map((k, i) => [k, cells[i] ?? '']))
  })
}

/** `show servers state <backend>`: server name → admin state (0 = ready, 1 = maintenance). */
async function serverAdminStates (backend: string): Promise<Record<string, number>> {
  const lines = (await h.cli(`show servers state ${backend}`)).split('\n').filter(l => l !== '' && !l.startsWith('#'))
  expect(lines[0]).toBe('1')
  return Object.fromEntries(lines.slice(1).map(l => {
    const f = l.split(' ')
    return [f[3], Number(f[6])]
  }))
}

async function body (prefix: string): Promise<string> {
  const res = await httpGet(h.frontendUrl + prefix + 'x')
  expect(res.status).toBe(200)
  return res.body
}

function create (payload: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/backends', payload })
}

describe('POST/PATCH/DELETE /backends with traffic', () => {
  it('creates an unpublished backend, publishes it, unpublishes it and deletes it', async () => {
    const created = await create({ name: 'dyn_life', from: 'mydefaults' })
    expect(created.statusCode).toBe(201)
    expect(created.headers.location).toBe('/backends/dyn_life')
    expect(created.json()).toMatchObject({ name: 'dyn_life', dynamic: true, from: 'mydefaults', published: false, mode: 'http', servers: 0, acceptsDynamicServers: true })
    expect(await backendNames()).toContain('dyn_life')

    await addServer('dyn_life', 'a1', 'alpha')
    await route('/test1/', 'dyn_life')
    // Unpublished: the map rule is skipped and the default backend answers.
    expect(await body('/test1/')).toBe('srv=web1 path=/test1/x\n')

    const published = await app.inject({ method: 'PATCH', url: '/backends/dyn_life', payload: { published: true } })
    expect(published.statusCode).toBe(200)
    expect(published.json()).toMatchObject({ name: 'dyn_life', published: true, servers: 1 })
    expect(await body('/test1/')).toBe('srv=alpha path=/test1/x\n')

    const unpublished = await app.inject({ method: 'PATCH', url: '/backends/dyn_life', payload: { published: false } })
    expect(unpublished.statusCode).toBe(200)
    expect(unpublished.json()).toMatchObject({ published: false })
    expect(await body('/test1/')).toBe('srv=web1 path=/test1/x\n')

    const deleted = await app.inject({ method: 'DELETE', url: '/backends/dyn_life' })
    expect(deleted.statusCode).toBe(204)
    expect(deleted.body).toBe('')
    expect(await backendNames()).not.toContain('dyn_life')
    expect(await body('/test1/')).toBe('srv=web1 path=/test1/x\n')

    const gone = await app.inject({ method: 'GET', url: '/backends/dyn_life' })
    expect(gone.statusCode).toBe(404)
    expect(gone.headers['content-type']).toMatch(PROBLEM_JSON)
    expect(gone.json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
  })

  it('publishes at creation when asked', async () => {
    const created = await create({ name: 'dyn_pub', from: 'mydefaults', published: true })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject({ name: 'dyn_pub', published: true, dynamic: true })
    const [row] = (await statRows('dyn_pub')).filter(r => r.svname === 'BACKEND')
    expect(row?.status).toBe('UP')

    await addServer('dyn_pub', 'a1', 'alpha')
    await route('/test2/', 'dyn_pub')
    expect(await body('/test2/')).toBe('srv=alpha path=/test2/x\n')
  })

  it('needs a mode for a defaults section without one', async () => {
    const refused = await create({ name: 'dyn_nomode', from: 'nomode' })
    expect(refused.statusCode).toBe(400)
    expect(refused.headers['content-type']).toMatch(PROBLEM_JSON)
    expect(refused.json()).toMatchObject({ code: 'HAPX_MODE_REQUIRED', command: 'add backend' })
    expect(refused.json().haproxyMessage).toMatch(/^Mode is required as 'nomode' default proxy/)
    expect(await backendNames()).not.toContain('dyn_nomode')

    const created = await create({ name: 'dyn_nomode', from: 'nomode', mode: 'http' })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject({ name: 'dyn_nomode', from: 'nomode', mode: 'http', dynamic: true })
  })

  it('refuses an unknown defaults section with 422 and HAProxy\'s message', async () => {
    const before = await backendNames()
    const res = await create({ name: 'dyn_nodefaults', from: 'nosuchdefaults' })
    expect(res.statusCode).toBe(422)
    expect(res.json()).toMatchObject({ code: 'HAPX_DEFAULTS_NOT_FOUND', haproxyMessage: "Cannot find default proxy 'nosuchdefaults'." })
    expect(await backendNames()).toEqual(before)
  })

  it('refuses a name already taken, dynamic or static, with 409', async () => {
    expect((await create({ name: 'dyn_dup', from: 'mydefaults' })).statusCode).toBe(201)
    const before = await backendNames()

    const dup = await create({ name: 'dyn_dup', from: 'mydefaults' })
    expect(dup.statusCode).toBe(409)
    expect(dup.json()).toMatchObject({ code: 'HAPX_BACKEND_EXISTS' })
    expect(dup.json().haproxyMessage).toMatch(/name is already used by other proxy 'backend dyn_dup'/)

    const stat = await create({ name: 'webservers', from: 'mydefaults' })
    expect(stat.statusCode).toBe(409)
    expect(stat.json().haproxyMessage).toMatch(/name is already used by other proxy 'backend webservers'/)

    expect(await backendNames()).toEqual(before)
    // The existing backend was left as it was (still dynamic, still unpublished).
    expect((await app.inject({ method: 'GET', url: '/backends/dyn_dup' })).json()).toMatchObject({ dynamic: true, published: false })
  })

  it.each([
    ['a space', 'a b'],
    ['a semicolon', 'a;b'],
    ['a slash', 'a/b'],
    ['an empty name', ''],
    ['200 characters', 'n'.repeat(200)]
  ])('refuses %s in a name with 400 and leaves HAProxy unchanged', async (_label, name) => {
    const before = await h.cli('show backend')
    const res = await create({ name, from: 'mydefaults' })
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(PROBLEM_JSON)
    expect(res.json().errors).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'body.name' })]))
    expect(await h.cli('show backend')).toBe(before)
  })

  it('creates a mode tcp backend with a warning, and it gives HTTP clients an empty reply', async () => {
    const created = await create({ name: 'dyn_tcp', from: 'tcpdefaults' })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject({ name: 'dyn_tcp', mode: 'tcp', dynamic: true, from: 'tcpdefaults' })
    expect(created.json().warnings).toContain(TCP_MODE_WARNING)

    await addServer('dyn_tcp', 'a1', 'alpha')
    await route('/test3/', 'dyn_tcp')
    expect((await app.inject({ method: 'PATCH', url: '/backends/dyn_tcp', payload: { published: true } })).statusCode).toBe(200)
    const before = h.upstreams.alpha!.requests
    expect(await httpGet(h.frontendUrl + '/test3/x')).toEqual({ status: 0, body: '' })
    expect(h.upstreams.alpha!.requests).toBe(before)
  })

  it('creates a backend from a static-rr defaults section, says it takes no dynamic servers, and HAProxy agrees', async () => {
    const created = await create({ name: 'dyn_rr', from: 'staticrr' })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject({ name: 'dyn_rr', acceptsDynamicServers: false, balance: 'static-rr', mode: 'http' })
    expect(created.json().warnings).toEqual([expect.stringMatching(/no dynamic servers/)])

    const reply = await h.cli(`add server dyn_rr/s1 127.0.0.1:${upstreamPort('alpha')}`)
    expect(reply).toMatch(/^Backend does not support dynamic servers/)
    expect(await serverAdminStates('dyn_rr')).toEqual({})
  })

  it('lists static and dynamic backends with their server counts', async () => {
    expect((await create({ name: 'dyn_list', from: 'mydefaults' })).statusCode).toBe(201)
    await addServer('dyn_list', 'a1', 'alpha')
    await addServer('dyn_list', 'a2', 'alpha')

    const res = await app.inject({ method: 'GET', url: '/backends' })
    expect(res.statusCode).toBe(200)
    const items = res.json().items as Array<Record<string, unknown>>
    expect(items.map(b => b.name)).toEqual(await backendNames())
    const byName = new Map(items.map(b => [b.name, b]))
    expect(byName.get('webservers')).toMatchObject({ dynamic: false, from: null, servers: 1, published: true, mode: 'http' })
    expect(byName.get('static_empty')).toMatchObject({ dynamic: false, servers: 0 })
    expect(byName.get('static_unref')).toMatchObject({ dynamic: false, servers: 1, balance: 'roundrobin' })
    expect(byName.get('dyn_list')).toMatchObject({ dynamic: true, from: 'mydefaults', servers: 2, published: false })
  })

  it('lists hundreds of backends from a reply read in pieces, and eight requests at once get what one gets', async () => {
    // Made with the CLI, one connection each: a `show stat` of a few hundred KB, which reaches hapctl
    // in many pieces (read as they arrive, only the columns the view needs).
    const names = Array.from({ length: 300 }, (_, i) => `many_${i}`)
    const port = upstreamPort('alpha')
    for (const n of names) {
      expect(await h.cli(`add backend ${n} from mydefaults; add server ${n}/s1 127.0.0.1:${port}; set server ${n}/s1 state ready; publish backend ${n}`))
        .toBe('New backend registered.\n\nNew server registered.\n\n\nBackend published.\n\n')
    }
    onTestFinished(async () => {
      for (const n of names) await h.cli(`unpublish backend ${n}; set server ${n}/s1 state maint; del server ${n}/s1; del backend ${n}`)
    })
    const one = await app.inject({ method: 'GET', url: '/backends' })
    expect(one.statusCode).toBe(200)
    const items = one.json().items as Array<Record<string, unknown>>
    expect(items.map(b => b.name)).toEqual(await backendNames())
    for (const n of names) {
      expect(items.find(b => b.name === n)).toEqual({
        name: n, mode: 'http', published: true, status: 'UP', dynamic: false, from: null, balance: 'unknown', acceptsDynamicServers: true, servers: 1, warnings: []
      })
    }
    const eight = await Promise.all(Array.from({ length: 8 }, async () => app.inject({ method: 'GET', url: '/backends' })))
    for (const res of eight) expect(res.json()).toEqual(one.json())
    const servers = await app.inject({ method: 'GET', url: '/backends/many_7/servers' })
    expect(servers.json().items).toEqual([expect.objectContaining({ name: 's1', backend: 'many_7', port, adminState: 'ready', status: 'up', rawStatus: 'no check', sessions: 0 })])
  })

  it('answers 404 for a frontend name, a defaults name and an unknown backend', async () => {
    for (const name of ['myfrontend1', 'fe_ref', 'mydefaults', 'nosuchbackend']) {
      const res = await app.inject({ method: 'GET', url: `/backends/${name}` })
      expect(res.statusCode, name).toBe(404)
      expect(res.json()).toMatchObject({ code: 'HAPX_BACKEND_NOT_FOUND' })
    }
  })
})

describe('DELETE /backends/:name while a request is in flight', () => {
  /** A published backend with server `a1` on the slow upstream, routed for `/sleep/…` paths. */
  async function slowBackend (name: string): Promise<void> {
    expect((await create({ name, from: 'mydefaults', published: true })).statusCode).toBe(201)
    await addServer(name, 'a1', 'slow')
    await route('/sleep/', name)
  }

  /** Starts a slow request and waits until HAProxy counts it as a session on the server. */
  async function startSlowRequest (backend: string, ms: number): Promise<{ inflight: Promise<HttpResult> }> {
    const inflight = httpGet(h.frontendUrl + `/sleep/${ms}`, { timeoutMs: ms + 20_000 })
    // Keep the rejection handled until the test awaits it.
    inflight.catch(() => {})
    await waitFor(() => statRows(backend), rows => rows.some(r => r.svname === 'a1' && Number(r.scur) > 0), { timeoutMs: 10_000 })
    // Wrapped: an async function returning the promise itself would wait for the request to finish.
    return { inflight }
  }

  it('gives up after the timeout, puts the backend back as it was, and deletes it once the request is done', async () => {
    await slowBackend('dyn_slow')
    const { inflight } = await startSlowRequest('dyn_slow', 4000)

    const refused = await app.inject({ method: 'DELETE', url: '/backends/dyn_slow?timeout=1s' })
    expect(refused.statusCode).toBe(409)
    const problem = refused.json()
    expect(problem).toMatchObject({ code: 'HAPX_NOT_REMOVABLE', command: 'wait srv-removable', outcome: 'undone', state: { target: { kind: 'backend', id: 'dyn_slow' }, left: [] } })
    expect(problem.detail).toMatch(/still had connections.*was put back/)
    expect(problem.haproxyMessage).toMatch(/still has connections attached/)

    // Restored: published, the server ready again, and new requests reach it.
    expect((await app.inject({ method: 'GET', url: '/backends/dyn_slow' })).json()).toMatchObject({ published: true, servers: 1 })
    expect(await serverAdminStates('dyn_slow')).toEqual({ a1: 0 })
    expect(await httpGet(h.frontendUrl + '/sleep/1')).toEqual({ status: 200, body: 'srv=slow path=/sleep/1\n' })

    expect(await inflight).toEqual({ status: 200, body: 'srv=slow path=/sleep/4000\n' })
    const deleted = await app.inject({ method: 'DELETE', url: '/backends/dyn_slow' })
    expect(deleted.statusCode).toBe(204)
    expect(await backendNames()).not.toContain('dyn_slow')
  })

  it('waits for the in-flight request when the timeout allows it', async () => {
    await slowBackend('dyn_wait')
    const slow = h.upstreams.slow!
    const answeredBefore = slow.requests
    const { inflight } = await startSlowRequest('dyn_wait', 1500)

    const deleted = await app.inject({ method: 'DELETE', url: '/backends/dyn_wait?timeout=20s' })
    expect(deleted.statusCode).toBe(204)
    // The upstream had answered the request before the server could be removed.
    expect(slow.requests).toBe(answeredBefore + 1)
    expect(await inflight).toEqual({ status: 200, body: 'srv=slow path=/sleep/1500\n' })
    expect(await backendNames()).not.toContain('dyn_wait')
    expect(await httpGet(h.frontendUrl + '/sleep/1')).toEqual({ status: 200, body: 'srv=web1 path=/sleep/1\n' })
  })
})

describe('DELETE /backends/:name refusals', () => {
  it('refuses a backend the configuration references, and changes nothing', async () => {
    const backendsBefore = await h.cli('show backend')
    for (const url of ['/backends/static_ref', '/backends/static_ref?force=true']) {
      const res = await app.inject({ method: 'DELETE', url })
      expect(res.statusCode, url).toBe(409)
      expect(res.json()).toMatchObject({ code: 'HAPX_BACKEND_NOT_REMOVABLE', state: { backend: 'static_ref', changed: false } })
      expect(res.json().haproxyMessage).toMatch(/cannot be removed at runtime due to other configuration elements pointing to it/)
    }
    expect(await h.cli('show backend')).toBe(backendsBefore)
    expect(await serverAdminStates('static_ref')).toEqual({ r1: 0 })
    expect((await statRows('static_ref')).find(r => r.svname === 'BACKEND')?.status).toBe('UP')
    expect(await httpGet(h.refFrontendUrl + '/ref/a')).toEqual({ status: 200, body: 'srv=r1 path=/ref/a\n' })
  })

  it('refuses a static backend unless forced', async () => {
    const refused = await app.inject({ method: 'DELETE', url: '/backends/static_empty' })
    expect(refused.statusCode).toBe(409)
    expect(refused.json()).toMatchObject({ code: 'HAPX_BACKEND_STATIC' })
    expect(await backendNames()).toContain('static_empty')

    const forced = await app.inject({ method: 'DELETE', url: '/backends/static_empty?force=true' })
    expect(forced.statusCode).toBe(204)
    expect(await backendNames()).not.toContain('static_empty')
  })

  it('answers 404 for an unknown backend', async () => {
    const res = await app.inject({ method: 'DELETE', url: '/backends/nosuchbackend' })
    expect(res.statusCode).toBe(404)
    expect(res.json()).toMatchObject({ code: 'HAPX_BACKEND_NOT_FOUND' })
  })

  it.each(['abc', '0', '10h', '-1s', '1.5s', '6m'])('refuses timeout=%s with 400', async (timeout) => {
    const name = `dyn_to_${timeout.replace(/[^a-z0-9]/g, '_')}`
    expect((await create({ name, from: 'mydefaults' })).statusCode).toBe(201)
    const res = await app.inject({ method: 'DELETE', url: `/backends/${name}?timeout=${encodeURIComponent(timeout)}` })
    expect(res.statusCode).toBe(400)
    expect(res.json().errors).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'querystring.timeout' })]))
    expect(await backendNames()).toContain(name)
  })
})

describe('a restarted hapctl', () => {
  it('still knows the backends it created when it restarts with its store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hapctl-state-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const env = { HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_STORE: join(dir, 'hapctl.db') }
    const before = await buildApp({ config: testConfig(env), logger: false })
    expect((await before.inject({ method: 'POST', url: '/backends', payload: { name: 'kept', from: 'nomode', mode: 'http' } })).statusCode).toBe(201)
    await before.close()

    const after = await buildApp({ config: testConfig(env), logger: false })
    onTestFinished(() => after.close())
    expect((await after.inject({ url: '/backends/kept' })).json()).toMatchObject({ dynamic: true, from: 'nomode' })
    // Known as its own, it is deleted without force=true.
    expect((await after.inject({ method: 'DELETE', url: '/backends/kept' })).statusCode).toBe(204)
    expect(await backendNames()).not.toContain('kept')
  })

  it('imports the backends of an old HAPCTL_STATE_FILE once, then renames it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hapctl-state-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    expect(await h.cli('add backend legacy from nomode mode http')).toMatch(/New backend registered/)
    const info = await h.cli('show info')
    const pid = /^Pid: (\d+)$/m.exec(info)?.[1]
    const start = /^Start_time_sec: (\d+)$/m.exec(info)?.[1]
    const file = join(dir, 'state.json')
    writeFileSync(file, JSON.stringify({ version: 1, process: `${pid}@${start}`, backends: { legacy: { from: 'nomode', createdAt: new Date().toISOString(), dynamicServers: true } } }))
    const app2 = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_STATE_FILE: file }), logger: false })
    onTestFinished(() => app2.close())
    expect((await app2.inject({ url: '/backends/legacy' })).json()).toMatchObject({ dynamic: true, from: 'nomode', mode: 'http', published: false })
    expect(existsSync(file)).toBe(false)
    expect(existsSync(`${file}.imported`)).toBe(true)
    expect((await app2.inject({ method: 'DELETE', url: '/backends/legacy' })).statusCode).toBe(204)
  })
})
