import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/auth/tokens.ts'
import { buildApp } from '../../src/app.ts'
import type { Runtime } from '../../src/runtime/client.ts'
import { buildTestApp, testConfig } from '../helpers/build-test-app.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'
import { MAP, fakeMaps } from '../helpers/fake-maps.ts'

const PROBLEM_JSON = /^application\/problem\+json/
const secret = (): string => `hapctl_${randomBytes(32).toString('base64url')}`

const dir = mkdtempSync(join(tmpdir(), 'hapctl-auth-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

/** One token per kind of grant, plus API_TOKEN. */
const API_TOKEN = secret()
const TOKENS = {
  reader: { token: secret(), scopes: ['read'] },
  backends: { token: secret(), scopes: ['backends:write'] },
  servers: { token: secret(), scopes: ['servers:write'] },
  maps: { token: secret(), scopes: ['maps:write'] },
  geo: { token: secret(), scopes: ['maps:write:virt@geo-*'] },
  admin: { token: secret(), scopes: ['admin'] },
  mixed: { token: secret(), scopes: ['read', 'servers:write', 'maps:write:virt@geo-*'] }
} as const
const TOKENS_FILE = join(dir, 'tokens.json')
writeFileSync(TOKENS_FILE, JSON.stringify({
  tokens: Object.entries(TOKENS).map(([name, t]) => ({ name, hash: hashToken(t.token), scopes: t.scopes }))
}))
const AUTH_ENV = { API_TOKEN, HAPCTL_TOKENS_FILE: TOKENS_FILE }
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** HAProxy with one backend (b1, no servers) and the fake map (virt@paths.map); answers stay below 500. */
function haproxy (): Runtime {
  const maps = fakeMaps([['/a', 'x']])
  const rest = fakeRuntime(text => {
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return statReply([{ px: 'b1', status: 'UP' }])
    if (text.startsWith('show servers state')) return '1\n# be_id be_name srv_id srv_name srv_addr'
    if (text.startsWith('unpublish backend') || text.startsWith('publish backend')) return 'Backend unpublished.'
    if (text.startsWith('del backend')) return 'Backend deleted.'
    if (text.startsWith('wait ')) return 'Done.'
    if (text === 'experimental-mode on') return ''
    return `Unknown command: '${text.split(' ')[0] as string}'`
  })
  const isMap = (text: string) => /(^| )map( |$)/.test(text)
  return {
    // A sequence mixing both (the state apply's read: show info, show stat, …, show map) goes command by command.
    execute: async (commands) => {
      const kinds = new Set(commands.map(c => isMap(c.text)))
      if (kinds.size <= 1) return await (isMap(commands[0]?.text ?? '') ? maps.runtime : rest).execute(commands)
      const results: unknown[] = []
      for (const c of commands) results.push(...await (isMap(c.text) ? maps.runtime : rest).execute([c]))
      return results
    },
    executePayload: maps.runtime.executePayload,
    close: async () => {}
  } as Runtime
}

/** What each token may do, written from methods and paths (not from src/auth/scopes.ts). */
function allowed (scopes: readonly string[], method: string, url: string, map: string | undefined): boolean {
  if (url === '/health' || url === '/openapi.json' || url === '/docs' || url.startsWith('/docs/')) return true
  if (scopes.includes('admin')) return true
  if (method === 'GET' || method === 'HEAD') return scopes.includes('read')
  // A whole state document changes backends, servers and maps at once.
  if (url === '/state') return false
  if (url.startsWith('/maps/')) return scopes.includes('maps:write') || (scopes.includes('maps:write:virt@geo-*') && map?.startsWith('virt@geo-') === true)
  if (url.includes('/servers')) return scopes.includes('servers:write')
  if (url.startsWith('/backends')) return scopes.includes('backends:write')
  return false
}

/** Every registered route as concrete requests (map routes twice: a map the glob covers and one it does not). */
function requestsFor (routes: ReadonlyArray<{ method: string, url: string }>) {
  const out: Array<{ method: string, route: string, url: string, map: string | undefined }> = []
  for (const r of routes) {
    for (const map of r.url.includes(':map') ? ['virt@geo-eu.map', MAP] : [undefined]) {
      const url = r.url
        .replace(':name', 'b1').replace(':backend', 'b1').replace(':server', 's1')
        .replace(':map', encodeURIComponent(map ?? '')).replace(':key', encodeURIComponent('/a'))
        .replace('*', 'index.css')
      out.push({ method: r.method, route: r.url, url, map })
    }
  }
  return out
}

describe('route × scope matrix', () => {
  const principals: Array<[string, readonly string[], string]> = [
    ...Object.entries(TOKENS).map(([name, t]) => [name, t.scopes, t.token] as [string, readonly string[], string]),
    ['api-token', ['admin'], API_TOKEN]
  ]

  for (const [name, scopes, token] of principals) {
    it(`${name} (${scopes.join(' ')}): exactly the expected routes answer 403, the others neither 401 nor 403 nor 5xx`, async () => {
      const app = await buildTestApp(haproxy(), AUTH_ENV)
      await app.ready()
      const requests = requestsFor(app.routeScopes)
      expect(requests.length).toBeGreaterThan(25)
      let forbidden = 0
      for (const r of requests) {
        const hasBody = ['POST', 'PUT', 'PATCH'].includes(r.method)
        // The watch stream answers for as long as the client stays: test/routes/events.test.ts has it.
        if (r.route === '/events' && allowed(scopes, r.method, r.route, r.map)) continue
        const res = await app.inject({ method: r.method as 'GET', url: r.url, headers: bearer(token), ...(hasBody ? { payload: {} } : {}) })
        const label = `${name}: ${r.method} ${r.url} → ${res.statusCode} ${res.body.slice(0, 200)}`
        if (allowed(scopes, r.method, r.route, r.map)) {
          expect([401, 403], label).not.toContain(res.statusCode)
          expect(res.statusCode, label).toBeLessThan(500)
        } else {
          forbidden++
          expect(res.statusCode, label).toBe(403)
          expect(res.headers['content-type'], label).toMatch(PROBLEM_JSON)
          expect(res.headers.connection, label).toBe('close')
          // The narrowest scope that would do: a map write names the map.
          const required = r.method === 'GET' || r.method === 'HEAD'
            ? 'read'
            : r.route === '/state' ? 'admin' : r.route.startsWith('/maps/') ? `maps:write:${r.map as string}` : r.route.includes('/servers') ? 'servers:write' : 'backends:write'
          expect(res.headers['www-authenticate'], label).toBe(`Bearer realm="hapctl", error="insufficient_scope", scope="${required}"`)
          if (r.method === 'HEAD') continue
          const body = res.json()
          expect(body, label).toMatchObject({ status: 403, code: 'HAPX_FORBIDDEN', title: 'Forbidden' })
          expect(body.requiredScope, label).toBe(required)
          expect(body.detail, label).toContain(`token '${name}'`)
        }
      }
      if (scopes.includes('admin')) expect(forbidden).toBe(0)
      else expect(forbidden).toBeGreaterThan(0)
    })
  }

  it('anonymous and wrong tokens get 401 everywhere but /health and the documentation', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    await app.ready()
    for (const headers of [{}, bearer(secret()), bearer(hashToken(API_TOKEN)), { authorization: API_TOKEN }, { authorization: `Basic ${API_TOKEN}` }]) {
      for (const r of requestsFor(app.routeScopes)) {
        const res = await app.inject({ method: r.method as 'GET', url: r.url, headers })
        const label = `${JSON.stringify(headers).slice(0, 40)} ${r.method} ${r.url} → ${res.statusCode}`
        if (allowed([], r.method, r.route, r.map)) {
          expect(res.statusCode, label).not.toBe(401)
          continue
        }
        expect(res.statusCode, label).toBe(401)
        expect(res.headers['www-authenticate'], label).toBe('Bearer realm="hapctl"')
        expect(res.headers.connection, label).toBe('close')
        if (r.method !== 'HEAD') expect(res.json(), label).toMatchObject({ status: 401, code: 'HAPX_UNAUTHORIZED' })
      }
    }
  })
})

describe('authorization', () => {
  it('answers 404 (not 403) on unknown paths to any valid token, 401 to others', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    expect((await app.inject({ url: '/nothing-here' })).statusCode).toBe(401)
    const res = await app.inject({ url: '/nothing-here', headers: bearer(TOKENS.geo.token) })
    expect(res.statusCode).toBe(404)
    expect(res.json().code).toBe('HAPX_ROUTE_NOT_FOUND')
  })

  it('needs admin for a route missing from the scope table, and tells the route who is calling', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    app.get('/whoami', { schema: { operationId: 'notInTheTable' } }, async (request) => ({ principal: request.principal ?? null }))
    const reader = await app.inject({ url: '/whoami', headers: bearer(TOKENS.reader.token) })
    expect(reader.statusCode).toBe(403)
    expect(reader.json()).toMatchObject({ requiredScope: 'admin', detail: "token 'reader' lacks the scope this route needs: admin" })
    const admin = await app.inject({ url: '/whoami', headers: bearer(TOKENS.admin.token) })
    expect(admin.json()).toEqual({ principal: { name: 'admin', scopes: ['admin'] } })
    const api = await app.inject({ url: '/whoami', headers: bearer(API_TOKEN) })
    expect(api.json()).toEqual({ principal: { name: 'api-token', scopes: ['admin'] } })
  })

  it('lets everything through with no principal when neither API_TOKEN nor a tokens file is set', async () => {
    const app = await buildTestApp(haproxy())
    app.get('/whoami', async (request) => ({ principal: request.principal ?? null }))
    expect(app.tokens).toBeUndefined()
    expect((await app.inject({ url: '/whoami' })).json()).toEqual({ principal: null })
    expect((await app.inject({ url: '/backends' })).statusCode).toBe(200)
    expect((await app.inject({ url: '/backends', headers: bearer('anything') })).statusCode).toBe(200)
  })

  it('applies a changed tokens file to the next request', async () => {
    const file = join(dir, 'reload.json')
    const token = secret()
    writeFileSync(file, JSON.stringify({ tokens: [{ name: 'ci', hash: hashToken(token), scopes: ['read'] }] }))
    const app = await buildTestApp(haproxy(), { HAPCTL_TOKENS_FILE: file })
    const before = await app.inject({ method: 'DELETE', url: '/backends/b1', headers: bearer(token) })
    expect(before.statusCode).toBe(403)
    writeFileSync(file, JSON.stringify({ tokens: [{ name: 'ci', hash: hashToken(token), scopes: ['read', 'backends:write'] }] }))
    expect(await app.tokens?.reload('test')).toBe(true)
    const after = await app.inject({ method: 'DELETE', url: '/backends/b1', headers: bearer(token) })
    expect([401, 403]).not.toContain(after.statusCode)
  })

  it('refuses to build the app with an invalid tokens file, in one line naming the file and the reason', async () => {
    const file = join(dir, 'invalid.json')
    writeFileSync(file, JSON.stringify({ tokens: [{ name: 'x', hash: hashToken(secret()), scopes: ['write'] }] }))
    const err = await buildApp({ config: testConfig({ HAPCTL_TOKENS_FILE: file }), runtime: haproxy(), logger: false, reconcile: false }).then(() => undefined, (e: Error) => e)
    expect(err?.message).toBe(`tokens file ${file}: tokens[0].scopes[0]: unknown scope (known: read, backends:write, servers:write, maps:write, admin, maps:write:<glob>)`)
    expect(err?.message).not.toContain('\n')
  })
})

describe('the audit trail', () => {
  it('names the token of each write, refused or not, and never holds a token or a hash', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    const url = `/maps/${encodeURIComponent(MAP)}/entries/${encodeURIComponent('/b')}`
    const put = async (headers: Record<string, string>) => (await app.inject({ method: 'PUT', url, headers, payload: { value: 'v' } })).statusCode
    expect(await put(bearer(TOKENS.maps.token))).toBe(201)
    expect(await put(bearer(TOKENS.geo.token))).toBe(403)
    const stranger = secret()
    expect(await put(bearer(stranger))).toBe(401)
    const res = await app.inject({ url: '/audit', headers: bearer(TOKENS.reader.token) })
    expect(res.statusCode).toBe(200)
    expect(res.json().items.map((e: { actor: string | null, status: number }) => [e.actor, e.status])).toEqual([[null, 401], ['geo', 403], ['maps', 201]])
    for (const s of [...Object.values(TOKENS).map(t => t.token), API_TOKEN, stranger]) {
      expect(res.body).not.toContain(s)
      expect(res.body).not.toContain(hashToken(s).slice('sha256:'.length))
    }
  })
})

describe('a refusal before the body', () => {
  /** Sends headers announcing a 50 MB body and 1 KB of it; resolves with what came back once the server closed. */
  async function hostileUpload (port: number, path: string, headers: Record<string, string>) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    let reply = ''
    socket.on('data', (b: Buffer) => { reply += b.toString('latin1') })
    const started = Date.now()
    const head = Object.entries({ host: 'x', 'content-type': 'application/json', 'content-length': '50000000', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    socket.write(`PUT ${path} HTTP/1.1\r\n${head}\r\n{"entries":[${'{},'.repeat(300)}`)
    const closed = await Promise.race([
      new Promise<boolean>(resolve => socket.once('close', () => resolve(true))),
      new Promise<boolean>(resolve => setTimeout(() => resolve(false), 5000))
    ])
    socket.destroy()
    return { reply, closed, ms: Date.now() - started }
  }

  it('answers 401 and 403 and closes the connection instead of waiting for the body', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    await app.listen({ host: '127.0.0.1', port: 0 })
    const port = (app.server.address() as AddressInfo).port
    const path = `/maps/${encodeURIComponent(MAP)}/entries`

    const anonymous = await hostileUpload(port, path, {})
    expect(anonymous.reply).toMatch(/^HTTP\/1\.1 401 /)
    expect(anonymous.reply).toMatch(/\r\nconnection: close\r\n/i)
    expect(anonymous.closed).toBe(true)

    const reader = await hostileUpload(port, path, bearer(TOKENS.reader.token))
    expect(reader.reply).toMatch(/^HTTP\/1\.1 403 /)
    expect(reader.reply).toContain(`"requiredScope":"maps:write:${MAP}"`)
    expect(reader.closed).toBe(true)

    const geo = await hostileUpload(port, path, bearer(TOKENS.geo.token))
    expect(geo.reply).toMatch(/^HTTP\/1\.1 403 /)
    expect(geo.reply).toContain(`"requiredScope":"maps:write:${MAP}"`)
    expect(geo.closed).toBe(true)
  })
})

describe('the API description', () => {
  it('stays open with Swagger UI, and says per operation which scope it needs and that it can answer 401 and 403', async () => {
    const app = await buildTestApp(haproxy(), AUTH_ENV)
    expect((await app.inject({ url: '/docs' })).statusCode).toBeLessThan(400)
    const ui = await app.inject({ url: '/docs/static/swagger-initializer.js' })
    expect(ui.statusCode).toBe(200)
    expect((await app.inject({ url: '/docs/json' })).statusCode).toBe(200)
    const doc = (await app.inject({ url: '/openapi.json' })).json()
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.security).toEqual([{ bearerAuth: [] }])
    let protectedOps = 0
    for (const [path, item] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(item)) {
        const label = `${method} ${path}`
        if (op.operationId === 'getHealth') {
          expect(op['x-hapctl-scope'], label).toBeUndefined()
          expect(op.security, label).toEqual([])
          continue
        }
        protectedOps++
        const expected = method === 'get' ? 'read' : path === '/state' ? 'admin' : path.startsWith('/maps/') ? 'maps:write' : path.includes('/servers') ? 'servers:write' : 'backends:write'
        expect(op['x-hapctl-scope'], label).toBe(expected)
        expect(op.description, label).toMatch(new RegExp(`Scope: \`${expected}\``))
        expect(Object.keys(op.responses), label).toEqual(expect.arrayContaining(['401', '403']))
      }
    }
    expect(protectedOps).toBeGreaterThan(20)
    // Generated twice (Swagger UI and /openapi.json ask for it), the description says it once.
    const again = (await app.inject({ url: '/openapi.json' })).json()
    expect(again.paths['/backends'].get.description).toBe(doc.paths['/backends'].get.description)
    expect(doc.paths['/backends'].get.description.match(/Scope:/g)).toHaveLength(1)
  })
})

describe('start-up warning', () => {
  function capture () {
    const lines: any[] = []
    const stream = new Writable({ write (chunk, _enc, cb) { for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l)); cb() } })
    return { lines, logger: pino({ level: 'info' }, stream) }
  }

  it('warns once, when listening, that a non-loopback HOST has no authentication; not when a token is set or HOST is loopback', async () => {
    const cases: Array<[Record<string, string>, number]> = [
      [{ HOST: '0.0.0.0', HAPCTL_ALLOW_UNAUTHENTICATED: 'true' }, 1],
      [{ HOST: '0.0.0.0', HAPCTL_ALLOW_UNAUTHENTICATED: 'true', API_TOKEN }, 0],
      [{ HOST: '127.0.0.1', HAPCTL_ALLOW_UNAUTHENTICATED: 'true' }, 0]
    ]
    for (const [env, warnings] of cases) {
      const { lines, logger } = capture()
      const app = await buildTestApp(haproxy(), env, { logger })
      // Where it listens in the test does not matter: the configured HOST does.
      await app.listen({ host: '127.0.0.1', port: 0 })
      const warned = lines.filter(l => l.level === 40 && /no authentication/.test(l.msg))
      expect(warned, JSON.stringify(env)).toHaveLength(warnings)
      if (warnings === 1) {
        expect(warned[0].msg).toBe('hapctl listens on 0.0.0.0 with no authentication (HAPCTL_ALLOW_UNAUTHENTICATED=true): ' +
          'anyone who reaches this port can change HAProxy; set API_TOKEN or HAPCTL_TOKENS_FILE')
      }
      await app.close()
    }
  })
})
