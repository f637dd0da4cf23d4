import { describe, expect, it } from 'vitest'
import { Executor } from '../../../src/engine/executor.ts'
import { OperationError } from '../../../src/engine/outcomes.ts'
import { MemoryStore } from '../../../src/engine/store/memory.ts'
import type { DesiredChange } from '../../../src/engine/store/types.ts'
import { MapService } from '../../../src/resources/maps/service.ts'
import { RuntimeTimeoutError, RuntimeUnavailableError } from '../../../src/runtime/errors.ts'
import { MAP, fakeMaps } from '../../helpers/fake-maps.ts'
import type { Hook } from '../../helpers/fake-maps.ts'

/*
 * MapService on the executor with an in-memory store: what each write sends to HAProxy, and what it
 * commits to the desired state (checked in the store afterwards).
 */

function setup (initial: Array<[string, string]> = [], hooks: Record<string, Hook> = {}, store = new MemoryStore()) {
  const f = fakeMaps(initial, hooks)
  const executor = new Executor({ runtime: f.runtime, store, lockTimeoutMs: 1000 })
  const maps = new MapService({ runtime: f.runtime, executor })
  /** The store's content of the map as `key value`, undefined when unmanaged. */
  const kept = async () => (await store.getMap(MAP))?.entries.map(e => `${e.key} ${e.value}`)
  /** The changes of every revision committed so far. */
  const commits = async () => (await store.changesSince(0, 100)).map(r => r.changes)
  return { f, store, executor, maps, kept, commits }
}

/** Makes the map managed with this content, as a first replace through hapctl would. */
async function manage (store: MemoryStore, entries: Array<[string, string]>): Promise<void> {
  await store.commit([{ op: 'map.replace', name: MAP, entries: entries.map(([key, value]) => ({ key, value })) }], { actor: 'test', action: 'replace', target: { kind: 'map', id: MAP } })
}

async function failure (p: Promise<unknown>): Promise<OperationError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(OperationError)
  return err as OperationError
}

/** A store that refuses every commit (a full disk, a lost database connection). */
class RefusingStore extends MemoryStore {
  override async commit (_changes: readonly DesiredChange[]): Promise<number> {
    throw new Error('disk I/O error')
  }
}

describe('MapService: single-entry writes', () => {
  it('adopts a map on its first write: its whole current content, then the change, in one commit', async () => {
    const { f, maps, kept, commits } = setup([['/a', 'x'], ['/b', 'y']])
    expect(await kept()).toBeUndefined()
    expect(await maps.create(MAP, { key: '/c', value: 'two words' })).toEqual({ key: '/c', value: 'two words' })
    expect(f.live()).toEqual(['/a x', '/b y', '/c two words'])
    expect(await kept()).toEqual(['/a x', '/b y', '/c two words'])
    expect(await commits()).toEqual([[
      { op: 'map.replace', name: MAP, entryCount: 2 },
      { op: 'map.set', name: MAP, key: '/c', value: 'two words' }
    ]])
    // Adopting reads the map under the lock; no `get map` is needed then.
    expect(f.runtime.sent).toEqual([`show map ${MAP}`, `add map ${MAP} /c two\\ words`])
  })

  it('on a managed map, commits only the change (map.set / map.delete) and reads no whole map', async () => {
    const { f, store, maps, kept, commits } = setup([['/a', 'x']])
    await manage(store, [['/a', 'x']])
    await maps.create(MAP, { key: '/b', value: 'y' })
    expect(await maps.put(MAP, { key: '/a', value: 'z' })).toBe('updated')
    expect(await maps.put(MAP, { key: '/n', value: 'new' })).toBe('created')
    await maps.delete(MAP, '/b')
    expect(f.live()).toEqual(['/a z', '/n new'])
    expect(await kept()).toEqual(['/a z', '/n new'])
    expect((await commits()).slice(1)).toEqual([
      [{ op: 'map.set', name: MAP, key: '/b', value: 'y' }],
      [{ op: 'map.set', name: MAP, key: '/a', value: 'z' }],
      [{ op: 'map.set', name: MAP, key: '/n', value: 'new' }],
      [{ op: 'map.delete', name: MAP, key: '/b' }]
    ])
    expect(f.runtime.sent).toEqual([
      `get map ${MAP} /b`, `add map ${MAP} /b y`,
      `set map ${MAP} /a z`,
      `set map ${MAP} /n new`, `add map ${MAP} /n new`,
      `del map ${MAP} /b`, `del map ${MAP} /b`
    ])
  })

  it('keeps one value per key when adopting a map with duplicates (the one lookups use)', async () => {
    const { f, maps, kept } = setup([['/d', '1'], ['/e', 'x'], ['/d', '2']])
    expect(await maps.put(MAP, { key: '/e', value: 'y' })).toBe('updated')
    expect(await kept()).toEqual(['/d 1', '/e y'])
    expect(f.live()).toEqual(['/d 1', '/e y', '/d 2'])
  })

  it('refuses to adopt a map holding entries it could not write back, and changes nothing', async () => {
    const { f, maps, kept, commits } = setup([['^/api\\.json', 'webservers'], ['/a', 'x']])
    const err = await failure(maps.put(MAP, { key: '/a', value: 'y' }))
    expect(err.reason).toBe('MAP_UNWRITABLE')
    expect(f.live()).toEqual(['^/api\\.json webservers', '/a x'])
    expect(f.runtime.sent).toEqual([`show map ${MAP}`])
    expect([await kept(), await commits()]).toEqual([undefined, []])
  })

  it('deletes every duplicate of a key', async () => {
    const { f, maps, kept } = setup([['/d', '1'], ['/e', 'x'], ['/d', '2']])
    await maps.delete(MAP, '/d')
    expect(f.live()).toEqual(['/e x'])
    expect(f.runtime.sent.filter(t => t.startsWith('del map'))).toHaveLength(3)
    expect(await kept()).toEqual(['/e x'])
  })

  it('deletes a key the store keeps but HAProxy lacks (not yet reconciled) from the store', async () => {
    const { f, store, maps, kept } = setup([['/a', 'x']])
    await manage(store, [['/a', 'x'], ['/gone', 'y']])
    await maps.delete(MAP, '/gone')
    expect(await kept()).toEqual(['/a x'])
    expect(f.live()).toEqual(['/a x'])
  })

  it('commits nothing when a write is refused', async () => {
    const { store, maps, commits } = setup([['/a', 'x']])
    const refusals: Array<[Promise<unknown>, string]> = [
      [maps.create(MAP, { key: '/a', value: 'dup' }), 'MAP_ENTRY_EXISTS'],
      [maps.put(MAP, { key: '/a', value: 'y' }, '"stale"'), 'PRECONDITION_FAILED'],
      [maps.delete(MAP, '/none'), 'MAP_ENTRY_NOT_FOUND'],
      [maps.put('virt@nosuch.map', { key: '/a', value: 'y' }), 'MAP_NOT_FOUND'],
      [maps.create('#99', { key: '/a', value: 'y' }), 'MAP_NOT_FOUND']
    ]
    for (const [p, reason] of refusals) expect((await failure(p)).reason).toBe(reason)
    await manage(store, [['/a', 'x']])
    for (const [p, reason] of [[maps.delete(MAP, '/none'), 'MAP_ENTRY_NOT_FOUND'], [maps.create(MAP, { key: '/a', value: 'd' }), 'MAP_ENTRY_EXISTS']] as const) {
      const err = await failure(p)
      expect(err.reason).toBe(reason)
    }
    expect(await commits()).toHaveLength(1) // the manage() above
  })

  it('records a write whose answer was lost as desired: outcome unknown', async () => {
    const { store, maps, kept } = setup([['/a', 'x']], { [`set map ${MAP} /a y`]: new RuntimeTimeoutError(5000, 'set map') })
    await manage(store, [['/a', 'x']])
    const err = await failure(maps.put(MAP, { key: '/a', value: 'y' }))
    expect(err.reason).toBe('RUNTIME_TIMEOUT')
    expect(err.outcome).toBe('unknown')
    expect(err.state).toMatchObject({ outcome: 'unknown', revision: 2 })
    expect(await kept()).toEqual(['/a y'])
  })

  it('puts an added entry back out when the store refuses the change', async () => {
    const { f, maps } = setup([['/a', 'x']], {}, new RefusingStore())
    const err = await failure(maps.create(MAP, { key: '/b', value: 'y' }))
    expect([err.reason, err.outcome]).toEqual(['STORE_UNAVAILABLE', 'undone'])
    expect(f.live()).toEqual(['/a x'])
    const put = await failure(maps.put(MAP, { key: '/a', value: 'z' }))
    expect([put.reason, put.outcome]).toEqual(['STORE_UNAVAILABLE', 'undone'])
    expect(f.live()).toEqual(['/a x'])
    const del = await failure(maps.delete(MAP, '/a'))
    expect([del.reason, del.outcome]).toEqual(['STORE_UNAVAILABLE', 'undone'])
    expect(f.live()).toEqual(['/a x'])
  })

  it('locks, targets and keeps #<id> under the map\'s name', async () => {
    const { f, executor, maps, kept } = setup([['/a', 'x']])
    let write: Promise<unknown> | undefined
    await executor.locks.run(`map:${MAP}`, async () => {
      write = maps.create('#5', { key: '/b', value: 'y' })
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(f.runtime.sent).toEqual(['show map']) // resolved the id, then waits for the name's lock
    })
    await write
    expect(await kept()).toEqual(['/a x', '/b y'])
    // …and is then addressed by name: a reload could renumber the maps under an id.
    expect(f.runtime.sent.slice(1)).toEqual([`show map ${MAP}`, `add map ${MAP} /b y`])
  })
})

describe('MapService: locks', () => {
  const pause = (): Promise<void> => new Promise(resolve => setTimeout(resolve, 30))

  it('writes to different entries of a managed map do not wait for each other; writes to one entry do', async () => {
    const { f, store, executor, maps, kept } = setup([['/a', 'x']])
    await manage(store, [['/a', 'x']])
    let sameKey: Promise<unknown> | undefined
    await executor.locks.run(`map entry:${MAP} /a`, async () => {
      await maps.put(MAP, { key: '/b', value: 'y' })
      sameKey = maps.put(MAP, { key: '/a', value: 'z' })
      await pause()
      expect(f.runtime.sent).not.toContain(`set map ${MAP} /a z`)
    })
    await sameKey
    expect(await kept()).toEqual(['/a z', '/b y'])
  })

  it('a write to an entry waits while the whole map is locked (a replace, the reconciler)', async () => {
    const { f, store, executor, maps } = setup([['/a', 'x']])
    await manage(store, [['/a', 'x']])
    let write: Promise<unknown> | undefined
    await executor.locks.run(`map:${MAP}`, async () => {
      write = maps.put(MAP, { key: '/b', value: 'y' })
      await pause()
      expect(f.runtime.sent).toEqual([])
    })
    await write
    expect(f.runtime.sent).toEqual([`set map ${MAP} /b y`, `add map ${MAP} /b y`])
  })

  it('the first write to a map hapctl does not keep yet, and a write with If-Match, take the map\'s lock alone', async () => {
    const { f, executor, maps, kept } = setup([['/a', 'x']])
    let adopting: Promise<unknown> | undefined
    // Another entry's writer holds the map's lock shared: an adoption (whole content) must wait for it.
    await executor.locks.run(`map:${MAP}`, async () => {
      adopting = maps.put(MAP, { key: '/b', value: 'y' })
      await pause()
      expect(f.runtime.sent).toEqual([])
    }, { shared: true })
    await adopting
    expect(await kept()).toEqual(['/a x', '/b y'])
    const { etag } = await maps.read(MAP)
    const sent = f.runtime.sent.length
    let conditional: Promise<unknown> | undefined
    await executor.locks.run(`map:${MAP}`, async () => {
      conditional = maps.put(MAP, { key: '/c', value: 'z' }, etag)
      await pause()
      expect(f.runtime.sent.length).toBe(sent)
    }, { shared: true })
    await conditional
    expect(await kept()).toEqual(['/a x', '/b y', '/c z'])
  })
})

describe('MapService: whole-content writes', () => {
  it('replace commits map.replace with the new content', async () => {
    const { f, maps, kept, commits } = setup([['/old', 'x']])
    const result = await maps.replace(MAP, [{ key: '/a', value: '1' }, { key: '/b', value: '2' }])
    expect(result.entries).toBe(2)
    expect(f.live()).toEqual(['/a 1', '/b 2'])
    expect(await kept()).toEqual(['/a 1', '/b 2'])
    expect(await commits()).toEqual([[{ op: 'map.replace', name: MAP, entryCount: 2 }]])
  })

  it('patch commits the resulting content, without the duplicates lookups never see', async () => {
    const { f, maps, kept } = setup([['/a', '1'], ['/b', '2'], ['/a', 'shadowed'], ['/c', '3']])
    const result = await maps.patch(MAP, [{ key: '/a', delete: true }, { key: '/c', value: 'x' }, { key: '/d', value: 'y' }])
    expect(result.entries).toBe(3)
    expect(f.live()).toEqual(['/b 2', '/c x', '/d y'])
    expect(await kept()).toEqual(['/b 2', '/c x', '/d y'])
  })

  it('commits nothing when the load fails or If-Match does not match', async () => {
    const lossy = setup([['/old', 'x']], { payload: '' })
    expect((await failure(lossy.maps.replace(MAP, [{ key: '/a', value: 'b' }]))).reason).toBe('MAP_LOAD_INCOMPLETE')
    expect(await lossy.commits()).toEqual([])
    const raced = setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.' })
    const conflict = await failure(raced.maps.patch(MAP, [{ key: '/a', value: 'b' }]))
    expect([conflict.reason, conflict.outcome]).toEqual(['MAP_VERSION_CONFLICT', 'refused'])
    expect(await raced.commits()).toEqual([])
    const stale = setup([['/old', 'x']])
    expect((await failure(stale.maps.replace(MAP, [], '"old"'))).reason).toBe('PRECONDITION_FAILED')
    expect(stale.f.runtime.sent).toEqual([`show map ${MAP}`])
    expect(await stale.commits()).toEqual([])
  })

  it('a lost commit answer with an unreadable curr_ver: outcome unknown, the new content recorded as desired', async () => {
    const { f, maps, kept } = setup([['/old', 'x']], {
      [`commit map @1 ${MAP}`]: new RuntimeTimeoutError(5000, 'commit map'),
      'show map': new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')
    })
    const err = await failure(maps.replace(MAP, [{ key: '/a', value: 'b' }]))
    expect(err.reason).toBe('RUNTIME_TIMEOUT')
    expect(err.outcome).toBe('unknown')
    expect(err.state).toMatchObject({ map: MAP, version: 1, committed: 'unknown', outcome: 'unknown', revision: 1 })
    expect(err.message).toMatch(/recorded as desired state/)
    expect(await kept()).toEqual(['/a b'])
    expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
  })

  it('a lost commit answer that curr_ver shows went through is a success, and is committed', async () => {
    const { maps, kept } = setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: real => { real(); return new RuntimeTimeoutError(5000, 'commit map') } })
    await maps.replace(MAP, [{ key: '/a', value: 'b' }])
    expect(await kept()).toEqual(['/a b'])
  })

  it('a lost commit answer that curr_ver shows did not go through: refused, nothing committed', async () => {
    const { f, maps, commits } = setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: new RuntimeTimeoutError(5000, 'commit map') })
    const err = await failure(maps.replace(MAP, [{ key: '/a', value: 'b' }]))
    expect([err.reason, err.outcome]).toEqual(['RUNTIME_TIMEOUT', 'refused'])
    expect(err.state).toMatchObject({ committed: false, pendingVersionCleared: true })
    expect(f.live()).toEqual(['/old x'])
    expect(await commits()).toEqual([])
  })

  it('loads the previous content back when the store refuses a replace', async () => {
    const { f, maps } = setup([['/old', 'x'], ['/o2', 'y']], {}, new RefusingStore())
    const err = await failure(maps.replace(MAP, [{ key: '/a', value: 'b' }]))
    expect([err.reason, err.outcome]).toEqual(['STORE_UNAVAILABLE', 'undone'])
    expect(f.live()).toEqual(['/old x', '/o2 y'])
  })

  it('refuses a patch that would mangle entries it cannot write back', async () => {
    const { f, maps, commits } = setup([['#tag', 'x'], ['/a', '1']])
    expect((await failure(maps.patch(MAP, [{ key: '/a', value: '2' }]))).reason).toBe('MAP_UNWRITABLE')
    expect(f.live()).toEqual(['#tag x', '/a 1'])
    expect(await commits()).toEqual([])
  })
})

describe('MapService: reads', () => {
  it('lists maps with counted entries and whether hapctl keeps them', async () => {
    const { f, store, maps } = setup([['/a', 'x'], ['/b', 'y']])
    expect(await maps.list()).toEqual([expect.objectContaining({ name: MAP, id: 5, kind: 'virtual', entries: 2, managed: false })])
    expect(f.runtime.sent).toEqual(['show map', `show map ${MAP}`])
    await manage(store, [['/a', 'x']])
    expect((await maps.list())[0]?.managed).toBe(true)
  })

  it('reads HAProxy, not the store', async () => {
    const { store, maps } = setup([['/live', 'x']])
    await manage(store, [['/desired', 'y']])
    expect((await maps.read(MAP)).entries).toEqual([{ key: '/live', value: 'x' }])
    expect((await maps.get(MAP, '/live')).entry).toEqual({ key: '/live', value: 'x' })
    expect((await failure(maps.get(MAP, '/desired'))).reason).toBe('MAP_ENTRY_NOT_FOUND')
  })

  it('pages with a cursor that survives an insertion and says when it cannot resume', async () => {
    const { maps } = setup(Array.from({ length: 5 }, (_, i) => [`/p${i}`, 'v'] as [string, string]))
    const first = await maps.page(MAP, { limit: 2 })
    expect(first.items.map(e => e.key)).toEqual(['/p0', '/p1'])
    await maps.delete(MAP, '/p0')
    const second = await maps.page(MAP, { limit: 2, cursor: first.next })
    expect(second.items.map(e => e.key)).toEqual(['/p2', '/p3'])
    await maps.delete(MAP, '/p3')
    expect((await failure(maps.page(MAP, { limit: 2, cursor: second.next }))).reason).toBe('CURSOR_STALE')
    expect((await failure(maps.page(MAP, { limit: 2, cursor: 'garbage' }))).reason).toBe('INVALID_CURSOR')
  })
})
