/**
 * Reads of a very large map at once, on a real HAProxy 3.4, with the default deadline: before the
 * pool streamed replies through sinks and gave hapctl's own queue and parsing time of their own, ten
 * concurrent reads of a 500,000-entry map answered 504 "HAProxy did not answer" while HAProxy was
 * healthy (issue 9).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

const MAP = 'virt@paths.map'
const ENTRIES = 500_000

describe('ten concurrent reads of a 500,000-entry map (real HAProxy)', () => {
  let h: HaproxyInstance
  let app: FastifyInstance

  beforeAll(async () => {
    h = await startHaproxy()
    // The defaults: HAPROXY_TIMEOUT_MS 5 s, 4 connections.
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false, reconcile: false })
    const file = Array.from({ length: ENTRIES }, (_, i) => `/k${i} b${i % 97}`).join('\n') + '\n'
    const res = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent(MAP)}/entries`, headers: { 'content-type': 'text/plain' }, payload: file })
    expect(res.statusCode, res.body).toBe(200)
  }, 120_000)

  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  it('answers every one, with the same first page and ETag', async () => {
    const reads = await Promise.all(Array.from({ length: 10 }, () =>
      app.inject({ method: 'GET', url: `/maps/${encodeURIComponent(MAP)}/entries?limit=3` })))
    for (const r of reads) expect(r.statusCode, r.body.slice(0, 300)).toBe(200)
    const pages = reads.map(r => r.json() as { items: Array<{ key: string }> })
    expect(pages[0]?.items.map(e => e.key)).toEqual(['/k0', '/k1', '/k2'])
    expect(new Set(reads.map(r => r.headers.etag)).size).toBe(1)
    expect(new Set(pages.map(p => JSON.stringify(p))).size).toBe(1)
  }, 120_000)
})
