import { describe, expect, it } from 'vitest'
import { RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'

const STATE_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

type Srv = { name: string, addr: string, port: number, admin: number, check: number, agent: number, weight: number }

/**
 * A small HAProxy for the servers routes: keeps servers per backend and answers with 3.4.7's exact
 * strings; `overrides` replace the answer to one command text.
 */
function haproxy (overrides: Record<string, string | Error> = {}) {
  const backends = new Map<string, Srv[]>([
    ['web', [{ name: 'w1', addr: '127.0.0.1', port: 8080, admin: 0, check: 0, agent: 0, weight: 1 }]],
    ['rr', []]
  ])
  const published = new Set(['web', 'rr'])
  const rt = fakeRuntime(text => {
    if (text in overrides) return overrides[text] as string | Error
    let m: RegExpExecArray | null
    if ((m = /^show servers state (\S+)$/.exec(text))) {
      const list = backends.get(m[1] as string)
      if (list === undefined) return "Can't find backend."
      return [STATE_HEADER, ...list.map((s, i) => `3 ${m![1]} ${i + 1} ${s.name} ${s.addr} 2 ${s.admin} ${s.weight} 1 0 1 0 0 ${s.check} ${s.agent} 0 0 - ${s.port} - 0 0 - - 0`)].join('\n') + '\n'
    }
    if ((m = /^show stat (\S+) (-1|\d) -1$/.exec(text))) {
      const list = backends.get(m[1] as string)
      if (list === undefined) return 'No such proxy.'
      // The type mask: 2 = the BACKEND row, 4 = server rows, -1 = every row.
      const types = Number(m[2])
      return ['# pxname,svname,scur,slim,status,bck,type,check_status,',
        ...(types & 4 ? list.map(s => `${m![1]},${s.name},0,,${s.admin & 1 ? 'MAINT' : s.admin & 8 ? 'DRAIN' : 'no check'},0,2,,`) : []),
        ...(types & 2 ? [`${m[1]},BACKEND,0,,UP,0,1,,`] : [])].join('\n') + '\n'
    }
    if ((m = /^add server (\S+)\/(\S+) (\S+) ?(.*)$/.exec(text))) {
      const list = backends.get(m[1] as string)
      if (list === undefined) return 'No such backend.'
      if (m[1] === 'rr') return "Backend does not support dynamic servers : backend 'rr' uses a non dynamic load balancing method."
      if (list.some(s => s.name === m![2])) return 'Already exists a server with the same name in backend.'
      if ((m[4] as string).includes('verify required')) return 'verify is enabled by default but no CA file specified.'
      const a = /^\[?(.*?)\]?:(\d+)$/.exec(m[3] as string) as RegExpExecArray
      list.unshift({ name: m[2] as string, addr: a[1] as string, port: Number(a[2]), admin: 1, check: (m[4] as string).includes('check') ? 2 : 0, agent: 0, weight: 1 })
      return 'New server registered.'
    }
    const srv = (ref: string) => { const [b, s] = ref.split('/'); return backends.get(b as string)?.find(x => x.name === s) }
    if ((m = /^set server (\S+) state (\S+)$/.exec(text))) {
      const s = srv(m[1] as string); if (!s) return 'No such server.'
      s.admin = m[2] === 'maint' ? 1 : m[2] === 'drain' ? 8 : 0
      return ''
    }
    if ((m = /^set server (\S+) weight (\d+)$/.exec(text))) { const s = srv(m[1] as string); if (!s) return 'No such server.'; s.weight = Number(m[2]); return '' }
    if ((m = /^set server (\S+) addr (\S+)(?: port (\d+))?$/.exec(text))) {
      const s = srv(m[1] as string); if (!s) return 'No such server.'
      const old = s.port
      s.addr = m[2] as string
      if (m[3] !== undefined) s.port = Number(m[3])
      return old === s.port ? 'nothing changed' : `port changed from '${old}' to '${s.port}' by 'stats socket command'`
    }
    if ((m = /^(enable|disable) (health|agent) (\S+)$/.exec(text))) {
      const s = srv(m[3] as string); if (!s) return 'No such server.'
      const key = m[2] === 'health' ? 'check' : 'agent'
      if (m[1] === 'enable') {
        if ((s[key] & 2) === 0) return m[2] === 'health' ? 'Health check was not configured on this server, cannot enable.' : 'Agent was not configured on this server, cannot enable.'
        s[key] |= 4
      } else s[key] &= ~4
      return ''
    }
    if (text.startsWith('shutdown sessions server ')) return ''
    if ((m = /^wait \S+ srv-removable (\S+)$/.exec(text))) return srv(m[1] as string) ? 'Done.' : 'Failed. No such server.'
    if ((m = /^del server (\S+)\/(\S+)$/.exec(text))) {
      const list = backends.get(m[1] as string) ?? []
      const i = list.findIndex(s => s.name === m![2])
      if (i < 0) return 'No such server.'
      if ((list[i]!.admin & 1) === 0) return 'Only servers in maintenance mode can be deleted.'
      list.splice(i, 1)
      return 'Server deleted.'
    }
    if ((m = /^add backend (\S+) from (\S+)$/.exec(text))) { backends.set(m[1] as string, []); return 'New backend registered.' }
    if ((m = /^del backend (\S+)$/.exec(text))) { backends.delete(m[1] as string); return 'Backend deleted.' }
    if ((m = /^(un)?publish backend (\S+)$/.exec(text))) {
      if (!backends.has(m[2] as string)) return 'No such backend.'
      if (m[1] === undefined) published.add(m[2] as string)
      else published.delete(m[2] as string)
      return m[1] === undefined ? 'Backend published.' : 'Backend unpublished.'
    }
    if ((m = /^wait \S+ be-removable (\S+)$/.exec(text))) {
      if (!backends.has(m[1] as string)) return 'No such backend.'
      if (published.has(m[1] as string)) return 'Backend must be unpublished prior to its deletion.'
      return backends.get(m[1] as string)!.length > 0 ? 'Only a backend without server can be deleted.' : 'Done.'
    }
    if (text === 'show info') return 'Name: HAProxy\nVersion: 3.4.7-1\nRelease_date: x\nPid: 1\nUptime_sec: 1\nStart_time_sec: 1\nStopping: 0\nnode: t'
    if (text.startsWith('show stat ')) return '# pxname,svname,status,type,mode,algo,\nnew,BACKEND,UP (UNPUB),1,http,unknown,\n'
    return `Unknown command: '${text}'`
  })
  return Object.assign(rt, { backends })
}

/** Only the commands that change something. */
const changes = (sent: string[]) => sent.filter(t => !t.startsWith('show '))

describe('GET servers', () => {
  it('lists the joined view and 404s unknown backends and servers', async () => {
    const app = await buildTestApp(haproxy())
    const res = await app.inject({ method: 'GET', url: '/backends/web/servers' })
    expect(res.statusCode).toBe(200)
    expect(res.json().items).toEqual([expect.objectContaining({ name: 'w1', address: '127.0.0.1', port: 8080, adminState: 'ready', status: 'up', rawStatus: 'no check' })])
    expect((await app.inject({ method: 'GET', url: '/backends/nosuch/servers' })).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND' })
    expect((await app.inject({ method: 'GET', url: '/backends/web/servers/nosuch' })).json()).toMatchObject({ status: 404, code: 'HAPX_SERVER_NOT_FOUND' })
  })

  it('maps an unreachable HAProxy to 503', async () => {
    const app = await buildTestApp(haproxy({ 'show servers state web': new RuntimeUnavailableError('tcp://x', 'ECONNREFUSED') }))
    expect((await app.inject({ method: 'GET', url: '/backends/web/servers' })).json()).toMatchObject({ status: 503, code: 'HAPX_RUNTIME_UNAVAILABLE' })
  })
})

describe('POST servers', () => {
  it('adds with init-state down, enables health, then puts it in service', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: { name: 's2', address: '::1', port: 9000, check: true, inter: '2s', weight: 10 } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.headers.location).toBe('/backends/web/servers/s2')
    expect(changes(rt.sent)).toEqual([
      'add server web/s2 [::1]:9000 check inter 2000ms init-state down weight 10',
      'enable health web/s2',
      'set server web/s2 state ready'
    ])
    expect(res.json()).toMatchObject({ name: 's2', address: '::1', adminState: 'ready', healthCheck: { configured: true, enabled: true } })
  })

  it('leaves a server added with enabled=false in maintenance', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: { name: 's2', address: '10.0.0.1', port: 80, enabled: false } })
    expect(res.json()).toMatchObject({ adminState: 'maint' })
    expect(changes(rt.sent)).toEqual(['add server web/s2 10.0.0.1:80'])
  })

  it('validates before sending anything', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    for (const payload of [
      { name: 's2', address: 'example.com', port: 80 },
      { name: 's2', address: '10.0.0.1' },
      { name: 's2', address: '10.0.0.1', port: 80, weight: 257 },
      { name: 's2', address: '10.0.0.1', port: 80, rise: 2 },
      { name: 's2', address: '10.0.0.1', port: 80, sni: 'a.example' },
      { name: 'FRONTEND', address: '10.0.0.1', port: 80 },
      { name: 's2', address: '10.0.0.1', port: 80, extra: 1 }
    ]) {
      const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload })
      expect(res.json(), JSON.stringify(payload)).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    }
    expect(rt.sent).toEqual([])
  })

  it('maps HAProxy refusals: 404 backend, 409 name taken, 400 static algorithm and refused keywords', async () => {
    const app = await buildTestApp(haproxy())
    const add = (b: string, extra: object = {}) => app.inject({ method: 'POST', url: `/backends/${b}/servers`, payload: { name: 'w1', address: '10.0.0.1', port: 80, ...extra } })
    expect((await add('nosuch')).json()).toMatchObject({ status: 404, code: 'HAPX_BACKEND_NOT_FOUND', haproxyMessage: 'No such backend.' })
    expect((await add('web')).json()).toMatchObject({ status: 409, code: 'HAPX_SERVER_EXISTS' })
    expect((await add('rr')).json()).toMatchObject({ status: 400, code: 'HAPX_NO_DYNAMIC_SERVERS', haproxyMessage: expect.stringMatching(/non dynamic/) })
    expect((await add('web', { name: 'x', ssl: true, sslVerify: 'required' })).json()).toMatchObject({ status: 400, code: 'HAPX_SERVER_REJECTED', haproxyMessage: expect.stringMatching(/no CA file/) })
  })

  it('removes the server again when a later step fails, and says so', async () => {
    const rt = haproxy({ 'set server web/s2 state ready': 'some refusal' })
    const store = new MemoryStore()
    const app = await buildTestApp(rt, {}, { store })
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: { name: 's2', address: '10.0.0.1', port: 80 } })
    expect(res.json()).toMatchObject({ status: 422, haproxyMessage: 'some refusal', outcome: 'undone', state: { target: { kind: 'server', id: 'web/s2' }, left: [] } })
    expect(res.json().detail).toMatch(/put back/)
    expect(changes(rt.sent)).toEqual(['add server web/s2 10.0.0.1:80', 'set server web/s2 state ready', 'set server web/s2 state maint', 'wait 2000ms srv-removable web/s2', 'del server web/s2'])
    expect(rt.backends.get('web')!.map(s => s.name)).toEqual(['w1'])
    expect(await store.getServer('web', 's2')).toBeUndefined()
    expect(await store.revision()).toBe(0)
  })

  it('keeps an added server in the desired state', async () => {
    const store = new MemoryStore()
    const app = await buildTestApp(haproxy(), {}, { store })
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: { name: 's2', address: '10.0.0.1', port: 80, weight: 3 } })
    expect(res.statusCode, res.body).toBe(201)
    expect(await store.getServer('web', 's2')).toEqual({
      backend: 'web', name: 's2', spec: { address: '10.0.0.1', port: 80, check: false, weight: 3 }, adminState: 'ready', weight: null, healthChecks: null, agentChecks: null
    })
  })

  it('records an add whose answer was lost as desired state, for the reconciler to settle, instead of racing HAProxy', async () => {
    const rt = haproxy()
    const execute = rt.execute.bind(rt)
    // HAProxy applies the whole sequence, then the reply is lost.
    rt.execute = (async (commands: Parameters<typeof execute>[0]) => {
      const results = await execute(commands)
      if (commands.some(c => c.text === 'add server web/s3 10.0.0.1:80')) throw new RuntimeTimeoutError(5000, 'set server state')
      return results
    }) as typeof rt.execute
    const store = new MemoryStore()
    const app = await buildTestApp(rt, {}, { store })
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: { name: 's3', address: '10.0.0.1', port: 80 } })
    expect(res.json()).toMatchObject({ status: 504, code: 'HAPX_RUNTIME_TIMEOUT', outcome: 'unknown', state: { revision: 1 } })
    expect(res.json().detail).toMatch(/recorded as desired state \(revision 1\)/)
    expect(await store.getServer('web', 's3')).toMatchObject({ adminState: 'ready' })
    expect(changes(rt.sent)).not.toContain('del server web/s3')
  })
})

describe('PATCH servers', () => {
  it('sends address, weight, checks and state in that order; a lone port keeps the current address', async () => {
    const rt = haproxy()
    rt.backends.get('web')![0]!.check = 2
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { state: 'drain', weight: 5, port: 8081, healthChecks: true } })
    expect(res.statusCode, res.body).toBe(200)
    expect(changes(rt.sent)).toEqual(['set server web/w1 addr 127.0.0.1 port 8081', 'set server web/w1 weight 5', 'enable health web/w1', 'set server web/w1 state drain'])
    expect(res.json()).toMatchObject({ port: 8081, weight: { current: 5 }, adminState: 'drain', healthCheck: { enabled: true } })
  })

  it('plans from `show servers state` alone, and reads back only the server rows of `show stat`', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { weight: 5 } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ name: 'w1', weight: { current: 5 }, status: 'up', rawStatus: 'no check' })
    expect(rt.sent).toEqual(['show servers state web', 'set server web/w1 weight 5', 'show servers state web', 'show stat web 4 -1'])
  })

  it('refuses check changes on a server without checks (disable health would be a silent no-op)', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    expect((await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { healthChecks: false } })).json()).toMatchObject({ status: 409, code: 'HAPX_CHECKS_NOT_CONFIGURED' })
    expect((await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { agentChecks: false, weight: 3 } })).json()).toMatchObject({ status: 409, code: 'HAPX_AGENT_NOT_CONFIGURED' })
    expect(changes(rt.sent)).toEqual([])
  })

  it('validates the body and 404s unknown servers', async () => {
    const app = await buildTestApp(haproxy())
    for (const payload of [{}, { weight: 300 }, { state: 'up' }, { address: 'localhost' }, { port: 0 }]) {
      expect((await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload })).statusCode, JSON.stringify(payload)).toBe(400)
    }
    expect((await app.inject({ method: 'PATCH', url: '/backends/web/servers/x', payload: { weight: 1 } })).json()).toMatchObject({ status: 404, code: 'HAPX_SERVER_NOT_FOUND' })
  })

  it('puts back what it changed when a later step fails', async () => {
    const rt = haproxy({ 'set server web/w1 state maint': 'boom' })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { weight: 2, state: 'maint' } })
    expect(res.json()).toMatchObject({ status: 422, haproxyMessage: 'boom', outcome: 'undone', state: { undone: ['set server weight'], left: [] } })
    expect(res.json().detail).toMatch(/\(set server weight\) was put back/)
    expect(changes(rt.sent)).toEqual(['set server web/w1 weight 2', 'set server web/w1 state maint', 'set server web/w1 weight 1'])
    expect(rt.backends.get('web')![0]).toMatchObject({ weight: 1, admin: 0 })
  })

  it('changes the address of a server that has no port (port 0 cannot be sent back, nor needs to be)', async () => {
    const rt = haproxy()
    rt.backends.get('web')!.push({ name: 'np', addr: '127.0.0.1', port: 0, admin: 0, check: 0, agent: 0, weight: 1 })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/np', payload: { address: '127.0.0.3' } })
    expect(res.statusCode, res.body).toBe(200)
    expect(changes(rt.sent)).toEqual(['set server web/np addr 127.0.0.3'])
  })

  it('records state and weight of a static server as desired when the answer is lost', async () => {
    const rt = haproxy()
    const execute = rt.execute.bind(rt)
    let calls = 0
    rt.execute = (async (commands: Parameters<typeof execute>[0]) => {
      const results = await execute(commands)
      if (commands.some(c => c.text === 'set server web/w1 weight 5') && calls++ === 0) throw new RuntimeTimeoutError(5000, 'set server state')
      return results
    }) as typeof rt.execute
    const store = new MemoryStore()
    const app = await buildTestApp(rt, {}, { store })
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { weight: 5, state: 'drain' } })
    expect(res.json()).toMatchObject({ status: 504, outcome: 'unknown' })
    expect(await store.getStaticServer('web', 'w1')).toEqual({ backend: 'web', name: 'w1', adminState: 'drain', weight: 5 })
  })

  it('puts back everything when the answer is lost and nothing is kept for the change, since any step may have run', async () => {
    const rt = haproxy()
    const execute = rt.execute.bind(rt)
    let calls = 0
    rt.execute = (async (commands: Parameters<typeof execute>[0]) => {
      const results = await execute(commands)
      if (commands.some(c => c.text === 'set server web/w1 addr 127.0.0.9 port 81') && calls++ === 0) throw new RuntimeTimeoutError(5000, 'set server addr')
      return results
    }) as typeof rt.execute
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web/servers/w1', payload: { address: '127.0.0.9', port: 81 } })
    expect(res.json()).toMatchObject({ status: 504, outcome: 'undone' })
    expect(rt.backends.get('web')![0]).toMatchObject({ addr: '127.0.0.1', port: 8080 })
  })
})

describe('DELETE servers', () => {
  it('disables an enabled agent, goes to maint, closes sessions with force, waits, deletes', async () => {
    const rt = haproxy()
    rt.backends.get('web')![0]!.agent = 0x16
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'DELETE', url: '/backends/web/servers/w1?timeout=2s&force=true' })
    expect(res.statusCode, res.body).toBe(204)
    expect(changes(rt.sent)).toEqual(['disable agent web/w1', 'set server web/w1 state maint', 'shutdown sessions server web/w1', 'wait 2000ms srv-removable web/w1', 'del server web/w1'])
  })

  it('answers 409 at the deadline and puts the server back in service', async () => {
    const rt = haproxy({ 'wait 500ms srv-removable web/w1': 'Wait delay expired. Server still has connections attached to it, cannot remove it.' })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'DELETE', url: '/backends/web/servers/w1?timeout=500ms' })
    expect(res.json()).toMatchObject({ status: 409, code: 'HAPX_NOT_REMOVABLE', outcome: 'undone' })
    expect(res.json().detail).toMatch(/still had connections.*put back/)
    expect(changes(rt.sent)).toEqual(['set server web/w1 state maint', 'wait 500ms srv-removable web/w1', 'set server web/w1 state ready'])
    expect(rt.backends.get('web')![0]).toMatchObject({ admin: 0 })
  })

  it('404s unknown servers without sending changes', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    expect((await app.inject({ method: 'DELETE', url: '/backends/web/servers/x' })).statusCode).toBe(404)
    expect(changes(rt.sent)).toEqual([])
  })
})

describe('POST /backends with servers', () => {
  it('adds the servers before publishing and undoes everything when one fails', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const res = await app.inject({
      method: 'POST',
      url: '/backends',
      payload: { name: 'new', from: 'mydefaults', published: true, servers: [{ name: 'a', address: '10.0.0.1', port: 80 }, { name: 'b', address: '10.0.0.2', port: 80, ssl: true, sslVerify: 'required' }] }
    })
    expect(res.json()).toMatchObject({ status: 400, code: 'HAPX_SERVER_REJECTED', outcome: 'undone', state: { left: [] } })
    expect(res.json().detail).toMatch(/server 'b'.*put back/)
    expect(changes(rt.sent)).toEqual([
      'add backend new from mydefaults', 'add server new/a 10.0.0.1:80', 'set server new/a state ready',
      'add server new/b 10.0.0.2:80 ssl verify required',
      'set server new/a state maint', 'wait 2000ms srv-removable new/a', 'del server new/a', 'unpublish backend new', 'del backend new'
    ])
    expect(rt.backends.has('new')).toBe(false)
  })

  it('reads the new backend back without asking again which process has it, and deletes it in three Runtime API calls', async () => {
    const rt = haproxy()
    const calls: string[][] = []
    const execute = rt.execute.bind(rt)
    rt.execute = (async (commands: ReadonlyArray<{ text: string }>) => {
      calls.push(commands.map(c => c.text))
      return execute(commands as never)
    }) as typeof rt.execute
    const app = await buildTestApp(rt)
    const created = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'new', from: 'mydefaults', published: true, servers: [{ name: 'a', address: '10.0.0.1', port: 80 }] } })
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json()).toMatchObject({ name: 'new', dynamic: true })
    // `show info` goes with `add backend` (the process it is created in); the read-back needs not ask again.
    expect(calls).toEqual([
      ['show info', 'add backend new from mydefaults', 'add server new/a 10.0.0.1:80', 'set server new/a state ready', 'publish backend new'],
      ['show stat new 6 -1']
    ])
    calls.length = 0
    const deleted = await app.inject({ method: 'DELETE', url: '/backends/new?timeout=2s' })
    expect(deleted.statusCode, deleted.body).toBe(204)
    // What to remove and whether it can be (one connection), the drain and the server's deletion (one),
    // the backend's deletion once removable (one).
    expect(calls).toEqual([
      ['show info', 'show stat new 2 -1', 'show servers state new', 'wait 1ms be-removable new'],
      ['unpublish backend new', 'set server new/a state maint', expect.stringMatching(/^wait (1[89]\d\d|2000)ms srv-removable new\/a$/), 'del server new/a'],
      [expect.stringMatching(/^wait (1[89]\d\d|2000)ms be-removable new$/), 'del backend new']
    ])
    expect(rt.backends.has('new')).toBe(false)
  })

  it('refuses duplicate server names before sending anything', async () => {
    const rt = haproxy()
    const app = await buildTestApp(rt)
    const s = { name: 'a', address: '10.0.0.1', port: 80 }
    expect((await app.inject({ method: 'POST', url: '/backends', payload: { name: 'new', from: 'mydefaults', servers: [s, s] } })).statusCode).toBe(400)
    expect(rt.sent).toEqual([])
  })
})
