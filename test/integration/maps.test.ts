import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The maps resource against a real HAProxy 3.4: every change is checked through real traffic on the
 * `map_beg(virt@paths.map)` frontend and through the test's own `show map`. These tests change the
 * map behind hapctl's back on purpose (duplicates, entries hapctl would refuse), which the reconciler
 * would undo for a managed map: it is off here, and has its own suite.
 */
const MAP = encodeURIComponent('virt@paths.map')
const entriesUrl = `/maps/${MAP}/entries`
const entryUrl = (key: string) => `${entriesUrl}/${encodeURIComponent(key)}`

describe('maps (real HAProxy)', () => {
  let h: HaproxyInstance | undefined
  let app: FastifyInstance | undefined
  const haproxy = () => { if (!h) throw new Error('HAProxy did not start'); return h }
  const api = () => { if (!app) throw new Error('no app'); return app }
  const srv = async (path: string) => (await httpGet(haproxy().frontendUrl + path)).body.split(' ')[0]
  const showMap = async () => (await haproxy().cli('show map virt@paths.map', { timeoutMs: 10_000 }))
    .split('\n').filter(l => l !== '').map(l => l.replace(/^0x[0-9a-f]+ /, ''))

  beforeAll(async () => {
    h = await startHaproxy()
    app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, HAPROXY_TIMEOUT_MS: '20000' }), logger: false, reconcile: false })
  })
  afterAll(async () => {
    await app?.close()
    await h?.stop()
  })

  it('lists maps with exact entry counts', async () => {
    expect(await haproxy().cli('clear map virt@paths.map')).toBe('\n')
    expect(await haproxy().cli('add map virt@paths.map /m1 static_ref')).toBe('\n')
    const res = await api().inject({ method: 'GET', url: '/maps' })
    expect(res.statusCode).toBe(200)
    const map = res.json().items.find((m: { name: string }) => m.name === 'virt@paths.map')
    expect(map).toMatchObject({ kind: 'virtual', entries: 1, managed: false })
    expect(typeof map.id).toBe('number')
    const byId = await api().inject({ method: 'GET', url: `/maps/${encodeURIComponent('#' + map.id)}/entries` })
    expect(byId.json()).toEqual({ items: [{ key: '/m1', value: 'static_ref' }] })
  })

  it('adds, changes and deletes single entries, and traffic follows', async () => {
    await haproxy().cli('clear map virt@paths.map')
    expect(await srv('/a/x')).toBe('srv=web1')

    const created = await api().inject({ method: 'POST', url: entriesUrl, payload: { key: '/a', value: 'static_unref' } })
    expect(created.statusCode).toBe(201)
    expect(created.headers.location).toBe(entryUrl('/a'))
    expect(await srv('/a/x')).toBe('srv=s1')

    const dup = await api().inject({ method: 'POST', url: entriesUrl, payload: { key: '/a', value: 'static_ref' } })
    expect(dup.statusCode).toBe(409)
    expect(dup.json().code).toBe('HAPX_MAP_ENTRY_EXISTS')
    expect(await showMap()).toEqual(['/a static_unref'])
    // A key that only has a shorter prefix in the map (map_beg matches /a for /ab) is not taken.
    const longer = await api().inject({ method: 'POST', url: entriesUrl, payload: { key: '/ab', value: 'static_ref' } })
    expect(longer.statusCode).toBe(201)
    expect((await api().inject({ method: 'DELETE', url: entryUrl('/ab') })).statusCode).toBe(204)

    const changed = await api().inject({ method: 'PUT', url: entryUrl('/a'), payload: { value: 'static_ref' } })
    expect(changed.statusCode).toBe(200)
    expect(await srv('/a/x')).toBe('srv=r1')

    const upserted = await api().inject({ method: 'PUT', url: entryUrl('/b'), payload: { value: 'static_unref' } })
    expect(upserted.statusCode).toBe(201)
    expect(await srv('/b')).toBe('srv=s1')

    const got = await api().inject({ method: 'GET', url: entryUrl('/a') })
    expect(got.statusCode).toBe(200)
    expect(got.json()).toEqual({ key: '/a', value: 'static_ref' })
    // exact match, not map_beg: /a/x has no entry of its own
    expect((await api().inject({ method: 'GET', url: entryUrl('/a/x') })).statusCode).toBe(404)

    // duplicates made behind our back are all deleted
    await haproxy().cli('add map virt@paths.map /a static_unref')
    expect((await api().inject({ method: 'DELETE', url: entryUrl('/a') })).statusCode).toBe(204)
    expect(await showMap()).toEqual(['/b static_unref'])
    expect(await srv('/a/x')).toBe('srv=web1')
    const again = await api().inject({ method: 'DELETE', url: entryUrl('/a') })
    expect(again.statusCode).toBe(404)
    expect(again.json().code).toBe('HAPX_MAP_ENTRY_NOT_FOUND')
    // Written through hapctl, the map is now kept.
    const listed = await api().inject({ method: 'GET', url: '/maps' })
    expect(listed.json().items.find((m: { name: string }) => m.name === 'virt@paths.map')).toMatchObject({ managed: true })
  })

  it('answers 404 for an unknown map', async () => {
    const res = await api().inject({ method: 'GET', url: `/maps/${encodeURIComponent('virt@nosuch.map')}/entries` })
    expect(res.statusCode).toBe(404)
    expect(res.json().code).toBe('HAPX_MAP_NOT_FOUND')
    const put = await api().inject({ method: 'PUT', url: `/maps/${encodeURIComponent('virt@nosuch.map')}/entries/%2Fx`, payload: { value: 'v' } })
    expect(put.statusCode).toBe(404)
  })

  it('pages with a cursor and filters by prefix, with an ETag', async () => {
    const entries = Array.from({ length: 25 }, (_, i) => ({ key: `/p${String(i).padStart(2, '0')}`, value: 'static_ref' }))
    const put = await api().inject({ method: 'PUT', url: entriesUrl, payload: entries })
    expect(put.statusCode).toBe(200)
    const seen: unknown[] = []
    let cursor: string | undefined
    let etag: string | undefined
    for (let i = 0; i < 10; i++) {
      const res = await api().inject({ method: 'GET', url: entriesUrl, query: cursor === undefined ? { limit: '10' } : { limit: '10', cursor } })
      expect(res.statusCode).toBe(200)
      etag ??= res.headers.etag as string
      expect(res.headers.etag).toBe(etag)
      seen.push(...res.json().items)
      cursor = res.json().next
      if (cursor === undefined) break
    }
    expect(seen).toEqual(entries)
    expect(put.headers.etag).toBe(etag)
    const filtered = await api().inject({ method: 'GET', url: entriesUrl, query: { prefix: '/p1' } })
    expect(filtered.json().items.map((e: { key: string }) => e.key)).toEqual(entries.slice(10, 20).map(e => e.key))
  })

  it('honours If-Match on writes', async () => {
    await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/i', value: 'static_ref' }] })
    const etag = (await api().inject({ method: 'GET', url: entriesUrl })).headers.etag as string
    const stale = await api().inject({ method: 'PUT', url: entryUrl('/i'), headers: { 'if-match': '"nope"' }, payload: { value: 'static_unref' } })
    expect(stale.statusCode).toBe(412)
    expect(stale.json().code).toBe('HAPX_PRECONDITION_FAILED')
    expect(await showMap()).toEqual(['/i static_ref'])
    const ok = await api().inject({ method: 'PUT', url: entryUrl('/i'), headers: { 'if-match': etag }, payload: { value: 'static_unref' } })
    expect(ok.statusCode).toBe(200)
    const replaced = await api().inject({ method: 'PUT', url: entriesUrl, headers: { 'if-match': etag }, payload: [] })
    expect(replaced.statusCode).toBe(412)
    expect(await showMap()).toEqual(['/i static_unref'])
  })

  it('replaces the whole map from JSON and from a text/plain map file', async () => {
    const res = await api().inject({
      method: 'PUT',
      url: entriesUrl,
      payload: [{ key: '/j1', value: 'static_ref' }, { key: '/j2', value: 'static_unref' }]
    })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ entries: 2 })
    expect(await showMap()).toEqual(['/j1 static_ref', '/j2 static_unref'])
    expect(await srv('/j1')).toBe('srv=r1')

    const file = '# routes\n\n/t1 static_unref\r\n  /t2\t\tstatic_ref\n/t3 two  words here\n'
    const text = await api().inject({ method: 'PUT', url: entriesUrl, headers: { 'content-type': 'text/plain' }, payload: file })
    expect(text.statusCode).toBe(200)
    expect(text.json()).toEqual({ entries: 3 })
    expect(await showMap()).toEqual(['/t1 static_unref', '/t2 static_ref', '/t3 two  words here'])
    expect(await srv('/j1')).toBe('srv=web1')
    expect(await srv('/t2/x')).toBe('srv=r1')

    const bad = await api().inject({ method: 'PUT', url: entriesUrl, headers: { 'content-type': 'text/plain' }, payload: '/ok v\n/novalue\n/x a;b\n' })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().errors.map((e: { field: string }) => e.field)).toEqual(['body.line2', 'body.line3'])
    const dups = await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/d', value: 'a' }, { key: '/d', value: 'b' }] })
    expect(dups.statusCode).toBe(400)
    expect(await showMap()).toEqual(['/t1 static_unref', '/t2 static_ref', '/t3 two  words here'])
  })

  it('applies PATCH changes together', async () => {
    await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/k1', value: 'static_unref' }, { key: '/k2', value: 'static_unref' }] })
    const res = await api().inject({
      method: 'PATCH',
      url: entriesUrl,
      payload: [{ key: '/k1', value: 'static_ref' }, { key: '/k2', delete: true }, { key: '/k3', value: 'static_unref' }, { key: '/gone', delete: true }]
    })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ entries: 2 })
    expect(await showMap()).toEqual(['/k1 static_ref', '/k3 static_unref'])
    expect(await srv('/k1')).toBe('srv=r1')
    expect(await srv('/k2')).toBe('srv=web1')
    expect(await srv('/k3')).toBe('srv=s1')
  })

  it('reads entries written by other tools that hapctl would refuse, and will not mangle them in a PATCH', async () => {
    await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/plain', value: 'static_unref' }] })
    // A regex-style key with a backslash and a `#` key, stored straight through the CLI.
    expect(await haproxy().cli('add map virt@paths.map ^/api\\\\.json webservers')).toBe('\n')
    expect(await haproxy().cli('add map virt@paths.map #tag webservers')).toBe('\n')
    const before = await showMap()
    expect(before).toEqual(['/plain static_unref', '^/api\\.json webservers', '#tag webservers'])

    const list = await api().inject({ method: 'GET', url: entriesUrl })
    expect(list.statusCode).toBe(200)
    expect(list.json().items).toEqual([
      { key: '/plain', value: 'static_unref' }, { key: '^/api\\.json', value: 'webservers' }, { key: '#tag', value: 'webservers' }
    ])
    const patch = await api().inject({ method: 'PATCH', url: entriesUrl, payload: [{ key: '/plain', value: 'static_ref' }] })
    expect(patch.statusCode).toBe(409)
    expect(patch.json().code).toBe('HAPX_MAP_UNWRITABLE')
    expect(await showMap()).toEqual(before)
    expect((await api().inject({ method: 'PUT', url: entriesUrl, payload: [] })).statusCode).toBe(200)
  })

  it('stores awkward keys and values exactly, or refuses them with 400', async () => {
    await haproxy().cli('clear map virt@paths.map')
    const exact = [
      { key: '/sp', value: 'a b  c' },
      { key: '/quo"te\'s', value: '"quoted" \'single\'' },
      { key: '/hash#frag', value: 'a#b' },
      { key: '/ünï/çødé/日本', value: 'vàlue ✓ 日本' },
      { key: '/lt<', value: 'a<b>c' }
    ]
    for (const e of exact) {
      const res = await api().inject({ method: 'POST', url: entriesUrl, payload: e })
      expect(res.statusCode, JSON.stringify(e)).toBe(201)
      const got = await api().inject({ method: 'GET', url: entryUrl(e.key) })
      expect(got.json()).toEqual(e)
    }
    expect(await showMap()).toEqual(exact.map(e => `${e.key} ${e.value}`))
    // the same through the payload path, and set map with escaped spaces
    const put = await api().inject({ method: 'PUT', url: entriesUrl, payload: exact })
    expect(put.statusCode).toBe(200)
    expect(await showMap()).toEqual(exact.map(e => `${e.key} ${e.value}`))
    expect((await api().inject({ method: 'PUT', url: entryUrl('/sp'), payload: { value: 'x  y z' } })).statusCode).toBe(200)
    expect((await api().inject({ method: 'GET', url: entryUrl('/sp') })).json()).toEqual({ key: '/sp', value: 'x  y z' })

    const refused = [
      { key: '/semi;x', value: 'v' },
      { key: '/bs\\x', value: 'v' },
      { key: '#hash', value: 'v' },
      { key: '/sp ace', value: 'v' },
      { key: '/v', value: 'a;disable server webservers/web1' },
      { key: '/v', value: 'a\\ b' },
      { key: '/v', value: ' lead' },
      { key: '/v', value: 'trail ' },
      { key: '/v', value: 'tab\there' },
      { key: '/v', value: 'line\nbreak' },
      { key: '/v', value: '<<EOF' },
      { key: '/v', value: 'x'.repeat(1025) }
    ]
    const before = await showMap()
    for (const e of refused) {
      const res = await api().inject({ method: 'POST', url: entriesUrl, payload: e })
      expect(res.statusCode, JSON.stringify(e)).toBe(400)
      const bulk = await api().inject({ method: 'PUT', url: entriesUrl, payload: [e] })
      expect(bulk.statusCode, JSON.stringify(e)).toBe(400)
    }
    expect(await showMap()).toEqual(before)
    expect(await haproxy().cli('show servers state webservers')).toMatch(/ web1 127\.0\.0\.1 2 0 /)
  })

  it('lists a 100k-entry map page by page: every entry exactly once, in order, under one ETag; a prefix pages too', async () => {
    const entries = Array.from({ length: 100_000 }, (_, i) => ({ key: `/l${i}`, value: `v ${i} é` }))
    const put = await api().inject({ method: 'PUT', url: entriesUrl, headers: { 'content-type': 'text/plain' }, payload: entries.map(e => `${e.key} ${e.value}\n`).join('') })
    expect([put.statusCode, put.json()]).toEqual([200, { entries: 100_000 }])
    const walk = async (query: Record<string, string>) => {
      const seen: Array<{ key: string, value: string }> = []
      const etags = new Set<string>()
      let cursor: string | undefined
      for (let pages = 0; pages < 200; pages++) {
        const res = await api().inject({ method: 'GET', url: entriesUrl, query: cursor === undefined ? query : { ...query, cursor } })
        expect(res.statusCode).toBe(200)
        etags.add(res.headers.etag as string)
        seen.push(...res.json().items)
        cursor = res.json().next
        if (cursor === undefined) break
      }
      return { seen, etags: [...etags] }
    }
    const all = await walk({ limit: '7000' })
    expect(all.seen.length).toBe(100_000)
    expect(all.seen).toEqual(entries)
    expect(all.etags).toEqual([put.headers.etag])
    const some = await walk({ limit: '100', prefix: '/l9999' })
    expect(some.seen).toEqual(entries.filter(e => e.key.startsWith('/l9999')))
    // The exact-key read streams the map too, with the same ETag.
    const one = await api().inject({ method: 'GET', url: entryUrl('/l54321') })
    expect([one.json(), one.headers.etag]).toEqual([{ key: '/l54321', value: 'v 54321 é' }, put.headers.etag])
    expect((await api().inject({ method: 'GET', url: entryUrl('/l100000') })).statusCode).toBe(404)
  }, 120_000)

  it('refuses a 100k-entry JSON replace with one wrong entry, or one duplicate, and changes nothing', async () => {
    const before = await showMap()
    const entries: Array<Record<string, unknown>> = Array.from({ length: 100_000 }, (_, i) => ({ key: `/w${i}`, value: 'static_ref' }))
    entries[77_777] = { key: '/w77777', value: 'static ref;' }
    const bad = await api().inject({ method: 'PUT', url: entriesUrl, payload: entries })
    expect([bad.statusCode, bad.json().errors]).toEqual([400, [{ field: 'body.77777.value', message: "character ';' is not allowed" }]])
    entries[77_777] = { key: '/w5', value: 'static_ref' }
    const dup = await api().inject({ method: 'PUT', url: entriesUrl, payload: entries })
    expect([dup.statusCode, dup.json().code]).toEqual([400, 'HAPX_DUPLICATE_KEYS'])
    expect(await showMap()).toEqual(before)
  }, 60_000)

  it('replaces 100k entries atomically while traffic never sees a gap or goes back', async () => {
    const filler = (value: string) => Array.from({ length: 100_000 }, (_, i) => ({ key: `/f${i}`, value }))
    const first = await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/a', value: 'static_unref' }, ...filler('static_unref').slice(1)] })
    expect(first.statusCode).toBe(200)
    expect(first.json()).toEqual({ entries: 100_000 })
    expect(await srv('/a/x')).toBe('srv=s1')

    const state = { stop: false }
    const seen: string[] = []
    const reader = (async () => {
      for (let i = 0; i < 5000 && !state.stop; i++) seen.push(await srv('/a/x') ?? '')
    })()
    const started = performance.now()
    const second = await api().inject({ method: 'PUT', url: entriesUrl, payload: [{ key: '/a', value: 'static_ref' }, ...filler('static_ref').slice(1)] })
    const ms = Math.round(performance.now() - started)
    // let the reader observe the new state for a while, then stop it
    const after = seen.length
    while (seen.length < after + 20) await new Promise(resolve => setTimeout(resolve, 10))
    state.stop = true
    await reader
    expect(second.statusCode).toBe(200)
    expect(second.json()).toEqual({ entries: 100_000 })
    console.log(`100k-entry replace over HTTP: ${ms} ms; reader made ${seen.length} requests`)
    expect(seen.length).toBeGreaterThan(0)
    expect(seen.filter(s => s !== 'srv=s1' && s !== 'srv=r1')).toEqual([])
    const firstNew = seen.indexOf('srv=r1')
    expect(firstNew).toBeGreaterThanOrEqual(0)
    expect(seen.slice(firstNew).filter(s => s !== 'srv=r1')).toEqual([])
    const listed = await api().inject({ method: 'GET', url: '/maps' })
    expect(listed.json().items.find((m: { name: string }) => m.name === 'virt@paths.map').entries).toBe(100_000)
  }, 120_000)
})
