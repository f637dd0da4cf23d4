import { describe, expect, it } from 'vitest'
import { RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'
import { MAP, fakeMaps } from '../helpers/fake-maps.ts'
import type { Hook } from '../helpers/fake-maps.ts'

const base = `/maps/${encodeURIComponent(MAP)}/entries`
const entry = (k: string) => `${base}/${encodeURIComponent(k)}`

/** The fake map (../helpers/fake-maps.ts) behind the whole app, with the store the app keeps the desired state in. */
async function setup (initial: Array<[string, string]> = [], hooks: Record<string, Hook> = {}) {
  const f = fakeMaps(initial, hooks)
  const store = new MemoryStore()
  const app = await buildTestApp(f.runtime, {}, { store })
  const kept = async () => (await store.getMap(MAP))?.entries.map(e => `${e.key} ${e.value}`)
  return { ...f, app, store, kept }
}

describe('/maps routes', () => {
  it('lists maps with counted entries, and whether hapctl keeps them', async () => {
    const f = await setup([['/a', 'x'], ['/b', 'y']])
    const res = await f.app.inject({ method: 'GET', url: '/maps' })
    expect(res.statusCode).toBe(200)
    expect(res.json().items).toEqual([expect.objectContaining({ name: MAP, id: 5, kind: 'virtual', entries: 2, currentVersion: 0, nextVersion: 0, managed: false })])
    expect(f.runtime.sent).toEqual(['show map', `show map ${MAP}`])
    expect((await f.app.inject({ method: 'PUT', url: entry('/a'), payload: { value: 'z' } })).statusCode).toBe(200)
    expect((await f.app.inject({ method: 'GET', url: '/maps' })).json().items[0].managed).toBe(true)
  })

  it('creates an entry, and refuses a duplicate or an unsafe key before sending anything', async () => {
    const f = await setup([['/a', 'x']])
    const ok = await f.app.inject({ method: 'POST', url: base, payload: { key: '/b', value: 'two words' } })
    expect(ok.statusCode).toBe(201)
    expect(ok.headers.location).toBe(entry('/b'))
    expect(f.runtime.sent).toContain(`add map ${MAP} /b two\\ words`)
    expect((await f.app.inject({ method: 'POST', url: base, payload: { key: '/a', value: 'z' } })).json().code).toBe('HAPX_MAP_ENTRY_EXISTS')
    const sent = f.runtime.sent.length
    for (const payload of [{ key: '/x; del backend b', value: 'v' }, { key: '/x', value: 'v\ndisable server a/b' }, { key: '#0x1', value: 'v' }, { key: '/x', value: 'v', extra: 1 }]) {
      const res = await f.app.inject({ method: 'POST', url: base, payload })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('HAPX_VALIDATION_FAILED')
    }
    expect(f.runtime.sent.length).toBe(sent)
    expect(f.live()).toEqual(['/a x', '/b two words'])
    expect(await f.kept()).toEqual(['/a x', '/b two words'])
  })

  it('upserts with set map, then add map on `entry not found.`', async () => {
    const f = await setup([['/a', 'x']])
    const updated = await f.app.inject({ method: 'PUT', url: entry('/a'), payload: { value: 'y' } })
    expect([updated.statusCode, updated.json()]).toEqual([200, { key: '/a', value: 'y' }])
    const created = await f.app.inject({ method: 'PUT', url: entry('/new'), payload: { value: 'z' } })
    expect(created.statusCode).toBe(201)
    expect(created.headers.location).toBe(entry('/new'))
    // The first write adopts the map: its content is read once, under the lock.
    expect(f.runtime.sent).toEqual([`show map ${MAP}`, `set map ${MAP} /a y`, `set map ${MAP} /new z`, `add map ${MAP} /new z`])
    expect(await f.kept()).toEqual(['/a y', '/new z'])
    const unknown = await f.app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent('virt@no.map')}/entries/%2Fa`, payload: { value: 'z' } })
    expect([unknown.statusCode, unknown.json().code]).toEqual([404, 'HAPX_MAP_NOT_FOUND'])
  })

  it('deletes every duplicate, and answers 404 when there is none', async () => {
    const f = await setup([['/d', '1'], ['/e', 'x'], ['/d', '2']])
    expect((await f.app.inject({ method: 'DELETE', url: entry('/d') })).statusCode).toBe(204)
    expect(f.live()).toEqual(['/e x'])
    expect(f.runtime.sent.filter(t => t.startsWith('del map')).length).toBe(3)
    expect(await f.kept()).toEqual(['/e x'])
    const again = await f.app.inject({ method: 'DELETE', url: entry('/d') })
    expect([again.statusCode, again.json().code]).toEqual([404, 'HAPX_MAP_ENTRY_NOT_FOUND'])
  })

  it('gets an entry by exact key, with the ETag of the whole map', async () => {
    const f = await setup([['/a', 'x'], ['/ab', 'y z']])
    const res = await f.app.inject({ method: 'GET', url: entry('/ab') })
    expect([res.statusCode, res.json()]).toEqual([200, { key: '/ab', value: 'y z' }])
    const list = await f.app.inject({ method: 'GET', url: base })
    expect(res.headers.etag).toBe(list.headers.etag)
    expect((await f.app.inject({ method: 'GET', url: entry('/a/b') })).statusCode).toBe(404)
    expect((await f.app.inject({ method: 'GET', url: base, query: { limit: '10001' } })).statusCode).toBe(400)
    expect((await f.app.inject({ method: 'GET', url: base, query: { cursor: 'garbage' } })).json().code).toBe('HAPX_INVALID_CURSOR')
  })

  it('replaces through prepare, payloads, a count and commit', async () => {
    const f = await setup([['/old', 'x']])
    const entries = Array.from({ length: 3000 }, (_, i) => ({ key: `/k${i}`, value: `value ${i}` }))
    const res = await f.app.inject({ method: 'PUT', url: base, payload: entries })
    expect([res.statusCode, res.json()]).toEqual([200, { entries: 3000 }])
    expect(f.live()).toEqual(entries.map(e => `${e.key} ${e.value}`))
    // The current content is read first: what undoing loads back if the store refused the change.
    expect(f.runtime.sent.slice(0, 2)).toEqual([`show map ${MAP}`, `prepare map ${MAP}`])
    expect(f.runtime.sent.slice(2, -2).every(t => t === `add map @1 ${MAP} << [payload]`)).toBe(true)
    expect(f.runtime.sent.slice(-2)).toEqual([`show map @1 ${MAP}`, `commit map @1 ${MAP}`])
    expect(f.payloads.length).toBeGreaterThan(3)
    const etag = (await f.app.inject({ method: 'GET', url: base })).headers.etag
    expect(res.headers.etag).toBe(etag)
    expect(await f.kept()).toEqual(entries.map(e => `${e.key} ${e.value}`))
  })

  it('clears the pending version and changes nothing when the count is wrong or the commit loses a race', async () => {
    const lossy = await setup([['/old', 'x']], { payload: '' }) // answers success, stores nothing
    const res = await lossy.app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect([res.statusCode, res.json().code, res.json().state]).toEqual([502, 'HAPX_MAP_LOAD_INCOMPLETE', expect.objectContaining({ map: MAP, version: 1, committed: false, pendingVersionCleared: true })])
    expect(lossy.runtime.sent.slice(-2)).toEqual([`clear map @1 ${MAP}`, `show map @1 ${MAP}`])
    expect(lossy.live()).toEqual(['/old x'])
    expect(await lossy.kept()).toBeUndefined()

    const raced = await setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.' })
    const res2 = await raced.app.inject({ method: 'PUT', url: base, headers: { 'content-type': 'text/plain' }, payload: '/a b\n' })
    expect([res2.statusCode, res2.json().code]).toEqual([409, 'HAPX_MAP_VERSION_CONFLICT'])
    expect(raced.runtime.sent.slice(-2)).toEqual([`clear map @1 ${MAP}`, `show map @1 ${MAP}`])
    expect(raced.live()).toEqual(['/old x'])
    expect(await raced.kept()).toBeUndefined()
  })

  it('says so when HAProxy keeps a pending version that clear map was asked to empty', async () => {
    // 3.4.7 answers `clear map @N` with success and keeps the entries once the map has been committed.
    const stuck = await setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.', [`clear map @1 ${MAP}`]: '' })
    const res = await stuck.app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(409)
    expect(res.json().state).toMatchObject({ committed: false, pendingVersionCleared: false, note: expect.stringMatching(/next successful replace/) })
    expect(stuck.live()).toEqual(['/old x'])
  })

  it('refuses a JSON string where a JSON array is expected, rather than read it as a map file', async () => {
    const f = await setup([['/old', 'x']])
    const res = await f.app.inject({ method: 'PUT', url: base, headers: { 'content-type': 'application/json' }, payload: JSON.stringify('/a b') })
    expect(res.statusCode).toBe(400)
    expect(f.runtime.sent.filter(t => !t.startsWith('show') && !t.startsWith('get'))).toEqual([])
    expect(f.live()).toEqual(['/old x'])
  })

  it('refuses an invalid map file with the lines at fault', async () => {
    const f = await setup([['/old', 'x']])
    const res = await f.app.inject({ method: 'PUT', url: base, headers: { 'content-type': 'text/plain' }, payload: '/ok v\n/novalue\n/x a;b\n' })
    expect([res.statusCode, res.json().code]).toEqual([400, 'HAPX_VALIDATION_FAILED'])
    expect(res.json().errors.map((e: { field: string }) => e.field)).toEqual(['body.line2', 'body.line3'])
    expect(f.runtime.sent).toEqual([])
  })

  it('refuses a JSON array with wrong elements with the schema\'s field errors, whatever the fast path skips', async () => {
    const f = await setup([['/old', 'x']])
    const good = Array.from({ length: 1000 }, (_, i) => ({ key: `/k${i}`, value: 'v' }))
    const bad: unknown[] = [...good]
    bad[5] = { key: 'a b', value: 'v' }
    bad[7] = { key: '/x', value: 'v', extra: 1 }
    bad[9] = { key: '/y' }
    bad[11] = 'text'
    const res = await f.app.inject({ method: 'PUT', url: base, payload: bad })
    expect([res.statusCode, res.json().code]).toEqual([400, 'HAPX_VALIDATION_FAILED'])
    expect(res.json().errors).toEqual([
      { field: 'body.5.key', message: 'must not contain spaces (a key is one word)' },
      { field: 'body.7', message: 'Unrecognized key: "extra"' },
      { field: 'body.9.value', message: 'Invalid input: expected string, received undefined' },
      { field: 'body.11', message: 'Invalid input: expected object, received string' }
    ])
    expect(f.runtime.sent).toEqual([])
    const dups = await f.app.inject({ method: 'PUT', url: base, payload: [...good, { key: '/k3', value: 'w' }] })
    expect([dups.statusCode, dups.json().code, dups.json().errors]).toEqual([400, 'HAPX_DUPLICATE_KEYS', [{ field: 'body', message: "duplicate key '/k3'" }]])
    expect(f.live()).toEqual(['/old x'])
  })

  it('addresses a 1024-byte key in the path', async () => {
    const key = '/' + 'k'.repeat(1023)
    const f = await setup([[key, 'x']])
    const res = await f.app.inject({ url: entry(key) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ key, value: 'x' })
  })

  it('never clears a version whose commit timed out but went through', async () => {
    // HAProxy applied the commit (curr_ver is 1) but the reply never came: clearing @1 would empty the live map.
    const f = await setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: real => { real(); return new RuntimeTimeoutError(5000, 'commit map') } })
    const res = await f.app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(200)
    expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
    expect(f.live()).toEqual(['/a b'])
    expect(await f.kept()).toEqual(['/a b'])
  })

  it('clears a version whose commit timed out and did not happen, and says so', async () => {
    const f = await setup([['/old', 'x']], { [`commit map @1 ${MAP}`]: new RuntimeTimeoutError(5000, 'commit map') })
    const res = await f.app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(504)
    expect(res.json().state).toMatchObject({ committed: false, pendingVersionCleared: true })
    expect(f.runtime.sent).toContain(`clear map @1 ${MAP}`)
    expect(f.live()).toEqual(['/old x'])
    expect(await f.kept()).toBeUndefined()
  })

  it('records the change as desired when neither the commit nor the check gets an answer', async () => {
    const down = new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')
    const f = await setup([], { [`commit map @1 ${MAP}`]: new RuntimeTimeoutError(5000, 'commit map'), 'show map': down })
    const res = await f.app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(504)
    expect(res.json().state).toMatchObject({ committed: 'unknown', outcome: 'unknown' })
    expect(res.json().detail).toMatch(/recorded as desired state/)
    expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
    expect(await f.kept()).toEqual(['/a b'])
  })

  it('patches atomically and checks If-Match', async () => {
    const f = await setup([['/a', '1'], ['/b', '2'], ['/c', '3']])
    const stale = await f.app.inject({ method: 'PATCH', url: base, headers: { 'if-match': '"old"' }, payload: [{ key: '/a', delete: true }] })
    expect([stale.statusCode, stale.json().code]).toEqual([412, 'HAPX_PRECONDITION_FAILED'])
    expect(await f.kept()).toBeUndefined()
    const etag = (await f.app.inject({ method: 'GET', url: base })).headers.etag as string
    const res = await f.app.inject({ method: 'PATCH', url: base, headers: { 'if-match': etag }, payload: [{ key: '/a', delete: true }, { key: '/c', value: 'x' }, { key: '/d', value: 'y' }] })
    expect([res.statusCode, res.json()]).toEqual([200, { entries: 3 }])
    expect(res.headers.etag).toBe((await f.app.inject({ method: 'GET', url: base })).headers.etag)
    expect(f.live()).toEqual(['/b 2', '/c x', '/d y'])
    expect(await f.kept()).toEqual(['/b 2', '/c x', '/d y'])
    const dup = await f.app.inject({ method: 'PATCH', url: base, payload: [{ key: '/a', value: '1' }, { key: '/a', delete: true }] })
    expect([dup.statusCode, dup.json().code]).toEqual([400, 'HAPX_DUPLICATE_KEYS'])
  })

  it('answers 409 when a map to adopt holds entries hapctl could not write back', async () => {
    const f = await setup([['^/api\\.json', 'webservers']])
    const res = await f.app.inject({ method: 'POST', url: base, payload: { key: '/a', value: 'x' } })
    expect([res.statusCode, res.json().code]).toEqual([409, 'HAPX_MAP_UNWRITABLE'])
    expect(f.live()).toEqual(['^/api\\.json webservers'])
  })

  it('maps an unreachable HAProxy to 503', async () => {
    const app = await buildTestApp(fakeRuntime(() => new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')))
    expect((await app.inject({ method: 'GET', url: base })).statusCode).toBe(503)
  })
})
