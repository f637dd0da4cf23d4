/**
 * `?wait=up` on POST /backends/:backend/servers and PATCH /backends/:name (src/routes/servers.ts,
 * src/routes/backends.ts): the answer comes once `show stat` says UP; at the deadline, 504 NOT_UP with
 * the change applied and kept. The real thing, with HTTP traffic through HAProxy, is in
 * test/integration/wait-up.test.ts.
 */
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime } from '../helpers/fake-runtime.ts'

const STATE_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

type Srv = { name: string, admin: number, check: boolean, checkEnabled: boolean }

/**
 * One backend `web` (unpublished) and its servers. A server added with `check` reports `DOWN` with
 * `L4CON` until `upAfter` server reads of `show stat` have come after its `enable health`, then `UP`
 * with `L4OK` (never, when upAfter is Infinity); one without checks reports `no check` once in service.
 */
function haproxy (opts: { upAfter: number, servers?: Srv[] }) {
  const servers: Srv[] = opts.servers ?? []
  let published = false
  const reads = new Map<string, number>()
  const statusOf = (s: Srv): [string, string] => {
    if ((s.admin & 1) !== 0) return ['MAINT', '']
    if ((s.admin & 8) !== 0) return ['DRAIN', '']
    if (!s.check) return ['no check', '']
    if (!s.checkEnabled) return ['DOWN', 'INI']
    return (reads.get(s.name) ?? 0) >= opts.upAfter ? ['UP', 'L4OK'] : ['DOWN', 'L4CON']
  }
  const rt = fakeRuntime(text => {
    let m: RegExpExecArray | null
    if (text === 'show info') return INFO_REPLY
    if (text === 'show servers state web') {
      return [STATE_HEADER, ...servers.map((s, i) => `3 web ${i + 1} ${s.name} 10.0.0.1 2 ${s.admin} 1 1 0 1 0 0 ${s.check ? (s.checkEnabled ? 6 : 2) : 0} 0 0 0 - 80 - 0 0 - - 0`)].join('\n') + '\n'
    }
    if ((m = /^show stat web (-1|\d) -1$/.exec(text))) {
      const types = Number(m[1])
      const rows: string[] = []
      if (types & 4) {
        for (const s of servers) {
          if (s.checkEnabled) reads.set(s.name, (reads.get(s.name) ?? 0) + 1)
          const [status, check] = statusOf(s)
          rows.push(`web,${s.name},2,${status},${check},http,roundrobin,0,,0,`)
        }
      }
      if (types & 2) rows.push(`web,BACKEND,1,${servers.some(s => statusOf(s)[0] !== 'DOWN') ? 'UP' : 'DOWN'}${published ? '' : ' (UNPUB)'},,http,roundrobin,0,,0,`)
      return ['# pxname,svname,type,status,check_status,mode,algo,scur,slim,bck,', ...rows].join('\n') + '\n'
    }
    if (text.startsWith('show stat ')) return 'No such proxy.'
    if ((m = /^add server web\/(\S+) \S+ ?(.*)$/.exec(text))) {
      servers.unshift({ name: m[1] as string, admin: 1, check: (m[2] as string).includes('check'), checkEnabled: false })
      return 'New server registered.'
    }
    const srv = (name: string) => servers.find(s => s.name === name)
    if ((m = /^enable health web\/(\S+)$/.exec(text))) { srv(m[1] as string)!.checkEnabled = true; return '' }
    if ((m = /^set server web\/(\S+) state (\S+)$/.exec(text))) { srv(m[1] as string)!.admin = m[2] === 'maint' ? 1 : m[2] === 'drain' ? 8 : 0; return '' }
    if (text === 'publish backend web') { published = true; return 'Backend published.' }
    if (text === 'unpublish backend web') { published = false; return 'Backend unpublished.' }
    return `Unknown command: '${text}'`
  })
  return Object.assign(rt, { servers, published: () => published })
}

const changes = (sent: string[]) => sent.filter(t => !t.startsWith('show '))
const serverReads = (sent: string[]) => sent.filter(t => t === 'show stat web 4 -1').length
const CHECKED = { name: 's2', address: '10.0.0.1', port: 80, check: true, inter: '100ms' }

describe('POST …/servers?wait=up', () => {
  it('answers once the server is UP in show stat, not before', async () => {
    const rt = haproxy({ upAfter: 4 })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers?wait=up', payload: CHECKED })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ name: 's2', status: 'up', rawStatus: 'UP', healthCheck: { status: 'L4OK' } })
    expect(res.headers.location).toBe('/backends/web/servers/s2')
    // The read-back, then polls until the fourth read said UP, then the answer's own read.
    expect(serverReads(rt.sent)).toBe(5)
    expect(changes(rt.sent)).toEqual(['add server web/s2 10.0.0.1:80 check inter 100ms init-state down', 'enable health web/s2', 'set server web/s2 state ready'])
  })

  it('without wait, answers at once with the server still DOWN (what ?wait=up is for)', async () => {
    const rt = haproxy({ upAfter: 4 })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers', payload: CHECKED })
    expect(res.statusCode).toBe(201)
    expect(res.json()).toMatchObject({ status: 'down', rawStatus: 'DOWN' })
    expect(serverReads(rt.sent)).toBe(1)
  })

  it('at the deadline answers 504 NOT_UP, the server added and kept, and says what it saw', async () => {
    const rt = haproxy({ upAfter: Infinity })
    const store = new MemoryStore()
    const app = await buildTestApp(rt, {}, { store })
    const started = Date.now()
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers?wait=up&waitTimeout=400ms', payload: CHECKED })
    const elapsed = Date.now() - started
    expect(res.statusCode, res.body).toBe(504)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(res.json()).toMatchObject({
      code: 'HAPX_NOT_UP',
      outcome: 'applied',
      state: { target: { kind: 'server', id: 'web/s2' }, outcome: 'applied', servers: [{ name: 's2', status: 'DOWN', checkStatus: 'L4CON' }] }
    })
    expect(res.json().detail).toMatch(/^server 'web\/s2' was added and is kept, but it is not UP after 400 ms \(s2 DOWN \(L4CON\)\)/)
    expect(elapsed).toBeGreaterThanOrEqual(400)
    expect(elapsed).toBeLessThan(5000)
    // Nothing was put back: the server is there, in service, and in the desired state.
    expect(changes(rt.sent)).toEqual(['add server web/s2 10.0.0.1:80 check inter 100ms init-state down', 'enable health web/s2', 'set server web/s2 state ready'])
    expect(rt.servers.map(s => [s.name, s.admin])).toEqual([['s2', 0]])
    expect(await store.getServer('web', 's2')).toMatchObject({ adminState: 'ready' })
  })

  it('a server without checks is UP once in service: no wait beyond the read-back', async () => {
    const rt = haproxy({ upAfter: Infinity })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'POST', url: '/backends/web/servers?wait=up', payload: { name: 's3', address: '10.0.0.1', port: 80 } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ status: 'up', rawStatus: 'no check' })
    expect(serverReads(rt.sent)).toBe(1)
  })

  it('refuses what can never turn UP or makes no sense, before sending anything', async () => {
    const rt = haproxy({ upAfter: 1 })
    const app = await buildTestApp(rt)
    for (const [url, payload, field] of [
      ['/backends/web/servers?wait=up', { ...CHECKED, enabled: false }, 'querystring.wait'],
      ['/backends/web/servers?waitTimeout=5s', CHECKED, 'querystring.waitTimeout'],
      ['/backends/web/servers?wait=up&waitTimeout=61s', CHECKED, 'querystring.waitTimeout'],
      ['/backends/web/servers?wait=ready', CHECKED, 'querystring.wait']
    ] as const) {
      const res = await app.inject({ method: 'POST', url, payload })
      expect(res.statusCode, url).toBe(400)
      expect(res.json(), url).toMatchObject({ code: 'HAPX_VALIDATION_FAILED', errors: [expect.objectContaining({ field })] })
    }
    expect(rt.sent).toEqual([])
  })

  it('stops waiting when hapctl stops, and says the server is kept', async () => {
    const rt = haproxy({ upAfter: Infinity })
    const app = await buildTestApp(rt)
    const started = Date.now()
    const pending = app.inject({ method: 'POST', url: '/backends/web/servers?wait=up&waitTimeout=30s', payload: CHECKED })
    while (serverReads(rt.sent) < 2) await new Promise(resolve => setTimeout(resolve, 10))
    await app.close()
    const res = await pending
    expect(res.json()).toMatchObject({ status: 504, code: 'HAPX_NOT_UP', outcome: 'applied' })
    expect(res.json().detail).toMatch(/hapctl is stopping, so it stopped waiting/)
    expect(Date.now() - started).toBeLessThan(5000)
    expect(changes(rt.sent)).not.toContain('del server web/s2')
  })
})

describe('a client that goes away', () => {
  it('ends the wait: hapctl stops asking HAProxy for an answer nobody reads', async () => {
    const rt = haproxy({ upAfter: Infinity })
    const app = await buildTestApp(rt)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    const body = JSON.stringify(CHECKED)
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/backends/web/servers?wait=up&waitTimeout=30s', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } })
    req.on('error', () => {})
    req.end(body)
    while (serverReads(rt.sent) < 3) await delay(10)
    req.destroy()
    await delay(300)
    const after = serverReads(rt.sent)
    await delay(500)
    expect(serverReads(rt.sent)).toBe(after)
    expect(changes(rt.sent)).not.toContain('del server web/s2')
  })
})

describe('PATCH /backends/:name?wait=up', () => {
  const server = (): Srv => ({ name: 'a1', admin: 0, check: true, checkEnabled: true })

  it('publishes, then answers once a server of the backend is UP', async () => {
    const rt = haproxy({ upAfter: 3, servers: [server()] })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web?wait=up', payload: { published: true } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ name: 'web', published: true, status: 'UP' })
    // The read-back (`show stat web 6 -1`) was the first read, then two polls until the third said UP.
    expect(serverReads(rt.sent)).toBe(2)
    expect(changes(rt.sent)).toEqual(['publish backend web'])
  })

  it('at the deadline answers 504 NOT_UP and leaves it published', async () => {
    const rt = haproxy({ upAfter: Infinity, servers: [server(), { name: 'a2', admin: 1, check: false, checkEnabled: false }] })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web?wait=up&waitTimeout=300ms', payload: { published: true } })
    expect(res.statusCode, res.body).toBe(504)
    expect(res.json()).toMatchObject({
      code: 'HAPX_NOT_UP',
      outcome: 'applied',
      state: { target: { kind: 'backend', id: 'web' }, servers: [{ name: 'a1', status: 'DOWN' }, { name: 'a2', status: 'MAINT' }] }
    })
    expect(res.json().detail).toMatch(/^backend 'web' was published and is kept, but no server of backend 'web' is UP after 300 ms \(a1 DOWN \(L4CON\), a2 MAINT\)/)
    expect(rt.published()).toBe(true)
    expect(changes(rt.sent)).toEqual(['publish backend web'])
  })

  it('a backend without servers is never UP: NOT_UP names no server', async () => {
    const rt = haproxy({ upAfter: 1 })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web?wait=up&waitTimeout=100ms', payload: { published: true } })
    expect(res.json()).toMatchObject({ status: 504, code: 'HAPX_NOT_UP', state: { servers: [] } })
    expect(res.json().detail).toMatch(/\(no server\)/)
  })

  it('refuses wait=up with published: false, before sending anything', async () => {
    const rt = haproxy({ upAfter: 1, servers: [server()] })
    const app = await buildTestApp(rt)
    const res = await app.inject({ method: 'PATCH', url: '/backends/web?wait=up', payload: { published: false } })
    expect(res.json()).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED', outcome: 'refused', errors: [{ field: 'querystring.wait' }] })
    expect(rt.sent).toEqual([])
  })
})
