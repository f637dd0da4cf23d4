/**
 * planState (src/resources/state/planner.ts) on hand-built readings of HAProxy: rows as
 * `show servers state` gives them, the process that answered, the maps with their versions. What
 * HAProxy then does with the commands is test/integration/state*.test.ts's business.
 */
import { describe, expect, it } from 'vitest'
import { Executor } from '../../../src/engine/executor.ts'
import { ProcessIdentity } from '../../../src/engine/identity.ts'
import { previewOf } from '../../../src/engine/plan.ts'
import type { Step } from '../../../src/engine/plan.ts'
import type { Actual } from '../../../src/engine/reconciler.ts'
import { MemoryStore } from '../../../src/engine/store/memory.ts'
import type { DesiredState } from '../../../src/engine/store/types.ts'
import * as cmd from '../../../src/runtime/commands/index.ts'
import type { Row } from '../../../src/runtime/parsers.ts'
import { AdminStateBits, CheckStateBits } from '../../../src/runtime/parsers.ts'
import { documentOf, targetOf } from '../../../src/resources/state/document.ts'
import type { TargetState } from '../../../src/resources/state/document.ts'
import { planState } from '../../../src/resources/state/planner.ts'
import type { StatePlan } from '../../../src/resources/state/planner.ts'
import { StateDocumentSchema } from '../../../src/schemas/state.ts'
import { fakeRuntime } from '../../helpers/fake-runtime.ts'

const HERE = '4242@1795495485'
const INFO = { version: '3.4.7', releaseDate: '2026/10/14', pid: 4242, uptimeSec: 12, startTimeSec: 1795495485, stopping: false, nodeName: 'test' }
const MAP = 'virt@paths.map'
const CHECK_ON = CheckStateBits.CONFIGURED | CheckStateBits.ENABLED

type RowOpts = { admin?: number, weight?: number, check?: number, agent?: number }

/** A `show servers state` row (fields as parseServersState names them). */
function row (backend: string, name: string, addr: string, port: number, o: RowOpts = {}): Row {
  return {
    be_id: '1',
    be_name: backend,
    srv_id: '1',
    srv_name: name,
    srv_addr: addr,
    srv_op_state: '2',
    srv_admin_state: String(o.admin ?? 0),
    srv_uweight: String(o.weight ?? 1),
    srv_iweight: String(o.weight ?? 1),
    srv_time_since_last_change: '0',
    srv_check_status: '0',
    srv_check_result: '0',
    srv_check_health: '0',
    srv_check_state: String(o.check ?? 0),
    srv_agent_state: String(o.agent ?? 0),
    bk_f_forced_id: '0',
    srv_f_forced_id: '0',
    srv_fqdn: '',
    srv_port: String(port),
    srvrecord: '',
    srv_use_ssl: '0',
    srv_check_port: '0',
    srv_check_addr: '',
    srv_agent_addr: '',
    srv_agent_port: '0'
  }
}

type ActualSpec = Record<string, { published?: boolean, servers?: Record<string, [string, number, RowOpts?]> }>

/** HAProxy's reading: the configuration's `webservers` (web1, web2) plus `backends`; maps by name with their next version. */
function actualOf (backends: ActualSpec = {}, maps: Record<string, number> = { [MAP]: 0 }): Actual {
  const all: ActualSpec = { webservers: { servers: { web1: ['127.0.0.1', 8081], web2: ['127.0.0.1', 8082] } }, ...backends }
  return {
    info: INFO,
    backends: new Map(Object.entries(all).map(([b, spec]) => [b, {
      published: spec.published ?? true,
      servers: new Map(Object.entries(spec.servers ?? {}).map(([s, [addr, port, o]]) => [s, row(b, s, addr, port, o)]))
    }])),
    maps: new Map(Object.entries(maps).map(([name, next], i) => [name, { name, id: 5 + i, currentVersion: next, nextVersion: next, description: '' }]))
  }
}

const target = (doc: unknown): TargetState => targetOf(StateDocumentSchema.parse(doc))

/** The store holding exactly what `doc` asks for. */
function stateOf (doc: unknown, revision = 1): DesiredState {
  const t = target(doc)
  return { revision, backends: t.backends, servers: t.servers, staticServers: t.staticServers, maps: t.maps.map(m => ({ name: m.name, entries: m.entries })) }
}

const EMPTY: DesiredState = { revision: 0, backends: [], servers: [], staticServers: [], maps: [] }

function deps () {
  const executor = new Executor({ runtime: fakeRuntime(() => ''), store: new MemoryStore(), lockTimeoutMs: 100 })
  return { executor, identity: new ProcessIdentity(), created: new Map() }
}

type PlanArgs = {
  doc: unknown
  current?: DesiredState
  actual?: Actual
  liveMaps?: Record<string, Array<[string, string]>>
  createdIn?: Record<string, string>
}

function plan (a: PlanArgs): StatePlan {
  const live = a.liveMaps ?? { [MAP]: [] }
  return planState({
    target: target(a.doc),
    current: a.current ?? EMPTY,
    actual: a.actual ?? actualOf(),
    liveMaps: new Map(Object.entries(live).map(([k, es]) => [k, es.map(([key, value]) => ({ key, value }))])),
    createdIn: new Map(Object.entries(a.createdIn ?? {})),
    drainMs: 5000
  }, deps())
}

/** Every command text of the plan that can change HAProxy, in order. */
const commandsOf = (p: StatePlan): string[] => p.steps.flatMap(previewOf).map(c => c.text)
const undoOf = (s: Step | undefined): string[] => (s?.undoCommands ?? []).map(c => c.text)
const stepSending = (p: StatePlan, text: string): Step | undefined => p.steps.find(s => previewOf(s).some(c => c.text === text))

/** A document with something of every kind, and HAProxy holding exactly that. */
const FULL = {
  backends: {
    app: {
      from: 'mydefaults',
      servers: {
        a1: { address: '10.0.0.1', port: 80, check: true, inter: '2s', weight: 5, state: 'drain' },
        a2: { address: '10.0.0.2', port: 80, healthChecks: false, agentChecks: false }
      }
    },
    quiet: { from: 'mydefaults', published: false }
  },
  configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, state: 'maint' } }, serverSettings: { web1: { weight: 7, state: 'drain' } } } },
  maps: { [MAP]: { entries: [{ key: '/app', value: 'app' }, { key: '/', value: 'webservers' }] } }
}
const FULL_ACTUAL = (): Actual => actualOf({
  app: { servers: { a1: ['10.0.0.1', 80, { weight: 5, admin: AdminStateBits.FDRAIN, check: CHECK_ON }], a2: ['10.0.0.2', 80] } },
  quiet: { published: false },
  webservers: { servers: { web1: ['127.0.0.1', 8081, { weight: 7, admin: AdminStateBits.FDRAIN }], web2: ['127.0.0.1', 8082], dyn: ['10.0.0.9', 81, { admin: AdminStateBits.FMAINT }] } }
})
const FULL_LIVE = { [MAP]: [['/app', 'app'], ['/', 'webservers']] as Array<[string, string]> }
const OURS = { app: HERE, quiet: HERE }

describe('planState', () => {
  it('plans nothing, and no store change, when HAProxy and the store already hold the document (idempotence)', () => {
    const p = plan({ doc: FULL, current: stateOf(FULL), actual: FULL_ACTUAL(), liveMaps: FULL_LIVE, createdIn: OURS })
    expect(p.problems).toEqual([])
    expect(p.steps).toEqual([])
    expect(p.diff).toEqual([])
    expect(p.changes).toEqual([])
  })

  it("has no store change for the document GET answers, whatever the store's representation (PUT of GET is a no-op)", () => {
    const current = stateOf(FULL)
    const doc = documentOf(current)
    const p = plan({ doc, current, actual: FULL_ACTUAL(), liveMaps: FULL_LIVE, createdIn: OURS })
    expect(p.changes).toEqual([])
    expect(p.steps).toEqual([])
  })

  // Was a bug: a server whose weight was changed after it was added (PATCH …/servers/{s}: DesiredServer.weight set,
  // spec.weight the add-time one) appears in GET /state with the current weight; PUT back, targetOf puts that
  // weight in spec.weight with weight null, and `same(kept, s)` in updateServers sees a different object: a
  // server.put change, so a new store revision (and ETag, and watch event) for a document that changed nothing.
  it('has no store change for the GET document of a server whose weight was changed after it was added', () => {
    const added = stateOf(FULL)
    const current: DesiredState = { ...added, servers: added.servers.map(s => s.name === 'a2' ? { ...s, spec: { ...s.spec, weight: 10 }, weight: 50 } : s) }
    const actual = FULL_ACTUAL()
    actual.backends.get('app')?.servers.set('a2', row('app', 'a2', '10.0.0.2', 80, { weight: 50 }))
    const p = plan({ doc: documentOf(current), current, actual, liveMaps: FULL_LIVE, createdIn: OURS })
    expect(p.steps).toEqual([])
    expect(p.changes).toEqual([])
  })

  // Was a bug: when HAProxy lacks a backend the store keeps (it restarted, the reconciler has not yet put it back), a
  // PUT of that same document recreates it (right) but also pushes server.put for every one of its servers,
  // though the store already holds them as they are: `changes` is no longer "the difference to the store".
  it('has no store change when the store already holds the document, even while HAProxy lacks a backend', () => {
    const actual = FULL_ACTUAL()
    actual.backends.delete('app')
    const p = plan({ doc: FULL, current: stateOf(FULL), actual, liveMaps: FULL_LIVE, createdIn: { quiet: HERE } })
    expect(commandsOf(p)).toContain('add backend app from mydefaults')
    expect(p.changes).toEqual([])
  })

  it('has as store changes only what differs from the store', () => {
    const doc = structuredClone(FULL)
    doc.backends.app.servers.a2 = { ...doc.backends.app.servers.a2, address: '10.0.0.3' }
    const current = stateOf(FULL)
    const p = plan({ doc, current, actual: FULL_ACTUAL(), liveMaps: FULL_LIVE, createdIn: OURS })
    expect(p.changes).toEqual([{ op: 'server.put', server: expect.objectContaining({ backend: 'app', name: 'a2', spec: expect.objectContaining({ address: '10.0.0.3' }) }) }])
    expect(commandsOf(p)).toEqual(['set server app/a2 addr 10.0.0.3 port 80'])
  })

  it('orders the steps: creations, then changes, then map loads, then unpublish, drain, del server, del backend, then servers added again', () => {
    const kept = {
      backends: {
        app: { from: 'mydefaults', servers: { a1: { address: '10.0.0.1', port: 80 }, old: { address: '10.0.0.5', port: 80 }, r1: { address: '10.0.0.6', port: 80, check: true, inter: '2s' } } },
        shy: { from: 'mydefaults' },
        gone: { from: 'mydefaults', servers: { g1: { address: '10.0.0.7', port: 80 } } }
      },
      maps: { [MAP]: { entries: [{ key: '/a', value: 'app' }] } }
    }
    const doc = {
      backends: {
        fresh: { from: 'mydefaults', servers: { f1: { address: '10.0.1.1', port: 80 } } },
        app: { from: 'mydefaults', servers: { a1: { address: '10.0.0.1', port: 80, weight: 9 }, r1: { address: '10.0.0.6', port: 80, check: true, inter: '3s' } } },
        shy: { from: 'mydefaults', published: false }
      },
      maps: { [MAP]: { entries: [{ key: '/f', value: 'fresh' }] } }
    }
    const actual = actualOf({
      app: { servers: { a1: ['10.0.0.1', 80], old: ['10.0.0.5', 80], r1: ['10.0.0.6', 80, { check: CHECK_ON }] } },
      shy: {},
      gone: { servers: { g1: ['10.0.0.7', 80] } }
    }, { [MAP]: 3 })
    const p = plan({ doc, current: stateOf(kept), actual, liveMaps: { [MAP]: [['/a', 'app']] }, createdIn: { app: HERE, shy: HERE, gone: HERE } })
    expect(p.problems).toEqual([])
    expect(commandsOf(p)).toEqual([
      // 1. the new backend, its server, published last
      'add backend fresh from mydefaults',
      'add server fresh/f1 10.0.1.1:80',
      'set server fresh/f1 state ready',
      'publish backend fresh',
      // 2. changes to existing servers
      'set server app/a1 weight 9',
      // 3. the map, once the backend its entry points at exists
      'prepare map virt@paths.map',
      'add map @4 virt@paths.map <<',
      'commit map @4 virt@paths.map',
      // 4. what goes away: unpublished, drained, deleted
      'unpublish backend shy',
      'unpublish backend gone',
      'set server app/r1 state maint',
      'wait 5000ms srv-removable app/r1',
      'set server app/old state maint',
      'wait 5000ms srv-removable app/old',
      'set server gone/g1 state maint',
      'wait 5000ms srv-removable gone/g1',
      'del server app/r1',
      'del server app/old',
      'del server gone/g1',
      'wait 5000ms be-removable gone',
      'del backend gone',
      // 5. a server whose add-time options changed, added again
      'add server app/r1 10.0.0.6:80 check inter 3000ms init-state down',
      'enable health app/r1',
      'set server app/r1 state ready'
    ])
    expect(p.diff.map(d => `${d.change} ${d.object}`)).toEqual(expect.arrayContaining([
      'add backend/fresh', 'change backend/app', 'change server/app/a1', 'remove server/app/old', 'change server/app/r1',
      'change backend/shy', 'change map/virt@paths.map', 'remove backend/gone'
    ]))
    expect(p.changes).toEqual(expect.arrayContaining([
      { op: 'backend.delete', name: 'gone' },
      { op: 'server.delete', backend: 'app', name: 'old' },
      { op: 'map.replace', name: MAP, entries: [{ key: '/f', value: 'fresh' }] }
    ]))
    expect(p.locks).toEqual(expect.arrayContaining(['backend:fresh', 'backend:app', 'backend:shy', 'backend:gone', `map:${MAP}`]))
    // Step labels are unique and name their object: the executor reports outcomes by label.
    expect(new Set(p.steps.map(s => s.label)).size).toBe(p.steps.length)
    expect(p.steps.map(s => s.label)).toContain('server/app/r1: add server')
  })

  it('undoes each fix of a server with the command that sets what the row said', () => {
    const doc = { backends: { app: { from: 'mydefaults', servers: { a1: { address: '10.0.0.2', port: 81, check: true, weight: 9, state: 'ready', healthChecks: false, agentChecks: true } } } } }
    const current = stateOf({ backends: { app: { from: 'mydefaults', servers: { a1: { address: '10.0.0.1', port: 80, check: true } } } } })
    const actual = actualOf({ app: { servers: { a1: ['10.0.0.1', 80, { weight: 3, admin: AdminStateBits.FDRAIN, check: CHECK_ON, agent: CheckStateBits.CONFIGURED }] } } })
    const p = plan({ doc, current, actual, createdIn: { app: HERE } })
    expect(p.problems).toEqual([])
    expect(p.steps.map(s => [previewOf(s).map(c => c.text), undoOf(s)])).toEqual([
      [['set server app/a1 addr 10.0.0.2 port 81'], ['set server app/a1 addr 10.0.0.1 port 80']],
      [['set server app/a1 weight 9'], ['set server app/a1 weight 3']],
      [['disable health app/a1'], ['enable health app/a1']],
      [['enable agent app/a1'], ['disable agent app/a1']],
      [['set server app/a1 state ready'], ['set server app/a1 state drain']]
    ])
    expect(p.diff).toEqual([
      { object: 'backend/app', change: 'change', desired: { from: 'mydefaults', published: true, servers: 1 }, actual: { published: true, servers: 1 } },
      { object: 'server/app/a1', change: 'change', desired: expect.objectContaining({ address: '10.0.0.2', port: 81, weight: 9, state: 'ready' }), actual: { address: '10.0.0.1', port: 80, weight: 3, state: 'drain' } }
    ])
  })

  it("undoes each setting of a configuration's server with what the row said", () => {
    const doc = { configBackends: { webservers: { serverSettings: { web1: { weight: 0, state: 'maint' }, web2: { weight: 4 } } } } }
    const actual = actualOf({ webservers: { servers: { web1: ['127.0.0.1', 8081, { weight: 12, admin: AdminStateBits.FDRAIN }], web2: ['127.0.0.1', 8082, { weight: 4, admin: AdminStateBits.FMAINT }] } } })
    const p = plan({ doc, actual })
    expect(p.problems).toEqual([])
    expect(p.steps.map(s => [previewOf(s).map(c => c.text), undoOf(s)])).toEqual([
      [['set server webservers/web1 weight 0'], ['set server webservers/web1 weight 12']],
      [['set server webservers/web1 state maint'], ['set server webservers/web1 state drain']]
    ])
    // web2: its weight is already 4, its state not kept: nothing to send, but the settings are kept.
    expect(p.changes).toEqual([
      { op: 'staticServer.put', settings: { backend: 'webservers', name: 'web1', adminState: 'maint', weight: 0 } },
      { op: 'staticServer.put', settings: { backend: 'webservers', name: 'web2', adminState: null, weight: 4 } }
    ])
  })

  describe('a changed add-time option: the server is drained, deleted and added again', () => {
    const base = { address: '10.0.0.1', port: 80, check: true, inter: '2s' }
    const actual = (): Actual => actualOf({ app: { servers: { a1: ['10.0.0.1', 80, { check: CHECK_ON }] } } })
    const withServer = (a1: Record<string, unknown>): unknown => ({ backends: { app: { from: 'mydefaults', servers: { a1 } } } })

    it.each([
      ['inter', { ...base, inter: '3s' }, 'add server app/a1 10.0.0.1:80 check inter 3000ms init-state down'],
      ['ssl', { ...base, ssl: true, sslVerify: 'none' }, 'add server app/a1 10.0.0.1:80 check inter 2000ms init-state down ssl verify none'],
      ['check port', { ...base, checkPort: 8080 }, 'add server app/a1 10.0.0.1:80 check inter 2000ms port 8080 init-state down']
    ])('%s', (_, a1, add) => {
      const p = plan({ doc: withServer(a1), current: stateOf(withServer(base)), actual: actual(), createdIn: { app: HERE } })
      expect(p.problems).toEqual([])
      const sent = commandsOf(p)
      expect(sent).toEqual(['set server app/a1 state maint', 'wait 5000ms srv-removable app/a1', 'del server app/a1', add, 'enable health app/a1', 'set server app/a1 state ready'])
      expect(p.diff).toContainEqual(expect.objectContaining({ object: 'server/app/a1', change: 'change' }))
      // The drain can be put back; the deletion cannot.
      expect(undoOf(stepSending(p, 'set server app/a1 state maint'))).toEqual(['set server app/a1 state ready'])
      expect(stepSending(p, 'del server app/a1')?.undoCommands).toBeUndefined()
    })

    it('but not an address, a port or a weight: `set server` changes those in place', () => {
      const p = plan({ doc: withServer({ ...base, address: '10.0.0.2', port: 81, weight: 3 }), current: stateOf(withServer(base)), actual: actual(), createdIn: { app: HERE } })
      expect(commandsOf(p)).toEqual(['set server app/a1 addr 10.0.0.2 port 81', 'set server app/a1 weight 3'])
    })
  })

  describe('refuses what cannot be applied, naming where', () => {
    it("a backend that is not hapctl's (HAProxy's configuration defines it) under backends", () => {
      const p = plan({ doc: { backends: { webservers: { from: 'mydefaults' } } } })
      expect(p.problems).toEqual([{ field: 'body.backends.webservers', message: expect.stringContaining('configBackends') }])
    })

    it('a change of defaults section or mode of a backend hapctl created', () => {
      const current = stateOf({ backends: { app: { from: 'mydefaults' }, api: { from: 'nomode', mode: 'http' } } })
      const actual = actualOf({ app: {}, api: {} })
      const p = plan({ doc: { backends: { app: { from: 'otherdefaults' }, api: { from: 'nomode', mode: 'tcp' } } }, current, actual, createdIn: { app: HERE, api: HERE } })
      expect(p.problems.map(x => x.field)).toEqual(['body.backends.app', 'body.backends.api'])
      expect(p.problems[0]?.message).toMatch(/created from 'mydefaults'/)
      expect(p.problems[1]?.message).toMatch(/mode http/)
    })

    it('a map HAProxy does not have', () => {
      const p = plan({ doc: { maps: { 'virt@nomap.map': { entries: [] } } } })
      expect(p.problems).toEqual([{ field: 'body.maps.virt@nomap.map', message: expect.stringContaining("no map 'virt@nomap.map'") }])
    })

    it('a configuration backend HAProxy does not have, or one hapctl created', () => {
      const current = stateOf({ backends: { app: { from: 'mydefaults' } } })
      const p = plan({
        doc: { configBackends: { nosuch: { serverSettings: { s: { weight: 1 } } }, app: { servers: { x: { address: '10.0.0.1', port: 1 } } } } },
        current,
        actual: actualOf({ app: {} }),
        createdIn: { app: HERE }
      })
      expect(p.problems).toEqual([
        { field: 'body.configBackends.app', message: expect.stringContaining('list it under backends') },
        { field: 'body.configBackends.nosuch', message: "HAProxy has no backend 'nosuch'" },
        { field: 'body.configBackends.nosuch.serverSettings.s', message: expect.stringContaining("no server 's'") }
      ])
    })

    // Was a bug (minor): targetOf merges configBackends.<b>.servers into the servers of backends.<b> when a document
    // names one backend in both sections, so the servers listed as "added to a backend of the configuration"
    // silently become servers of hapctl's backend; the same document without `backends.<b>` is refused.
    it('a backend listed both under backends and under configBackends', () => {
      const p = plan({ doc: { backends: { app: { from: 'mydefaults' } }, configBackends: { app: { servers: { x: { address: '10.0.0.1', port: 1 } } } } } })
      expect(p.problems.map(x => x.field)).toContain('body.configBackends.app')
    })

    it('settings for a server the backend lacks, or for a server hapctl adds', () => {
      const current = stateOf({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81 } } } } })
      const actual = actualOf({ webservers: { servers: { web1: ['127.0.0.1', 8081], dyn: ['10.0.0.9', 81] } } })
      const p = plan({ doc: { configBackends: { webservers: { serverSettings: { nosuch: { weight: 1 }, dyn: { weight: 2 } } } } }, current, actual })
      expect(p.problems).toEqual([
        { field: 'body.configBackends.webservers.serverSettings.nosuch', message: expect.stringContaining("no server 'nosuch'") },
        { field: 'body.configBackends.webservers.serverSettings.dyn', message: expect.stringContaining('a server hapctl adds') }
      ])
    })

    it("a configuration's own server listed as one hapctl adds", () => {
      const p = plan({ doc: { configBackends: { webservers: { servers: { web1: { address: '127.0.0.1', port: 8081 } } } } } })
      expect(p.problems).toEqual([{ field: 'body.configBackends.webservers.servers.web1', message: expect.stringContaining('serverSettings') }])
    })
  })

  it('loads a changed map as version nextVersion+1, one `add map @N … <<` per payload, undone by loading back what it held', () => {
    const entries = Array.from({ length: 3000 }, (_, i) => ({ key: `/path/number/${i}`, value: `backend_${i}` }))
    const p = plan({ doc: { maps: { [MAP]: { entries } } }, actual: actualOf({}, { [MAP]: 41 }), liveMaps: { [MAP]: [['/old', 'x']] } })
    const preview = p.steps.flatMap(previewOf)
    const payloads = cmd.addMapPayloads(MAP, 42, entries)
    expect(payloads.length).toBeGreaterThan(1)
    expect(preview.map(c => c.text)).toEqual(['prepare map virt@paths.map', ...payloads.map(() => 'add map @42 virt@paths.map <<'), 'commit map @42 virt@paths.map'])
    const lines = preview.filter(c => c.payload !== undefined).map(c => c.payload)
    expect(lines.reduce((n, x) => n + (x?.lines ?? 0), 0)).toBe(3000)
    expect(lines[0]?.firstLine).toBe('/path/number/0 backend_0')
    expect(lines.map(x => x?.bytes)).toEqual(payloads.map(x => Buffer.byteLength(x.payload)))
    expect(p.steps).toHaveLength(1)
    expect(p.steps[0]?.undo).toBeTypeOf('function')
    expect(p.diff).toEqual([{ object: `map/${MAP}`, change: 'change', desired: { entries: 3000 }, actual: { entries: 1, added: 3000, changed: 0, removed: 1 } }])
  })

  it('leaves a map whose live content is the document alone, and counts changed entries by key', () => {
    expect(plan({ doc: { maps: { [MAP]: { entries: [{ key: '/a', value: 'x' }] } } }, liveMaps: { [MAP]: [['/a', 'x']] } }).steps).toEqual([])
    const p = plan({ doc: { maps: { [MAP]: { entries: [{ key: '/a', value: 'y' }, { key: '/b', value: 'z' }] } } }, liveMaps: { [MAP]: [['/a', 'x'], ['/c', 'w']] } })
    expect(p.diff[0]?.actual).toEqual({ entries: 2, added: 1, changed: 1, removed: 1 })
  })

  it('forgets what only the store keeps (HAProxy lost it or never had it) with store changes alone', () => {
    const current = stateOf({
      backends: { ghost: { from: 'mydefaults', servers: { g1: { address: '10.0.0.7', port: 80 } } } },
      configBackends: { webservers: { servers: { lost: { address: '10.0.0.8', port: 80 } }, serverSettings: { web2: { weight: 3 } } } },
      maps: { [MAP]: { entries: [{ key: '/a', value: 'ghost' }] } }
    })
    const p = plan({ doc: {}, current, actual: actualOf(), liveMaps: {}, createdIn: { ghost: '1@1' } })
    expect(p.problems).toEqual([])
    expect(p.steps).toEqual([])
    expect(p.changes).toEqual(expect.arrayContaining([
      { op: 'backend.delete', name: 'ghost' },
      { op: 'server.delete', backend: 'webservers', name: 'lost' },
      { op: 'staticServer.delete', backend: 'webservers', name: 'web2' },
      { op: 'map.forget', name: MAP }
    ]))
    expect(p.changes).toHaveLength(4)
  })

  it("deletes a backend hapctl created in this process even when the store forgot it, but never one of HAProxy's configuration", () => {
    const p = plan({ doc: {}, actual: actualOf({ orphan: { published: false }, configured: {} }), createdIn: { orphan: HERE, configured: '1@1' } })
    expect(commandsOf(p)).toEqual(['wait 5000ms be-removable orphan', 'del backend orphan'])
  })

  it('waits for a removed server as long as asked, and turns its agent off first when it runs', () => {
    const current = stateOf({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, state: 'drain' } } } } })
    const actual = actualOf({ webservers: { servers: { web1: ['127.0.0.1', 8081], dyn: ['10.0.0.9', 81, { admin: AdminStateBits.FDRAIN, agent: CHECK_ON }] } } })
    const p = planState({ target: target({}), current, actual, liveMaps: new Map(), createdIn: new Map(), drainMs: 1234 }, deps())
    expect(commandsOf(p)).toEqual(['disable agent webservers/dyn', 'set server webservers/dyn state maint', 'wait 1234ms srv-removable webservers/dyn', 'del server webservers/dyn'])
    expect(undoOf(stepSending(p, 'set server webservers/dyn state maint'))).toEqual(['set server webservers/dyn state drain'])
    expect(undoOf(stepSending(p, 'disable agent webservers/dyn'))).toEqual(['enable agent webservers/dyn'])
  })
})
