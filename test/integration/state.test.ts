import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { buildApp } from '../../src/app.ts'
import { PROBE_PREFIX } from '../../src/schemas/state.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { changingCommands, startRuntimeCapture } from '../helpers/runtime-capture.ts'
import type { RuntimeCapture } from '../helpers/runtime-capture.ts'
import { changesBeyondProbes, planned as fromPlan, sent as fromWire, withDefaults } from '../helpers/state-document.ts'
import { UNKNOWN_BACKEND_STATUS, stateConfig } from '../helpers/state-haproxy.ts'

/*
 * The declarative /state API on a real HAProxy 3.4, with every Runtime API command hapctl sends
 * recorded by a proxy in front of the stats socket (test/helpers/runtime-capture.ts): a dry run lists
 * exactly the commands its apply then sends, a second dry run lists none, and a document that cannot
 * be applied is refused whole with nothing sent. The reconciler is off, so that every command on the
 * wire comes from the request under test.
 */
const MAP = 'virt@paths.map'

type Preview = { text: string, payload?: { lines: number, bytes: number, firstLine: string } }
type Plan = { dryRun: boolean, revision: number, diff: Array<{ object: string, change: string }>, commands: Preview[], steps?: Array<{ label: string, commands: string[], outcome: string }> }

describe('/state (real HAProxy)', () => {
  let h: HaproxyInstance
  let capture: RuntimeCapture
  let app: FastifyInstance
  const port = (name: string): number => {
    const u = h.upstreams[name]
    if (u === undefined) throw new Error(`no upstream ${name}`)
    return u.port
  }
  /** Who answers a path through the map-routed frontend: `u1`, `web1`, or `status <n>`. */
  const who = async (path: string): Promise<string> => {
    const r = await httpGet(h.frontendUrl + path)
    return r.status === 200 ? (/^srv=(\S+)/.exec(r.body)?.[1] ?? r.body) : `status ${r.status}`
  }
  const getState = async (headers: Record<string, string> = {}) => {
    const res = await app.inject({ method: 'GET', url: '/state', headers })
    expect(res.statusCode, res.body).toBe(200)
    return res
  }
  const put = async (doc: unknown, opts: { dryRun?: boolean, ifMatch?: string, query?: string } = {}) => {
    const query = [opts.dryRun === true ? 'dryRun=true' : '', opts.query ?? ''].filter(Boolean).join('&')
    return app.inject({
      method: 'PUT',
      url: '/state' + (query === '' ? '' : '?' + query),
      headers: { 'content-type': 'application/json', ...(opts.ifMatch === undefined ? {} : { 'if-match': opts.ifMatch }) },
      payload: JSON.stringify(doc)
    })
  }
  const backendsOfHaproxy = async () => (await h.cli('show backend')).split('\n').filter(l => l !== '' && !l.startsWith('#')).sort()
  const mapOfHaproxy = async () => (await h.cli(`show map ${MAP}`)).split('\n').filter(l => l !== '').map(l => l.replace(/^0x[0-9a-f]+ /, ''))

  beforeAll(async () => {
    h = await startHaproxy({ config: stateConfig, upstreams: ['web1', 's1', 'r1', 'u1', 'u2', 'u3'] })
    capture = await startRuntimeCapture({ host: '127.0.0.1', port: h.ports.runtime })
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: capture.runtimeApi, HAPROXY_TIMEOUT_MS: '20000' }), logger: false, reconcile: false })
    await app.ready()
  })
  afterAll(async () => {
    await app?.close()
    await capture?.close()
    await h?.stop()
  })

  const server = (upstream: string, extra: Record<string, unknown> = {}) => ({ address: '127.0.0.1', port: port(upstream), ...extra })

  /** The starting point: two backends with servers, a dynamic server and a setting in backends of the configuration, a map. */
  const documentA = () => ({
    backends: {
      b1: { from: 'mydefaults', servers: { s1: server('u1', { weight: 10 }), s2: server('u1'), s3: server('u1'), s4: server('u1') } },
      b2: { from: 'mydefaults', servers: { s1: server('u2') } }
    },
    configBackends: {
      webservers: { servers: { x1: server('web1') } },
      static_unref: { serverSettings: { s1: { weight: 20 } } }
    },
    maps: { [MAP]: { entries: [{ key: '/one', value: 'b1' }, { key: '/two', value: 'b2' }] } }
  })

  /**
   * Every kind of change at once: b3 created with servers, b1's servers changed (weight, admin state,
   * address) and one removed, b2 removed, a dynamic server of a configuration backend removed, a
   * static server's setting changed, map entries changed, added and removed.
   */
  const documentB = () => ({
    backends: {
      b1: { from: 'mydefaults', servers: { s1: server('u1', { weight: 30 }), s2: server('u1', { state: 'drain' }), s4: server('u3') } },
      b3: { from: 'mydefaults', servers: { s1: server('u3'), s2: server('u3', { weight: 5 }) } }
    },
    configBackends: {
      static_unref: { serverSettings: { s1: { weight: 40 } } }
    },
    maps: { [MAP]: { entries: [{ key: '/one', value: 'b3' }, { key: '/three', value: 'b1' }] } }
  })

  it("a dry run's commands are exactly those its apply then sends, and a second dry run lists none", async () => {
    const a = await put(documentA())
    expect(a.statusCode, a.body).toBe(200)
    expect(await who('/one/x')).toBe('u1')
    expect(await who('/two')).toBe('u2')

    capture.clear()
    const dry = await put(documentB(), { dryRun: true })
    expect(dry.statusCode, dry.body).toBe(200)
    const plan = dry.json() as Plan
    expect(plan.dryRun).toBe(true)
    // A dry run reads HAProxy and changes nothing (its probe backend is gone again).
    expect(changesBeyondProbes(capture.commands())).toEqual([])
    expect((await backendsOfHaproxy()).filter(b => b.startsWith(PROBE_PREFIX))).toEqual([])
    expect(await who('/two')).toBe('u2')
    expect(plan.diff.map(d => `${d.change} ${d.object}`).sort()).toEqual(expect.arrayContaining([
      'add backend/b3', 'remove backend/b2', 'change map/virt@paths.map', 'remove server/b1/s3'
    ]))
    const planned = fromPlan(plan.commands)
    // Sanity of the plan itself, so that two empty lists cannot pass: each kind of change is in it.
    for (const needed of [
      'add backend b3 from mydefaults', 'set server b1/s1 weight 30', 'set server b1/s2 state drain', 'del server b1/s3',
      'del backend b2', 'del server webservers/x1', 'set server static_unref/s1 weight 40', `prepare map ${MAP}`, `commit map @V ${MAP}`
    ]) expect(planned.map(c => c.text), needed).toContain(needed)
    expect(planned.some(c => c.text.startsWith(`set server b1/s4 addr 127.0.0.1 port ${port('u3')}`)), JSON.stringify(planned)).toBe(true)
    expect(planned.find(c => c.text === `add map @V ${MAP} <<`)?.payloadLines).toBe(2)

    capture.clear()
    const applied = await put(documentB())
    expect(applied.statusCode, applied.body).toBe(200)
    const result = applied.json() as Plan
    expect(result.dryRun).toBe(false)
    expect(result.revision).toBeGreaterThan(plan.revision)
    expect(applied.headers.etag).toBe(`"${result.revision}"`)
    expect(result.steps?.every(s => s.outcome === 'applied'), JSON.stringify(result.steps)).toBe(true)
    // The comparison the issue asks for: the wire, in order, payloads by their line count.
    expect(fromWire(capture.commands())).toEqual(planned)
    expect(fromPlan(result.commands)).toEqual(planned)

    // And HAProxy does what the document says.
    expect(await who('/one/x')).toBe('u3')
    expect(await who('/three')).toBe('u1')
    expect(await who('/two')).toBe('web1')
    expect(await backendsOfHaproxy()).not.toContain('b2')
    expect(await mapOfHaproxy()).toEqual(['/one b3', '/three b1'])
    const got = await getState()
    expect(got.headers.etag).toBe(applied.headers.etag)
    expect(withDefaults(got.json())).toEqual(withDefaults(documentB()))

    capture.clear()
    const again = await put(documentB(), { dryRun: true })
    expect(again.statusCode, again.body).toBe(200)
    expect(again.json()).toMatchObject({ dryRun: true, commands: [], diff: [] })
    expect(fromWire(capture.commands())).toEqual([])
  })

  describe('a document that cannot be applied is refused whole, and nothing is sent', () => {
    /** Sends `doc`, expects a 400 whose `errors` name the culprit, then checks that nothing changed anywhere. */
    async function expectRefused (doc: unknown, culprit: { field: RegExp, message: RegExp }): Promise<void> {
      const before = await getState()
      const backends = await backendsOfHaproxy()
      const map = await mapOfHaproxy()
      capture.clear()
      const res = await put(doc)
      expect(res.statusCode, res.body).toBe(400)
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
      const errors = res.json().errors as Array<{ field: string, message: string }> | undefined
      expect(errors?.some(e => culprit.field.test(e.field) && culprit.message.test(e.message)), res.body).toBe(true)
      // Only hapctl's probe backends may have been created (and deleted again), to ask HAProxy.
      expect(changesBeyondProbes(capture.commands())).toEqual([])
      const after = await getState()
      expect(after.headers.etag).toBe(before.headers.etag)
      expect(after.json()).toEqual(before.json())
      expect(await backendsOfHaproxy()).toEqual(backends)
      expect(await mapOfHaproxy()).toEqual(map)
    }

    /** The current document plus a valid new backend and an entry for it: a refusal must not apply that part either. */
    const withValidPart = async (extra: Record<string, unknown>, maps?: unknown) => {
      const doc = (await getState()).json()
      return {
        ...doc,
        backends: { ...doc.backends, fresh: { from: 'mydefaults', servers: { s1: server('u2') } }, ...extra },
        maps: maps ?? { [MAP]: { entries: [...doc.maps[MAP].entries, { key: '/fresh', value: 'fresh' }] } }
      }
    }

    it('an unknown defaults section', async () => {
      await expectRefused(await withValidPart({ bad: { from: 'nosuchdefaults' } }), { field: /^body\.backends\.bad\.from$/, message: /nosuchdefaults/ })
    })

    it('a server keyword HAProxy refuses (ssl, verified by default, with no CA file)', async () => {
      await expectRefused(await withValidPart({ tls: { from: 'mydefaults', servers: { s1: server('u1', { ssl: true }) } } }),
        { field: /^body\.backends\.tls\.servers\.s1$/, message: /no CA file/ })
    })

    it("a backend of HAProxy's configuration among hapctl's backends", async () => {
      await expectRefused(await withValidPart({ webservers: { from: 'mydefaults' } }), { field: /^body\.backends\.webservers$/, message: /configuration/ })
    })

    it('an injection attempt in a name, a map key or a map value', async () => {
      await expectRefused(await withValidPart({ 'evil;del backend b1': { from: 'mydefaults' } }), { field: /evil;del backend b1/, message: /./ })
      await expectRefused(await withValidPart({}, { [MAP]: { entries: [{ key: '/x', value: 'b1\ndel backend b1' }] } }), { field: /entries\.0\.value$/, message: /U\+000A/ })
      await expectRefused(await withValidPart({}, { [MAP]: { entries: [{ key: '/x;clear map virt@paths.map', value: 'b1' }] } }), { field: /entries\.0\.key$/, message: /';'/ })
    })

    it('a stale If-Match: 412, nothing sent; the current one is taken', async () => {
      const current = await getState()
      const etag = current.headers.etag as string
      expect(etag).toMatch(/^"\d+"$/)
      capture.clear()
      const stale = await put(await withValidPart({}), { ifMatch: `"${Number(etag.slice(1, -1)) - 1}"` })
      expect(stale.statusCode, stale.body).toBe(412)
      expect(stale.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(changingCommands(capture.commands()).map(c => c.text)).toEqual([])
      expect((await getState()).json()).toEqual(current.json())

      const fresh = await put(await withValidPart({}), { ifMatch: etag })
      expect(fresh.statusCode, fresh.body).toBe(200)
      expect(await who('/fresh')).toBe('u2')
      expect((await getState()).headers.etag).not.toBe(etag)
    })
  })

  it('YAML in and out round-trips, and a merge patch removes one backend', async () => {
    const asJson = (await getState()).json()
    const yamlRes = await getState({ accept: 'application/yaml' })
    expect(yamlRes.headers['content-type']).toMatch(/^application\/yaml/)
    expect(yamlRes.headers.etag).toBe((await getState()).headers.etag)
    expect(parseYaml(yamlRes.body)).toEqual(asJson)

    // What GET answers, PUT back as YAML, asks for nothing.
    capture.clear()
    const back = await app.inject({ method: 'PUT', url: '/state?dryRun=true', headers: { 'content-type': 'application/yaml' }, payload: yamlRes.body })
    expect(back.statusCode, back.body).toBe(200)
    expect(back.json()).toMatchObject({ commands: [], diff: [] })

    // A change written in YAML is applied like its JSON twin.
    const doc = parseYaml(yamlRes.body)
    doc.backends.b4 = { from: 'mydefaults', servers: { s1: server('u1') } }
    doc.maps[MAP].entries.push({ key: '/four', value: 'b4' })
    const applied = await app.inject({ method: 'PUT', url: '/state', headers: { 'content-type': 'application/yaml', accept: 'application/yaml' }, payload: toYaml(doc) })
    expect(applied.statusCode, applied.body).toBe(200)
    expect(await who('/four')).toBe('u1')
    const got = (await getState()).json()
    expect(got.backends.b4).toMatchObject({ from: 'mydefaults', servers: { s1: { address: '127.0.0.1', port: port('u1') } } })

    // RFC 7396: null removes. Dry run first, then the same patch for real.
    const patch = { backends: { b4: null }, maps: { [MAP]: { entries: doc.maps[MAP].entries.filter((e: { key: string }) => e.key !== '/four') } } }
    capture.clear()
    const dry = await app.inject({ method: 'PATCH', url: '/state?dryRun=true', headers: { 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify(patch) })
    expect(dry.statusCode, dry.body).toBe(200)
    expect(changesBeyondProbes(capture.commands())).toEqual([])
    const planned = fromPlan(dry.json().commands)
    expect(planned.map(c => c.text)).toContain('del backend b4')
    capture.clear()
    const patched = await app.inject({ method: 'PATCH', url: '/state', headers: { 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify(patch) })
    expect(patched.statusCode, patched.body).toBe(200)
    expect(fromWire(capture.commands())).toEqual(planned)
    expect(await who('/four')).toBe('web1')
    expect(await backendsOfHaproxy()).not.toContain('b4')
    expect((await getState()).json().backends.b4).toBeUndefined()
  })

  it('the fixture answers an entry naming no backend distinguishably', async () => {
    // The fixture's distinguishable answer is reachable at all (a map entry naming nothing), so that
    // the scale test's reader would see it if an apply ever let it happen.
    await h.cli(`add map ${MAP} /ghost nosuch`)
    expect(await who('/ghost')).toBe(`status ${UNKNOWN_BACKEND_STATUS}`)
    await h.cli(`del map ${MAP} /ghost`)
  })
})
