import { describe, expect, it } from 'vitest'
import type { PayloadCommand } from '../../src/runtime/client.ts'
import { RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

const MAP = 'virt@paths.map'
const base = `/maps/${encodeURIComponent(MAP)}/entries`
const entry = (k: string) => `${base}/${encodeURIComponent(k)}`
const LIST = `# id (file) description\n5 (${MAP}) pattern loaded from file '${MAP}' used by map at file 'h.cfg' line 35. curr_ver=0 next_ver=0 entry_cnt=9`

/** Splits a CLI line the way HAProxy does for the commands used here (`\ ` is a space inside a word). */
const words = (text: string) => text.split(/(?<!\\) /).map(w => w.replaceAll('\\ ', ' '))

/**
 * A small model of one HAProxy map, answering with 3.4.7's exact strings (runtime-notes 5); `hooks`
 * lets a test replace the answer to one command.
 */
function fakeHaproxy (initial: Array<[string, string]> = [], hooks: Record<string, string | Error> = {}) {
  let live = initial.map(([key, value]) => ({ key, value }))
  const versions = new Map<number, Array<{ key: string, value: string }>>()
  let next = 0
  const dump = (es: typeof live) => es.map((e, i) => `0x${(0x1000 + i).toString(16)} ${e.key} ${e.value}`).join('\n')
  const respond = (text: string): string | Error => {
    if (text in hooks) return hooks[text] as string | Error
    const w = words(text)
    const [verb, , a, b, c] = w
    const name = a?.startsWith('@') ? b : a
    if (text === 'show map') return LIST
    if (name !== MAP && name !== '#5') return 'Unknown map identifier. Please use #<id> or <file>.'
    const version = a?.startsWith('@') ? Number(a.slice(1)) : undefined
    switch (`${verb} map`) {
      case 'get map': {
        // map_beg: the longest key that is a prefix of the sample, oldest first among equals.
        const hit = live.filter(e => (b as string).startsWith(e.key)).sort((x, y) => y.key.length - x.key.length)[0]
        return hit === undefined
          ? 'type=beg, case=sensitive, found=no'
          : `type=beg, case=sensitive, found=yes, idx=tree, key="${hit.key}", value="${hit.value}", type="str"`
      }
      case 'show map': return dump(version === undefined ? live : versions.get(version) ?? [])
      case 'add map': live.push({ key: b as string, value: c as string }); return ''
      case 'set map': {
        const hits = live.filter(e => e.key === b)
        if (hits.length === 0) return 'entry not found.'
        for (const h of hits) h.value = c as string
        return ''
      }
      case 'del map': {
        const i = live.findIndex(e => e.key === b)
        if (i === -1) return 'Key not found.'
        live.splice(i, 1)
        return ''
      }
      case 'prepare map': versions.set(++next, []); return `New version created: ${next}`
      case 'commit map': {
        const v = versions.get(version as number)
        if (v === undefined || version !== next) return 'Version number out of range.'
        live = v
        versions.delete(version as number)
        return ''
      }
      case 'clear map': versions.set(version as number, []); return ''
    }
    return `Unknown command: '${verb}'`
  }
  const runtime = fakeRuntime(respond)
  const payloads: string[] = []
  runtime.executePayload = async <T>(command: PayloadCommand<T>): Promise<T> => {
    runtime.sent.push(command.text + ' [payload]')
    payloads.push(command.payload)
    const [, , at] = words(command.text)
    const v = versions.get(Number((at as string).slice(1)))
    if (v === undefined) return command.parse("Version number in the future, please use 'prepare map' before.")
    for (const l of command.payload.slice(0, -1).split('\n')) {
      const i = l.indexOf(' ')
      v.push({ key: l.slice(0, i), value: l.slice(i + 1) })
    }
    return command.parse(hooks['payload'] as string ?? '')
  }
  return { runtime, payloads, live: () => live.map(e => `${e.key} ${e.value}`) }
}

describe('/maps routes', () => {
  it('lists maps with counted entries', async () => {
    const f = fakeHaproxy([['/a', 'x'], ['/b', 'y']])
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'GET', url: '/maps' })
    expect(res.statusCode).toBe(200)
    expect(res.json().items).toEqual([expect.objectContaining({ name: MAP, id: 5, kind: 'virtual', entries: 2, currentVersion: 0, nextVersion: 0 })])
    expect(f.runtime.sent).toEqual(['show map', `show map ${MAP}`])
  })

  it('creates an entry, and refuses a duplicate or an unsafe key before sending anything', async () => {
    const f = fakeHaproxy([['/a', 'x']])
    const app = await buildTestApp(f.runtime)
    const ok = await app.inject({ method: 'POST', url: base, payload: { key: '/b', value: 'two words' } })
    expect(ok.statusCode).toBe(201)
    expect(ok.headers.location).toBe(entry('/b'))
    expect(f.runtime.sent).toContain(`add map ${MAP} /b two\\ words`)
    expect((await app.inject({ method: 'POST', url: base, payload: { key: '/a', value: 'z' } })).json().code).toBe('HAPX_MAP_ENTRY_EXISTS')
    const sent = f.runtime.sent.length
    for (const payload of [{ key: '/x; del backend b', value: 'v' }, { key: '/x', value: 'v\ndisable server a/b' }, { key: '#0x1', value: 'v' }, { key: '/x', value: 'v', extra: 1 }]) {
      const res = await app.inject({ method: 'POST', url: base, payload })
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('HAPX_VALIDATION_FAILED')
    }
    expect(f.runtime.sent.length).toBe(sent)
    expect(f.live()).toEqual(['/a x', '/b two words'])
  })

  it('upserts with set map, then add map on `entry not found.`', async () => {
    const f = fakeHaproxy([['/a', 'x']])
    const app = await buildTestApp(f.runtime)
    const updated = await app.inject({ method: 'PUT', url: entry('/a'), payload: { value: 'y' } })
    expect([updated.statusCode, updated.json()]).toEqual([200, { key: '/a', value: 'y' }])
    const created = await app.inject({ method: 'PUT', url: entry('/new'), payload: { value: 'z' } })
    expect(created.statusCode).toBe(201)
    expect(f.runtime.sent).toEqual([`set map ${MAP} /a y`, `set map ${MAP} /new z`, `add map ${MAP} /new z`])
    const unknown = await app.inject({ method: 'PUT', url: `/maps/${encodeURIComponent('virt@no.map')}/entries/%2Fa`, payload: { value: 'z' } })
    expect([unknown.statusCode, unknown.json().code]).toEqual([404, 'HAPX_MAP_NOT_FOUND'])
  })

  it('deletes every duplicate, and answers 404 when there is none', async () => {
    const f = fakeHaproxy([['/d', '1'], ['/e', 'x'], ['/d', '2']])
    const app = await buildTestApp(f.runtime)
    expect((await app.inject({ method: 'DELETE', url: entry('/d') })).statusCode).toBe(204)
    expect(f.live()).toEqual(['/e x'])
    expect(f.runtime.sent.filter(t => t.startsWith('del map')).length).toBe(3)
    const again = await app.inject({ method: 'DELETE', url: entry('/d') })
    expect([again.statusCode, again.json().code]).toEqual([404, 'HAPX_MAP_ENTRY_NOT_FOUND'])
  })

  it('gets an entry by exact key, with the ETag of the whole map', async () => {
    const f = fakeHaproxy([['/a', 'x'], ['/ab', 'y z']])
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'GET', url: entry('/ab') })
    expect([res.statusCode, res.json()]).toEqual([200, { key: '/ab', value: 'y z' }])
    const list = await app.inject({ method: 'GET', url: base })
    expect(res.headers.etag).toBe(list.headers.etag)
    expect((await app.inject({ method: 'GET', url: entry('/a/b') })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: base, query: { limit: '10001' } })).statusCode).toBe(400)
    expect((await app.inject({ method: 'GET', url: base, query: { cursor: 'garbage' } })).json().code).toBe('HAPX_INVALID_CURSOR')
  })

  it('replaces through prepare, payloads, a count and commit', async () => {
    const f = fakeHaproxy([['/old', 'x']])
    const app = await buildTestApp(f.runtime)
    const entries = Array.from({ length: 3000 }, (_, i) => ({ key: `/k${i}`, value: `value ${i}` }))
    const res = await app.inject({ method: 'PUT', url: base, payload: entries })
    expect([res.statusCode, res.json()]).toEqual([200, { entries: 3000 }])
    expect(f.live()).toEqual(entries.map(e => `${e.key} ${e.value}`))
    expect(f.runtime.sent[0]).toBe(`prepare map ${MAP}`)
    expect(f.runtime.sent.slice(1, -2).every(t => t === `add map @1 ${MAP} << [payload]`)).toBe(true)
    expect(f.runtime.sent.slice(-2)).toEqual([`show map @1 ${MAP}`, `commit map @1 ${MAP}`])
    expect(f.payloads.length).toBeGreaterThan(3)
    const etag = (await app.inject({ method: 'GET', url: base })).headers.etag
    expect(res.headers.etag).toBe(etag)
  })

  it('clears the pending version and changes nothing when the count is wrong or the commit loses a race', async () => {
    const lossy = fakeHaproxy([['/old', 'x']], { payload: '' })
    lossy.runtime.executePayload = async <T>(c: PayloadCommand<T>) => c.parse('') // stores nothing
    const app = await buildTestApp(lossy.runtime)
    const res = await app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect([res.statusCode, res.json().code, res.json().state]).toEqual([502, 'HAPX_MAP_LOAD_INCOMPLETE', { map: MAP, version: 1, committed: false, pendingVersionCleared: true }])
    expect(lossy.runtime.sent.slice(-2)).toEqual([`clear map @1 ${MAP}`, `show map @1 ${MAP}`])
    expect(lossy.live()).toEqual(['/old x'])

    const raced = fakeHaproxy([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.' })
    const app2 = await buildTestApp(raced.runtime)
    const res2 = await app2.inject({ method: 'PUT', url: base, headers: { 'content-type': 'text/plain' }, payload: '/a b\n' })
    expect([res2.statusCode, res2.json().code]).toEqual([409, 'HAPX_MAP_VERSION_CONFLICT'])
    expect(raced.runtime.sent.slice(-2)).toEqual([`clear map @1 ${MAP}`, `show map @1 ${MAP}`])
    expect(raced.live()).toEqual(['/old x'])
  })

  it('says so when HAProxy keeps a pending version that clear map was asked to empty', async () => {
    // 3.4.7 answers `clear map @N` with success and keeps the entries once the map has been committed.
    const stuck = fakeHaproxy([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.', [`clear map @1 ${MAP}`]: '' })
    const app = await buildTestApp(stuck.runtime)
    const res = await app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(409)
    expect(res.json().state).toMatchObject({ committed: false, pendingVersionCleared: false, note: expect.stringMatching(/next successful replace/) })
    expect(stuck.live()).toEqual(['/old x'])
  })

  it('refuses a JSON string where a JSON array is expected, rather than read it as a map file', async () => {
    const f = fakeHaproxy([['/old', 'x']])
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'PUT', url: base, headers: { 'content-type': 'application/json' }, payload: JSON.stringify('/a b') })
    expect(res.statusCode).toBe(400)
    expect(f.runtime.sent.filter(t => !t.startsWith('show') && !t.startsWith('get'))).toEqual([])
    expect(f.live()).toEqual(['/old x'])
  })

  it('addresses a 1024-byte key in the path', async () => {
    const key = '/' + 'k'.repeat(1023)
    const f = fakeHaproxy([[key, 'x']])
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ url: entry(key) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ key, value: 'x' })
  })

  it('never clears a version whose commit timed out but went through', async () => {
    // HAProxy applied the commit (curr_ver is 1) but the reply never came: clearing @1 would empty the live map.
    const f = fakeHaproxy([['/old', 'x']], {
      'commit map @1 virt@paths.map': new RuntimeTimeoutError(5000, 'commit map'),
      'show map': LIST.replace('curr_ver=0 next_ver=0', 'curr_ver=1 next_ver=1')
    })
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(200)
    expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
  })

  it('clears a version whose commit timed out and did not happen, and says so', async () => {
    const f = fakeHaproxy([['/old', 'x']], { 'commit map @1 virt@paths.map': new RuntimeTimeoutError(5000, 'commit map') })
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(504)
    expect(res.json().state).toMatchObject({ committed: false, pendingVersionCleared: true })
    expect(f.runtime.sent).toContain('clear map @1 virt@paths.map')
    expect(f.live()).toEqual(['/old x'])
  })

  it('reports an unknown outcome when neither the commit nor the check gets an answer', async () => {
    const down = new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')
    const f = fakeHaproxy([], { 'commit map @1 virt@paths.map': new RuntimeTimeoutError(5000, 'commit map'), 'show map': down })
    const app = await buildTestApp(f.runtime)
    const res = await app.inject({ method: 'PUT', url: base, payload: [{ key: '/a', value: 'b' }] })
    expect(res.statusCode).toBe(504)
    expect(res.json().state).toMatchObject({ committed: 'unknown' })
    expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
  })

  it('patches atomically and checks If-Match', async () => {
    const f = fakeHaproxy([['/a', '1'], ['/b', '2'], ['/c', '3']])
    const app = await buildTestApp(f.runtime)
    const stale = await app.inject({ method: 'PATCH', url: base, headers: { 'if-match': '"old"' }, payload: [{ key: '/a', delete: true }] })
    expect([stale.statusCode, stale.json().code]).toEqual([412, 'HAPX_PRECONDITION_FAILED'])
    const etag = (await app.inject({ method: 'GET', url: base })).headers.etag as string
    const res = await app.inject({ method: 'PATCH', url: base, headers: { 'if-match': etag }, payload: [{ key: '/a', delete: true }, { key: '/c', value: 'x' }, { key: '/d', value: 'y' }] })
    expect([res.statusCode, res.json()]).toEqual([200, { entries: 3 }])
    expect(f.live()).toEqual(['/b 2', '/c x', '/d y'])
    const dup = await app.inject({ method: 'PATCH', url: base, payload: [{ key: '/a', value: '1' }, { key: '/a', delete: true }] })
    expect([dup.statusCode, dup.json().code]).toEqual([400, 'HAPX_DUPLICATE_KEYS'])
  })

  it('maps an unreachable HAProxy to 503', async () => {
    const app = await buildTestApp(fakeRuntime(() => new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')))
    expect((await app.inject({ method: 'GET', url: base })).statusCode).toBe(503)
  })
})
