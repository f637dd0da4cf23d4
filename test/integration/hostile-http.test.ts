import { execFileSync } from 'node:child_process'
import { request } from 'node:http'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'

/*
 * Hostile HTTP clients against hapctl as its own process, with a real HAProxy 3.4 behind it: bodies
 * shaped to make parsing and validation allocate far more than their size, bytes that cannot be
 * stored exactly, and connections that stall. Memory is the service's own (VmHWM from /proc), each
 * case in a fresh process so that one case's peak does not hide another's.
 */

const MiB = 1024 * 1024
const MAP = 'virt@paths.map'
const ENTRIES = `/maps/${encodeURIComponent(MAP)}/entries`

let h: HaproxyInstance

beforeAll(async () => {
  h = await startHaproxy()
  expect(await h.cli(`add map ${MAP} /keep static_ref`)).toBe('\n')
})

afterAll(async () => { await h?.stop() })

type Answer = { status: number, text: string }

/**
 * One request on its own connection. The server may answer (413) and close before the whole body is
 * sent: the answer counts, the write error that follows does not.
 */
function send (base: string, method: string, path: string, contentType: string, body: Buffer | string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answered = false
    const headers = { 'content-length': String(Buffer.byteLength(body)), ...(contentType === '' ? {} : { 'content-type': contentType }) }
    const req = request(`${base}${path}`, { method, agent: false, headers }, res => {
      answered = true
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', err => { if (!answered) reject(err) })
    req.end(body)
  })
}

/** VmHWM restarts from the current RSS (Linux clear_refs 5), so the next peak is this case's own. */
function resetPeak (p: HapctlProcess): number {
  writeFileSync(`/proc/${p.pid}/clear_refs`, '5')
  return p.memory().rss
}

async function mapNow (): Promise<string> {
  return h.cli(`show map ${MAP}`)
}

describe('bodies: memory stays within a few times the body, whatever its shape', () => {
  // Before the fix (one process each, same bodies, HAProxy down): the million empty objects cost
  // 1.3 GB and 15 s; 20 MB of them aborted the process (out of heap); the 50 MB servers array 1.6 GB;
  // 15 MB of keys in one object answered a 34 MB problem body; 30 MB of map-file lines 257 MB.
  const cases: Array<{ name: string, method: string, path: string, type?: string, body: () => string, status: number, code: string }> = [
    { name: 'a million empty objects as a whole map', method: 'PUT', path: ENTRIES, body: () => `[${'{},'.repeat(999_999)}{}]`, status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: '20 MB of empty objects as a whole map', method: 'PUT', path: ENTRIES, body: () => `[${'{},'.repeat(7 * MiB - 1)}{}]`, status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: 'a 50 MB servers array', method: 'POST', path: '/backends', body: () => `{"name":"b","from":"mydefaults","servers":[${'{},'.repeat(50 * MiB / 3)}{}]}`, status: 413, code: 'HAPX_BODY_TOO_LARGE' },
    { name: 'more servers than a backend can take, within the body limit', method: 'POST', path: '/backends', body: () => `{"name":"b","from":"mydefaults","servers":[${'{"name":"s"},'.repeat(20_000)}{}]}`, status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: 'a million wrong elements that are not containers', method: 'PUT', path: ENTRIES, body: () => `[${'0,'.repeat(999_999)}0]`, status: 400, code: 'HAPX_VALIDATION_FAILED' },
    { name: 'a changes array ten times too long', method: 'PATCH', path: ENTRIES, body: () => `[${'0,'.repeat(999_999)}0]`, status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: 'a million levels of nesting', method: 'PUT', path: ENTRIES, body: () => '['.repeat(MiB), status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: 'a 30 MB key', method: 'PUT', path: ENTRIES, body: () => `[{"key":"${'k'.repeat(30 * MiB)}","value":"v"}]`, status: 400, code: 'HAPX_VALIDATION_FAILED' },
    { name: 'a backend with 60,000 keys', method: 'POST', path: '/backends', body: () => `{${Array.from({ length: 60_000 }, (_, i) => `"k${i}":0`).join(',')}}`, status: 400, code: 'HAPX_BODY_TOO_COMPLEX' },
    { name: 'a map file of 15 million lines', method: 'PUT', path: ENTRIES, type: 'text/plain', body: () => 'a\n'.repeat(15 * MiB), status: 400, code: 'HAPX_BODY_TOO_COMPLEX' }
  ]

  for (const c of cases) {
    it(c.name, async () => {
      const body = Buffer.from(c.body())
      const mapBefore = await mapNow()
      const p = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, LOG_LEVEL: 'warn' } })
      const before = resetPeak(p)
      const answer = await send(p.url, c.method, c.path, c.type ?? 'application/json', body)
      const growth = p.memory().peak - before
      console.log(`${c.name}: ${(body.length / MiB).toFixed(1)} MiB body, peak RSS +${(growth / MiB).toFixed(0)} MiB, ${answer.status}`)
      expect(answer.status, answer.text.slice(0, 300)).toBe(c.status)
      expect(JSON.parse(answer.text)).toMatchObject({ code: c.code })
      // A problem body never grows with the request (every mistake listed would make it do so).
      expect(answer.text.length).toBeLessThan(4096)
      // Generous: a few times the body (the bytes, their text, what JSON.parse builds), plus the
      // young generation and allocator slack that any request may leave.
      expect(growth).toBeLessThan(4 * body.length + 128 * MiB)
      expect((await fetch(`${p.url}/health`)).status).toBe(200)
      expect(await mapNow()).toBe(mapBefore)
    }, 120_000)
  }

  it('a whole map of 200,000 entries still goes through (JSON, then as a map file)', async () => {
    const entries = Array.from({ length: 200_000 }, (_, i) => ({ key: `/path/number/${i}`, value: `backend_${i % 7}` }))
    const json = Buffer.from(JSON.stringify(entries))
    const p = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, LOG_LEVEL: 'warn' } })
    const before = resetPeak(p)
    const answer = await send(p.url, 'PUT', ENTRIES, 'application/json', json)
    const growth = p.memory().peak - before
    console.log(`200,000 valid entries: ${(json.length / MiB).toFixed(1)} MiB body, peak RSS +${(growth / MiB).toFixed(0)} MiB, ${answer.status}`)
    expect(answer.status, answer.text.slice(0, 300)).toBe(200)
    expect(JSON.parse(answer.text)).toEqual({ entries: 200_000 })
    expect(growth).toBeLessThan(16 * json.length + 128 * MiB)
    const text = entries.map(e => `${e.key} ${e.value}`).reverse().join('\n')
    const again = await send(p.url, 'PUT', ENTRIES, 'text/plain', text)
    expect(again.status, again.text.slice(0, 300)).toBe(200)
    const shown = (await mapNow()).split('\n').filter(l => l !== '')
    expect(shown).toHaveLength(200_000)
    expect(shown[0]).toMatch(/^0x[0-9a-f]+ \/path\/number\/199999 backend_2$/)
    // Leave the map as the other tests expect it.
    expect((await send(p.url, 'PUT', ENTRIES, 'application/json', '[{"key":"/keep","value":"static_ref"}]')).status).toBe(200)
  }, 180_000)
})

describe('bytes that cannot be stored exactly', () => {
  it('are refused, JSON or map file, whatever the declared charset, and HAProxy is left alone', async () => {
    const p = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, LOG_LEVEL: 'warn' } })
    const before = await mapNow()
    const refused: Array<[string, string, Buffer | string, number, string]> = [
      // Invalid UTF-8 (Fastify's own parser turned it into U+FFFD and stored that).
      ['PUT', 'application/json', Buffer.concat([Buffer.from('[{"key":"/a","value":"caf'), Buffer.from([0xe9]), Buffer.from('"}]')]), 400, 'HAPX_INVALID_BODY'],
      ['POST', 'application/json', Buffer.concat([Buffer.from('{"key":"/a","value":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]), 400, 'HAPX_INVALID_BODY'],
      ['PUT', 'text/plain', Buffer.concat([Buffer.from('/a caf'), Buffer.from([0xe9]), Buffer.from('\n')]), 400, 'HAPX_INVALID_BODY'],
      // UTF-8 encoded surrogates (CESU-8) and overlong forms are not UTF-8 either.
      ['PUT', 'text/plain', Buffer.from([0x2f, 0x61, 0x20, 0xed, 0xa0, 0x80]), 400, 'HAPX_INVALID_BODY'],
      ['PUT', 'text/plain', Buffer.from([0x2f, 0x61, 0x20, 0xc0, 0xaf]), 400, 'HAPX_INVALID_BODY'],
      // Half a surrogate pair, escaped: JSON.parse accepts it, no UTF-8 encoder can write it back.
      ['PUT', 'application/json', '[{"key":"/a","value":"x\\ud800"}]', 400, 'HAPX_INVALID_BODY'],
      ['POST', 'application/json', '{"key":"/a\\udfff","value":"x"}', 400, 'HAPX_INVALID_BODY'],
      // Another charset, even when the bytes happen to be ASCII.
      ['PUT', 'application/json; charset=iso-8859-1', '[{"key":"/a","value":"x"}]', 415, 'HAPX_UNSUPPORTED_MEDIA_TYPE'],
      ['POST', 'application/json; charset=utf-16', '{"key":"/a","value":"x"}', 415, 'HAPX_UNSUPPORTED_MEDIA_TYPE'],
      ['PUT', 'text/plain; charset=windows-1252', '/a x\n', 415, 'HAPX_UNSUPPORTED_MEDIA_TYPE']
    ]
    for (const [method, type, body, status, code] of refused) {
      const answer = await send(p.url, method, ENTRIES, type, body)
      expect(answer.status, `${method} ${type} ${String(body)}`).toBe(status)
      expect(JSON.parse(answer.text)).toMatchObject({ code })
    }
    expect(await mapNow()).toBe(before)

    // What is valid is stored byte for byte: a surrogate pair, escaped, and the same character raw.
    const ok = await send(p.url, 'POST', ENTRIES, 'application/json; charset=UTF-8', '{"key":"/smile","value":"\\ud83d\\ude00 caf\\u00e9"}')
    expect(ok.status, ok.text).toBe(201)
    expect(await mapNow()).toMatch(/ \/smile 😀 café\n/)
    const raw = await send(p.url, 'PUT', `${ENTRIES}/${encodeURIComponent('/smile')}`, 'application/json', Buffer.from('{"value":"😀 ok"}'))
    expect(raw.status, raw.text).toBe(200)
    expect(await mapNow()).toMatch(/ \/smile 😀 ok\n/)
    expect((await send(p.url, 'DELETE', `${ENTRIES}/${encodeURIComponent('/smile')}`, '', '')).status).toBe(204)
  }, 60_000)
})

describe('stalled clients', () => {
  type Stalled = { socket: Socket, kind: string, received: string, openedAt: number, closedAt?: number }

  /** Opens one connection that sends `first` (if anything) and then nothing more. */
  function stall (port: number, kind: string, first: string): Promise<Stalled> {
    return new Promise(resolve => {
      const s: Stalled = { socket: connect(port, '127.0.0.1'), kind, received: '', openedAt: Date.now() }
      s.socket.on('data', (d: Buffer) => { s.received += d.toString('latin1') })
      s.socket.on('error', () => {})
      s.socket.on('close', () => { s.closedAt = Date.now() })
      s.socket.on('connect', () => { if (first !== '') s.socket.write(first); resolve(s) })
      s.socket.on('close', () => resolve(s))
    })
  }

  /** Each kind of stall, what it sends, and the timeout that must end it (ms). */
  const KINDS: Array<[string, string, number]> = [
    ['partial headers', 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ', 1000],
    ['headers, partial body', `PUT ${ENTRIES} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"key":`, 2000],
    ['headers, no body', 'POST /backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n', 2000],
    ['nothing at all', '', 1000],
    ['idle keep-alive', 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', 1000]
  ]

  it('are cut after the timeouts, so /health answers again even when they took every file descriptor', async () => {
    const timeouts = { HAPCTL_HEADERS_TIMEOUT_MS: '1000', HAPCTL_REQUEST_TIMEOUT_MS: '2000', HAPCTL_KEEPALIVE_TIMEOUT_MS: '1000' }
    const p = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, LOG_LEVEL: 'warn', ...timeouts } })
    // A few hundred connections are enough to take every descriptor of a process limited to 256
    // (the default limit of many containers is 1024).
    execFileSync('prlimit', ['--pid', String(p.pid), '--nofile=256:256'])

    // More connections at once than the service can hold: libuv accepts and closes the excess at once.
    const all = await Promise.all(Array.from({ length: 400 }, (_, i) => {
      const [kind, first] = KINDS[i % KINDS.length] as [string, string, number]
      return stall(p.port, kind, first)
    }))
    await delay(300)
    const filledAt = Date.now()
    const held = all.filter(s => !(s.closedAt !== undefined && s.received === ''))
    const firstProbe = await fetch(`${p.url}/health`, { signal: AbortSignal.timeout(500) }).then(r => String(r.status), (err: Error) => err.name)
    console.log(`${held.length} of ${all.length} stalled connections held; /health right after: ${firstProbe}`)
    expect(held.length).toBeGreaterThan(150)
    expect(held.length).toBeLessThan(all.length)

    // /health answers again once the timeouts have cut the stalled connections (headers 1 s, whole
    // request 2 s, idle 1 s; checked every 250 ms): well within 10 s. Without timeouts it never does.
    await waitFor(async () => (await fetch(`${p.url}/health`, { signal: AbortSignal.timeout(1000) })).status, s => s === 200, { timeoutMs: 10_000, intervalMs: 200 })
    const healthyAfter = Date.now() - filledAt
    await waitFor(async () => held.filter(s => s.closedAt === undefined).length, n => n === 0, { timeoutMs: 10_000, intervalMs: 100 })
    console.log(`/health answered ${healthyAfter} ms after the connections were taken; all ${held.length} closed by the server`)

    for (const [kind, , timeoutMs] of KINDS) {
      const ofKind = held.filter(s => s.kind === kind)
      expect(ofKind.length, kind).toBeGreaterThan(0)
      for (const s of ofKind) {
        // Closed by the server after its own timeout, not before, and not much later (the check runs
        // every 250 ms; the margin is for a loaded machine).
        const lifetime = (s.closedAt as number) - s.openedAt
        expect(lifetime, kind).toBeGreaterThanOrEqual(timeoutMs - 100)
        expect(lifetime, kind).toBeLessThan(timeoutMs + 5000)
        if (kind === 'idle keep-alive') expect(s.received, kind).toMatch(/^HTTP\/1\.1 200 /)
        else if (kind !== 'nothing at all') expect(s.received, kind).toMatch(/^HTTP\/1\.1 408 /)
      }
    }
    expect(held.find(s => s.kind === 'partial headers')?.received).toContain('"code":"HAPX_REQUEST_TIMEOUT"')
  }, 60_000)

  it('that ask for a large answer and read none of it are cut too; a client that keeps reading gets all of it', async () => {
    const p = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi, LOG_LEVEL: 'warn', HAPCTL_REQUEST_TIMEOUT_MS: '2000', HAPCTL_HEADERS_TIMEOUT_MS: '1000' } })
    // A page of 10,000 long entries: 20 MB, far more than the socket buffers take in before the client reads.
    const keep = await mapNow()
    const lines = Array.from({ length: 10_000 }, (_, i) => `/${String(i).padStart(5, '0')}${'k'.repeat(1000)} ${'v'.repeat(1000)}`)
    expect((await send(p.url, 'PUT', ENTRIES, 'text/plain', lines.join('\n') + '\n')).status).toBe(200)
    const path = `${ENTRIES}?limit=10000`
    const sockets = (): number => readdirSync(`/proc/${p.pid}/fd`).filter(fd => {
      try { return readlinkSync(`/proc/${p.pid}/fd/${fd}`).startsWith('socket:') } catch { return false }
    }).length
    const before = sockets()

    const readers = await Promise.all(Array.from({ length: 10 }, async () => {
      const s = await stall(p.port, 'reads nothing', `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
      s.socket.pause()
      return s
    }))
    const heldAt = Date.now()
    await delay(500)
    expect(sockets()).toBeGreaterThan(before)
    // Without a timeout on sending, these stay open (and their answers in memory) for as long as the clients like.
    await waitFor(async () => sockets(), n => n <= before, { timeoutMs: 45_000, intervalMs: 100 })
    console.log(`10 clients reading nothing of a ${(lines.join('\n').length / MiB).toFixed(0)} MiB answer: cut after ${Date.now() - heldAt} ms`)
    for (const s of readers) s.socket.destroy()

    // A slow reader that keeps reading is not cut: it gets the whole answer.
    const whole = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = []
      const req = request(`${p.url}${path}`, { agent: false }, res => {
        res.on('data', (c: Buffer) => { chunks.push(c); res.pause(); setTimeout(() => res.resume(), 2) })
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
    expect(JSON.parse(whole).items).toHaveLength(10_000)
    expect((await fetch(`${p.url}/health`)).status).toBe(200)
    expect((await send(p.url, 'PUT', ENTRIES, 'text/plain', keep.split('\n').filter(l => l !== '').map(l => l.split(' ').slice(1).join(' ')).join('\n') + '\n')).status).toBe(200)
  }, 90_000)
})
