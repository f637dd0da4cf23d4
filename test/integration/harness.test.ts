import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Proves the integration harness itself against a real HAProxy 3.4: routing through both frontends,
 * the test's own Runtime API view (`cli`), restart semantics and upstreams going away and back.
 */
describe('integration harness', () => {
  let h: HaproxyInstance | undefined
  const haproxy = () => {
    if (!h) throw new Error('HAProxy did not start')
    return h
  }

  beforeAll(async () => { h = await startHaproxy() })
  afterAll(() => h?.stop())

  it('routes an unmapped path to the default backend', async () => {
    const res = await httpGet(haproxy().frontendUrl + '/x')
    expect(res).toEqual({ status: 200, body: 'srv=web1 path=/x\n' })
  })

  it('routes fe_ref /ref to static_ref', async () => {
    const res = await httpGet(haproxy().refFrontendUrl + '/ref/a')
    expect(res).toEqual({ status: 200, body: 'srv=r1 path=/ref/a\n' })
    expect((await httpGet(haproxy().refFrontendUrl + '/other')).body).toBe('srv=web1 path=/other\n')
  })

  it('talks to the Runtime API over TCP', async () => {
    const reply = await haproxy().cli('show version')
    expect(reply).toMatch(/^3\.4/)
    expect(reply.endsWith('\n\n')).toBe(true)
    expect(haproxy().runtimeApi).toBe(`tcp://127.0.0.1:${haproxy().ports.runtime}`)
    expect(haproxy().unixRuntimeApi).toBe(`unix://${haproxy().dir}/admin.sock`)
  })

  it('sees map changes at once and loses them on restart', async () => {
    const h = haproxy()
    expect(await h.cli('add map virt@paths.map /ref static_ref')).toBe('\n')
    expect((await httpGet(h.frontendUrl + '/ref/a')).body).toBe('srv=r1 path=/ref/a\n')

    const pid = h.pid
    await h.restart()
    expect(h.pid).not.toBe(pid)
    expect(await h.cli('show map virt@paths.map')).toBe('\n')
    expect(await httpGet(h.frontendUrl + '/ref/a')).toEqual({ status: 200, body: 'srv=web1 path=/ref/a\n' })
  })

  it('answers 503 while an upstream is stopped and 200 once it is back', async () => {
    const h = haproxy()
    const web1 = h.upstreams.web1!
    const port = web1.port
    await web1.stop()
    try {
      const down = await waitFor(() => httpGet(h.frontendUrl + '/down'), (r) => r.status === 503, { timeoutMs: 15_000 })
      expect(down.status).toBe(503)
    } finally {
      await web1.start()
    }
    expect(web1.port).toBe(port)
    const up = await waitFor(() => httpGet(h.frontendUrl + '/up'), (r) => r.status === 200, { timeoutMs: 10_000 })
    expect(up.body).toBe('srv=web1 path=/up\n')
  })

  it('gives status 0 for a mode tcp backend behind the HTTP frontend', async () => {
    const h = haproxy()
    expect(await h.cli('add backend tcpb from tcpdefaults')).toBe('New backend registered.\n\n')
    expect(await h.cli('publish backend tcpb')).toBe('Backend published.\n\n')
    expect(await h.cli('add map virt@paths.map /tcp tcpb')).toBe('\n')
    expect(await httpGet(h.frontendUrl + '/tcp')).toEqual({ status: 0, body: '' })
  })

  it('runs upstreams with a slow path, a health path and a request counter', async () => {
    const s1 = haproxy().upstreams.s1!
    const before = s1.requests
    expect(await httpGet(s1.url + '/health')).toEqual({ status: 200, body: 'srv=s1 path=/health\n' })
    const t0 = Date.now()
    expect((await httpGet(s1.url + '/sleep/200')).body).toBe('srv=s1 path=/sleep/200\n')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(s1.requests).toBe(before + 2)
  })
})
