/**
 * The state document and the store's desired state, each turned into the other (src/resources/state/document.ts):
 * what GET /state answers must be what PUT takes back without a change.
 */
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../../src/engine/store/memory.ts'
import type { DesiredChange, DesiredServer, DesiredState } from '../../../src/engine/store/types.ts'
import { documentOf, documentServer, targetOf } from '../../../src/resources/state/document.ts'
import type { TargetState } from '../../../src/resources/state/document.ts'
import { StateDocumentSchema, durationMs, durationText } from '../../../src/schemas/state.ts'

/** A document using every kind of object and most server options. */
const DOC = {
  backends: {
    app: {
      from: 'mydefaults',
      mode: 'http',
      published: false,
      servers: {
        a1: { address: '10.0.0.1', port: 80, check: true, inter: '2s', rise: 2, fall: 3, checkPort: 8080, weight: 5, state: 'drain', healthChecks: false },
        a2: { address: '10.0.0.2', port: 443, ssl: true, sslVerify: 'none', sni: 'app.example', maxconn: 100, backup: true, agentChecks: true }
      }
    },
    api: { from: 'nomode', mode: 'tcp', servers: {} }
  },
  configBackends: {
    webservers: {
      servers: { dyn: { address: '10.0.0.9', port: 81, state: 'maint' } },
      serverSettings: { web1: { weight: 7 }, web2: { state: 'drain', weight: 0 } }
    }
  },
  maps: { 'virt@paths.map': { entries: [{ key: '/b', value: 'api' }, { key: '/a', value: 'app' }] } }
}

/** The store after committing what a document asks for. */
async function stored (doc: unknown): Promise<DesiredState> {
  const target = targetOf(StateDocumentSchema.parse(doc))
  const changes: DesiredChange[] = [
    ...target.backends.map(backend => ({ op: 'backend.put' as const, backend })),
    ...target.servers.map(server => ({ op: 'server.put' as const, server })),
    ...target.staticServers.map(settings => ({ op: 'staticServer.put' as const, settings })),
    ...target.maps.map(m => ({ op: 'map.replace' as const, name: m.name, entries: m.entries }))
  ]
  const store = new MemoryStore()
  await store.commit(changes, { actor: 'test', action: 'seed', target: { kind: 'test', id: 'seed' } })
  return await store.load()
}

/** A target with its lists in name order (the store lists objects by name, not as the document gave them). */
function sorted (t: TargetState): TargetState {
  const by = (x: { backend?: string, name: string }): string => `${x.backend ?? ''}/${x.name}`
  const sort = <T extends { backend?: string, name: string }>(l: readonly T[]): T[] => [...l].sort((a, b) => by(a) < by(b) ? -1 : 1)
  return { backends: sort(t.backends), servers: sort(t.servers), staticServers: sort(t.staticServers), maps: sort(t.maps), listedTwice: t.listedTwice }
}

function server (over: Partial<Omit<DesiredServer, 'spec'>> & { spec?: Partial<DesiredServer['spec']> } = {}): DesiredServer {
  return {
    backend: 'app',
    name: 's1',
    adminState: 'ready',
    weight: null,
    healthChecks: null,
    agentChecks: null,
    ...over,
    spec: { address: '10.0.0.1', port: 80, check: false, ...over.spec }
  }
}

describe('targetOf and documentOf', () => {
  it('give back, after a store commit, the document that was put (GET answers what PUT took)', async () => {
    const parsed = StateDocumentSchema.parse(DOC)
    const state = await stored(DOC)
    const { revision, ...doc } = documentOf(state)
    expect(revision).toBe(1)
    expect(doc).toEqual({ ...parsed, revision: undefined, configBackends: parsed.configBackends })
    // And that document, parsed as a PUT body, is the same target again.
    expect(sorted(targetOf(StateDocumentSchema.parse(documentOf(state))))).toEqual(sorted(targetOf(parsed)))
  })

  it('keep the defaults a PUT fills in (published true, state ready, check false)', async () => {
    const state = await stored({ backends: { z: { from: 'd', servers: { s: { address: '10.0.0.1', port: 1 } } }, a: { from: 'd' } } })
    const doc = documentOf(state) as { backends: Record<string, unknown> }
    expect(doc.backends).toEqual({
      z: { from: 'd', published: true, servers: { s: { address: '10.0.0.1', port: 1, check: false, state: 'ready' } } },
      a: { from: 'd', published: true, servers: {} }
    })
  })

  it('turn durations into milliseconds for the store and back into their shortest text', () => {
    const target = targetOf(StateDocumentSchema.parse({ backends: { b: { from: 'd', servers: { s: { address: '10.0.0.1', port: 1, check: true, inter: '2000' } } } } }))
    expect(target.servers[0]?.spec.inter).toBe(2000)
    expect(documentServer(target.servers[0] as DesiredServer).inter).toBe('2s')
    expect([1, 500, 1000, 1500, 2000, 60_000, 90_000, 120_000, 300_000].map(durationText)).toEqual(['1ms', '500ms', '1s', '1500ms', '2s', '1m', '90s', '2m', '5m'])
    for (const ms of [1, 999, 1001, 59_000, 61_000, 300_000]) expect(durationMs(durationText(ms))).toBe(ms)
  })

  it('show the weight a server should have now: a later change of its weight wins over the one it was added with', () => {
    expect(documentServer(server({ weight: 50, spec: { weight: 10 } })).weight).toBe(50)
    expect(documentServer(server({ weight: null, spec: { weight: 10 } })).weight).toBe(10)
    expect(documentServer(server({ weight: 0, spec: { weight: 10 } })).weight).toBe(0)
    expect(documentServer(server({ weight: 3 })).weight).toBe(3)
  })

  it('leave out what is not set, rather than writing it as undefined or null', () => {
    const doc = documentServer(server())
    expect(doc).toEqual({ address: '10.0.0.1', port: 80, check: false, state: 'ready' })
    expect(Object.keys(doc)).not.toContain('weight')
    expect(Object.keys(doc)).not.toContain('healthChecks')
    const target = targetOf(StateDocumentSchema.parse({ backends: { b: { from: 'd', servers: { s: { address: '10.0.0.1', port: 1 } } } } }))
    expect(Object.keys(target.servers[0]?.spec ?? {})).toEqual(['address', 'port', 'check'])
    expect(JSON.stringify(documentOf({ revision: 0, backends: [{ name: 'b', from: 'd', mode: null, published: true }], servers: [], staticServers: [], maps: [] })))
      .toBe('{"revision":0,"backends":{"b":{"from":"d","published":true,"servers":{}}},"configBackends":{},"maps":{}}')
  })

  it('put servers of backends hapctl did not create, and settings of configuration servers, under configBackends', () => {
    const doc = documentOf({
      revision: 4,
      backends: [],
      servers: [server({ backend: 'webservers', name: 'dyn' })],
      staticServers: [{ backend: 'webservers', name: 'web1', adminState: null, weight: 7 }, { backend: 'other', name: 'o1', adminState: 'maint', weight: null }],
      maps: []
    })
    expect(doc.configBackends).toEqual({
      webservers: { servers: { dyn: { address: '10.0.0.1', port: 80, check: false, state: 'ready' } }, serverSettings: { web1: { weight: 7 } } },
      other: { servers: {}, serverSettings: { o1: { state: 'maint' } } }
    })
    expect(StateDocumentSchema.safeParse(doc).success).toBe(true)
  })
})
