import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { RuntimeClient } from '../../src/runtime/client.ts'
import type { Runtime } from '../../src/runtime/client.ts'
import { parseEndpoint } from '../../src/config.ts'
import { RuntimeTimeoutError } from '../../src/runtime/errors.ts'
import { call, testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyConfigContext, HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The desired-state engine against a hostile client and an unlucky operator, on a real HAProxy 3.4 in
 * master-worker mode: HAProxy down when hapctl starts, deletions whose outcome is unknown, a defaults
 * section that a reload removes, maps written by #id, reloads in the middle of a map replace.
 */
let h: HaproxyInstance
let dir: string
let n = 0
const apps: FastifyInstance[] = []

/** The suite's configuration, plus a defaults section that a test removes and puts back. */
const withExtraDefaults = (ctx: HaproxyConfigContext): string => defaultConfig(ctx) + '\ndefaults extradefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n'

function env (extra: Record<string, string> = {}): Record<string, string> {
  return { HAPROXY_RUNTIME_API: h.runtimeApi, HAPCTL_STORE: join(dir, `hapctl-${n}.db`), HAPCTL_IDENTITY_POLL_MS: '200', HAPCTL_RECONCILE_INTERVAL_MS: '10000', ...extra }
}

async function startHapctl (opts: { env?: Record<string, string>, runtime?: Runtime } = {}): Promise<FastifyInstance> {
  const a = await buildApp({ config: testConfig(env(opts.env)), logger: false, ...(opts.runtime === undefined ? {} : { runtime: opts.runtime }) })
  apps.push(a)
  await a.ready()
  return a
}

const api = call

/**
 * A real client that loses the reply of the next call whose commands include `verb` (the call never
 * reaches HAProxy, as when a timed-out command is still queued behind a stalled one), answering a
 * timeout: the executor cannot tell whether it ran.
 */
class LosingRuntime implements Runtime {
  readonly inner: RuntimeClient
  #armed: string | undefined
  constructor (endpoint: string) {
    this.inner = new RuntimeClient({ endpoint: parseEndpoint(endpoint), timeoutMs: 5000 })
  }

  loseNext (verb: string): void { this.#armed = verb }

  execute: Runtime['execute'] = async (commands, options) => {
    const verbs = commands.map(c => c.verb)
    if (this.#armed !== undefined && verbs.includes(this.#armed)) {
      this.#armed = undefined
      throw new RuntimeTimeoutError(300, verbs[0])
    }
    return this.inner.execute(commands, options)
  }

  executePayload: NonNullable<Runtime['executePayload']> = async (c, o) => this.inner.executePayload(c, o)
  close = async (): Promise<void> => { await this.inner.close() }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hapctl-adversarial-'))
  h = await startHaproxy({ masterWorker: true, config: withExtraDefaults })
}, 60_000)

afterEach(async () => {
  for (const a of apps.splice(0)) await a.close()
  n++
  // Each test starts from HAProxy's configuration alone, running.
  await h.start().catch(() => {})
  await h.reload({ config: withExtraDefaults })
})

afterAll(async () => {
  await h?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('HAProxy down', () => {
  /** A store that keeps a backend, then hapctl started on it while HAProxy is down. */
  async function startWhileDown (name: string): Promise<FastifyInstance> {
    const first = await startHapctl()
    expect((await api(first, 'POST', '/backends', { name, from: 'mydefaults', published: true, servers: [{ name: 's1', address: '127.0.0.1', port: h.upstreams.s1!.port }] })).status).toBe(201)
    await first.close()
    await h.kill()
    return startHapctl()
  }

  it('when hapctl starts: /status does not report an empty drift', async () => {
    const app = await startWhileDown('early1')
    await waitFor(async () => (await api(app, 'GET', '/status')).body, s => s.reconciler.last !== null, { timeoutMs: 2000 })
    const status = (await api(app, 'GET', '/status')).body
    expect(status.haproxy.process).toBeNull()
    expect(status.reconciler.last.failed).toEqual([expect.objectContaining({ object: 'haproxy' })])
    // Nothing kept is in HAProxy: the drift must not read as "none".
    expect(status.drift).toEqual(expect.arrayContaining([expect.objectContaining({ object: 'haproxy' })]))
  })

  it('when hapctl starts: the desired state is back within 2 s of HAProxy answering', async () => {
    const app = await startWhileDown('early2')
    // Long enough for the reconciler's retries to back off past a second.
    await new Promise(resolve => setTimeout(resolve, 3000))
    await h.start()
    await waitFor(async () => (await api(app, 'GET', '/backends/early2')).body, b => b?.dynamic === true && b.servers === 1, { timeoutMs: 2000, intervalMs: 50 })
    expect((await api(app, 'GET', '/status')).body.haproxy.process).not.toBeNull()
  })
})

describe('deletions whose outcome is unknown', () => {
  it('a server hapctl added to a backend of the configuration: the reconciler finishes the deletion', async () => {
    const runtime = new LosingRuntime(h.runtimeApi)
    const app = await startHapctl({ runtime })
    expect((await api(app, 'POST', '/backends/static_empty/servers', { name: 'gone', address: '127.0.0.1', port: h.upstreams.r1!.port, enabled: true })).status).toBe(201)
    runtime.loseNext('del server')
    const del = await api(app, 'DELETE', '/backends/static_empty/servers/gone?timeout=1s')
    expect(del.status, JSON.stringify(del.body)).toBe(504)
    expect(del.body).toMatchObject({ outcome: 'unknown' })
    await waitFor(async () => (await h.cli('show servers state static_empty')), text => !/ gone /.test(text), { timeoutMs: 3000 })
    expect((await api(app, 'GET', '/backends/static_empty/servers/gone')).status).toBe(404)
  })

  it('a backend hapctl created: the reconciler finishes the deletion', async () => {
    const runtime = new LosingRuntime(h.runtimeApi)
    const app = await startHapctl({ runtime })
    expect((await api(app, 'POST', '/backends', { name: 'doomed', from: 'mydefaults', published: true, servers: [{ name: 'x', address: '127.0.0.1', port: h.upstreams.r1!.port }] })).status).toBe(201)
    runtime.loseNext('del backend')
    const del = await api(app, 'DELETE', '/backends/doomed?timeout=1s')
    expect(del.status, JSON.stringify(del.body)).toBe(504)
    await waitFor(async () => (await api(app, 'GET', '/backends/doomed')).status, s => s === 404, { timeoutMs: 3000 })
  })
})

describe('the configuration changes under hapctl', () => {
  it('a defaults section removed by a reload: reported as drift, retried with backoff, created once it is back', async () => {
    const app = await startHapctl()
    expect((await api(app, 'POST', '/backends', { name: 'orphan', from: 'extradefaults' })).status).toBe(201)
    await h.reload({ config: defaultConfig })
    const passesBefore = (await api(app, 'GET', '/status')).body.reconciler.passes as number
    await new Promise(resolve => setTimeout(resolve, 3000))
    const status = (await api(app, 'GET', '/status')).body
    expect(status.drift).toEqual(expect.arrayContaining([expect.objectContaining({ object: 'backend/orphan' })]))
    expect(status.reconciler.last.failed).toEqual([expect.objectContaining({ object: 'backend/orphan', error: expect.stringMatching(/extradefaults/) })])
    // Backing off (200 ms, 400 ms, 800 ms, …): a handful of passes in 3 s, not hundreds.
    expect(status.reconciler.passes - passesBefore).toBeLessThanOrEqual(8)
    await h.reload({ config: withExtraDefaults })
    await waitFor(async () => (await api(app, 'GET', '/backends/orphan')).body, b => b?.dynamic === true, { timeoutMs: 2000 })
  })

  it('a persistent conflict is reported and does not make the reconciler spin', async () => {
    const app = await startHapctl()
    expect((await api(app, 'POST', '/backends', { name: 'clash', from: 'mydefaults' })).status).toBe(201)
    await h.reload({ config: ctx => withExtraDefaults(ctx) + '\nbackend clash from mydefaults\n    server c1 127.0.0.1:1\n' })
    await waitFor(async () => (await api(app, 'GET', '/status')).body, s => s.drift.some((d: any) => d.object === 'backend/clash'), { timeoutMs: 3000 })
    const before = (await api(app, 'GET', '/status')).body.reconciler.passes as number
    await new Promise(resolve => setTimeout(resolve, 2000))
    const status = (await api(app, 'GET', '/status')).body
    expect(status.reconciler.passes - before).toBeLessThanOrEqual(2)
    expect(status.reconciler.last.failed).toEqual([])
    expect((await api(app, 'GET', '/backends/clash/servers')).body.items.map((s: any) => s.name)).toEqual(['c1'])
  })

  it('settings of a static server survive reloads, and the latest PATCH wins', async () => {
    const app = await startHapctl()
    expect((await api(app, 'PATCH', '/backends/static_ref/servers/r1', { state: 'maint', weight: 3 })).status).toBe(200)
    await h.reload()
    await waitFor(async () => (await api(app, 'GET', '/backends/static_ref/servers/r1')).body, s => s.adminState === 'maint' && s.weight.current === 3, { timeoutMs: 2000 })
    expect((await api(app, 'PATCH', '/backends/static_ref/servers/r1', { state: 'ready' })).status).toBe(200)
    await h.reload()
    await waitFor(async () => (await api(app, 'GET', '/backends/static_ref/servers/r1')).body, s => s.adminState === 'ready' && s.weight.current === 3, { timeoutMs: 2000 })
    expect((await httpGet(h.refFrontendUrl + '/ref')).status).toBe(200)
  })
})

describe('maps', () => {
  it('written by #id: kept under the map name and put back after a reload', async () => {
    const app = await startHapctl()
    const maps = (await api(app, 'GET', '/maps')).body.items as Array<{ name: string, id: number }>
    const id = maps.find(m => m.name === 'virt@paths.map')!.id
    const put = await api(app, 'PUT', `/maps/${encodeURIComponent(`#${id}`)}/entries/%2Fbyid`, { value: 'static_ref' })
    expect(put.status, JSON.stringify(put.body)).toBe(201)
    const listed = (await api(app, 'GET', '/maps')).body.items
    expect(listed.find((m: any) => m.name === 'virt@paths.map')?.managed, JSON.stringify(listed)).toBe(true)
    await h.reload()
    await waitFor(async () => (await httpGet(h.frontendUrl + '/byid')).body, body => /srv=r1/.test(body), { timeoutMs: 2000 })
  })

  it('a reload in the middle of a replace: HAProxy ends with the last content the store took, which an acknowledged replace is', async () => {
    const app = await startHapctl()
    /** The live content, read by the test itself: `<id> <key> <value>` lines. */
    const live = async (): Promise<string[]> => (await h.cli('show map virt@paths.map')).split('\n').filter(l => l !== '').map(l => l.slice(l.indexOf(' ') + 1))
    let expected: string[] = []
    for (let round = 0; round < 4; round++) {
      const content = Array.from({ length: 20_000 }, (_, i) => ({ key: `/r${i}`, value: round % 2 === 0 ? 'static_ref' : 'webservers' }))
      const replace = api(app, 'PUT', '/maps/virt@paths.map/entries', content)
      await new Promise(resolve => setTimeout(resolve, 15 * round))
      await h.reload()
      const res = await replace
      if (res.status === 200 || res.body?.state?.outcome === 'unknown') expected = content.map(e => `${e.key} ${e.value}`)
      const got = await waitFor(live, lines => lines.length === expected.length && lines[0] === expected[0] && lines.at(-1) === expected.at(-1), { timeoutMs: 3000 })
        .catch(err => { throw new Error(`round ${round}: PUT answered ${res.status} ${JSON.stringify(res.body).slice(0, 300)}; ${(err as Error).message.slice(0, 300)}`) })
      expect(got).toEqual(expected)
    }
  })
})

describe('a SIGKILL in the middle of a POST /backends with servers', () => {
  it('ends with the backend there if the client was told it was created or might be, and absent otherwise', async () => {
    const app = await startHapctl()
    for (const delay of [0, 2, 5, 10]) {
      const name = `killed${delay}`
      const post = api(app, 'POST', '/backends', {
        name,
        from: 'mydefaults',
        published: true,
        servers: Array.from({ length: 5 }, (_, i) => ({ name: `s${i}`, address: '127.0.0.1', port: h.upstreams.s1!.port }))
      })
      await new Promise(resolve => setTimeout(resolve, delay))
      await h.kill()
      const res = await post
      await h.start()
      // Created, or told it may have been (unknown) or was (applied, only the read-back failed).
      const kept = res.status === 201 || ['unknown', 'applied'].includes(res.body?.outcome)
      await waitFor(async () => (await api(app, 'GET', `/backends/${name}`)).body,
        b => kept ? b?.dynamic === true && b.servers === 5 && b.published === true : b?.code === 'HAPX_BACKEND_NOT_FOUND',
        { timeoutMs: 3000 }).catch(err => { throw new Error(`delay ${delay}: POST answered ${res.status} ${JSON.stringify(res.body)}; ${(err as Error).message}`) })
    }
  })
})
