import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { parseEventId } from '../../src/events/ids.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { startRuntimeCapture } from '../helpers/runtime-capture.ts'
import type { RuntimeCapture } from '../helpers/runtime-capture.ts'
import { openSse } from '../helpers/sse-client.ts'
import type { SseStream } from '../helpers/sse-client.ts'

/*
 * GET /events against a real HAProxy 3.4: a health-checked server (`check inter 200ms fall 2 rise 2`)
 * whose upstream the test stops and starts; writes through the API while a watcher is away; and 100
 * watchers at once, with the `show stat` polls that reach HAProxy's socket counted by a recording
 * proxy in front of it (test/helpers/runtime-capture.ts), outside the code under test.
 */
const HEALTH_POLL = 'show stat -1 4 -1'
const delay = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('GET /events on a real HAProxy', () => {
  let h: HaproxyInstance | undefined
  let capture: RuntimeCapture | undefined
  let app: FastifyInstance | undefined
  const store = new MemoryStore()
  let base = ''
  const opened = new Set<SseStream>()
  const open = async (query = '', headers: Record<string, string> = {}): Promise<SseStream> => {
    const s = await openSse(`${base}/events${query}`, { headers })
    opened.add(s)
    return s
  }
  const api = (): FastifyInstance => { if (app === undefined) throw new Error('no app'); return app }
  const polls = (): number => (capture as RuntimeCapture).commands().filter(c => c.text === HEALTH_POLL).length

  beforeAll(async () => {
    h = await startHaproxy({
      upstreams: ['web1', 's1', 'r1', 'hc'],
      config: ctx => defaultConfig(ctx) + `
backend hcbe from mydefaults
    server hc1 127.0.0.1:${ctx.upstreams.hc?.port as number} check inter 200ms fall 2 rise 2
`
    })
    capture = await startRuntimeCapture({ host: '127.0.0.1', port: h.ports.runtime })
    app = await buildApp({
      config: testConfig({ HAPROXY_RUNTIME_API: capture.runtimeApi, HAPCTL_HEALTH_POLL_LINGER_MS: '0' }),
      store,
      logger: false
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  })
  afterAll(async () => {
    for (const s of opened) s.close()
    await app?.close()
    await capture?.close()
    await h?.stop()
  })

  it('tells a watcher within 2 s that a server went DOWN when its upstream stopped, and UP when it is back', async () => {
    const haproxy = h as HaproxyInstance
    const hc1 = async (): Promise<string> => (await haproxy.cli('show stat hcbe 4 -1')).split('\n').find(l => l.startsWith('hcbe,hc1,')) ?? ''
    await waitFor(hc1, l => l.split(',')[17] === 'UP', { timeoutMs: 10_000 })
    const s = await open('?kind=health&backend=hcbe')
    // `open` comes once the poll has its baseline (hc1 UP).
    await s.next(e => e.event === 'open')

    let started = Date.now()
    await haproxy.upstreams.hc?.stop()
    const down = await s.next(e => e.data.server === 'hc1' && e.data.status === 'down', 2000)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(down.data).toMatchObject({ kind: 'health', backend: 'hcbe', server: 'hc1', previousStatus: 'up', status: 'down', rawStatus: 'DOWN' })
    expect(down.data.checkStatus).toMatch(/^L4/)

    started = Date.now()
    await haproxy.upstreams.hc?.start()
    const up = await s.next(e => e.data.server === 'hc1' && e.data.status === 'up', 2000)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(up.data).toMatchObject({ previousStatus: 'down', status: 'up', rawStatus: 'UP', checkStatus: 'L4OK' })
    s.close()
  })

  it('a watcher that reconnects with Last-Event-ID misses no change made while it was away', async () => {
    const first = await open('?kind=change')
    const from = parseEventId((await first.next(e => e.event === 'open')).id as string)?.revision as number
    const writes: Array<() => Promise<number>> = []
    for (let i = 0; i < 10; i++) {
      writes.push(async () => (await api().inject({ method: 'PUT', url: `/maps/virt@paths.map/entries/%2Fev${i}`, payload: { value: 'webservers' } })).statusCode)
      if (i % 3 === 0) writes.push(async () => (await api().inject({ method: 'POST', url: '/backends', payload: { name: `ev${i}`, from: 'mydefaults' } })).statusCode)
    }
    const statuses: number[] = []
    let again: SseStream | undefined
    for (const [i, write] of writes.entries()) {
      statuses.push(await write())
      // Away after the fourth write, back after the ninth: writes before, during and after.
      if (i === 3) first.close()
      if (i === 8) again = await open('?kind=change', { 'last-event-id': first.lastId() as string })
    }
    expect(statuses.every(s => s === 200 || s === 201), JSON.stringify(statuses)).toBe(true)
    const last = await store.revision()
    const resumed = again as SseStream
    await resumed.next(e => e.event === 'change' && e.data.revision === last)

    const revisions = (s: SseStream): number[] => s.events.filter(e => e.event === 'change').map(e => e.data.revision as number)
    const expected = (await store.changesSince(from, 1000)).map(r => r.revision)
    expect(expected.length).toBeGreaterThanOrEqual(writes.length)
    expect(revisions(first).length).toBeGreaterThan(0)
    expect([...revisions(first), ...revisions(resumed)]).toEqual(expected)
    resumed.close()
  })

  it('100 watchers cost HAProxy no more show stat polls than one', async () => {
    // Nobody watches health: no poll at all.
    await waitFor(async () => api().events.healthPolls.running, running => !running)
    let before = polls()
    await delay(1000)
    expect(polls() - before).toBe(0)

    const one = await open('?kind=health')
    await one.next(e => e.event === 'open')
    before = polls()
    await delay(3000)
    const withOne = polls() - before

    const many = await Promise.all(Array.from({ length: 99 }, async () => await open('?kind=health')))
    await Promise.all(many.map(async s => await s.next(e => e.event === 'open', 10_000)))
    expect(api().events.watchers).toBe(100)
    before = polls()
    await delay(3000)
    const withHundred = polls() - before

    // One poll every HAPCTL_HEALTH_POLL_MS (500 ms): about 6 in 3 s, whatever the number of watchers.
    expect(withOne).toBeGreaterThanOrEqual(4)
    expect(withHundred).toBeLessThanOrEqual(withOne + 1)
    for (const s of [one, ...many]) s.close()
    await waitFor(async () => api().events.healthPolls.running, running => !running)
    before = polls()
    await delay(1000)
    expect(polls() - before).toBe(0)
  }, 40_000)
})
