/**
 * GET /events on a listening app with a fake runtime (inject does not stream): framing, ids, resume
 * with Last-Event-ID, filters, history-lost, keep-alive, the watcher limit, slow watchers, the one
 * shared health poll and the end of streams on close. Changes are committed to the store directly
 * (the hub reads them back from it); health comes from a `show stat -1 4 -1` reply the test changes.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'
import { openSse } from '../helpers/sse-client.ts'
import type { SseStream } from '../helpers/sse-client.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { formatEventId, parseEventId } from '../../src/events/ids.ts'

const HEALTH_POLL = 'show stat -1 4 -1'
const delay = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

type Servers = Record<string, string>

function statReply (servers: Servers): string {
  return ['# pxname,svname,status,check_status,', ...Object.entries(servers).map(([k, status]) => `${k.replace('/', ',')},${status},L4OK,`)].join('\n') + '\n'
}

async function start (env: Record<string, string> = {}, initial: Servers = { 'be1/s1': 'UP', 'be2/s1': 'UP' }) {
  const store = new MemoryStore()
  const servers: Servers = { ...initial }
  const runtime = fakeRuntime(text => text === HEALTH_POLL ? statReply(servers) : new Error(`unexpected command ${text}`))
  const app: FastifyInstance = await buildTestApp(runtime, { HAPCTL_HEALTH_POLL_MS: '100', HAPCTL_HEALTH_POLL_LINGER_MS: '0', ...env }, { store })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/events`
  const opened: SseStream[] = []
  onTestFinished(() => { for (const s of opened) s.close() })
  const open = async (query = '', headers: Record<string, string> = {}): Promise<SseStream> => {
    const s = await openSse(base + query, { headers })
    opened.push(s)
    return s
  }
  const polls = (): number => runtime.sent.filter(t => t === HEALTH_POLL).length
  return { app, store, servers, open, polls }
}

type Store = MemoryStore
const putBackend = async (store: Store, name: string): Promise<number> =>
  await store.commit([{ op: 'backend.put', backend: { name, from: 'mydefaults', mode: null, published: true } }], { actor: 'api', action: 'create', target: { kind: 'backend', id: name } })
const putServer = async (store: Store, backend: string, name: string): Promise<number> =>
  await store.commit([{ op: 'server.put', server: { backend, name, spec: { address: '127.0.0.1', port: 80, check: false }, adminState: 'ready', weight: null, healthChecks: null, agentChecks: null } }],
    { actor: 'api', action: 'create', target: { kind: 'server', id: `${backend}/${name}` } })
const replaceMap = async (store: Store, name: string, entries: Array<{ key: string, value: string }>): Promise<number> =>
  await store.commit([{ op: 'map.replace', name, entries }], { actor: 'api', action: 'replace', target: { kind: 'map', id: name } })
const setMapEntry = async (store: Store, name: string, key: string, value: string): Promise<number> =>
  await store.commit([{ op: 'map.set', name, key, value }], { actor: 'api', action: 'update', target: { kind: 'map', id: name } })

const revisionsOf = (s: SseStream): number[] => s.events.filter(e => e.event === 'change').map(e => e.data.revision as number)

describe('GET /events: framing and ids', () => {
  it('answers a text/event-stream whose events carry <revision>.<boot>.<seq> ids, an event name and one JSON data line', async () => {
    const { app, store, open } = await start()
    const s = await open('?kind=change')
    expect(s.status).toBe(200)
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8')
    expect(s.headers['cache-control']).toBe('no-cache')
    expect(s.headers['x-accel-buffering']).toBe('no')
    expect(s.headers['x-request-id']).toMatch(/.+/)
    const opened = await s.next(e => e.event === 'open')
    const boot = app.events.boot
    expect(opened).toEqual({ id: formatEventId({ revision: 0, boot, seq: 0 }), event: 'open', data: { kind: 'open', revision: 0, boot, resumed: false, replayed: 0 } })

    const revision = await putBackend(store, 'b1')
    const change = await s.next(e => e.event === 'change')
    expect(change.id).toBe(`${revision}.${boot}.0`)
    expect(change.data).toMatchObject({
      kind: 'change',
      revision,
      actor: 'api',
      action: 'create',
      target: { kind: 'backend', id: 'b1' },
      requestId: null,
      changes: [{ op: 'backend.put', backend: { name: 'b1', from: 'mydefaults', published: true } }]
    })
    expect(typeof change.data.at).toBe('string')
  })

  it('sends changes in revision order, each once, however commits come', async () => {
    const { store, open } = await start()
    const s = await open('?kind=change')
    await s.next(e => e.event === 'open')
    const committed = await Promise.all(Array.from({ length: 30 }, async (_, i) => await putBackend(store, `b${i}`)))
    await s.next(e => e.event === 'change' && e.data.revision === Math.max(...committed))
    expect(revisionsOf(s)).toEqual([...committed].sort((a, b) => a - b))
  })
})

describe('GET /events: resuming', () => {
  it('replays every change after Last-Event-ID from the store, then goes on live, with no duplicate', async () => {
    const { store, open } = await start({}, {})
    const first = await open('?kind=change')
    await first.next(e => e.event === 'open')
    await putBackend(store, 'a')
    const seen = await first.next(e => e.event === 'change')
    first.close()
    // While it is away.
    const missed = [await putBackend(store, 'b'), await putServer(store, 'b', 's1'), await replaceMap(store, 'virt@paths.map', [{ key: '/x', value: 'b' }])]

    const again = await open('?kind=change', { 'last-event-id': seen.id as string })
    const opened = await again.next(e => e.event === 'open')
    expect(opened.data).toMatchObject({ resumed: true, replayed: 3 })
    expect(revisionsOf(again)).toEqual(missed)
    expect(again.events.some(e => e.event === 'history-lost')).toBe(false)
    const live = await putBackend(store, 'c')
    await again.next(e => e.event === 'change' && e.data.revision === live)
    expect(revisionsOf(again)).toEqual([...missed, live])
    // The open event's id resumes exactly after what was sent.
    const fromOpen = await open('?kind=change', { 'last-event-id': opened.id as string })
    await fromOpen.next(e => e.event === 'open')
    expect(revisionsOf(fromOpen)).toEqual([live])
  })

  it('takes the id from lastEventId when no header is sent, and the header when both are', async () => {
    const { store, open } = await start({}, {})
    const s = await open('?kind=change')
    const opened = await s.next(e => e.event === 'open')
    const r1 = await putBackend(store, 'a')
    const c1 = await s.next(e => e.event === 'change' && e.data.revision === r1)
    const r2 = await putBackend(store, 'b')
    await s.next(e => e.event === 'change' && e.data.revision === r2)

    const byQuery = await open(`?kind=change&lastEventId=${opened.id as string}`)
    await byQuery.next(e => e.event === 'open')
    expect(revisionsOf(byQuery)).toEqual([r1, r2])
    const both = await open(`?kind=change&lastEventId=${opened.id as string}`, { 'last-event-id': c1.id as string })
    await both.next(e => e.event === 'open')
    expect(revisionsOf(both)).toEqual([r2])
  })

  it('replays health and reconcile events from the history, in the order they were sent, between the changes', async () => {
    const { app, store, servers, open } = await start()
    const live = await open()
    const opened = await live.next(e => e.event === 'open')
    await putBackend(store, 'a')
    await live.next(e => e.event === 'change')
    servers['be1/s1'] = 'DOWN'
    await live.next(e => e.event === 'health')
    await putBackend(store, 'b')
    await live.next(e => e.event === 'change' && e.data.target.id === 'b')
    servers['be1/s1'] = 'UP'
    await live.next(e => e.event === 'health' && e.data.status === 'up')
    // A pass of the reconciler (HAProxy answers nothing but show stat here: it fails, and says so).
    await app.reconciler.reconcileNow('test')
    const finished = await live.next(e => e.event === 'reconcile' && e.data.phase === 'finished')
    expect(finished.data).toMatchObject({ kind: 'reconcile', reason: 'test' })
    expect(finished.data.failures).toBeGreaterThan(0)
    expect(live.events.filter(e => e.event === 'reconcile').map(e => e.data.phase)).toEqual(['started', 'finished'])

    const again = await open('', { 'last-event-id': opened.id as string })
    await again.next(e => e.event === 'open')
    const sent = (s: SseStream): Array<[string, string | undefined]> => s.events.filter(e => e.event !== 'open').map(e => [e.event, e.id])
    expect(sent(live).map(([kind]) => kind)).toEqual(['change', 'health', 'change', 'health', 'reconcile', 'reconcile'])
    expect(sent(again)).toEqual(sent(live))
  })

  it('refuses an id that is not one it handed out', async () => {
    const { app, open } = await start()
    const garbage = await open('', { 'last-event-id': 'abc' })
    expect(garbage.status).toBe(400)
    expect(garbage.problem).toMatchObject({ code: 'HAPX_VALIDATION_FAILED' })
    const ahead = await open('', { 'last-event-id': formatEventId({ revision: 0, boot: app.events.boot, seq: 999 }) })
    expect(ahead.status).toBe(400)
    expect(ahead.problem).toMatchObject({ code: 'HAPX_INVALID_CURSOR' })
  })
})

describe('GET /events: history lost', () => {
  it('says so when the id comes from another start of hapctl, and still replays the changes from the store', async () => {
    const { store, open } = await start()
    const r1 = await putBackend(store, 'a')
    const r2 = await putBackend(store, 'b')
    const s = await open('', { 'last-event-id': formatEventId({ revision: r1, boot: '00000000', seq: 7 }) })
    const lost = await s.next(e => e.event === 'history-lost')
    expect(lost.data).toMatchObject({ kind: 'history-lost', lost: ['health', 'reconcile'], reasons: ['restarted'] })
    expect(lost.data.detail).toMatch(/restarted/)
    await s.next(e => e.event === 'open')
    expect(revisionsOf(s)).toEqual([r2])
    // Only the kinds asked for count: a watcher of changes lost nothing.
    const changesOnly = await open('?kind=change', { 'last-event-id': formatEventId({ revision: r1, boot: '00000000', seq: 7 }) })
    await changesOnly.next(e => e.event === 'open')
    expect(changesOnly.events.map(e => e.event)).toEqual(['change', 'open'])
  })

  it('says so when the events after the id were pushed out of the history', async () => {
    // 150 servers changing at once: 150 health events, more than the 100 the history keeps.
    const many = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`big/s${i}`, 'UP']))
    const { servers, open } = await start({ HAPCTL_EVENTS_HISTORY: '100' }, many)
    const s = await open('?kind=health')
    const opened = await s.next(e => e.event === 'open')
    for (const k of Object.keys(many)) servers[k] = 'DOWN'
    await s.next(e => e.event === 'health' && e.data.server === 's149')
    const again = await open('?kind=health', { 'last-event-id': opened.id as string })
    const lost = await again.next(e => e.event === 'history-lost')
    expect(lost.data).toMatchObject({ lost: ['health'], reasons: ['expired'] })
    await again.next(e => e.event === 'open')
    // What the history still holds comes after it.
    expect(again.events.filter(e => e.event === 'health').map(e => e.data.server)).toEqual(Array.from({ length: 100 }, (_, i) => `s${i + 50}`))
  })

  it('says so when health was not polled for a while since the id (nobody watched it)', async () => {
    const { app, servers, open } = await start()
    const s = await open('?kind=health')
    const opened = await s.next(e => e.event === 'open')
    s.close()
    await expect.poll(() => app.events.healthPolls.running).toBe(false)
    servers['be1/s1'] = 'DOWN'
    await delay(250)
    const again = await open('?kind=health', { 'last-event-id': opened.id as string })
    const lost = await again.next(e => e.event === 'history-lost')
    expect(lost.data).toMatchObject({ lost: ['health'], reasons: ['health-unwatched'] })
    // The first poll after the pause is a baseline: the transition it missed is not invented.
    await again.next(e => e.event === 'open')
    await delay(300)
    expect(again.events.filter(e => e.event === 'health')).toEqual([])
    servers['be1/s1'] = 'UP'
    await again.next(e => e.event === 'health' && e.data.previousStatus === 'down' && e.data.status === 'up')
  })

  it('keeps health history across a reconnection within the linger', async () => {
    const { servers, open } = await start({ HAPCTL_HEALTH_POLL_LINGER_MS: '5000' })
    const s = await open('?kind=health')
    const opened = await s.next(e => e.event === 'open')
    s.close()
    await delay(100)
    servers['be1/s1'] = 'DOWN'
    await delay(300)
    const again = await open('?kind=health', { 'last-event-id': opened.id as string })
    await again.next(e => e.event === 'open')
    expect(again.events.map(e => e.event)).toEqual(['health', 'open'])
    expect(again.events[0]?.data).toMatchObject({ backend: 'be1', server: 's1', previousStatus: 'up', status: 'down' })
  })

  it('says so when the store does not have the revision of the id', async () => {
    const { app, open } = await start()
    const s = await open('?kind=change', { 'last-event-id': formatEventId({ revision: 50, boot: app.events.boot, seq: 0 }) })
    const lost = await s.next(e => e.event === 'history-lost')
    expect(lost.data).toMatchObject({ lost: ['change'], reasons: ['store-reset'] })
    const opened = await s.next(e => e.event === 'open')
    expect(parseEventId(opened.id as string)?.revision).toBe(0)
  })
})

describe('GET /events: filters', () => {
  it('keeps only the kinds, backend and target asked for', async () => {
    const { store, servers, open } = await start()
    const all = await open()
    const health = await open('?kind=health')
    const be1 = await open('?backend=be1')
    const b1 = await open('?backend=b1')
    const server = await open('?target=server:b1/s1')
    const map = await open('?kind=change,reconcile&target=map:virt@paths.map')
    for (const s of [all, health, be1, b1, server, map]) await s.next(e => e.event === 'open')

    await putBackend(store, 'b1')
    await putServer(store, 'b1', 's1')
    await replaceMap(store, 'virt@paths.map', [{ key: '/a', value: 'b1' }])
    const last = await setMapEntry(store, 'virt@paths.map', '/b', 'b1')
    servers['be1/s1'] = 'DOWN'
    servers['be2/s1'] = 'DOWN'
    await all.next(e => e.event === 'change' && e.data.revision === last)
    await all.next(e => e.event === 'health' && e.data.backend === 'be2')
    await delay(300)

    const seen = (s: SseStream): string[] => s.events.filter(e => e.event !== 'open').map(e => e.event === 'change' ? `change:${e.data.target.kind}:${e.data.target.id as string}` : `${e.event}:${e.data.backend as string}`)
    expect(seen(all).sort()).toEqual(['change:backend:b1', 'change:map:virt@paths.map', 'change:map:virt@paths.map', 'change:server:b1/s1', 'health:be1', 'health:be2'])
    expect(seen(health)).toEqual(['health:be1', 'health:be2'])
    expect(seen(be1)).toEqual(['health:be1'])
    expect(seen(b1)).toEqual(['change:backend:b1', 'change:server:b1/s1'])
    expect(seen(server)).toEqual(['change:server:b1/s1'])
    expect(seen(map)).toEqual(['change:map:virt@paths.map', 'change:map:virt@paths.map'])
  })

  it('refuses a malformed filter with a problem', async () => {
    const { open } = await start()
    for (const q of ['?kind=change,nope', '?target=pool:x', '?backend=a%20b']) {
      const s = await open(q)
      expect(s.status, q).toBe(400)
      expect(s.problem, q).toMatchObject({ code: 'HAPX_VALIDATION_FAILED' })
    }
  })
})

describe('GET /events: health', () => {
  it('reports a status change once, after a baseline that reports nothing, and servers that come and go', async () => {
    const { servers, open } = await start()
    const s = await open('?kind=health')
    await s.next(e => e.event === 'open')
    await delay(300)
    expect(s.events.map(e => e.event)).toEqual(['open'])
    // Going down (UP 1/2) is still up: no event.
    servers['be1/s1'] = 'UP 1/2'
    await delay(300)
    servers['be1/s1'] = 'DOWN'
    const down = await s.next(e => e.event === 'health')
    expect(down.data).toMatchObject({ backend: 'be1', server: 's1', previousStatus: 'up', status: 'down', previousRawStatus: 'UP 1/2', rawStatus: 'DOWN', checkStatus: 'L4OK' })
    servers['be3/new'] = 'DOWN'
    delete servers['be2/s1']
    await s.next(e => e.event === 'health' && e.data.server === 'new')
    await s.next(e => e.event === 'health' && e.data.backend === 'be2')
    expect(s.events.filter(e => e.event === 'health').map(e => [e.data.backend, e.data.previousStatus, e.data.status])).toEqual([
      ['be1', 'up', 'down'], ['be3', null, 'down'], ['be2', 'up', null]
    ])
  })

  it('polls once per interval for all watchers, and not at all without a watcher of health', async () => {
    const { app, open, polls } = await start({ HAPCTL_HEALTH_POLL_MS: '200' })
    const changes = await open('?kind=change')
    await changes.next(e => e.event === 'open')
    await delay(500)
    expect(polls()).toBe(0)

    const one = await open('?kind=health')
    await one.next(e => e.event === 'open')
    let before = polls()
    await delay(1000)
    const withOne = polls() - before
    const many = await Promise.all(Array.from({ length: 20 }, async () => await open('?kind=health')))
    await Promise.all(many.map(async s => await s.next(e => e.event === 'open')))
    before = polls()
    await delay(1000)
    const withMany = polls() - before
    expect(withOne).toBeGreaterThanOrEqual(3)
    expect(withMany).toBeLessThanOrEqual(withOne + 1)

    for (const s of [one, ...many]) s.close()
    await expect.poll(() => app.events.healthPolls.running).toBe(false)
    before = polls()
    await delay(500)
    expect(polls()).toBe(before)
  })

  it('keeps streams open when HAProxy cannot be polled, and compares with the last answer once it can', async () => {
    const store = new MemoryStore()
    let down = false
    let status = 'UP'
    const runtime = fakeRuntime(text => down ? new Error('connect ECONNREFUSED') : text === HEALTH_POLL ? statReply({ 'be1/s1': status }) : new Error('unexpected'))
    const app = await buildTestApp(runtime, { HAPCTL_HEALTH_POLL_MS: '100' }, { store })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const s = await openSse(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/events?kind=health`)
    onTestFinished(() => { s.close() })
    await s.next(e => e.event === 'open')
    down = true
    await delay(300)
    status = 'DOWN'
    await delay(200)
    expect(s.ended).toBe(false)
    expect(s.events.map(e => e.event)).toEqual(['open'])
    down = false
    const e = await s.next(e => e.event === 'health')
    expect(e.data).toMatchObject({ previousStatus: 'up', status: 'down' })
  })
})

describe('GET /events: connections', () => {
  it('writes keep-alive comments, so that an idle watcher that reads is never cut by the request timeout', async () => {
    const { open } = await start({ HAPCTL_REQUEST_TIMEOUT_MS: '1000', HAPCTL_HEADERS_TIMEOUT_MS: '1000', HAPCTL_EVENTS_KEEPALIVE_MS: '300' })
    const s = await open('?kind=change')
    await s.next(e => e.event === 'open')
    await delay(2500)
    expect(s.ended).toBe(false)
    expect(s.comments.filter(c => c === 'keep-alive').length).toBeGreaterThanOrEqual(5)
  })

  it('answers 503 with Retry-After beyond HAPCTL_MAX_WATCHERS, and takes a new watcher once one left', async () => {
    const { app, open } = await start({ HAPCTL_MAX_WATCHERS: '2' })
    const a = await open()
    const b = await open()
    await a.next(e => e.event === 'open')
    await b.next(e => e.event === 'open')
    const c = await open()
    expect(c.status).toBe(503)
    expect(c.headers['retry-after']).toBe('5')
    expect(c.problem).toMatchObject({ status: 503, code: 'HAPX_TOO_MANY_WATCHERS' })
    a.close()
    await expect.poll(() => app.events.watchers).toBe(1)
    const d = await open()
    expect(d.status).toBe(200)
  })

  it('disconnects a watcher that leaves more than the buffer limit unread, and only that one', async () => {
    const { app, store, open } = await start({ HAPCTL_EVENTS_BUFFER_BYTES: '65536' })
    await replaceMap(store, 'm', [])
    const slow = await open('?kind=change')
    const reading = await open('?kind=change')
    await slow.next(e => e.event === 'open')
    await reading.next(e => e.event === 'open')
    slow.pause()
    // 16 KiB per event, 32 MiB in all: more than the kernel's socket buffers hold.
    const value = 'v'.repeat(16_384)
    let last = 0
    for (let i = 0; i < 2000; i++) last = await setMapEntry(store, 'm', `k${i % 8}`, value)
    await reading.next(e => e.event === 'change' && e.data.revision === last, 20_000)
    expect(app.events.slowCuts).toBe(1)
    expect(app.events.watchers).toBe(1)
    expect(reading.ended).toBe(false)
    expect(revisionsOf(reading)).toHaveLength(2000)
    slow.resume()
    await slow.end()
    expect(revisionsOf(slow).length).toBeLessThan(2000)
  }, 30_000)

  it('ends every stream when the app closes, without waiting for the watchers to leave', async () => {
    const { app, open } = await start()
    const streams = await Promise.all([open(), open('?kind=health'), open('?kind=change')])
    await Promise.all(streams.map(async s => await s.next(e => e.event === 'open')))
    const started = Date.now()
    await app.close()
    expect(Date.now() - started).toBeLessThan(3000)
    await Promise.all(streams.map(async s => { await s.end() }))
    expect(app.events.healthPolls.running).toBe(false)
  })

  it('needs a token with read scope when authentication is on', async () => {
    const { open } = await start({ API_TOKEN: 'a-very-long-admin-token' })
    const anonymous = await open()
    expect(anonymous.status).toBe(401)
    const admin = await open('', { authorization: 'Bearer a-very-long-admin-token' })
    expect(admin.status).toBe(200)
  })
})
