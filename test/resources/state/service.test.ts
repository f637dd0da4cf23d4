/**
 * StateService (src/resources/state/service.ts) on a small model of HAProxy (test/helpers/state-runtime.ts):
 * merge patches, If-Match, what a dry run sends (probes only), what a refused document sends (nothing
 * that stays), and how each step of a failed apply is reported.
 */
import { describe, expect, it } from 'vitest'
import { Executor } from '../../../src/engine/executor.ts'
import { ProcessIdentity } from '../../../src/engine/identity.ts'
import { OperationError } from '../../../src/engine/outcomes.ts'
import { MemoryStore } from '../../../src/engine/store/memory.ts'
import { STATUS_OF } from '../../../src/errors.ts'
import { StateService, etagOf, mergePatch } from '../../../src/resources/state/service.ts'
import { RuntimeTimeoutError } from '../../../src/runtime/errors.ts'
import { PROBE_PREFIX, StateDocumentSchema } from '../../../src/schemas/state.ts'
import type { StateDocument } from '../../../src/schemas/state.ts'
import { stateHaproxy } from '../../helpers/state-runtime.ts'
import type { StateHaproxy } from '../../helpers/state-runtime.ts'

const MAP = 'virt@paths.map'

function setup (h: StateHaproxy = stateHaproxy()) {
  const store = new MemoryStore()
  const executor = new Executor({ runtime: h.runtime, store, lockTimeoutMs: 1000 })
  const state = new StateService({ runtime: h.runtime, executor, identity: new ProcessIdentity(), created: new Map() })
  const apply = async (doc: unknown, opts: { dryRun?: boolean, ifMatch?: string } = {}) =>
    state.apply(StateDocumentSchema.parse(doc), { dryRun: opts.dryRun ?? false, ifMatch: opts.ifMatch, drainMs: 1000 })
  return { h, store, executor, state, apply }
}

/** What HAProxy holds, as one comparable value. */
function snapshot (h: StateHaproxy): unknown {
  return {
    backends: [...h.backends].map(([n, b]) => [n, b.published, [...b.servers].map(([s, v]) => [s, { ...v }])]),
    maps: [...h.maps].map(([n, m]) => [n, m.entries.map(e => `${e.key} ${e.value}`), m.current])
  }
}

async function rejection (p: Promise<unknown>): Promise<OperationError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(OperationError)
  return err as OperationError
}

const isProbe = (text: string): boolean => text.includes(` ${PROBE_PREFIX}`)

/** A document creating a backend, changing a configuration server, adding a server to it and loading the map. */
const DOC = {
  backends: { app: { from: 'mydefaults', servers: { a1: { address: '10.0.0.1', port: 80, check: true, inter: '2s' } } } },
  configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81 } }, serverSettings: { web1: { weight: 7 } } } },
  maps: { [MAP]: { entries: [{ key: '/app', value: 'app' }] } }
}

describe('mergePatch (RFC 7396)', () => {
  // The examples of RFC 7396 Appendix A, in order.
  it.each([
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }]
  ])('%j + %j = %j', (target, patch, result) => {
    const before = structuredClone(target)
    expect(mergePatch(target, patch)).toEqual(result)
    expect(target).toEqual(before)
  })

  it('replaces a map\'s entries whole and removes one backend of a document', () => {
    const doc = { backends: { a: { from: 'd', servers: { s: { weight: 1 } } }, b: { from: 'd' } }, maps: { m: { entries: [{ key: '/x', value: 'a' }, { key: '/y', value: 'b' }] } } }
    expect(mergePatch(doc, { backends: { b: null, a: { servers: { s: { weight: 50 } } } }, maps: { m: { entries: [{ key: '/z', value: 'a' }] } } })).toEqual({
      backends: { a: { from: 'd', servers: { s: { weight: 50 } } } },
      maps: { m: { entries: [{ key: '/z', value: 'a' }] } }
    })
  })

  it("does not change Object.prototype through a '__proto__' member", () => {
    const merged = mergePatch({}, JSON.parse('{"__proto__": {"polluted": true}, "a": 1}')) as Record<string, unknown>
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(merged.a).toBe(1)
  })
})

describe('StateService', () => {
  it('applies a document, records it as one revision, and then has nothing left to do', async () => {
    const { h, apply, state } = setup()
    const result = await apply(DOC)
    expect(result.revision).toBe(1)
    expect(result.steps?.every(s => s.outcome === 'applied')).toBe(true)
    expect(h.backends.get('app')?.published).toBe(true)
    expect(h.backends.get('webservers')?.servers.get('web1')?.weight).toBe(7)
    expect(h.maps.get(MAP)?.entries).toEqual([{ key: '/app', value: 'app' }])
    const { document, revision } = await state.get()
    expect(revision).toBe(1)
    h.runtime.sent.length = 0
    const again = await apply(document, { dryRun: true })
    expect(again).toEqual({ dryRun: true, revision: 1, diff: [], commands: [] })
    expect(h.changing()).toEqual([])
  })

  describe('a dry run', () => {
    it('sends nothing that stays (probes only), changes neither HAProxy nor the store, and lists the commands its apply sends', async () => {
      const { h, apply, store } = setup()
      const before = snapshot(h)
      const dry = await apply(DOC, { dryRun: true })
      expect(h.changing().length).toBeGreaterThan(0)
      expect(h.changing().filter(t => !isProbe(t))).toEqual([])
      expect(snapshot(h)).toEqual(before)
      expect(await store.revision()).toBe(0)
      expect(dry.dryRun).toBe(true)
      expect(dry.steps).toBeUndefined()
      expect(dry.diff.map(d => `${d.change} ${d.object}`)).toEqual(['add backend/app', 'add server/webservers/dyn', 'change server-settings/webservers/web1', `change map/${MAP}`])

      h.runtime.sent.length = 0
      const applied = await apply(DOC)
      expect(dry.commands.map(c => c.text)).toEqual(h.changing())
      expect(applied.commands).toEqual(dry.commands)
    })

    it('of a document that cannot be applied is refused as the apply would be', async () => {
      const { h, apply } = setup()
      const err = await rejection(apply({ maps: { 'virt@nomap.map': { entries: [] } } }, { dryRun: true }))
      expect(err.reason).toBe('STATE_INVALID')
      expect(h.changing()).toEqual([])
    })

    // Two at once would both name their probe backend hapctl-probe-1 from the same `show stat`: the second
    // one's `add backend` refused, a valid document reported invalid.
    it('run at the same time as another, gives the same answer', async () => {
      const { apply } = setup()
      const [a, b] = await Promise.all([apply(DOC, { dryRun: true }), apply(DOC, { dryRun: true })])
      expect(b.diff).toEqual(a.diff)
      expect(b.commands.filter(c => !isProbe(c.text))).toEqual(a.commands.filter(c => !isProbe(c.text)))
    })
  })

  it('takes the next probe name when another client took one meanwhile', async () => {
    const h = stateHaproxy()
    h.refuse.push({ match: 'add backend hapctl-probe-1 from mydefaults', answer: "Error during backend creation : name is already used by other proxy 'backend hapctl-probe-1'." })
    const { apply } = setup(h)
    const r = await apply(DOC, { dryRun: true })
    // Both were sent: the list says so.
    expect(r.commands.slice(0, 2).map(c => c.text)).toEqual(['add backend hapctl-probe-1 from mydefaults', 'add backend hapctl-probe-2 from mydefaults'])
    expect(h.changing()).toContain('del backend hapctl-probe-2')
    expect(h.backends.has('hapctl-probe-2')).toBe(false)
  })

  describe('a document that cannot be applied', () => {
    it('is refused whole, naming each problem; nothing is sent and nothing committed', async () => {
      const { h, apply, store } = setup()
      const err = await rejection(apply({ ...DOC, backends: { ...DOC.backends, webservers: { from: 'mydefaults' } }, maps: { 'virt@nomap.map': { entries: [] } } }))
      expect(err.reason).toBe('STATE_INVALID')
      expect(STATUS_OF[err.reason]).toBe(400)
      expect(err.errors?.map(e => e.field), JSON.stringify(err.errors)).toEqual(['body.configBackends.webservers', 'body.backends.webservers', 'body.maps.virt@nomap.map'])
      expect(h.changing()).toEqual([])
      expect(await store.revision()).toBe(0)
    })

    it('because HAProxy refuses a defaults section: only the probe was sent, and it was deleted again', async () => {
      const { h, apply, store } = setup()
      const before = snapshot(h)
      const err = await rejection(apply({ ...DOC, backends: { app: { from: 'nosuchdefaults' } } }))
      expect(err.reason).toBe('STATE_INVALID')
      expect(err.errors).toEqual([{ field: 'body.backends.app.from', message: expect.stringContaining("Cannot find default proxy 'nosuchdefaults'") }])
      expect(h.changing().length).toBeGreaterThan(0)
      expect(h.changing().filter(t => !isProbe(t))).toEqual([])
      expect(snapshot(h)).toEqual(before)
      expect(await store.revision()).toBe(0)
    })

    // Was a bug: StateMapSchema takes duplicate keys, while the store keeps one value per key (PUT /maps/{map}/entries
    // refuses them with DUPLICATE_KEYS, 400). The apply loads the map into HAProxy, then the store commit fails
    // (StoreChangeError): everything is undone and the client gets 503 STORE_UNAVAILABLE for a bad document.
    it('because a map lists a key twice: refused with 400 before anything is sent', async () => {
      const { h, state, store } = setup()
      const doc = { maps: { [MAP]: { entries: [{ key: '/a', value: 'x' }, { key: '/a', value: 'y' }] } } }
      // The document's schema refuses it (400 VALIDATION_FAILED at the route)…
      const parsed = StateDocumentSchema.safeParse(doc)
      expect(parsed.success).toBe(false)
      expect(parsed.error?.issues[0]?.path).toEqual(['maps', MAP, 'entries', 1, 'key'])
      // …and so does the planner, for a document that did not come through it.
      const unchecked = { backends: {}, configBackends: {}, ...doc } as unknown as StateDocument
      const err = await rejection(state.apply(unchecked, { dryRun: false, drainMs: 1000 }))
      expect(err.reason).toBe('STATE_INVALID')
      expect(STATUS_OF[err.reason]).toBe(400)
      expect(h.changing()).toEqual([])
      expect(await store.revision()).toBe(0)
    })
  })

  describe('If-Match', () => {
    it('refuses a stale revision with PRECONDITION_FAILED before reading HAProxy', async () => {
      const { h, apply } = setup()
      await apply(DOC)
      h.runtime.sent.length = 0
      const err = await rejection(apply({}, { ifMatch: etagOf(0) }))
      expect(err.reason).toBe('PRECONDITION_FAILED')
      expect(STATUS_OF[err.reason]).toBe(412)
      expect(err.message).toContain('"1"')
      expect(h.runtime.sent).toEqual([])
    })

    it('takes the current ETag, `*`, or a list holding the current one', async () => {
      const { apply } = setup()
      expect((await apply({}, { ifMatch: '"0"' })).revision).toBe(0)
      expect((await apply({ maps: { [MAP]: { entries: [] } } }, { ifMatch: '*' })).revision).toBe(1)
      expect((await apply({}, { ifMatch: '"7", "1"' })).revision).toBe(2)
      await expect(apply({}, { ifMatch: '"1", "7"' })).rejects.toMatchObject({ reason: 'PRECONDITION_FAILED' })
      await expect(apply({}, { ifMatch: '2' })).rejects.toMatchObject({ reason: 'PRECONDITION_FAILED' })
    })

    // Was a bug: checkIfMatch strips `W/`, so a weak tag matches. RFC 9110 §13.1.1: If-Match uses the strong comparison
    // function, and a weak entity tag never matches; the map routes already do it that way (ifMatchSatisfied in
    // src/resources/maps/content.ts). A client that got W/"3" from a cache would overwrite a changed state.
    it('does not take a weak tag (RFC 9110 §13.1.1: strong comparison)', async () => {
      const { apply } = setup()
      await expect(apply({}, { ifMatch: 'W/"0"' })).rejects.toMatchObject({ reason: 'PRECONDITION_FAILED' })
    })

    it('applies to a merge patch: a stale revision sends nothing', async () => {
      const { h, apply, state } = setup()
      await apply(DOC)
      h.runtime.sent.length = 0
      await expect(state.patch({ backends: { app: null } }, { dryRun: false, ifMatch: '"0"', drainMs: 1000 })).rejects.toMatchObject({ reason: 'PRECONDITION_FAILED' })
      expect(h.runtime.sent).toEqual([])
    })
  })

  describe('patch', () => {
    it('changes one weight and removes one backend, with the commands of that change only', async () => {
      const { h, apply, state } = setup()
      await apply({ ...DOC, backends: { ...DOC.backends, old: { from: 'mydefaults' } } })
      h.runtime.sent.length = 0
      const r = await state.patch({ backends: { old: null, app: { servers: { a1: { weight: 50 } } } } }, { dryRun: false, ifMatch: '"1"', drainMs: 1000 })
      expect(h.changing()).toEqual(['set server app/a1 weight 50', 'unpublish backend old', 'wait 1000ms be-removable old', 'del backend old'])
      expect(r.revision).toBe(2)
      expect(h.backends.has('old')).toBe(false)
      const { document } = await state.get()
      expect(document.backends).toEqual({ app: expect.objectContaining({ servers: { a1: expect.objectContaining({ weight: 50, inter: '2s' }) } }) })
    })

    it('refuses a patch making an invalid document, naming the fields; nothing is sent', async () => {
      const { h, state } = setup()
      const err = await rejection(state.patch({ backends: { b1: { from: 'mydefaults', servers: { 'a;b': { address: 'x', port: 1 } } } } }, { dryRun: false, drainMs: 1000 }))
      expect(err.reason).toBe('VALIDATION_FAILED')
      expect(err.errors?.map(e => e.field)).toContain('body.backends.b1.servers.a;b')
      expect(h.runtime.sent).toEqual([])
    })
  })

  describe('a failed apply says how each step went', () => {
    it('refused: what was applied is undone, the failed step named, the rest not run; HAProxy and the store as before', async () => {
      const h = stateHaproxy()
      h.refuse.push({ match: 'set server webservers/web1 weight 7', answer: 'No such server.' })
      const { apply, store } = setup(h)
      const before = snapshot(h)
      const err = await rejection(apply(DOC))
      expect(err.outcome).toBe('undone')
      const steps = err.state?.steps as Array<{ label: string, outcome: string, commands: string[] }>
      expect(steps.map(s => [s.label, s.outcome])).toEqual([
        ['backend/app: add backend', 'undone'],
        ['server/app/a1: add server', 'undone'],
        ['server/app/a1: enable health', 'undone'],
        ['server/app/a1: set server state', 'undone'],
        ['backend/app: publish backend', 'undone'],
        ['server/webservers/dyn: add server', 'undone'],
        ['server/webservers/dyn: set server state', 'undone'],
        ['server/webservers/web1: set server weight', 'failed']
      ])
      expect(steps.at(-1)?.commands).toEqual(['set server webservers/web1 weight 7'])
      expect(err.state?.stepsNotRun).toBe(1)
      expect(h.runtime.sent.some(t => t.startsWith('prepare map'))).toBe(false)
      expect(snapshot(h)).toEqual(before)
      expect(await store.revision()).toBe(0)
    })

    it('past a deletion: what came before it is left, and said so', async () => {
      const h = stateHaproxy()
      const { apply } = setup(h)
      await apply({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, check: true, inter: '2s' } } } } })
      h.refuse.push({ match: /^add server webservers\/dyn /, answer: "'server webservers/dyn' : could not resolve address '10.0.0.9'." })
      const err = await rejection(apply({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, check: true, inter: '3s' } } } } }))
      expect(err.outcome).toBe('left')
      const steps = err.state?.steps as Array<{ label: string, outcome: string }>
      expect(steps.map(s => [s.label, s.outcome])).toEqual([
        ['server/webservers/dyn: set server state', 'left'],
        ['server/webservers/dyn: wait srv-removable', 'left'],
        ['server/webservers/dyn: del server', 'left'],
        ['server/webservers/dyn: add server', 'failed']
      ])
      expect(h.backends.get('webservers')?.servers.has('dyn')).toBe(false)
    })

    // Was a bug: stepOutcomes (service.ts) marks as 'failed' the first step that is neither applied, undone, left nor
    // in doubt. After a timeout (outcome 'unknown') the step that got no answer is in doubt, so that first
    // "other" step is the next one, which was never sent: it is reported 'failed' instead of 'not run'.
    it('without an answer: the step in doubt is unknown, and the steps after it not run', async () => {
      const h = stateHaproxy({ backends: {} })
      h.refuse.push({ match: 'set server webservers/web1 weight 7', answer: new RuntimeTimeoutError(1000, 'set server weight') })
      const { apply } = setup(h)
      const err = await rejection(apply({ ...DOC, backends: {}, configBackends: { webservers: { serverSettings: { web1: { weight: 7 }, web2: { weight: 3 } } } } }))
      expect(err.outcome).toBe('unknown')
      const steps = err.state?.steps as Array<{ label: string, outcome: string }>
      expect(steps.find(s => s.label === 'server/webservers/web1: set server weight')?.outcome).toBe('unknown')
      expect(steps.map(s => s.outcome)).not.toContain('failed')
    })
  })

  it('undoes a server fix with the values HAProxy had, not those the store had', async () => {
    const h = stateHaproxy({ backends: {} })
    const { apply } = setup(h)
    await apply({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, weight: 5 } } } } })
    // Someone changed it behind hapctl's back.
    const dyn = h.backends.get('webservers')?.servers.get('dyn')
    expect(dyn?.weight).toBe(5)
    Object.assign(dyn ?? {}, { weight: 17 })
    h.refuse.push({ match: 'set server webservers/web1 weight 2', answer: 'No such server.' })
    await rejection(apply({ configBackends: { webservers: { servers: { dyn: { address: '10.0.0.9', port: 81, weight: 6 } }, serverSettings: { web1: { weight: 2 } } } } }))
    expect(h.runtime.sent.filter(t => t.startsWith('set server webservers/dyn weight'))).toEqual(['set server webservers/dyn weight 6', 'set server webservers/dyn weight 17'])
    expect(h.backends.get('webservers')?.servers.get('dyn')?.weight).toBe(17)
  })
})
