import { describe, expect, it } from 'vitest'
import { RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'

const SERVERS_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

/**
 * A small HAProxy: answers the commands BackendService sends with 3.4.7's exact strings.
 * `delBackend`: what `del backend` prints, and whether it deletes (default `Backend deleted.`, yes).
 */
function haproxy (overrides: Record<string, string | Error> = {}, delBackend: { reply: string, deletes: boolean } = { reply: 'Backend deleted.', deletes: true }) {
  const backends = new Map<string, { published: boolean }>([['webservers', { published: true }]])
  return fakeRuntime(text => {
    if (text in overrides) return overrides[text] as string | Error
    const [verb, sub, name] = text.split(' ')
    if (text === 'show info') return INFO_REPLY
    if (text === 'show backend') return ['# name', ...backends.keys()].join('\n')
    if (text === 'show stat' || (verb === 'show' && sub === 'stat')) {
      const only = text === 'show stat' || name === '-1' ? undefined : name
      if (only !== undefined && !backends.has(only)) return 'No such proxy.'
      return statReply([...backends].filter(([n]) => only === undefined || n === only)
        .map(([n, b]) => ({ px: n, status: b.published ? 'UP' : 'UP (UNPUB)' })))
    }
    if (text.startsWith('show servers state')) return SERVERS_HEADER
    if (text.startsWith('add backend')) {
      const m = /^add backend (\S+) from (\S+)/.exec(text) as RegExpExecArray
      if (backends.has(m[1] as string)) return `Error during backend creation : name is already used by other proxy 'backend ${m[1]}'.`
      if (m[2] === 'nomode' && !text.includes(' mode ')) return "Mode is required as 'nomode' default proxy does not explicitly defines it."
      if (!['mydefaults', 'nomode', 'staticrr'].includes(m[2] as string)) return `Cannot find default proxy '${m[2]}'.`
      backends.set(m[1] as string, { published: false })
      return m[2] === 'staticrr'
        ? `New backend registered (no support for dynamic servers: backend '${m[1]}' uses a non dynamic load balancing method).`
        : 'New backend registered.'
    }
    if (text === 'experimental-mode on') return ''
    if (verb === 'publish' || verb === 'unpublish') {
      const b = backends.get(name as string)
      if (b === undefined) return 'No such backend.'
      b.published = verb === 'publish'
      return verb === 'publish' ? 'Backend published.' : 'Backend unpublished.'
    }
    if (text.startsWith('wait ')) return 'Done.'
    if (verb === 'del' && sub === 'backend') {
      if (delBackend.deletes) backends.delete(name as string)
      return delBackend.reply
    }
    return `Unknown command: '${verb}'`
  })
}

describe('POST /backends', () => {
  it('sends add backend with `from` before `mode` and answers 201 with a Location', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'nomode', mode: 'http' } })
    expect(res.statusCode).toBe(201)
    expect(res.headers.location).toBe('/backends/b1')
    expect(res.json()).toMatchObject({ name: 'b1', dynamic: true, from: 'nomode', published: false })
    expect(rt.sent).toContain('add backend b1 from nomode mode http')
  })

  it('publishes right away when asked', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults', published: true } })
    expect(res.statusCode).toBe(201)
    expect(res.json().published).toBe(true)
    expect(rt.sent).toContain('publish backend b1')
  })

  it('removes the backend again when publishing fails, and says why', async () => {
    const rt = haproxy({ 'publish backend b1': 'Permission denied' })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults', published: true } })
    expect(res.statusCode).toBe(502)
    expect(res.json()).toMatchObject({ code: 'HAPX_RUNTIME_FORBIDDEN', haproxyMessage: 'Permission denied' })
    // Unpublished before deletion: a publish that failed on the way back may still have been applied.
    expect(rt.sent.slice(-2)).toEqual(['unpublish backend b1', 'del backend b1'])
  })

  it('removes the backend again when `del backend` answers with notices but no verdict, as `show backend` shows', async () => {
    const notices = "Server deleted.\nbackend 'other' has no server available!"
    const rt = haproxy({ 'publish backend b1': 'Permission denied' }, { reply: notices, deletes: true })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults', published: true } })
    expect(res.statusCode).toBe(502)
    expect(res.json()).toMatchObject({ code: 'HAPX_RUNTIME_FORBIDDEN', outcome: 'undone' })
    expect(rt.sent.slice(-3)).toEqual(['unpublish backend b1', 'del backend b1', 'show backend'])
  })

  it.each([
    [{ name: 'webservers', from: 'mydefaults' }, 409, 'HAPX_BACKEND_EXISTS'],
    [{ name: 'b2', from: 'nomode' }, 400, 'HAPX_MODE_REQUIRED'],
    [{ name: 'b2', from: 'nosuch' }, 422, 'HAPX_DEFAULTS_NOT_FOUND'],
    [{ name: 'a b', from: 'mydefaults' }, 400, 'HAPX_VALIDATION_FAILED'],
    [{ name: 'a;del backend webservers', from: 'mydefaults' }, 400, 'HAPX_VALIDATION_FAILED'],
    [{ name: 'b2', from: 'mydefaults', mode: 'spop' }, 400, 'HAPX_VALIDATION_FAILED'],
    [{ name: 'b2', from: 'mydefaults', extra: 1 }, 400, 'HAPX_VALIDATION_FAILED'],
    [{ from: 'mydefaults' }, 400, 'HAPX_VALIDATION_FAILED']
  ])('%j → %i %s', async (payload, status, code) => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends', payload })
    expect(res.statusCode).toBe(status)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    const body = res.json()
    expect(body).toMatchObject({ status, code, title: expect.any(String), detail: expect.any(String), type: expect.stringMatching(/^https:/) })
    if (status === 400 && code === 'HAPX_VALIDATION_FAILED') expect(rt.sent).toEqual([])
  })

  it('reports that a defaults section with a static algorithm yields a backend without dynamic servers', async () => {
    const app = await buildTestApp(haproxy())
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'srr', from: 'staticrr' } })
    expect(res.statusCode).toBe(201)
    expect(res.json().acceptsDynamicServers).toBe(false)
    expect(res.json().warnings).toEqual([expect.stringContaining("backend 'srr' uses a non dynamic load balancing method")])
  })
})

describe('GET /backends, many at once', () => {
  /** Resolves once `cond` holds, letting pending I/O and timers run in between. */
  async function until (cond: () => boolean): Promise<void> {
    for (let i = 0; i < 1000 && !cond(); i++) await new Promise(resolve => setImmediate(resolve))
    expect(cond()).toBe(true)
  }

  it('shares one listing among requests that arrive while one is in flight; a request after a change sees it', async () => {
    const rt = haproxy()
    // HAProxy answers each listing as things are when it is asked; the answer reaches hapctl when the test says.
    const held: Array<() => void> = []
    let listings = 0
    const execute = rt.execute.bind(rt)
    rt.execute = (async (commands: ReadonlyArray<{ text: string }>) => {
      const answer = execute(commands as never)
      if (commands.some(c => c.text.startsWith('show stat -1 '))) {
        listings++
        await new Promise<void>(resolve => held.push(resolve))
      }
      return answer
    }) as typeof rt.execute
    const app = await buildTestApp(rt)
    const names = async (res: Promise<{ json: () => { items: Array<{ name: string }> } }>): Promise<string[]> => (await res).json().items.map(b => b.name)
    // inject() sends nothing until awaited: these start now.
    const list = () => Promise.resolve(app.inject({ url: '/backends' }))

    const first = list()
    await until(() => listings === 1)
    const meanwhile = Array.from({ length: 7 }, list)
    // A change completes while the first listing is in flight; a listing asked for after it must show it.
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })).statusCode).toBe(201)
    const after = list()
    await until(() => held.length === 1)
    held.shift()?.()
    expect(await names(first)).toEqual(['webservers'])
    await until(() => listings === 2)
    held.shift()?.()
    expect(await names(after)).toEqual(['webservers', 'b1'])
    for (const res of meanwhile) expect(await names(res)).toEqual(['webservers', 'b1'])
    // Nine requests, two listings: the one in flight, and the next one for everyone who asked meanwhile.
    expect(listings).toBe(2)
  })
})

describe('errors from the transport', () => {
  it.each([
    [new RuntimeUnavailableError('tcp://127.0.0.1:9999', 'ECONNREFUSED'), 503, 'HAPX_RUNTIME_UNAVAILABLE'],
    [new RuntimeTimeoutError(5000, 'show stat'), 504, 'HAPX_RUNTIME_TIMEOUT'],
    [new RuntimeProtocolError('garbage'), 502, 'HAPX_RUNTIME_PROTOCOL']
  ])('%s → %i', async (err, status, code) => {
    const app = await buildTestApp(haproxy({ 'show info': err }))
    for (const url of ['/backends', '/backends/webservers', '/ready']) {
      const res = await app.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(status)
      expect(res.json().code).toBe(code)
    }
  })
})

describe('GET/PATCH/DELETE /backends/:name', () => {
  it('404 for an unknown backend, with a problem body', async () => {
    const app = await buildTestApp(haproxy())
    for (const [method, payload] of [['GET', undefined], ['PATCH', { published: true }], ['DELETE', undefined]] as const) {
      const res = await app.inject({ method, url: '/backends/nosuch', payload })
      expect(res.statusCode, method).toBe(404)
      expect(res.json().code, method).toBe('HAPX_BACKEND_NOT_FOUND')
    }
  })

  it('refuses to delete a backend it did not create unless forced', async () => {
    const rt = haproxy({ 'wait 1ms be-removable webservers': 'Failed. Backend must be unpublished prior to its deletion.' })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'DELETE', url: '/backends/webservers' })
    expect(res.statusCode).toBe(409)
    expect(res.json().code).toBe('HAPX_BACKEND_STATIC')
    expect(rt.sent.some(t => t.startsWith('unpublish'))).toBe(false)
  })

  it('refuses a backend the configuration references without changing anything', async () => {
    const message = 'Failed. This proxy cannot be removed at runtime due to other configuration elements pointing to it.'
    const rt = haproxy({ 'wait 1ms be-removable webservers': message })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'DELETE', url: '/backends/webservers?force=true' })
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({ code: 'HAPX_BACKEND_NOT_REMOVABLE', haproxyMessage: message, state: { changed: false } })
    expect(rt.sent.filter(t => !t.startsWith('show') && !t.startsWith('wait'))).toEqual([])
  })

  it('deletes in the seed order: unpublish, wait be-removable, del backend', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults', published: true } })
    rt.sent.length = 0
    const res = await app.inject({ method: 'DELETE', url: '/backends/b1?timeout=2s' })
    expect(res.statusCode).toBe(204)
    // The last wait gets what is left of the 2 s budget.
    expect(rt.sent.filter(t => !t.startsWith('show'))).toEqual([
      'wait 1ms be-removable b1', 'unpublish backend b1', expect.stringMatching(/^wait (1[89]\d\d|2000)ms be-removable b1$/), 'del backend b1'
    ])
  })

  // HAProxy 3.4.7 prints `del backend`'s verdict into its thread's 1024-byte notice buffer, where
  // earlier notices can leave no room for it (src/runtime/commands/backends.ts delBackend).
  const NOTICES = Array.from({ length: 5 }, () => [
    'Server b1/s enters drain state. 0 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.',
    "backend 'b1' has no server available!",
    'Server b1/s is UP (leaving forced drain).'
  ]).flat().join('\n')

  it('deletes a backend whose `del backend` reply has no verdict, once `show backend` no longer lists it', async () => {
    const rt = haproxy({}, { reply: NOTICES, deletes: true })
    const app = await buildTestApp(rt)
    await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })
    rt.sent.length = 0
    const res = await app.inject({ method: 'DELETE', url: '/backends/b1' })
    expect(res.statusCode, res.body).toBe(204)
    expect(rt.sent.slice(-2)).toEqual(['del backend b1', 'show backend'])
    expect((await app.inject({ url: '/backends/b1' })).statusCode).toBe(404)
  })

  it('keeps a `del backend` without verdict a refusal while `show backend` still lists the backend', async () => {
    const rt = haproxy({}, { reply: NOTICES, deletes: false })
    const app = await buildTestApp(rt)
    await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })
    const res = await app.inject({ method: 'DELETE', url: '/backends/b1' })
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({ code: 'HAPX_CONFLICT', command: 'del backend' })
    expect(res.json().haproxyMessage).toContain('Server b1/s enters drain state.')
    expect(rt.sent.slice(-2)).toEqual(['del backend b1', 'show backend'])
    // Still kept: the backend is there.
    expect((await app.inject({ url: '/backends/b1' })).statusCode).toBe(200)
  })

  it('asks nothing more when `del backend` gives its verdict', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b1', from: 'mydefaults' } })
    rt.sent.length = 0
    expect((await app.inject({ method: 'DELETE', url: '/backends/b1' })).statusCode).toBe(204)
    expect(rt.sent.at(-1)).toBe('del backend b1')
    expect(rt.sent).not.toContain('show backend')
  })

  it.each(['0', 'abc', '10h', '-1s', '301s'])('rejects timeout=%s with 400 before talking to HAProxy', async timeout => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'DELETE', url: `/backends/b1?timeout=${timeout}` })
    expect(res.statusCode).toBe(400)
    expect(rt.sent).toEqual([])
  })
})

describe('addressing', () => {
  it('can address every name it lets a client create (128 characters)', async () => {
    const app = await buildTestApp(haproxy())
    const name = 'b'.repeat(128)
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name, from: 'mydefaults' } })).statusCode).toBe(201)
    expect((await app.inject({ url: `/backends/${name}` })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: name + 'b', from: 'mydefaults' } })).statusCode).toBe(400)
  })

  it('answers a malformed URL with a problem document', async () => {
    const app = await buildTestApp(haproxy())
    for (const url of ['/backends/%ff', '/backends/%']) {
      const res = await app.inject({ url })
      expect(res.statusCode, url).toBe(400)
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(res.json()).toMatchObject({ status: 400, code: 'HAPX_BAD_URL' })
    }
  })
})

describe('authentication', () => {
  const token = 'a-long-enough-secret-token'
  it('protects every route but /health, /docs and /openapi.json when API_TOKEN is set', async () => {
    const app = await buildTestApp(haproxy(), { API_TOKEN: token })
    expect((await app.inject({ url: '/health' })).statusCode).toBe(200)
    expect((await app.inject({ url: '/openapi.json' })).statusCode).toBe(200)
    const anonymous = await app.inject({ url: '/backends' })
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer/)
    expect(anonymous.json().code).toBe('HAPX_UNAUTHORIZED')
    expect((await app.inject({ url: '/ready', headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401)
    expect((await app.inject({ url: '/backends', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200)
  })
})

describe('GET /ready', () => {
  it('is ready with the process identity, and not ready when the answering process is stopping', async () => {
    const ready = await buildTestApp(haproxy())
    const res = await ready.inject({ url: '/ready' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ status: 'ready', haproxy: { version: '3.4.7-1', pid: 4242, stopping: false } })

    const stopping = await buildTestApp(haproxy({ 'show info': INFO_REPLY.replace('Stopping: 0', 'Stopping: 1') }))
    const res2 = await stopping.inject({ url: '/ready' })
    expect(res2.statusCode).toBe(503)
    expect(res2.json().code).toBe('HAPX_HAPROXY_STOPPING')
  })
})
