/**
 * What every DesiredStateStore must do, run against each implementation (memory.test.ts,
 * sqlite.test.ts), so that tests written against the fast in-memory store hold for SQLite too.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { StoreChangeError } from '../../../src/engine/store/changes.ts'
import type { AuditRecord, CommitMeta, DesiredBackend, DesiredChange, DesiredServer, DesiredStateStore } from '../../../src/engine/store/types.ts'

export const meta: CommitMeta = { actor: 'api', action: 'create', target: { kind: 'backend', id: 'b1' }, requestId: 'req-1' }

export const backend = (name: string, over: Partial<DesiredBackend> = {}): DesiredBackend =>
  ({ name, from: 'mydefaults', mode: null, published: false, ...over })

export const server = (backendName: string, name: string, over: Partial<DesiredServer> = {}): DesiredServer => ({
  backend: backendName,
  name,
  spec: { address: '127.0.0.1', port: 8080, check: true, inter: 1000, weight: undefined },
  adminState: 'ready',
  weight: null,
  healthChecks: null,
  agentChecks: null,
  ...over
})

/** A time `n` seconds into a fixed day, as the stores keep times. */
export const at = (n: number): string => new Date(Date.UTC(2026, 0, 1, 12, 0, n)).toISOString()

/** An audit entry of a request; `requestId` names it in the tests. */
export const audit = (requestId: string, over: Partial<AuditRecord> = {}): AuditRecord => ({
  at: at(0),
  actor: null,
  client: '127.0.0.1',
  requestId,
  method: 'PUT',
  route: '/backends/:name',
  path: '/backends/web',
  target: { kind: 'backend', id: 'web' },
  commands: [{ text: 'publish backend web', result: 'ok' }],
  commandsOmitted: 0,
  outcome: 'applied',
  status: 200,
  code: null,
  revision: 3,
  durationMs: 4,
  ...over
})

const entries = (...pairs: Array<[string, string]>) => pairs.map(([key, value]) => ({ key, value }))
const keys = async (store: DesiredStateStore, map: string) => (await store.getMap(map))?.entries.map(e => e.key)

/** Registers the contract tests; `open` gives a new, empty store each time it is called. */
export function storeContract (open: () => Promise<DesiredStateStore>): void {
  const opened: DesiredStateStore[] = []
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close()
  })
  const fresh = async (): Promise<DesiredStateStore> => {
    const s = await open()
    opened.push(s)
    return s
  }

  describe('a new store', () => {
    it('is empty at revision 0', async () => {
      const store = await fresh()
      expect(await store.revision()).toBe(0)
      expect(await store.load()).toEqual({ revision: 0, backends: [], servers: [], staticServers: [], maps: [] })
      expect(await store.changesSince(0, 10)).toEqual([])
      expect(await store.createdIn()).toEqual(new Map())
      expect(await store.getBackend('b1')).toBeUndefined()
      expect(await store.listBackends()).toEqual([])
      expect(await store.getServers('b1')).toEqual([])
      expect(await store.getServer('b1', 's1')).toBeUndefined()
      expect(await store.getStaticServer('b1', 's1')).toBeUndefined()
      expect(await store.getMap('virt@m')).toBeUndefined()
      expect(typeof store.description).toBe('string')
    })
  })

  describe('revisions', () => {
    it('strictly increase, one per commit, and revision() tells the latest', async () => {
      const store = await fresh()
      const seen: number[] = []
      for (let i = 0; i < 5; i++) seen.push(await store.commit([{ op: 'backend.put', backend: backend(`b${i}`) }], meta))
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1] as number)
      expect(seen[0]).toBeGreaterThan(0)
      expect(await store.revision()).toBe(seen.at(-1))
      expect((await store.load()).revision).toBe(seen.at(-1))
    })

    it('a commit with no change still makes a revision', async () => {
      const store = await fresh()
      const r = await store.commit([], meta)
      expect(r).toBeGreaterThan(0)
      expect(await store.changesSince(0, 10)).toMatchObject([{ revision: r, changes: [] }])
    })
  })

  describe('atomicity', () => {
    it('a commit that fails changes nothing, not even its changes before the failing one', async () => {
      const store = await fresh()
      const r1 = await store.commit([
        { op: 'backend.put', backend: backend('keep') },
        { op: 'map.replace', name: 'virt@m', entries: entries(['/a', 'x']) }
      ], meta)
      const before = await store.load()

      const failing: DesiredChange[] = [
        { op: 'backend.put', backend: backend('new') },
        { op: 'backend.delete', name: 'keep' },
        { op: 'server.put', server: server('new', 's1') },
        { op: 'staticServer.put', settings: { backend: 'web', name: 'web1', adminState: 'drain', weight: 5 } },
        { op: 'map.set', name: 'virt@m', key: '/b', value: 'y' },
        { op: 'map.replace', name: 'virt@other', entries: entries(['k', 'v']) },
        { op: 'map.set', name: 'virt@unmanaged', key: 'k', value: 'v' }
      ]
      await expect(store.commit(failing, meta)).rejects.toThrow(StoreChangeError)

      expect(await store.load()).toEqual(before)
      expect(await store.revision()).toBe(r1)
      expect(await store.changesSince(r1, 10)).toEqual([])
      // And the store still works: the next commit gets the next revision.
      const r2 = await store.commit([{ op: 'backend.put', backend: backend('new') }], meta)
      expect(r2).toBeGreaterThan(r1)
      expect(await store.getBackend('new')).toEqual(backend('new'))
    })

    it('a key twice in one map.replace is refused and leaves the map as it was', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1']) }], meta)
      const failing = store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['b', '1'], ['c', '2'], ['b', '3']) }], meta)
      await expect(failing).rejects.toThrow(StoreChangeError)
      await expect(failing).rejects.toThrow(/'b' appears more than once/)
      expect(await store.getMap('virt@m')).toEqual({ name: 'virt@m', entries: entries(['a', '1']) })
    })

    it('an unknown op is refused', async () => {
      const store = await fresh()
      const bogus = { op: 'backend.rename', name: 'x' } as unknown as DesiredChange
      await expect(store.commit([bogus], meta)).rejects.toThrow(StoreChangeError)
      expect(await store.revision()).toBe(0)
    })

    it('a commit without proper meta is refused', async () => {
      const store = await fresh()
      await expect(store.commit([], { actor: 'api' } as unknown as CommitMeta)).rejects.toThrow(StoreChangeError)
      expect(await store.revision()).toBe(0)
    })
  })

  describe('backends and servers', () => {
    it('puts, updates and gets a backend', async () => {
      const store = await fresh()
      await store.commit([{ op: 'backend.put', backend: backend('b1') }], meta)
      expect(await store.getBackend('b1')).toEqual(backend('b1'))
      await store.commit([{ op: 'backend.put', backend: backend('b1', { mode: 'http', published: true, from: 'other' }) }], meta)
      expect(await store.getBackend('b1')).toEqual({ name: 'b1', from: 'other', mode: 'http', published: true })
    })

    it('lists every backend by name', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'backend.put', backend: backend('zz') },
        { op: 'backend.put', backend: backend('aa', { mode: 'tcp' }) },
        { op: 'server.put', server: server('mm', 's1') }
      ], meta)
      expect(await store.listBackends()).toEqual([backend('aa', { mode: 'tcp' }), backend('zz')])
      await store.commit([{ op: 'backend.delete', name: 'aa' }], meta)
      expect(await store.listBackends()).toEqual([backend('zz')])
    })

    it('keeps every field of a server, without the undefined ones', async () => {
      const store = await fresh()
      const full = server('b1', 's1', {
        spec: {
          address: '::1',
          port: 443,
          check: true,
          checkPort: 8443,
          checkAddr: '127.0.0.2',
          inter: 1500,
          rise: 2,
          fall: 3,
          weight: 10,
          maxconn: 100,
          backup: true,
          ssl: true,
          sslVerify: 'none',
          sni: 'example.com'
        },
        adminState: 'drain',
        weight: 0,
        healthChecks: false,
        agentChecks: true
      })
      await store.commit([{ op: 'server.put', server: full }, { op: 'server.put', server: server('b1', 's2') }], meta)
      expect(await store.getServer('b1', 's1')).toStrictEqual(full)
      expect(await store.getServer('b1', 's2')).toStrictEqual(server('b1', 's2', { spec: { address: '127.0.0.1', port: 8080, check: true, inter: 1000 } }))
      await store.commit([{ op: 'server.put', server: server('b1', 's1', { adminState: 'maint', weight: 7, healthChecks: true }) }], meta)
      expect(await store.getServer('b1', 's1')).toMatchObject({ adminState: 'maint', weight: 7, healthChecks: true, agentChecks: null })
    })

    it('lists the servers of one backend by name, for a backend it does not manage too', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'server.put', server: server('static', 'z') },
        { op: 'server.put', server: server('static', 'a') },
        { op: 'server.put', server: server('other', 'm') }
      ], meta)
      expect((await store.getServers('static')).map(s => s.name)).toEqual(['a', 'z'])
      expect(await store.getBackend('static')).toBeUndefined()
    })

    it('server.delete deletes one server', async () => {
      const store = await fresh()
      await store.commit([{ op: 'server.put', server: server('b1', 's1') }, { op: 'server.put', server: server('b1', 's2') }], meta)
      await store.commit([{ op: 'server.delete', backend: 'b1', name: 's1' }, { op: 'server.delete', backend: 'b1', name: 'never' }], meta)
      expect((await store.getServers('b1')).map(s => s.name)).toEqual(['s2'])
    })

    it('backend.delete deletes the backend and its servers, nothing else', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'backend.put', backend: backend('b1') },
        { op: 'backend.put', backend: backend('b2') },
        { op: 'server.put', server: server('b1', 's1') },
        { op: 'server.put', server: server('b1', 's2') },
        { op: 'server.put', server: server('b2', 's1') },
        { op: 'staticServer.put', settings: { backend: 'b1', name: 'x', adminState: 'maint', weight: null } }
      ], meta)
      await store.commit([{ op: 'backend.delete', name: 'b1' }], meta)
      expect(await store.getBackend('b1')).toBeUndefined()
      expect(await store.getServers('b1')).toEqual([])
      expect(await store.getServer('b1', 's1')).toBeUndefined()
      expect((await store.getServers('b2')).map(s => s.name)).toEqual(['s1'])
      expect(await store.getStaticServer('b1', 'x')).toBeDefined()
      const state = await store.load()
      expect(state.backends.map(b => b.name)).toEqual(['b2'])
      expect(state.servers.map(s => `${s.backend}/${s.name}`)).toEqual(['b2/s1'])
    })

    it('backend.delete of servers on a static backend (not in backends) deletes them too', async () => {
      const store = await fresh()
      await store.commit([{ op: 'server.put', server: server('web', 's1') }], meta)
      await store.commit([{ op: 'backend.delete', name: 'web' }], meta)
      expect(await store.getServers('web')).toEqual([])
    })

    it('puts, gets and deletes static server settings', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'staticServer.put', settings: { backend: 'web', name: 'web1', adminState: 'drain', weight: null } },
        { op: 'staticServer.put', settings: { backend: 'web', name: 'web2', adminState: null, weight: 50 } }
      ], meta)
      expect(await store.getStaticServer('web', 'web1')).toEqual({ backend: 'web', name: 'web1', adminState: 'drain', weight: null })
      expect(await store.getStaticServer('web', 'web2')).toEqual({ backend: 'web', name: 'web2', adminState: null, weight: 50 })
      await store.commit([{ op: 'staticServer.delete', backend: 'web', name: 'web1' }], meta)
      expect(await store.getStaticServer('web', 'web1')).toBeUndefined()
      expect((await store.load()).staticServers).toEqual([{ backend: 'web', name: 'web2', adminState: null, weight: 50 }])
    })
  })

  describe('maps', () => {
    it('managedMaps and getMapEntry answer without reading whole maps, and agree with getMap', async () => {
      const store = await fresh()
      expect(await store.managedMaps()).toEqual([])
      expect(await store.getMapEntry('virt@m', 'a')).toEqual({ managed: false })
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1'], ['b', '2']) }, { op: 'map.replace', name: '/etc/x.map', entries: [] }], meta)
      expect(await store.managedMaps()).toEqual(['/etc/x.map', 'virt@m'])
      expect(await store.getMapEntry('virt@m', 'b')).toEqual({ managed: true, value: '2' })
      expect(await store.getMapEntry('virt@m', 'zz')).toEqual({ managed: true, value: undefined })
      expect(await store.getMapEntry('/etc/x.map', 'a')).toEqual({ managed: true, value: undefined })
      await store.commit([{ op: 'map.forget', name: 'virt@m' }], meta)
      expect(await store.managedMaps()).toEqual(['/etc/x.map'])
      expect(await store.getMapEntry('virt@m', 'b')).toEqual({ managed: false })
    })

    it('managedMaps still names the maps after load() and getMap() (reads must not change each other)', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1']) }], meta)
      await store.load()
      await store.getMap('virt@m')
      await store.createdIn()
      expect(await store.managedMaps()).toEqual(['virt@m'])
      expect(await store.getMapEntry('virt@m', 'a')).toEqual({ managed: true, value: '1' })
      expect((await store.load()).maps).toEqual([{ name: 'virt@m', entries: entries(['a', '1']) }])
    })

    it('map.replace adopts a map; map.set keeps an existing key in place and appends a new one', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1'], ['b', '2'], ['c', '3']) }], meta)
      await store.commit([{ op: 'map.set', name: 'virt@m', key: 'b', value: '20' }, { op: 'map.set', name: 'virt@m', key: 'd', value: '4' }], meta)
      expect(await store.getMap('virt@m')).toEqual({ name: 'virt@m', entries: entries(['a', '1'], ['b', '20'], ['c', '3'], ['d', '4']) })

      // A deleted key that comes back goes last: it is a new entry.
      await store.commit([{ op: 'map.delete', name: 'virt@m', key: 'a' }], meta)
      await store.commit([{ op: 'map.set', name: 'virt@m', key: 'a', value: '1' }], meta)
      expect(await keys(store, 'virt@m')).toEqual(['b', 'c', 'd', 'a'])

      // Deleting the last entry, then appending: still last, nothing reuses a place out of order.
      await store.commit([{ op: 'map.delete', name: 'virt@m', key: 'a' }, { op: 'map.set', name: 'virt@m', key: 'e', value: '5' }], meta)
      expect(await keys(store, 'virt@m')).toEqual(['b', 'c', 'd', 'e'])

      // map.delete of a key that is not there is no error.
      await store.commit([{ op: 'map.delete', name: 'virt@m', key: 'nope' }], meta)
      expect(await keys(store, 'virt@m')).toEqual(['b', 'c', 'd', 'e'])
    })

    it('map.replace sets the whole content in the order given', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1'], ['b', '2']) }], meta)
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['z', '9'], ['b', '8'], ['m', '7']) }], meta)
      expect(await store.getMap('virt@m')).toEqual({ name: 'virt@m', entries: entries(['z', '9'], ['b', '8'], ['m', '7']) })
    })

    it('keeps keys and values exactly: spaces inside values, unicode, long strings', async () => {
      const store = await fresh()
      const odd = entries(['/ä/ü', 'value with  two spaces'], ['ключ', '値'], ['x'.repeat(4000), 'y'.repeat(4000)], ['emoji-😀', ''])
      await store.commit([{ op: 'map.replace', name: '/etc/haproxy/paths.map', entries: odd }], meta)
      expect(await store.getMap('/etc/haproxy/paths.map')).toEqual({ name: '/etc/haproxy/paths.map', entries: odd })
    })

    it('an empty map.replace makes an empty managed map', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@empty', entries: [] }], meta)
      expect(await store.getMap('virt@empty')).toEqual({ name: 'virt@empty', entries: [] })
      expect((await store.load()).maps).toEqual([{ name: 'virt@empty', entries: [] }])
      await store.commit([{ op: 'map.set', name: 'virt@empty', key: 'k', value: 'v' }], meta)
      expect(await keys(store, 'virt@empty')).toEqual(['k'])
    })

    it('map.set and map.delete need a managed map; adopting it earlier in the same commit is enough', async () => {
      const store = await fresh()
      await expect(store.commit([{ op: 'map.set', name: 'virt@m', key: 'k', value: 'v' }], meta)).rejects.toThrow(/not manage/)
      await expect(store.commit([{ op: 'map.delete', name: 'virt@m', key: 'k' }], meta)).rejects.toThrow(StoreChangeError)
      expect(await store.revision()).toBe(0)
      await store.commit([
        { op: 'map.replace', name: 'virt@m', entries: [] },
        { op: 'map.set', name: 'virt@m', key: 'k', value: 'v' }
      ], meta)
      expect(await store.getMap('virt@m')).toEqual({ name: 'virt@m', entries: entries(['k', 'v']) })
    })

    it('map.forget makes a map unmanaged; map.set then fails again', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1']) }], meta)
      await store.commit([{ op: 'map.forget', name: 'virt@m' }, { op: 'map.forget', name: 'virt@never' }], meta)
      expect(await store.getMap('virt@m')).toBeUndefined()
      expect((await store.load()).maps).toEqual([])
      await expect(store.commit([{ op: 'map.set', name: 'virt@m', key: 'a', value: '1' }], meta)).rejects.toThrow(StoreChangeError)
      // Adopted again, it starts from what the replace gives, not from what it had before.
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['b', '2']) }], meta)
      expect(await keys(store, 'virt@m')).toEqual(['b'])
    })

    it('forget then set in one commit fails whole', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1']) }], meta)
      await expect(store.commit([{ op: 'map.forget', name: 'virt@m' }, { op: 'map.set', name: 'virt@m', key: 'b', value: '2' }], meta))
        .rejects.toThrow(StoreChangeError)
      expect(await keys(store, 'virt@m')).toEqual(['a'])
    })

    it('maps do not share entries', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'map.replace', name: 'virt@one', entries: entries(['k', '1']) },
        { op: 'map.replace', name: 'virt@two', entries: entries(['k', '2'], ['j', '3']) },
        { op: 'map.delete', name: 'virt@one', key: 'k' }
      ], meta)
      expect(await store.getMap('virt@one')).toEqual({ name: 'virt@one', entries: [] })
      expect(await store.getMap('virt@two')).toEqual({ name: 'virt@two', entries: entries(['k', '2'], ['j', '3']) })
    })
  })

  describe('load', () => {
    it('returns everything at one revision, sorted by name', async () => {
      const store = await fresh()
      await store.commit([
        { op: 'backend.put', backend: backend('zz') },
        { op: 'backend.put', backend: backend('aa', { mode: 'tcp' }) },
        { op: 'server.put', server: server('zz', 's2') },
        { op: 'server.put', server: server('aa', 's9') },
        { op: 'server.put', server: server('zz', 's1') },
        { op: 'staticServer.put', settings: { backend: 'web', name: 'w2', adminState: 'maint', weight: null } },
        { op: 'staticServer.put', settings: { backend: 'api', name: 'w1', adminState: null, weight: 3 } },
        { op: 'map.replace', name: 'virt@b', entries: entries(['2', 'x'], ['1', 'y']) },
        { op: 'map.replace', name: 'virt@a', entries: entries(['k', 'v']) }
      ], meta)
      const r = await store.commit([{ op: 'map.set', name: 'virt@b', key: '0', value: 'z' }], meta)
      const state = await store.load()
      expect(state.revision).toBe(r)
      expect(state.backends.map(b => b.name)).toEqual(['aa', 'zz'])
      expect(state.servers.map(s => `${s.backend}/${s.name}`)).toEqual(['aa/s9', 'zz/s1', 'zz/s2'])
      expect(state.staticServers.map(s => `${s.backend}/${s.name}`)).toEqual(['api/w1', 'web/w2'])
      expect(state.maps).toEqual([
        { name: 'virt@a', entries: entries(['k', 'v']) },
        { name: 'virt@b', entries: entries(['2', 'x'], ['1', 'y'], ['0', 'z']) }
      ])
    })

    it('a load is a snapshot: later commits do not change it', async () => {
      const store = await fresh()
      await store.commit([{ op: 'backend.put', backend: backend('b1') }, { op: 'map.replace', name: 'virt@m', entries: entries(['a', '1']) }], meta)
      const snapshot = await store.load()
      const copy = structuredClone(snapshot)
      await store.commit([
        { op: 'backend.delete', name: 'b1' },
        { op: 'map.set', name: 'virt@m', key: 'a', value: '2' },
        { op: 'map.set', name: 'virt@m', key: 'b', value: '3' }
      ], meta)
      expect(snapshot).toEqual(copy)
    })

    it('a load racing commits sees either all of a commit or none of it', async () => {
      const store = await fresh()
      await store.commit([{ op: 'map.replace', name: 'virt@m', entries: [] }], meta)
      const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => i % 2 === 0
        ? await store.commit([
          { op: 'backend.put', backend: backend(`b${i}`) },
          { op: 'map.set', name: 'virt@m', key: `k${i}`, value: 'v' }
        ], meta)
        : await store.load()))
      for (const state of results) {
        if (typeof state === 'number') continue
        // Revision 1 made the map; each later commit added one backend and one entry.
        expect(state.backends).toHaveLength(state.revision - 1)
        expect(state.maps[0]?.entries).toHaveLength(state.revision - 1)
        expect(state.backends.map(b => b.name.slice(1)).sort()).toEqual(state.maps[0]?.entries.map(e => e.key.slice(1)).sort())
      }
    })
  })

  describe('changesSince', () => {
    it('returns the records after a revision, oldest first, at most limit', async () => {
      const store = await fresh()
      const started = Date.now()
      const r1 = await store.commit([{ op: 'backend.put', backend: backend('b1') }], meta)
      const r2 = await store.commit([{ op: 'map.replace', name: 'virt@m', entries: entries(['a', '1'], ['b', '2']) }],
        { actor: 'import', action: 'replace', target: { kind: 'map', id: 'virt@m' } })
      const r3 = await store.commit([{ op: 'map.set', name: 'virt@m', key: 'c', value: '3' }, { op: 'backend.delete', name: 'b1' }],
        { actor: 'reconciler', action: 'update', target: { kind: 'map', id: 'virt@m' }, requestId: undefined })

      const all = await store.changesSince(0, 100)
      expect(all.map(r => r.revision)).toEqual([r1, r2, r3])
      expect(all[0]).toEqual({
        revision: r1,
        at: expect.any(String),
        actor: 'api',
        action: 'create',
        target: { kind: 'backend', id: 'b1' },
        requestId: 'req-1',
        changes: [{ op: 'backend.put', backend: backend('b1') }]
      })
      const at = Date.parse(all[0]?.at as string)
      expect(new Date(at).toISOString()).toBe(all[0]?.at)
      expect(at).toBeGreaterThanOrEqual(started - 1000)
      expect(at).toBeLessThanOrEqual(Date.now() + 1000)
      // map.replace is kept as a count: a revision of a 100,000-entry replace stays small.
      expect(all[1]).toMatchObject({ actor: 'import', action: 'replace', target: { kind: 'map', id: 'virt@m' }, changes: [{ op: 'map.replace', name: 'virt@m', entryCount: 2 }] })
      expect(all[1]?.requestId).toBeUndefined()
      expect(all[2]?.changes).toEqual([{ op: 'map.set', name: 'virt@m', key: 'c', value: '3' }, { op: 'backend.delete', name: 'b1' }])

      expect((await store.changesSince(r1, 100)).map(r => r.revision)).toEqual([r2, r3])
      expect((await store.changesSince(0, 2)).map(r => r.revision)).toEqual([r1, r2])
      expect((await store.changesSince(r1, 1)).map(r => r.revision)).toEqual([r2])
      expect(await store.changesSince(r3, 100)).toEqual([])
      expect(await store.changesSince(r3 + 10, 100)).toEqual([])
    })

    it('refuses a negative revision or a limit below 1', async () => {
      const store = await fresh()
      await expect(store.changesSince(-1, 10)).rejects.toThrow(RangeError)
      await expect(store.changesSince(0, 0)).rejects.toThrow(RangeError)
      await expect(store.changesSince(0.5, 10)).rejects.toThrow(RangeError)
    })

    it('keeps the failed commits out', async () => {
      const store = await fresh()
      const r1 = await store.commit([{ op: 'backend.put', backend: backend('b1') }], meta)
      await expect(store.commit([{ op: 'map.set', name: 'virt@x', key: 'k', value: 'v' }], meta)).rejects.toThrow()
      const r2 = await store.commit([{ op: 'backend.put', backend: backend('b2') }], meta)
      expect((await store.changesSince(0, 10)).map(r => r.revision)).toEqual([r1, r2])
    })
  })

  describe('createdIn', () => {
    it('remembers, replaces and forgets the process a backend was created in, without a revision', async () => {
      const store = await fresh()
      await store.setCreatedIn('b1', '100@1700000000')
      await store.setCreatedIn('b2', '100@1700000000')
      await store.setCreatedIn('b1', '200@1700000500')
      expect(await store.createdIn()).toEqual(new Map([['b1', '200@1700000500'], ['b2', '100@1700000000']]))
      await store.setCreatedIn('b2', undefined)
      await store.setCreatedIn('never', undefined)
      expect(await store.createdIn()).toEqual(new Map([['b1', '200@1700000500']]))
      expect(await store.revision()).toBe(0)
    })

    it('is independent of the backend rows', async () => {
      const store = await fresh()
      await store.commit([{ op: 'backend.put', backend: backend('b1') }], meta)
      await store.setCreatedIn('b1', '1@2')
      await store.commit([{ op: 'backend.delete', name: 'b1' }], meta)
      expect(await store.createdIn()).toEqual(new Map([['b1', '1@2']]))
    })

    it('hands out a copy', async () => {
      const store = await fresh()
      await store.setCreatedIn('b1', '1@2')
      const seen = await store.createdIn()
      seen.set('b2', '3@4')
      expect(await store.createdIn()).toEqual(new Map([['b1', '1@2']]))
    })
  })

  describe('audit trail', () => {
    /** Every id of every page, following `next` until there is none. */
    const allPages = async (store: DesiredStateStore, query: Omit<Parameters<DesiredStateStore['listAudit']>[0], 'cursor'>): Promise<string[]> => {
      const seen: string[] = []
      let cursor: string | undefined
      for (let i = 0; i < 100; i++) {
        const page = await store.listAudit({ ...query, cursor })
        expect(page.items.length).toBeLessThanOrEqual(query.limit)
        seen.push(...page.items.map(e => e.requestId as string))
        if (page.next === undefined) return seen
        cursor = page.next
      }
      throw new Error('no end to the pages')
    }

    it('starts empty, keeps every field of an entry, and hands out ids in append order', async () => {
      const store = await fresh()
      expect(await store.listAudit({ limit: 10 })).toEqual({ items: [] })
      const full = audit('r1', {
        actor: 'deployer',
        target: { kind: 'map', id: 'virt@paths.map' },
        commands: [
          { text: 'prepare map virt@paths.map', result: 'ok' },
          { text: 'add map @3 virt@paths.map <<', result: 'ok', payload: { lines: 100000, bytes: 2400000, firstLine: '/a b' } },
          { text: 'commit map @3 virt@paths.map', result: 'refused' }
        ],
        commandsOmitted: 12,
        outcome: 'undone',
        status: 409,
        code: 'HAPX_REFUSED',
        revision: null
      })
      const reconciler = audit('r2', { actor: 'reconciler', client: null, requestId: null, method: null, route: null, path: null, status: null, durationMs: null, revision: 7 })
      await store.appendAudit([full, reconciler])
      const { items } = await store.listAudit({ limit: 10 })
      expect(items).toEqual([{ ...reconciler, id: expect.any(Number) }, { ...full, id: expect.any(Number) }])
      expect((items[0]?.id as number)).toBeGreaterThan(items[1]?.id as number)
      await store.appendAudit([])
      expect((await store.listAudit({ limit: 10 })).items).toHaveLength(2)
    })

    it('lists newest first (by time, then id), one page at a time, every entry once', async () => {
      const store = await fresh()
      // Appended out of time order (a batch of slow and fast requests), and several in one millisecond.
      await store.appendAudit([audit('c', { at: at(3) }), audit('a', { at: at(1) }), audit('b1', { at: at(2) }), audit('b2', { at: at(2) })])
      await store.appendAudit([audit('d', { at: at(4) }), audit('b3', { at: at(2) })])
      const order = ['d', 'c', 'b3', 'b2', 'b1', 'a']
      expect((await store.listAudit({ limit: 1000 })).items.map(e => e.requestId)).toEqual(order)
      for (const limit of [1, 2, 4, 6]) expect(await allPages(store, { limit })).toEqual(order)
      const first = await store.listAudit({ limit: 6 })
      expect(first.next).toBeUndefined()
    })

    it('filters by target (exact kind and id) and by time (since inclusive, until exclusive), across pages', async () => {
      const store = await fresh()
      const web = { kind: 'backend', id: 'web' }
      await store.appendAudit([
        audit('w1', { at: at(1), target: web }),
        audit('s1', { at: at(2), target: { kind: 'server', id: 'web/s1' } }),
        audit('w2', { at: at(3), target: web }),
        audit('x', { at: at(4), target: { kind: 'backend', id: 'web2' } }),
        audit('n', { at: at(5), target: null }),
        audit('w3', { at: at(6), target: web })
      ])
      expect(await allPages(store, { limit: 1, target: web })).toEqual(['w3', 'w2', 'w1'])
      expect(await allPages(store, { limit: 2, since: new Date(at(2)), until: new Date(at(5)) })).toEqual(['x', 'w2', 's1'])
      expect(await allPages(store, { limit: 1, target: web, since: new Date(at(2)) })).toEqual(['w3', 'w2'])
      expect(await allPages(store, { limit: 5, target: { kind: 'server', id: 'web/s1' }, until: new Date(at(2)) })).toEqual([])
    })

    it('a page resumes where the previous one ended, even after newer entries were appended', async () => {
      const store = await fresh()
      await store.appendAudit([audit('a', { at: at(1) }), audit('b', { at: at(2) }), audit('c', { at: at(3) })])
      const first = await store.listAudit({ limit: 2 })
      expect(first.items.map(e => e.requestId)).toEqual(['c', 'b'])
      await store.appendAudit([audit('d', { at: at(4) })])
      expect((await store.listAudit({ limit: 2, cursor: first.next })).items.map(e => e.requestId)).toEqual(['a'])
    })

    it('refuses a cursor it did not hand out, a limit outside 1-1000 and a time that is not one', async () => {
      const store = await fresh()
      for (const cursor of ['', 'nope', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["2026-01-01T00:00:00.000Z",0]').toString('base64url')]) {
        await expect(store.listAudit({ limit: 1, cursor })).rejects.toThrow(RangeError)
      }
      for (const limit of [0, 1001, 1.5]) await expect(store.listAudit({ limit })).rejects.toThrow(RangeError)
      await expect(store.listAudit({ limit: 1, since: new Date('nope') })).rejects.toThrow(RangeError)
      await expect(store.appendAudit([audit('a', { at: 'yesterday' })])).rejects.toThrow(RangeError)
      expect((await store.listAudit({ limit: 10 })).items).toEqual([])
    })

    it('prunes by age, then the oldest beyond maxEntries, and ids are never given again', async () => {
      const store = await fresh()
      await store.appendAudit(['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => audit(id, { at: at(i + 1) })))
      expect(await store.pruneAudit({ olderThan: new Date(at(3)), maxEntries: 1000 })).toBe(2)
      expect(await allPages(store, { limit: 10 })).toEqual(['f', 'e', 'd', 'c'])
      expect(await store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 3 })).toBe(1)
      expect(await allPages(store, { limit: 10 })).toEqual(['f', 'e', 'd'])
      expect(await store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 3 })).toBe(0)
      const before = Math.max(...(await store.listAudit({ limit: 10 })).items.map(e => e.id))
      expect(await store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 0 })).toBe(3)
      await store.appendAudit([audit('g', { at: at(9) })])
      const { items } = await store.listAudit({ limit: 10 })
      expect(items.map(e => e.requestId)).toEqual(['g'])
      expect(items[0]?.id).toBeGreaterThan(before)
    })

    it('prunes unauthenticated refusals (401) beyond their own limit first, whatever their age', async () => {
      const store = await fresh()
      const status = (i: number): number => i % 3 === 0 ? 200 : 401
      await store.appendAudit(Array.from({ length: 12 }, (_, i) => audit(`r${i}`, { at: at(i + 1), status: status(i) })))
      // r0 r3 r6 r9 are writes; the eight others are 401s, of which the last three stay.
      expect(await store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 1000, maxUnauthenticated: 3 })).toBe(5)
      expect(await allPages(store, { limit: 20 })).toEqual(['r11', 'r10', 'r9', 'r8', 'r6', 'r3', 'r0'])
      expect(await store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 1000 })).toBe(0)
      await expect(store.pruneAudit({ olderThan: new Date(at(0)), maxEntries: 1000, maxUnauthenticated: -1 })).rejects.toThrow(/maxUnauthenticated/)
    })

    it('is not desired state: no revision', async () => {
      const store = await fresh()
      await store.appendAudit([audit('a')])
      expect(await store.revision()).toBe(0)
      expect(await store.changesSince(0, 10)).toEqual([])
    })
  })

  describe('close', () => {
    it('refuses work once closed', async () => {
      const store = await open()
      await store.close()
      await expect(store.load()).rejects.toThrow()
      await expect(store.commit([], meta)).rejects.toThrow()
      await expect(store.appendAudit([audit('a')])).rejects.toThrow()
      await store.close() // twice is fine
    })
  })
}
