/**
 * The audit trail through the HTTP API on a fake HAProxy: which requests are recorded, with which
 * commands and outcome, and GET /audit's pages and filters.
 */
import { describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import type { AuditEntry, DesiredStateStore } from '../../src/engine/store/types.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'
import type { FakeRuntime } from '../helpers/fake-runtime.ts'
import { MAP, MAP_ID, fakeMaps } from '../helpers/fake-maps.ts'

const SECRET = 'audit-route-secret-0123456789'
const AUTH = { authorization: `Bearer ${SECRET}` }

/** A small HAProxy with one static backend `webservers`; `overrides` answer given command texts. */
function haproxy (overrides: Record<string, string | Error> = {}): FakeRuntime {
  const backends = new Map<string, boolean>([['webservers', true]])
  return fakeRuntime(text => {
    if (text in overrides) return overrides[text] as string | Error
    const [verb, sub, name] = text.split(' ')
    if (text === 'show info') return INFO_REPLY
    if (verb === 'show' && sub === 'stat') {
      const only = text === 'show stat' || name === '-1' ? undefined : name
      if (only !== undefined && !backends.has(only)) return 'No such proxy.'
      return statReply([...backends].filter(([n]) => only === undefined || n === only).map(([n, p]) => ({ px: n, status: p ? 'UP' : 'UP (UNPUB)' })))
    }
    if (text.startsWith('show servers state')) return '1\n# be_id be_name srv_id srv_name'
    if (text === 'experimental-mode on') return ''
    if (verb === 'add' && sub === 'backend') {
      if (backends.has(name as string)) return `Error during backend creation : name is already used by other proxy 'backend ${name}'.`
      backends.set(name as string, false)
      return 'New backend registered.'
    }
    if (verb === 'publish' || verb === 'unpublish') {
      if (!backends.has(name as string)) return 'No such backend.'
      backends.set(name as string, verb === 'publish')
      return verb === 'publish' ? 'Backend published.' : 'Backend unpublished.'
    }
    if (verb === 'del' && sub === 'backend') { backends.delete(name as string); return 'Backend deleted.' }
    return `Unknown command: '${verb}'`
  })
}

async function trail (app: FastifyInstance, query = ''): Promise<AuditEntry[]> {
  const res = await app.inject({ method: 'GET', url: `/audit${query}`, headers: AUTH })
  expect(res.statusCode).toBe(200)
  return res.json().items
}

describe('what is recorded', () => {
  it('an accepted write: who, from where, the route, target, the commands sent in order, outcome, revision', async () => {
    const rt = haproxy()
    const store = new MemoryStore()
    const app = await buildTestApp(rt, { API_TOKEN: SECRET }, { store })
    const res = await app.inject({ method: 'POST', url: '/backends?x=1', headers: AUTH, payload: { name: 'b1', from: 'mydefaults', published: true } })
    expect(res.statusCode).toBe(201)
    const [entry, ...rest] = await trail(app)
    expect(rest).toEqual([])
    expect(entry).toMatchObject({
      actor: 'api-token',
      client: '127.0.0.1',
      requestId: expect.any(String),
      method: 'POST',
      route: '/backends',
      path: '/backends',
      target: { kind: 'backend', id: 'b1' },
      commands: [
        { text: 'add backend b1 from mydefaults', result: 'ok' },
        { text: 'publish backend b1', result: 'ok' }
      ],
      commandsOmitted: 0,
      outcome: 'applied',
      status: 201,
      code: null,
      revision: expect.any(Number)
    })
    // Exactly the writes HAProxy got, in order; its reads (show …) are not listed.
    expect(entry?.commands.map(c => c.text)).toEqual(rt.sent.filter(t => !/^(show|get) /.test(t) && t !== 'show info'))
    expect(entry?.revision).toBe(await store.revision())
  })

  it('reads are not recorded; each write has its own request id', async () => {
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET })
    await app.inject({ method: 'GET', url: '/backends', headers: AUTH })
    await app.inject({ method: 'GET', url: '/backends/webservers', headers: AUTH })
    expect((await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: false } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: true } })).statusCode).toBe(200)
    const entries = await trail(app)
    expect(entries.map(e => [e.method, e.path])).toEqual([['PATCH', '/backends/webservers'], ['PATCH', '/backends/webservers']])
    expect(new Set(entries.map(e => e.requestId)).size).toBe(2)
    // Not Fastify's counter (req-1, req-2, …), which starts again with every process.
    const again = await buildTestApp(haproxy(), { API_TOKEN: SECRET })
    expect((await again.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: false } })).statusCode).toBe(200)
    const [next] = await trail(again)
    expect(next?.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    expect(entries.map(e => e.requestId)).not.toContain(next?.requestId)
  })

  it('refusals before anything is sent: 401, validation (400), unknown route (404), with nothing sent', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt, { API_TOKEN: SECRET })
    expect((await app.inject({ method: 'DELETE', url: '/backends/webservers', headers: { authorization: 'Bearer wrong-wrong-wrong-wrong' } })).statusCode).toBe(401)
    expect((await app.inject({ method: 'POST', url: '/backends', headers: AUTH, payload: { name: 'a;del backend webservers', from: 'mydefaults' } })).statusCode).toBe(400)
    expect((await app.inject({ method: 'PUT', url: '/nowhere', headers: AUTH, payload: {} })).statusCode).toBe(404)
    const entries = await trail(app)
    expect(entries.map(e => ({ actor: e.actor, route: e.route, path: e.path, target: e.target, status: e.status, code: e.code, outcome: e.outcome, commands: e.commands }))).toEqual([
      { actor: 'api-token', route: null, path: '/nowhere', target: null, status: 404, code: 'HAPX_ROUTE_NOT_FOUND', outcome: 'rejected', commands: [] },
      // The name is not a valid one, but it is what the client asked for: kept (it is data, never run).
      { actor: 'api-token', route: '/backends', path: '/backends', target: { kind: 'backend', id: 'a;del backend webservers' }, status: 400, code: 'HAPX_VALIDATION_FAILED', outcome: 'rejected', commands: [] },
      { actor: null, route: '/backends/:name', path: '/backends/webservers', target: { kind: 'backend', id: 'webservers' }, status: 401, code: 'HAPX_UNAUTHORIZED', outcome: 'rejected', commands: [] }
    ])
    expect(rt.sent.filter(t => !t.startsWith('show'))).toEqual([])
  })

  it('refused by HAProxy: the refused command, marked, and the outcome of the problem', async () => {
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET })
    const res = await app.inject({ method: 'POST', url: '/backends', headers: AUTH, payload: { name: 'webservers', from: 'mydefaults' } })
    expect(res.statusCode).toBe(409)
    const [entry] = await trail(app)
    expect(entry).toMatchObject({
      status: 409,
      code: res.json().code,
      outcome: res.json().outcome ?? 'refused',
      commands: [{ text: 'add backend webservers from mydefaults', result: 'refused' }],
      revision: null
    })
    expect(entry?.outcome).toBe('refused')
  })

  it('undone: the failed step and the undo commands, as sent', async () => {
    const rt = haproxy({ 'publish backend b1': 'Permission denied' })
    const app = await buildTestApp(rt, { API_TOKEN: SECRET })
    const res = await app.inject({ method: 'POST', url: '/backends', headers: AUTH, payload: { name: 'b1', from: 'mydefaults', published: true } })
    expect(res.statusCode).toBe(502)
    const [entry] = await trail(app)
    expect(entry?.outcome).toBe(res.json().outcome)
    expect(entry?.outcome).toBe('undone')
    expect(entry?.commands).toEqual([
      { text: 'add backend b1 from mydefaults', result: 'ok' },
      { text: 'publish backend b1', result: 'refused' },
      { text: 'unpublish backend b1', result: 'ok' },
      { text: 'del backend b1', result: 'ok' }
    ])
  })

  it('a command with no answer is `unknown`; an unreachable HAProxy sent nothing', async () => {
    const rt = haproxy({ 'publish backend webservers': new RuntimeTimeoutError(5000, 'publish backend') })
    const app = await buildTestApp(rt, { API_TOKEN: SECRET })
    const timedOut = await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: true } })
    expect(timedOut.statusCode).toBe(504)
    const down = haproxy({ 'unpublish backend webservers': new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED') })
    const app2 = await buildTestApp(down, { API_TOKEN: SECRET })
    const refused = await app2.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: false } })
    expect(refused.statusCode).toBe(503)
    const [entry] = await trail(app)
    // Not kept as desired state (a static backend), so the executor put it back: the undo is listed too.
    expect(entry?.commands).toEqual([{ text: 'publish backend webservers', result: 'unknown' }, { text: 'unpublish backend webservers', result: 'ok' }])
    expect(entry?.outcome).toBe(timedOut.json().outcome)
    const [entry2] = await trail(app2)
    expect(entry2?.commands).toEqual([])
    expect(entry2?.outcome).toBe(refused.json().outcome ?? 'rejected')
  })

  it('maps: the key and value as sent; a replace as its payloads, summarised', async () => {
    const maps = fakeMaps([['/a', 'b1']])
    const app = await buildTestApp(maps.runtime, { API_TOKEN: SECRET })
    const put = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent(MAP)}/entries/${encodeURIComponent('/x')}`, headers: AUTH, payload: { value: 'some value' } })
    expect(put.statusCode).toBeLessThan(300)
    const lines = Array.from({ length: 3000 }, (_, i) => `/path/${i} backend-${i}`)
    const replace = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent(MAP)}/entries`, headers: { ...AUTH, 'content-type': 'text/plain' }, payload: lines.join('\n') + '\n' })
    expect(replace.statusCode).toBe(200)
    const [replaced, single] = await trail(app)
    expect(single?.target).toEqual({ kind: 'map', id: MAP })
    expect(single?.commands.map(c => c.text)).toContain(`add map ${MAP} /x some\\ value`)
    expect(replaced?.target).toEqual({ kind: 'map', id: MAP })
    const payloads = replaced?.commands.filter(c => c.payload !== undefined) ?? []
    expect(payloads.length).toBe(maps.payloads.length)
    expect(payloads.reduce((n, c) => n + (c.payload?.lines ?? 0), 0)).toBe(3000)
    expect(payloads.map(c => c.payload?.bytes)).toEqual(maps.payloads.map(p => Buffer.byteLength(p)))
    expect(payloads[0]?.payload?.firstLine).toBe('/path/0 backend-0')
    expect(payloads[0]?.text).toMatch(new RegExp(`^add map @\\d+ ${MAP.replace('.', '\\.')} <<$`))
    expect(replaced?.commands.at(-1)?.text).toMatch(/^commit map @\d+ /)
    // Nothing of the payload is in the entry beyond its first line.
    expect(JSON.stringify(replaced)).not.toContain('/path/1 ')
  })

  it('a map addressed as #<id> is entered under its name, so that a filter by the name finds the write', async () => {
    const maps = fakeMaps([['/a', 'b1']])
    const app = await buildTestApp(maps.runtime, { API_TOKEN: SECRET })
    const put = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent(`#${MAP_ID}`)}/entries/${encodeURIComponent('/x')}`, headers: AUTH, payload: { value: 'v' } })
    expect(put.statusCode).toBeLessThan(300)
    const gone = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent('#999')}/entries/${encodeURIComponent('/x')}`, headers: AUTH, payload: { value: 'v' } })
    expect(gone.statusCode).toBe(404)
    const byName = await trail(app, `?target=${encodeURIComponent(`map:${MAP}`)}`)
    expect(byName.map(e => e.path)).toEqual([`/maps/%23${MAP_ID}/entries/%2Fx`])
    // Nothing was written to any map: the id is all the entry can name.
    expect((await trail(app, `?target=${encodeURIComponent('map:#999')}`)).map(e => e.status)).toEqual([404])
  })

  it('GET /audit and reads are not recorded, OPTIONS-like methods neither; the token never appears', async () => {
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET })
    await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: false } })
    await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: { authorization: `Bearer ${SECRET}x` }, payload: { published: false } })
    const res = await app.inject({ method: 'GET', url: '/audit', headers: AUTH })
    expect(res.json().items).toHaveLength(2)
    expect(res.body).not.toContain(SECRET)
  })
})

describe('GET /audit', () => {
  /** A whole minute an hour ago: recent enough to survive the retention prune at start. */
  const base = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000
  const time = (s: number): string => new Date(base + s * 1000).toISOString()

  async function withEntries (n: number): Promise<{ app: FastifyInstance, store: DesiredStateStore }> {
    const store = new MemoryStore()
    await store.appendAudit(Array.from({ length: n }, (_, i) => ({
      at: time(i),
      actor: 'ops',
      client: '10.0.0.1',
      requestId: `r${i}`,
      method: 'PATCH',
      route: '/backends/:name',
      path: `/backends/b${i % 3}`,
      target: { kind: 'backend', id: `b${i % 3}` },
      commands: [],
      commandsOmitted: 0,
      outcome: 'applied' as const,
      status: 200,
      code: null,
      revision: i,
      durationMs: 1
    })))
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET }, { store })
    return { app, store }
  }

  it('pages newest first with next, filtered by target and time', async () => {
    const { app } = await withEntries(10)
    const first = await app.inject({ method: 'GET', url: '/audit?limit=4', headers: AUTH })
    expect(first.json().items.map((e: AuditEntry) => e.requestId)).toEqual(['r9', 'r8', 'r7', 'r6'])
    const second = await app.inject({ method: 'GET', url: `/audit?limit=4&cursor=${first.json().next}`, headers: AUTH })
    expect(second.json().items.map((e: AuditEntry) => e.requestId)).toEqual(['r5', 'r4', 'r3', 'r2'])
    expect((await trail(app, '?target=backend:b1')).map(e => e.requestId)).toEqual(['r7', 'r4', 'r1'])
    // since in another offset than UTC: the same instant.
    const since = new Date(base + 3000 + 3_600_000).toISOString().replace('Z', '+01:00')
    expect((await trail(app, `?since=${encodeURIComponent(since)}&until=${time(5)}`)).map(e => e.requestId)).toEqual(['r4', 'r3'])
    expect(await trail(app, '?target=server:b1/s1')).toEqual([])
  })

  it.each([
    ['limit=0'], ['limit=1001'], ['since=yesterday'], ['target=b1'], ['target=pool:b1'], ['cursor=nope']
  ])('refuses %s with 400', async (query) => {
    const { app } = await withEntries(1)
    const res = await app.inject({ method: 'GET', url: `/audit?${query}`, headers: AUTH })
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toMatch(/problem\+json/)
  })

  it('needs a token', async () => {
    const { app } = await withEntries(1)
    expect((await app.inject({ method: 'GET', url: '/audit' })).statusCode).toBe(401)
  })

  it('answers 503 when the store cannot be read', async () => {
    const { app, store } = await withEntries(1)
    store.listAudit = async () => { throw new Error('disk on fire') }
    const res = await app.inject({ method: 'GET', url: '/audit', headers: AUTH })
    expect(res.statusCode).toBe(503)
    expect(res.json().code).toBe('HAPX_STORE_UNAVAILABLE')
  })
})

describe('when the audit trail cannot be written', () => {
  it('the write is answered as it happened, and the entry is stored with the next append that works', async () => {
    const store = new MemoryStore()
    const append = store.appendAudit.bind(store)
    let broken = true
    store.appendAudit = async (entries) => { if (broken) throw new Error('disk full'); await append(entries) }
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET }, { store })
    const first = await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: false } })
    expect(first.statusCode).toBe(200)
    broken = false
    await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: AUTH, payload: { published: true } })
    const entries = await trail(app)
    expect(entries.map(e => e.commands[0]?.text)).toEqual(['publish backend webservers', 'unpublish backend webservers'])
  })
})

describe('request ids', () => {
  it("keep a caller's plain x-request-id, replace anything else with a UUID, and echo it on every answer", async () => {
    const app = await buildTestApp(haproxy(), { API_TOKEN: SECRET })
    const given = await app.inject({ method: 'PATCH', url: '/backends/webservers', headers: { ...AUTH, 'x-request-id': 'deploy-42.step:3' }, payload: { published: true } })
    expect(given.headers['x-request-id']).toBe('deploy-42.step:3')
    const [entry] = await trail(app)
    expect(entry?.requestId).toBe('deploy-42.step:3')
    for (const hostile of ['two words', 'x'.repeat(129), 'a\u00e9', '']) {
      const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': hostile } })
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    }
    const refused = await app.inject({ method: 'DELETE', url: '/backends/webservers' })
    expect(refused.statusCode).toBe(401)
    expect(refused.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })
})
