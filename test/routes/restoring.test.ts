import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'

/** An HAProxy just restarted: it has only `webservers`, none of what hapctl keeps. */
function freshHaproxy () {
  return fakeRuntime(text => {
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return / kept | static /.test(` ${text.split(' ')[2]} `) ? 'No such proxy.' : statReply([{ px: 'webservers', status: 'UP' }])
    if (text.startsWith('show servers state')) return "Can't find backend."
    if (text.startsWith('publish backend') || text.startsWith('unpublish backend')) return 'No such backend.'
    if (text.startsWith('add server')) return 'No such backend.'
    return `Unknown command: '${text}'`
  })
}

async function setup () {
  const store = new MemoryStore()
  await store.commit([
    { op: 'backend.put', backend: { name: 'kept', from: 'd', mode: null, published: true } },
    { op: 'server.put', server: { backend: 'static', name: 's1', spec: { address: '10.0.0.1', port: 80, check: false }, adminState: 'ready', weight: null, healthChecks: null, agentChecks: null } }
  ], { actor: 'test', action: 'seed', target: { kind: 'test', id: 'seed' } })
  const runtime = freshHaproxy()
  const app = await buildTestApp(runtime, {}, { store })
  return { app, store, runtime }
}

describe('what hapctl keeps but HAProxy does not have yet (just after a restart or reload)', () => {
  it('answers 503 RESTORING, not 404, to reads and writes of it, and records nothing', async () => {
    const { app, store } = await setup()
    const calls = [
      { method: 'GET', url: '/backends/kept' },
      { method: 'PATCH', url: '/backends/kept', payload: { published: false } },
      { method: 'GET', url: '/backends/kept/servers' },
      { method: 'POST', url: '/backends/kept/servers', payload: { name: 'new', address: '10.0.0.2', port: 80 } },
      { method: 'GET', url: '/backends/static/servers/s1' },
      { method: 'PATCH', url: '/backends/static/servers/s1', payload: { weight: 3 } }
    ] as const
    for (const c of calls) {
      const res = await app.inject(c)
      expect(res.json(), `${c.method} ${c.url}`).toMatchObject({ status: 503, code: 'HAPX_RESTORING' })
      expect(res.json().detail).toMatch(/put back/)
    }
    expect(await store.revision()).toBe(1)
  })

  it('still answers 404 for what nobody keeps', async () => {
    const { app } = await setup()
    expect((await app.inject({ url: '/backends/nosuch' })).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
    expect((await app.inject({ url: '/backends/nosuch/servers' })).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
  })

  it('deletes it from the desired state alone (204), so that it does not come back', async () => {
    const { app, store } = await setup()
    expect((await app.inject({ method: 'DELETE', url: '/backends/kept' })).statusCode).toBe(204)
    expect(await store.getBackend('kept')).toBeUndefined()
  })
})
