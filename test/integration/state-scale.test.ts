import { Agent, request } from 'node:http'
import { setTimeout as delay } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { changingCommands, startRuntimeCapture } from '../helpers/runtime-capture.ts'
import { changesBeyondProbes, planned as fromPlan, sent as fromWire, withDefaults } from '../helpers/state-document.ts'
import type { CapturedCommand, RuntimeCapture } from '../helpers/runtime-capture.ts'
import { UNKNOWN_BACKEND_STATUS, stateConfig } from '../helpers/state-haproxy.ts'

/*
 * The scale case on a real HAProxy 3.4, with hapctl as its own process and every Runtime API
 * command recorded on the way (test/helpers/runtime-capture.ts): 1,000 backends × 5 servers and a map
 * of 100,000 entries applied to an empty HAProxy, then a document changing 10 % of it. The second
 * apply must send commands for the changed objects only (its count follows the change, not the
 * state), each dry run must list exactly what its apply sends, and a reader hammering the frontend
 * during both applies must never be routed by an entry naming a backend that does not exist (yet, or
 * any more): the frontend of test/helpers/state-haproxy.ts answers 599 then, and nothing else does.
 */
const MAP = 'virt@paths.map'
const BACKENDS = 1000
const SERVERS = 5
const ENTRIES = 100_000
const UPSTREAMS = 10

// The second document: 10 % of the backends (33 removed, 34 added, 33 changed) and about 10 % of the
// map (entries of removed backends removed, 2,850 entries moved to new backends, 4,000 added).
const REMOVED = range(967, BACKENDS)
const ADDED = range(0, 34)
const CHANGED = range(0, 33)
const MOVED_BELOW = 3000
const NEW_ENTRIES = 4000

function range (from: number, to: number): number[] { return Array.from({ length: to - from }, (_, i) => from + i) }
const pad = (n: number, width: number) => String(n).padStart(width, '0')
const b = (i: number) => `b${pad(i, 4)}`
const n = (j: number) => `n${pad(j, 4)}`
const u = (k: number) => `u${k % UPSTREAMS}`
const key = (i: number) => `/k/${pad(i, 6)}`
const newKey = (j: number) => `/m/${pad(j, 6)}`

/** Upstream of each backend's servers: b<i> on u<i>, n<j> on u<j+3>, a changed b<i> moves to u<i+5>. */
const upstreamOf = (backend: string, second: boolean): string => {
  const i = Number(backend.slice(1))
  if (backend.startsWith('n')) return u(i + 3)
  return second && CHANGED.includes(i) ? u(i + 5) : u(i)
}

type Doc = { backends: Record<string, { from: string, servers: Record<string, Record<string, unknown>> }>, maps: Record<string, { entries: Array<{ key: string, value: string }> }> }

/** Every 20th entry goes to `static_ref` (a backend of the configuration, r1), the others to b<i mod 1000>. */
const firstValue = (i: number) => i % 20 === 19 ? 'static_ref' : b(i % BACKENDS)

/** What entry `i` of the first map becomes in the second: removed (undefined), moved, or kept. */
function secondValue (i: number): string | undefined {
  const v = firstValue(i)
  if (v === 'static_ref') return v
  if (REMOVED.includes(i % BACKENDS)) return undefined
  return i < MOVED_BELOW ? n(i % ADDED.length) : v
}

describe('/state at scale (real HAProxy, hapctl as its own process)', () => {
  let h: HaproxyInstance
  let capture: RuntimeCapture
  let hapctl: HapctlProcess
  const port = (name: string): number => {
    const up = h.upstreams[name]
    if (up === undefined) throw new Error(`no upstream ${name}`)
    return up.port
  }

  const firstDocument = (): Doc => {
    const backends: Doc['backends'] = {}
    for (let i = 0; i < BACKENDS; i++) {
      const servers: Record<string, Record<string, unknown>> = {}
      for (let s = 0; s < SERVERS; s++) servers[`s${s}`] = { address: '127.0.0.1', port: port(upstreamOf(b(i), false)) }
      backends[b(i)] = { from: 'mydefaults', servers }
    }
    const entries = range(0, ENTRIES).map(i => ({ key: key(i), value: firstValue(i) }))
    return { backends, maps: { [MAP]: { entries } } }
  }

  const secondDocument = (): Doc => {
    const doc = firstDocument()
    for (const i of REMOVED) delete doc.backends[b(i)]
    for (const i of CHANGED) {
      const to = port(upstreamOf(b(i), true))
      doc.backends[b(i)] = {
        from: 'mydefaults',
        servers: {
          s0: { address: '127.0.0.1', port: to, weight: 50 },
          s1: { address: '127.0.0.1', port: to, state: 'drain' },
          s2: { address: '127.0.0.1', port: to },
          s3: { address: '127.0.0.1', port: to },
          // s4 removed
          s5: { address: '127.0.0.1', port: to }
        }
      }
    }
    for (const j of ADDED) {
      const servers: Record<string, Record<string, unknown>> = {}
      for (let s = 0; s < SERVERS; s++) servers[`s${s}`] = { address: '127.0.0.1', port: port(upstreamOf(n(j), true)) }
      doc.backends[n(j)] = { from: 'mydefaults', servers }
    }
    const entries: Array<{ key: string, value: string }> = []
    for (let i = 0; i < ENTRIES; i++) {
      const value = secondValue(i)
      if (value !== undefined) entries.push({ key: key(i), value })
    }
    for (let j = 0; j < NEW_ENTRIES; j++) entries.push({ key: newKey(j), value: j % 2 === 0 ? n(j % ADDED.length) : b(100 + (j % 800)) })
    return { backends: doc.backends, maps: { [MAP]: { entries } } }
  }

  async function putState (doc: unknown, query = ''): Promise<{ status: number, body: any, etag: string | null, ms: number }> {
    const started = performance.now()
    const res = await fetch(`${hapctl.url}/state${query}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(doc),
      signal: AbortSignal.timeout(180_000)
    })
    const text = await res.text()
    const ms = performance.now() - started
    let body: unknown = text
    try { body = JSON.parse(text) } catch {}
    return { status: res.status, body, etag: res.headers.get('etag'), ms }
  }

  /** Backend names a command acts on (`b0042`, `n0003`), from `… backend <b>` and `… <b>/<server>` forms. */
  const backendsIn = (text: string): string[] => [...text.matchAll(/\b([bn]\d{4})\b/g)].map(m => m[1] as string)

  beforeAll(async () => {
    h = await startHaproxy({ config: stateConfig, upstreams: ['web1', 's1', 'r1', ...range(0, UPSTREAMS).map(u)] })
    capture = await startRuntimeCapture({ host: '127.0.0.1', port: h.ports.runtime })
    hapctl = await startHapctl({ env: { HAPROXY_RUNTIME_API: capture.runtimeApi, HAPROXY_TIMEOUT_MS: '30000', LOG_LEVEL: 'warn' } })
  })
  afterAll(async () => {
    await hapctl?.kill()
    await capture?.close()
    await h?.stop()
  })

  /**
   * Requests `paths` round robin on `concurrency` kept connections until stop(); each answer must be
   * the path's old one or its new one. Counts requests made between mark() and stop(). Each loop pauses
   * `pauseMs` between requests: the capture proxy shares this process's event loop, and a reader that
   * took all of it would slow every command hapctl sends, and the apply times with them.
   */
  function startReader (paths: Array<{ path: string, old: string, new: string }>, { concurrency = 8, pauseMs = 2 } = {}) {
    const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
    const state = { running: true }
    let next = 0
    let total = 0
    let marked = 0
    let markAt = Infinity
    const answers = new Map<string, number>()
    const wrong: string[] = []
    const get = (path: string): Promise<string> => new Promise((resolve) => {
      const req = request(h.frontendUrl + path, { agent }, res => {
        let body = ''
        res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => {
          resolve(res.statusCode === 200 ? (/^srv=(\S+)/.exec(body)?.[1] ?? body) : `status ${res.statusCode}`)
        })
      })
      req.on('error', err => resolve(`error ${err.message}`))
      req.end()
    })
    const loop = async (): Promise<void> => {
      while (state.running) {
        const p = paths[next++ % paths.length] as { path: string, old: string, new: string }
        const at = performance.now()
        const got = await get(p.path)
        total++
        if (at >= markAt) marked++
        answers.set(got, (answers.get(got) ?? 0) + 1)
        if (got !== p.old && got !== p.new && wrong.length < 20) wrong.push(`${p.path}: ${got} (old ${p.old}, new ${p.new})`)
        await delay(pauseMs)
      }
    }
    const loops = range(0, concurrency).map(() => loop())
    return {
      mark: () => { markAt = performance.now() },
      stop: async () => {
        state.running = false
        await Promise.all(loops)
        agent.destroy()
        return { total, duringApply: marked, answers: Object.fromEntries(answers), wrong }
      }
    }
  }

  /** Who answers `path` through the frontend (one request). */
  const who = async (path: string): Promise<string> => {
    const res = await fetch(h.frontendUrl + path)
    const body = await res.text()
    return res.status === 200 ? (/^srv=(\S+)/.exec(body)?.[1] ?? body) : `status ${res.status}`
  }

  it('applies 1,000 backends × 5 servers and 100,000 entries, then a 10 % change with commands for the change only; readers never see a missing backend', { timeout: 420_000 }, async () => {
    const first = firstDocument()
    // The reader's paths for the first apply: entries naming backends created by that same apply,
    // the last-created ones included; before the commit a path has no entry (web1).
    const firstPaths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 498, 499, 997, 998, 1996, 99_998, 99_999, 50_017, 70_040, 19]
      .map(i => ({ path: `${key(i)}/x`, old: 'web1', new: firstValue(i) === 'static_ref' ? 'r1' : upstreamOf(firstValue(i), false) }))

    // --- first apply: dry run, then the apply with a reader running -------------------------------------
    capture.clear()
    const dry1 = await putState(first, '?dryRun=true')
    expect(dry1.status, JSON.stringify(dry1.body).slice(0, 2000)).toBe(200)
    expect(changesBeyondProbes(capture.commands())).toEqual([])
    const planned1 = fromPlan(dry1.body.commands)

    capture.clear()
    const reader1 = startReader(firstPaths)
    await delay(300)
    reader1.mark()
    const apply1 = await putState(first)
    const read1 = await reader1.stop()
    expect(apply1.status, JSON.stringify(apply1.body).slice(0, 2000)).toBe(200)
    const sent1 = changingCommands(capture.commands())
    expect(fromWire(sent1)).toEqual(planned1)

    // --- second apply: 10 % of it --------------------------------------------------------------------
    const second = secondDocument()
    capture.clear()
    const dry2 = await putState(second, '?dryRun=true')
    expect(dry2.status, JSON.stringify(dry2.body).slice(0, 2000)).toBe(200)
    expect(changesBeyondProbes(capture.commands())).toEqual([])
    const planned2 = fromPlan(dry2.body.commands)

    // The second reader: new entries (no entry before), entries whose backend goes away (removed before
    // their backend), entries moved to a new backend, entries of a changed backend, and an untouched one.
    const secondPaths = [
      ...[0, 2, 33, 3998].map(j => ({ path: `${newKey(j)}/y`, old: 'web1', new: upstreamOf(second.maps[MAP]!.entries.find(e => e.key === newKey(j))!.value, true) })),
      ...[967, 980, 1998, 99_990].map(i => ({ path: `${key(i)}/y`, old: upstreamOf(b(i % BACKENDS), false), new: 'web1' })),
      ...[100, 101, 2050].map(i => ({ path: `${key(i)}/y`, old: upstreamOf(b(i % BACKENDS), false), new: upstreamOf(secondValue(i) as string, true) })),
      ...[3005, 3012].map(i => ({ path: `${key(i)}/y`, old: upstreamOf(b(i % BACKENDS), false), new: upstreamOf(b(i % BACKENDS), true) })),
      { path: `${key(50_500)}/y`, old: 'u0', new: 'u0' }
    ]
    for (const p of secondPaths) expect(await who(p.path), p.path).toBe(p.old)

    capture.clear()
    const reader2 = startReader(secondPaths)
    await delay(300)
    reader2.mark()
    const apply2 = await putState(second)
    const read2 = await reader2.stop()
    expect(apply2.status, JSON.stringify(apply2.body).slice(0, 2000)).toBe(200)
    const sent2 = changingCommands(capture.commands())
    expect(fromWire(sent2)).toEqual(planned2)

    const payloadLines = (list: CapturedCommand[]) => list.reduce((sum, c) => sum + (c.payloadLines ?? 0), 0)
    const mapLoad = (list: CapturedCommand[]) => list.filter(c => /^(prepare|add|commit) map /.test(c.text)).length
    console.log([
      `first apply (empty → ${BACKENDS} backends × ${SERVERS} servers, ${ENTRIES} entries): ${(apply1.ms / 1000).toFixed(1)} s, ` +
        `${sent1.length} commands (dry run: ${planned1.length}; ${mapLoad(sent1)} of them the map load), ${payloadLines(sent1)} payload lines; dry run took ${(dry1.ms / 1000).toFixed(1)} s`,
      `second apply (10 %: ${REMOVED.length} backends removed, ${ADDED.length} added, ${CHANGED.length} changed, map ${second.maps[MAP]!.entries.length} entries): ` +
        `${(apply2.ms / 1000).toFixed(1)} s, ${sent2.length} commands (dry run: ${planned2.length}; ${mapLoad(sent2)} of them the map load), ${payloadLines(sent2)} payload lines; dry run took ${(dry2.ms / 1000).toFixed(1)} s`,
      `reader during the first apply: ${read1.duringApply} requests (${read1.total} in all) ${JSON.stringify(read1.answers)}`,
      `reader during the second apply: ${read2.duringApply} requests (${read2.total} in all) ${JSON.stringify(read2.answers)}`
    ].join('\n'))

    // Readers: old or new answers only, never the fallback of an entry naming no (usable) backend.
    expect(read1.wrong).toEqual([])
    expect(read2.wrong).toEqual([])
    expect(read1.answers[`status ${UNKNOWN_BACKEND_STATUS}`]).toBeUndefined()
    expect(read2.answers[`status ${UNKNOWN_BACKEND_STATUS}`]).toBeUndefined()
    // They did read while the applies ran, and saw both sides of the first one.
    expect(read1.duringApply).toBeGreaterThanOrEqual(200)
    expect(read2.duringApply).toBeGreaterThanOrEqual(50)
    expect(read1.answers.web1).toBeGreaterThan(0)

    // Proportional to the change: the second apply touches the changed backends only, and no other.
    const touched = new Set([...REMOVED.map(b), ...CHANGED.map(b), ...ADDED.map(n)])
    const strangers = sent2.filter(c => backendsIn(c.text).some(name => !touched.has(name)))
    expect(strangers.map(c => c.text).slice(0, 10)).toEqual([])
    for (const name of touched) expect(sent2.some(c => backendsIn(c.text).includes(name)), name).toBe(true)
    // Per backend, the first apply sends at least an `add backend` and 5 `add server`; the second one a
    // few commands for each of 100 backends, plus one map load (about 140 payload commands for either
    // map, which is what an atomic versioned load costs): well under a quarter of the first.
    expect(sent1.length).toBeGreaterThan(BACKENDS * (1 + SERVERS))
    expect(sent2.length).toBeLessThan(sent1.length / 4)

    // GET /state is what was PUT, once the defaults are filled in.
    const got = await (await fetch(`${hapctl.url}/state`)).json() as Doc & { revision: number }
    expect(withDefaults(got)).toEqual(withDefaults(second))

    // And HAProxy routes by the new entries, to the right upstreams.
    expect(await who(`${newKey(0)}/z`)).toBe(upstreamOf(n(0), true))
    expect(await who(`${newKey(1)}/z`)).toBe(upstreamOf(b(101), true))
    expect(await who(`${key(100)}/z`)).toBe(upstreamOf(n(100 % ADDED.length), true))
    expect(await who(`${key(3005)}/z`)).toBe(upstreamOf(b(5), true))
    expect(await who(`${key(980)}/z`)).toBe('web1')
    expect(await who(`${key(19)}/z`)).toBe('r1')
    expect(await who(`${key(77_777)}/z`)).toBe(upstreamOf(b(777), true))
    const backendList = (await h.cli('show backend', { timeoutMs: 20_000 })).split('\n')
    expect(backendList).not.toContain(b(980))
    expect(backendList).toContain(n(33))
  })
})
