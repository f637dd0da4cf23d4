/**
 * The audit trail against a real HAProxy 3.4, with hapctl as its own process (SQLite store, fsync on,
 * every log line down to trace): a sequence of writes (accepted, refused by validation, refused by
 * HAProxy, undone, refused for the token) is listed by GET /audit exactly, with exactly the commands
 * HAProxy received. A recording proxy sits between hapctl and HAProxy's Runtime API: what it saw is
 * the reference, independent of hapctl's own account. Then the token is searched for in the audit
 * trail, the store's files and the logs.
 */
import net from 'node:net'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'
import type { AuditEntry } from '../../src/engine/store/types.ts'

const SECRET = 'audit-integration-secret-7f3a9c'
const WRONG = 'audit-integration-wrong-token-d41d8'

/** A line HAProxy received, and for `… <<` commands the payload that followed it. */
type Received = { line: string, payload?: string }

/** A TCP proxy to HAProxy's Runtime API that records, in arrival order, every command line of every connection. */
async function recordingProxy (target: { host: string, port: number }): Promise<{ port: number, received: Received[], close: () => Promise<void> }> {
  const received: Received[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer(client => {
    const upstream = net.connect(target)
    sockets.add(client).add(upstream)
    let buffer = ''
    let payload: Received | undefined
    client.on('data', chunk => {
      buffer += chunk.toString('utf8')
      let nl = buffer.indexOf('\n')
      while (nl !== -1) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        if (payload !== undefined) {
          if (line === '') payload = undefined
          else payload.payload += line + '\n'
        } else {
          const r: Received = line.endsWith(' <<') ? { line, payload: '' } : { line }
          received.push(r)
          if (r.payload !== undefined) payload = r
        }
        nl = buffer.indexOf('\n')
      }
      upstream.write(chunk)
    })
    upstream.on('data', chunk => client.write(chunk))
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** What hapctl sends that changes nothing: connection settings and reads. */
const isReadOrSetting = (line: string): boolean =>
  line === '' || /^(show|get) /.test(line) || line === 'show info' || line === 'prompt i' || line === 'experimental-mode on' || /^set timeout cli /.test(line)

describe('audit trail (real HAProxy, hapctl as a process)', () => {
  let h: HaproxyInstance | undefined
  let proxy: Awaited<ReturnType<typeof recordingProxy>> | undefined
  let hapctl: HapctlProcess | undefined
  const dir = mkdtempSync(join(tmpdir(), 'hapctl-audit-'))

  beforeAll(async () => {
    h = await startHaproxy()
    proxy = await recordingProxy({ host: '127.0.0.1', port: h.ports.runtime })
    hapctl = await startHapctl({
      env: {
        HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${proxy.port}`,
        API_TOKEN: SECRET,
        HAPCTL_STORE: join(dir, 'hapctl.db'),
        HAPCTL_STORE_SYNC: 'full',
        LOG_LEVEL: 'trace'
      }
    })
  })
  afterAll(async () => {
    await hapctl?.kill()
    await proxy?.close()
    await h?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const call = async (method: string, path: string, body?: unknown, token = SECRET, contentType = 'application/json') => {
    const res = await fetch(`${hapctl?.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
  }

  it('lists exactly the writes made, with exactly the commands HAProxy received, and no secret anywhere', async () => {
    const upstreamPort = h?.upstreams.s1?.port as number
    const writes: Array<{ method: string, path: string, status: number, outcome: string }> = []
    const write = async (method: string, path: string, body: unknown, outcome: string, status: number, token?: string, contentType?: string) => {
      const res = await call(method, path, body, token, contentType)
      expect(res.status, JSON.stringify(res.body)).toBe(status)
      if (res.status >= 400 && res.body?.outcome !== undefined) expect(res.body.outcome).toBe(outcome)
      writes.push({ method, path: path.split('?')[0] as string, status, outcome })
    }
    const before = proxy?.received.length as number

    // Accepted.
    await write('POST', '/backends', { name: 'aud1', from: 'mydefaults' }, 'applied', 201)
    await write('POST', '/backends/aud1/servers', { name: 's1', address: '127.0.0.1', port: upstreamPort }, 'applied', 201)
    await write('PATCH', '/backends/aud1', { published: true }, 'applied', 200)
    await write('PUT', `/maps/${encodeURIComponent('virt@paths.map')}/entries/${encodeURIComponent('/aud')}`, { value: 'aud1' }, 'applied', 201)
    await write('PUT', `/maps/${encodeURIComponent('virt@paths.map')}/entries`, '/aud aud1\n/aud2 aud1\n', 'applied', 200, SECRET, 'text/plain')
    // Refused by validation: nothing sent.
    await write('POST', '/backends', { name: 'bad name', from: 'mydefaults' }, 'rejected', 400)
    // Refused by HAProxy: no such defaults section.
    await write('POST', '/backends', { name: 'aud2', from: 'nosuchdefaults' }, 'refused', 422)
    // Undone: the second server is refused (ssl verify required without a CA), the backend and the first server are removed again.
    await write('POST', '/backends', {
      name: 'aud3',
      from: 'mydefaults',
      servers: [{ name: 'g1', address: '127.0.0.1', port: upstreamPort }, { name: 'g2', address: '127.0.0.1', port: upstreamPort, ssl: true, sslVerify: 'required' }]
    }, 'undone', 400)
    // Refused for the token: nothing read, nothing sent.
    await write('DELETE', '/backends/aud1', undefined, 'rejected', 401, WRONG)
    await write('DELETE', '/backends/aud1/servers/s1?force=true', undefined, 'applied', 204)

    const all: AuditEntry[] = []
    let cursor: string | undefined
    do {
      const page = await call('GET', `/audit?limit=3${cursor === undefined ? '' : `&cursor=${cursor}`}`)
      expect(page.status).toBe(200)
      all.push(...page.body.items)
      cursor = page.body.next
    } while (cursor !== undefined)
    const oldestFirst = all.reverse()
    const requests = oldestFirst.filter(e => e.method !== null)
    expect(requests.map(e => ({ method: e.method, path: e.path, status: e.status, outcome: e.outcome }))).toEqual(writes)
    expect(requests.map(e => e.actor)).toEqual(writes.map(w => w.status === 401 ? null : 'api-token'))
    expect(new Set(requests.map(e => e.client))).toEqual(new Set(['127.0.0.1']))
    expect(requests.filter(e => e.outcome === 'rejected').every(e => e.commands.length === 0)).toBe(true)
    expect(requests.find(e => e.status === 422)?.commands).toEqual([{ text: 'add backend aud2 from nosuchdefaults', result: 'refused' }])
    expect(requests.find(e => e.outcome === 'undone')?.commands.at(-1)).toEqual({ text: 'del backend aud3', result: 'ok' })
    expect(requests.find(e => e.outcome === 'undone')?.target).toEqual({ kind: 'backend', id: 'aud3' })

    // The reference: every command line HAProxy received during the sequence, without reads and settings.
    const got = (proxy?.received.slice(before) ?? []).filter(r => !isReadOrSetting(r.line))
    const listed = oldestFirst.flatMap(e => e.commands)
    expect(listed.map(c => c.text)).toEqual(got.map(r => r.line))
    for (const [i, c] of listed.entries()) {
      const r = got[i] as Received
      if (r.payload === undefined) { expect(c.payload).toBeUndefined(); continue }
      expect(c.payload).toEqual({ lines: r.payload.split('\n').length - 1, bytes: Buffer.byteLength(r.payload), firstLine: r.payload.split('\n')[0] })
    }
    expect(listed.some(c => c.payload !== undefined)).toBe(true)

    // The commands did what the entries say: HAProxy has aud1 and its server gone, no aud2, no aud3.
    const backends = await h?.cli('show backend') ?? ''
    expect(backends).toMatch(/^aud1$/m)
    expect(backends).not.toMatch(/aud2|aud3/)

    // Filters: by target, and by time.
    const aud1 = await call('GET', '/audit?target=backend:aud1')
    expect(aud1.body.items.map((e: AuditEntry) => [e.method, e.status])).toEqual([['DELETE', 401], ['PATCH', 200], ['POST', 201]])
    const future = await call('GET', `/audit?since=${new Date(Date.now() + 60_000).toISOString()}`)
    expect(future.body.items).toEqual([])

    // No secret in the audit trail, in the store's files, or in the logs (trace level).
    const everything = JSON.stringify(all)
    const files = readdirSync(dir).map(f => readFileSync(join(dir, f)).toString('latin1')).join('\n')
    const logs = hapctl?.output() ?? ''
    expect(logs).toMatch(/"reqId"/)
    for (const secret of [SECRET, WRONG]) {
      expect(everything).not.toContain(secret)
      expect(files).not.toContain(secret)
      expect(logs).not.toContain(secret)
    }
    expect(files).toContain('add backend aud1 from mydefaults')
  })
})
