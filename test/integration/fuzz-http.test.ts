import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'

/*
 * HTTP-level fuzzing of every route's body, path and query, against hapctl running as its own process
 * and a real HAProxy 3.4 (issue 10). Whatever arrives:
 *  - the answer is 2xx or 4xx (never a 5xx, never a dropped connection), with a problem body for 4xx;
 *  - a refused request changes nothing in HAProxy;
 *  - an accepted one changes only the object it names (an injected second command would show up
 *    as a change somewhere else: the static backends, the other maps, the canaries).
 * Each value is drawn from the valid ones, from injection payloads, and from arbitrary Unicode, so
 * that requests get past validation often enough to reach HAProxy.
 */

const TOKEN = 'fuzz-token-0123456789abcdef0123456789'
const MAP = 'virt@paths.map'

let h: HaproxyInstance
let svc: HapctlProcess

beforeAll(async () => {
  // Two more maps for the fuzz to write (maps must be known to the configuration to exist at runtime).
  h = await startHaproxy({
    config: ctx => defaultConfig(ctx) + `
frontend fe_fuzz from mydefaults
    bind 127.0.0.1:${ctx.refFrontend + 1000}
    http-request set-var(txn.a) path,map(virt@fuzz2.map)
    http-request set-var(txn.b) path,map_beg(virt@fuzz.map)
    default_backend webservers
`
  })
  svc = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, API_TOKEN: TOKEN, LOG_LEVEL: 'warn' } })
  // Canaries: a dynamic backend with a server and a map entry that no fuzzed request may name.
  expect((await send('POST', '/backends', { name: 'canary', from: 'mydefaults', published: true, servers: [{ name: 'c1', address: '127.0.0.1', port: h.upstreams.s1!.port }] })).status).toBe(201)
  expect((await send('PUT', `/maps/${encodeURIComponent(MAP)}/entries/%2Fcanary`, { value: 'canary' })).status).toBe(201)
}, 120_000)

afterAll(async () => {
  await svc?.kill()
  await h?.stop()
})

type Sent = { status: number, body: any, text: string, contentType: string }

async function send (method: string, path: string, body?: unknown, opts: { raw?: string, contentType?: string } = {}): Promise<Sent> {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }
  let payload: string | undefined
  if (opts.raw !== undefined) {
    payload = opts.raw
    headers['content-type'] = opts.contentType ?? 'application/json'
  } else if (body !== undefined) {
    payload = JSON.stringify(body)
    headers['content-type'] = 'application/json'
  }
  const res = await fetch(svc.url + path, { method, headers, body: payload, signal: AbortSignal.timeout(30_000) })
  const text = await res.text()
  let parsed: any
  try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = text }
  return { status: res.status, body: parsed, text, contentType: res.headers.get('content-type') ?? '' }
}

/**
 * Everything a command could change, by object: each backend's servers (`show servers state` without
 * what health checks move by themselves: operational state, time since the last change, check
 * status/result/health/state bits, agent state), its published and admin flags from `show stat`, and each map's
 * content. (A fuzzed server may have checks, and its checks may flap on their own.)
 */
async function snapshot (): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const backends = (await h.cli('show backend')).split('\n').filter(l => l !== '' && !l.startsWith('#'))
  out.set('backends', backends.sort().join(','))
  const moving = new Set([5, 9, 10, 11, 12, 13, 14])
  for (const line of (await h.cli('show servers state')).split('\n')) {
    if (line.startsWith('#') || !line.includes(' ')) continue
    const f = line.split(' ').map((v, i) => moving.has(i) ? '_' : v)
    const key = `backend:${f[1] as string}`
    out.set(key, (out.get(key) ?? '') + f.join(' ') + '\n')
  }
  const stat = (await h.cli('show stat -1 6 -1')).split('\n').filter(l => l !== '' && !l.startsWith('#'))
  for (const l of stat) {
    const c = l.split(',')
    const key = `backend:${c[0] as string}`
    // Not DRAIN: `show stat` says it only while a draining server is up, which its health decides at
    // any moment; the drain itself is the admin state in `show servers state` above.
    const flags = ['UNPUB', 'MAINT'].filter(w => (c[17] ?? '').includes(w)).join('+')
    out.set(key, (out.get(key) ?? '') + `${c[1] as string} ${flags}\n`)
  }
  for (const line of (await h.cli('show map')).split('\n')) {
    const m = /^(-?\d+) \((.*)\) /.exec(line)
    if (m === null) continue
    out.set(`map:${m[2] as string}`, await h.cli(`show map #${m[1] as string}`))
  }
  return out
}

/** The keys of two snapshots that differ. */
function changed (a: Map<string, string>, b: Map<string, string>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter(k => a.get(k) !== b.get(k))
}

const INJECTIONS = ['; del backend canary', '\nshow version', '\r\ndisable server canary/c1', '\u0000del backend canary',
  ' del backend canary', '\tx', '\\;x', '<<', 'a <<', '%0adel', '\u2028x', '../canary', 'canary/c1', '#5', '@', '']

/** Names: the pool the fuzz may create/change, the protected ones it may try, injections, and noise. */
const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('fz_a', 'fz_b', 'fz_c') },
  { weight: 1, arbitrary: fc.constantFrom('webservers', 'static_empty', 'static_ref', 'mydefaults') },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('fz_a', 'x'), fc.constantFrom(...INJECTIONS)).map(([a, b]) => a + b) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 120, maxLength: 140, unit: fc.constantFrom('a', 'b', '_') }) }
)
const serverName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('s1', 's2') }, { weight: 1, arbitrary: name })
const mapName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('virt@fuzz2.map', 'virt@fuzz.map') }, { weight: 1, arbitrary: name })
const mapText = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/a', '/b', 'k1', 'host.example') },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('/a', 'v'), fc.constantFrom(...INJECTIONS)).map(([a, b]) => a + b) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) }
)
/** Mostly `valid`, sometimes `invalid`: requests must get past validation often enough to reach HAProxy. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>): fc.Arbitrary<T | U> =>
  fc.oneof({ weight: 6, arbitrary: valid }, { weight: 1, arbitrary: invalid })

/** A value for any field: usually a plausible one, sometimes anything JSON can say. */
const anyValue = fc.oneof({ weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }, { weight: 1, arbitrary: fc.constantFrom(null, true, false, 0, -1, 2 ** 53 + 2, '', '5s') })
const port = mostly(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(0, 65536, -1, 1.5, '80'))
const address = mostly(fc.constantFrom('127.0.0.1', '::1', '10.0.0.1'), fc.oneof(fc.constantFrom('localhost', '127.0.0.1 check', '127.0.0.1;x', '::1%lo'), fc.ipV6()))
const server = fc.record({
  name: serverName,
  address,
  port,
  check: fc.boolean(),
  weight: mostly(fc.integer({ min: 0, max: 256 }), anyValue),
  enabled: fc.boolean(),
  extra: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyValue })
}, { requiredKeys: ['name', 'address', 'port', 'extra'] }).map(({ extra, ...s }) => extra === null ? s : { ...s, [String(extra).slice(0, 8) || 'x']: extra })
const duration = mostly(fc.constantFrom('100ms', '1s', '200'), fc.oneof(fc.constantFrom('0', '5m', '6m', 'x', '1;x', ''), fc.string({ maxLength: 6 })))

/** A request: method, path and query, and a body (JSON, or raw bytes with a content type). */
type Req = { method: string, path: string, body?: unknown, raw?: string, contentType?: string, names: string[] }
const enc = encodeURIComponent

const requests: fc.Arbitrary<Req> = fc.oneof(
  fc.record({ n: name, from: fc.oneof(fc.constantFrom('mydefaults', 'tcpdefaults', 'nomode'), name), published: fc.boolean(), servers: fc.option(fc.array(server, { maxLength: 3 })), mode: fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom('http', 'tcp', 'log', 'x') }) })
    .map(b => ({ method: 'POST', path: '/backends', body: { name: b.n, from: b.from, published: b.published, ...(b.servers === null ? {} : { servers: b.servers }), ...(b.mode === null ? {} : { mode: b.mode }) }, names: [b.n] })),
  fc.record({ n: name, published: mostly(fc.boolean(), anyValue) }).map(b => ({ method: 'PATCH', path: `/backends/${enc(b.n)}`, body: { published: b.published }, names: [b.n] })),
  fc.record({ n: name, timeout: duration, force: mostly(fc.constantFrom('true', 'false'), fc.constantFrom('yes', '1', 'x')) })
    .map(b => ({ method: 'DELETE', path: `/backends/${enc(b.n)}?timeout=${enc(b.timeout)}&force=${b.force}`, names: [b.n] })),
  fc.record({ b: name, s: server }).map(r => ({ method: 'POST', path: `/backends/${enc(r.b)}/servers`, body: r.s, names: [r.b] })),
  fc.record({ b: name, s: serverName, patch: fc.record({ state: mostly(fc.constantFrom('ready', 'drain', 'maint'), fc.constantFrom('up', 'x')), weight: mostly(fc.integer({ min: 0, max: 256 }), fc.constantFrom(-1, 257)), address, port }, { requiredKeys: [] }) })
    .map(r => ({ method: 'PATCH', path: `/backends/${enc(r.b)}/servers/${enc(r.s)}`, body: r.patch, names: [r.b] })),
  fc.record({ b: name, s: serverName, timeout: duration }).map(r => ({ method: 'DELETE', path: `/backends/${enc(r.b)}/servers/${enc(r.s)}?timeout=${enc(r.timeout)}`, names: [r.b] })),
  fc.record({ m: mapName, k: mapText, v: mapText }).map(r => ({ method: 'PUT', path: `/maps/${enc(r.m)}/entries/${enc(r.k)}`, body: { value: r.v }, names: [`map:${r.m}`] })),
  fc.record({ m: mapName, k: mapText, v: mapText }).map(r => ({ method: 'POST', path: `/maps/${enc(r.m)}/entries`, body: { key: r.k, value: r.v }, names: [`map:${r.m}`] })),
  fc.record({ m: mapName, k: mapText }).map(r => ({ method: 'DELETE', path: `/maps/${enc(r.m)}/entries/${enc(r.k)}`, names: [`map:${r.m}`] })),
  fc.record({ m: mapName, entries: fc.array(fc.record({ key: mapText, value: mapText }), { maxLength: 5 }) })
    .map(r => ({ method: 'PUT', path: `/maps/${enc(r.m)}/entries`, body: r.entries, names: [`map:${r.m}`] })),
  fc.record({ m: mapName, text: fc.array(fc.tuple(mapText, mapText).map(([k, v]) => `${k} ${v}`), { maxLength: 5 }) })
    .map(r => ({ method: 'PUT', path: `/maps/${enc(r.m)}/entries`, raw: r.text.join('\n'), contentType: 'text/plain', names: [`map:${r.m}`] })),
  fc.record({ m: mapName, changes: fc.array(fc.oneof(fc.record({ key: mapText, value: mapText }), fc.record({ key: mapText, delete: fc.constant(true) })), { maxLength: 5 }) })
    .map(r => ({ method: 'PATCH', path: `/maps/${enc(r.m)}/entries`, body: r.changes, names: [`map:${r.m}`] })),
  // Reads with fuzzed paths and queries must never change anything.
  fc.record({ path: fc.constantFrom('/backends', '/maps', '/status', '/ready', `/maps/${enc(MAP)}/entries`), q: fc.string({ maxLength: 30 }) })
    .map(r => ({ method: 'GET', path: `${r.path}?${r.q.replace(/#/g, '')}`, names: [] })),
  fc.record({ b: name, s: serverName }).map(r => ({ method: 'GET', path: `/backends/${enc(r.b)}/servers/${enc(r.s)}`, names: [] })),
  fc.record({ m: mapName, q: fc.record({ limit: fc.oneof(fc.integer({ min: -5, max: 20_000 }), fc.string({ maxLength: 5 })), cursor: fc.string({ maxLength: 20 }), prefix: mapText }, { requiredKeys: [] }) })
    .map(r => ({ method: 'GET', path: `/maps/${enc(r.m)}/entries?${new URLSearchParams(Object.entries(r.q).map(([k, v]): [string, string] => [k, String(v)])).toString()}`, names: [] })),
  // Any body at all, under any content type, on every write route.
  fc.record({
    route: fc.constantFrom(['POST', '/backends'], ['PATCH', '/backends/fz_a'], ['POST', '/backends/fz_a/servers'], ['PATCH', '/backends/fz_a/servers/s1'],
      ['PUT', '/maps/virt%40fuzz.map/entries'], ['PATCH', '/maps/virt%40fuzz.map/entries'], ['POST', '/maps/virt%40fuzz.map/entries'], ['PUT', '/maps/virt%40fuzz.map/entries/k1']),
    raw: fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ unit: 'binary', maxLength: 200 })),
    contentType: fc.constantFrom('application/json', 'text/plain', 'application/json; charset=latin1', 'text/plain; charset=utf-16', 'application/x-www-form-urlencoded', 'application/octet-stream')
  }).map(r => ({ method: r.route[0] as string, path: r.route[1] as string, raw: r.raw, contentType: r.contentType, names: [r.route[1].startsWith('/maps') ? 'map:virt@fuzz.map' : 'fz_a'] }))
)

/** The snapshot keys a request may change when accepted: the objects it names (a backend's servers are under its key). */
function allowed (req: Req): Set<string> {
  const keys = new Set<string>()
  for (const n of req.names) {
    if (n.startsWith('map:')) keys.add(n)
    else { keys.add(`backend:${n}`); keys.add('backends') }
  }
  return keys
}

describe('fuzzing every route over HTTP, against a real HAProxy', () => {
  it('answers 2xx or 4xx, and changes only what it acknowledged', async () => {
    let accepted = 0
    let reachedHaproxy = 0
    const seen = new Map<string, number>()
    const log: string[] = []
    await fc.assert(fc.asyncProperty(requests, async (req) => {
      const before = await snapshot()
      const res = await send(req.method, req.path, req.body, { raw: req.raw, contentType: req.contentType })
      const after = await snapshot()
      const what = `${log.slice(-3).join('\n')}\n${req.method} ${req.path} ${req.raw ?? JSON.stringify(req.body) ?? ''} → ${res.status} ${res.text.slice(0, 300)}`
      log.push(`${req.method} ${req.path} ${req.raw ?? JSON.stringify(req.body) ?? ''} → ${res.status}`)
      if (process.env.FUZZ_REPORT !== undefined && res.status === 400 && Math.random() < 0.1) console.log(what)
      expect(res.status >= 200 && res.status < 500, what).toBe(true)
      const diff = changed(before, after)
      const shown = diff.map(k => `${k}: ${JSON.stringify(before.get(k))} → ${JSON.stringify(after.get(k))}`).join('\n')
      const bucket = `${req.method} ${req.path.split('?')[0]!.replace(/\/(backends|maps)\/[^/]+/, '/$1/*').replace(/(servers|entries)\/[^/]+$/, '$1/*')} ${res.status}`
      seen.set(bucket, (seen.get(bucket) ?? 0) + 1)
      if (res.status >= 400) {
        expect(res.contentType, what).toMatch(/^application\/problem\+json/)
        expect(res.body?.status, what).toBe(res.status)
        expect(diff, `${what}\n${shown}`).toEqual([])
        if (res.body?.haproxyMessage !== undefined) reachedHaproxy++
      } else {
        if (req.method !== 'GET') accepted++
        const ok = allowed(req)
        for (const key of diff) expect(ok.has(key) || (req.method === 'GET' ? false : key === 'backends'), `${what}\n${shown}`).toBe(true)
      }
      // The canaries stay whatever happened.
      expect(after.get('backend:canary'), what).toBe(before.get('backend:canary'))
    }), { numRuns: 600, interruptAfterTimeLimit: 150_000 })
    if (process.env.FUZZ_REPORT !== undefined) console.log([...seen].sort().map(([k, v]) => `${v}\t${k}`).join('\n'))
    // The fuzz must get past validation often enough to mean something.
    expect(accepted).toBeGreaterThan(20)
    expect(reachedHaproxy + accepted).toBeGreaterThan(30)
  }, 240_000)

  it('still routes the canary through HAProxy afterwards', async () => {
    expect((await send('GET', '/backends/canary')).body.published).toBe(true)
    const map = await send('GET', `/maps/${enc(MAP)}/entries/%2Fcanary`)
    expect(map.body).toEqual({ key: '/canary', value: 'canary' })
  })
})
