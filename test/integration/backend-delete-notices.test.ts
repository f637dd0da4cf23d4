import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * `del backend` after its server has changed state many times. HAProxy 3.4.7 writes every warning and
 * notice (server state changes, `backend '…' has no server available!`, `Server deleted.`) into a
 * 1024-byte buffer of the thread that runs the command, and drops a message that does not fit.
 * `add backend`, `add server`, `publish` and `unpublish backend` empty that buffer first; `del backend`
 * does not: it adds `Backend deleted.` and prints the whole buffer. Once the notices fill it, the
 * verdict is dropped although the backend is deleted. A refusal prints its message alone.
 *
 * One thread (`nbthread 1`): every connection then shares that buffer, so the notices of the state
 * changes are certain to be in it whichever connection sends `del backend`, on any machine.
 */

let h: HaproxyInstance
let app: FastifyInstance

beforeAll(async () => {
  h = await startHaproxy({
    upstreams: ['web1', 's1', 'r1', 'alpha'],
    config: ctx => defaultConfig(ctx).replace(/^global\n/m, 'global\n    nbthread 1\n')
  })
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

const alpha = (): number => (h.upstreams.alpha as { port: number }).port

async function backendNames (): Promise<string[]> {
  const reply = await h.cli('show backend')
  expect(reply.startsWith('# name\n')).toBe(true)
  return reply.split('\n').slice(1).filter(l => l !== '')
}

/** `n` state changes of b/s on new connections: drain, ready, drain… ending on ready. */
async function flap (b: string, s: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect(await h.cli(`set server ${b}/${s} state ${i % 2 === 0 ? 'drain' : 'ready'}`)).toBe('\n')
}

describe('HAProxy 3.4.7: notices crowd the verdict out of `del backend`', () => {
  it('deletes the backend but answers only notices, and still refuses with the refusal alone', async () => {
    expect(await h.cli('add backend raw_flap from mydefaults')).toBe('New backend registered.\n\n')
    expect(await h.cli(`add server raw_flap/s 127.0.0.1:${alpha()}`)).toBe('New server registered.\n\n')
    expect(await h.cli('set server raw_flap/s state ready')).toBe('\n')
    await flap('raw_flap', 's', 60)

    // With the notices pending: a refusal is its message, nothing else.
    expect(await h.cli('del backend raw_flap')).toBe('Only a backend without server can be deleted.\n\n')

    expect(await h.cli('set server raw_flap/s state maint')).toBe('\n')
    // `del server` prints its own constant verdict (and adds `Server deleted.` to the buffer).
    expect(await h.cli('del server raw_flap/s')).toBe('Server deleted.\n\n')
    const reply = await h.cli('del backend raw_flap')
    // The oldest notices, from `set server … state ready` on (`add server` emptied the buffer), as many
    // as fit in 1024 bytes; no verdict.
    expect(reply).toMatch(/^Server raw_flap\/s is UP\/READY \(leaving forced maintenance\)\.\nServer raw_flap\/s enters drain state\. /)
    expect(reply).not.toContain('Backend deleted.')
    expect(Buffer.byteLength(reply)).toBeGreaterThan(900)
    expect(Buffer.byteLength(reply)).toBeLessThanOrEqual(1024)
    expect(await backendNames()).not.toContain('raw_flap')
  })
})

describe('DELETE /backends/:name after many state changes of its server', () => {
  it('is 204: the backend HAProxy deleted is reported deleted, and forgotten', async () => {
    const created = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_flap', from: 'mydefaults', servers: [{ name: 's1', address: '127.0.0.1', port: alpha() }] } })
    expect(created.statusCode, created.body).toBe(201)
    for (let i = 0; i < 60; i++) {
      const res = await app.inject({ method: 'PATCH', url: '/backends/dyn_flap/servers/s1', payload: { state: i % 2 === 0 ? 'drain' : 'ready' } })
      expect(res.statusCode, res.body).toBe(200)
    }

    const deleted = await app.inject({ method: 'DELETE', url: '/backends/dyn_flap' })
    expect(deleted.statusCode, deleted.body).toBe(204)
    expect(await backendNames()).not.toContain('dyn_flap')
    // Not kept either: a backend still in the desired state would answer 503 RESTORING, not 404.
    const gone = await app.inject({ method: 'GET', url: '/backends/dyn_flap' })
    expect(gone.statusCode, gone.body).toBe(404)
  })
})
