import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startFakeHaproxy } from '../helpers/fake-haproxy.ts'
import type { FakeHaproxy } from '../helpers/fake-haproxy.ts'

/*
 * Every wait has a deadline: with a Runtime API that accepts connections and then never answers (a
 * stalled HAProxy, which a real one cannot be made into on demand: the fake stats socket stands in),
 * many writes at once, to one object and to many, each answer 503 or 504 with a problem body saying
 * what HAProxy was left like, within its own deadline: the lock wait, one Runtime API timeout and a
 * margin, not one timeout per write queued ahead of it.
 */

const RUNTIME_TIMEOUT_MS = 1000
const LOCK_TIMEOUT_MS = 1500
/** Scheduling on a busy two-core machine, and the read-back some writes make. */
const MARGIN_MS = 1500
// The lock wait, then a wait for one of hapctl's Runtime API connections, then HAProxy's time: one timeout each.
const DEADLINE_MS = LOCK_TIMEOUT_MS + 2 * RUNTIME_TIMEOUT_MS + MARGIN_MS

let fake: FakeHaproxy
let app: FastifyInstance

beforeAll(async () => {
  // `prompt i` is answered (a connection is open and well), then nothing ever is.
  fake = await startFakeHaproxy({ script: line => line === 'prompt i' ? undefined : { stall: true } })
  const { port } = fake.endpoint as { port: number }
  app = await buildApp({
    config: testConfig({ HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${port}`, HAPROXY_TIMEOUT_MS: String(RUNTIME_TIMEOUT_MS), HAPCTL_LOCK_TIMEOUT_MS: String(LOCK_TIMEOUT_MS) }),
    logger: false,
    reconcile: false
  })
})

afterAll(async () => {
  await app?.close()
  await fake?.close()
})

type Answer = { what: string, ms: number, status: number, body: any, retryAfter: string | undefined }

async function timed (what: string, method: string, url: string, payload?: object): Promise<Answer> {
  const t0 = Date.now()
  const res = await app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload }) })
  const retryAfter = res.headers['retry-after']
  return { what, ms: Date.now() - t0, status: res.statusCode, body: res.json(), retryAfter: retryAfter === undefined ? undefined : String(retryAfter) }
}

describe('writes queued on a stalled Runtime API', () => {
  it('each answer 503/504 with a problem body and an outcome within the lock wait + one timeout, however many are queued', async () => {
    const requests: Array<Promise<Answer>> = []
    for (let i = 0; i < 12; i++) requests.push(timed(`same server #${i}`, 'PATCH', '/backends/b1/servers/s1', { weight: i }))
    for (let i = 0; i < 12; i++) requests.push(timed(`server of b${i + 2}`, 'PATCH', `/backends/b${i + 2}/servers/s1`, { weight: 1 }))
    for (let i = 0; i < 4; i++) requests.push(timed(`same backend #${i}`, 'POST', '/backends', { name: 'nb1', from: 'mydefaults' }))
    for (let i = 0; i < 4; i++) requests.push(timed(`backend nb${i + 2}`, 'POST', '/backends', { name: `nb${i + 2}`, from: 'mydefaults' }))
    for (let i = 0; i < 4; i++) requests.push(timed(`map entry #${i}`, 'PUT', '/maps/virt@paths.map/entries/%2Fa', { value: `b${i}` }))
    for (let i = 0; i < 4; i++) requests.push(timed(`delete #${i}`, 'DELETE', '/backends/b1/servers/s2'))
    const answers = await Promise.all(requests)

    for (const a of answers) {
      const where = `${a.what}: ${a.ms} ms, ${JSON.stringify(a.body)}`
      expect([503, 504], where).toContain(a.status)
      expect(a.ms, where).toBeLessThan(DEADLINE_MS)
      expect(a.body, where).toMatchObject({ status: a.status, code: expect.stringMatching(/^HAPX_(BUSY|RUNTIME_BUSY|RUNTIME_TIMEOUT)$/) })
      // Nothing can have been applied (HAProxy never answered a first command); a change whose command
      // went out unanswered is recorded for the reconciler (unknown).
      expect(['refused', 'unknown'], where).toContain(a.body.outcome)
      expect(a.body.state, where).toMatchObject({ outcome: a.body.outcome })
      if (a.body.code === 'HAPX_BUSY' || a.body.code === 'HAPX_RUNTIME_BUSY') expect(a.retryAfter, where).toBe('1')
    }
    // Writes to one object waited for each other: most of those behind the first gave up at the lock deadline.
    expect(answers.filter(a => a.what.startsWith('same server') && a.body.code === 'HAPX_BUSY').length).toBeGreaterThanOrEqual(9)
  })
})
