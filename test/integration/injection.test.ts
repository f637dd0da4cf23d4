import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Command injection through every user-supplied value of /backends, against a real HAProxy: each
 * payload would run a second command (or split an argument) if it reached the CLI verbatim
 * (docs/runtime-api.md#escaping-and-injection). hapctl must refuse it with 400 and HAProxy's state must not move.
 */

const PROBLEM_JSON = /^application\/problem\+json/

let h: HaproxyInstance
let app: FastifyInstance

beforeAll(async () => {
  h = await startHaproxy()
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
  // Something for the payloads to damage: a dynamic backend with a server, and a map entry.
  const created = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_inj', from: 'mydefaults', published: true } })
  expect(created.statusCode).toBe(201)
  // Through the API: hapctl owns dyn_inj, and its reconciler would remove a server added behind its back.
  const server = await app.inject({ method: 'POST', url: '/backends/dyn_inj/servers', payload: { name: 'a1', address: '127.0.0.1', port: h.upstreams.s1!.port } })
  expect(server.statusCode).toBe(201)
  expect(await h.cli('add map virt@paths.map /keep dyn_inj')).toBe('\n')
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

/**
 * What an injected command could change, read through the test's own CLI connection. Column 10 of
 * `show servers state` (srv_time_since_last_change) counts seconds, so it is blanked; every other
 * byte must be identical.
 */
async function snapshot (): Promise<string> {
  const servers = (await h.cli('show servers state')).split('\n').map(l => {
    if (l.startsWith('#') || !l.includes(' ')) return l
    const f = l.split(' ')
    f[9] = '_'
    return f.join(' ')
  }).join('\n')
  return [await h.cli('show backend'), servers, await h.cli('show map virt@paths.map'), await h.cli('show stat dyn_inj -1 -1').then(statusColumns)].join('--\n')
}

/** name and status of each row of `show stat` (published/unpublished shows as ` (UNPUB)`). */
function statusColumns (csv: string): string {
  const lines = csv.split('\n').filter(l => l !== '')
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  const sv = header.indexOf('svname')
  const st = header.indexOf('status')
  return lines.slice(1).map(l => { const c = l.split(','); return `${c[sv]} ${c[st]}` }).join('\n')
}

/** Each payload is appended to a value that is valid on its own, so only the injected part can make it fail. */
const PAYLOADS: ReadonlyArray<readonly [string, string]> = [
  ['`; del backend`', '; del backend static_empty'],
  ['`;` without a blank', ';del backend static_empty'],
  ['LF + command', '\nshow version'],
  ['LF + state change', '\ndisable server webservers/web1'],
  ['CR LF + state change', '\r\ndisable server webservers/web1'],
  ['NUL + state change', '\u0000disable server webservers/web1'],
  ['escaped NUL', '\\\u0000disable server webservers/web1'],
  ['escaped `;`', '\\;y'],
  ['backslash + LF', '\\\nunpublish backend webservers'],
  ['a space', ' y'],
  ['a space + command words', ' del backend static_empty'],
  ['a TAB', '\tdisable'],
  ['U+2028', '\u2028del backend static_empty'],
  ['a map command', '; add map virt@paths.map /inj dyn_inj']
]

type Field = {
  field: string
  /** The valid value each payload is appended to. */
  valid: string
  send: (value: string) => Promise<LightMyRequestResponse>
}

const FIELDS: Field[] = [
  {
    field: 'body.name',
    valid: 'x',
    send: v => app.inject({ method: 'POST', url: '/backends', payload: { name: v, from: 'mydefaults' } })
  },
  {
    field: 'body.from',
    valid: 'mydefaults',
    send: v => app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_new', from: v } })
  },
  {
    field: 'body.mode',
    valid: 'http',
    send: v => app.inject({ method: 'POST', url: '/backends', payload: { name: 'dyn_new', from: 'nomode', mode: v } })
  },
  {
    field: 'params.name (GET)',
    valid: 'dyn_inj',
    send: v => app.inject({ method: 'GET', url: `/backends/${encodeURIComponent(v)}` })
  },
  {
    field: 'params.name (PATCH)',
    valid: 'dyn_inj',
    send: v => app.inject({ method: 'PATCH', url: `/backends/${encodeURIComponent(v)}`, payload: { published: false } })
  },
  {
    field: 'params.name (DELETE)',
    valid: 'dyn_inj',
    send: v => app.inject({ method: 'DELETE', url: `/backends/${encodeURIComponent(v)}?timeout=1s` })
  },
  {
    field: 'querystring.timeout',
    valid: '1s',
    send: v => app.inject({ method: 'DELETE', url: `/backends/dyn_inj?timeout=${encodeURIComponent(v)}` })
  }
]

describe('injection through /backends', () => {
  it('the snapshot sees what an injected command does (control)', async () => {
    const before = await snapshot()
    // The naive interpolation the payloads aim at, sent raw: the second command runs.
    expect(await h.cli('add map virt@paths.map /probe dyn_inj; disable server dyn_inj/a1')).toBe('\n\n')
    expect(await snapshot()).not.toBe(before)
    expect(await h.cli('enable server dyn_inj/a1; del map virt@paths.map /probe')).toBe('\n\n')
    expect(await snapshot()).toBe(before)
  })

  describe.each(FIELDS)('$field', ({ valid, send }) => {
    it.each(PAYLOADS)('refuses %s with 400 and HAProxy does not change', async (_label, payload) => {
      const before = await snapshot()
      const res = await send(valid + payload)
      expect(res.statusCode).toBe(400)
      expect(res.headers['content-type']).toMatch(PROBLEM_JSON)
      expect(await snapshot()).toBe(before)
    })
  })

  it('accepted the valid values themselves (the payload is what was refused)', async () => {
    // GET and PATCH with the valid name work, so a 400 above came from the appended payload.
    expect((await app.inject({ method: 'GET', url: '/backends/dyn_inj' })).statusCode).toBe(200)
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'x', from: 'nomode', mode: 'http' } })
    expect(res.statusCode).toBe(201)
    expect(res.json()).toMatchObject({ name: 'x', from: 'nomode', mode: 'http' })
    expect((await app.inject({ method: 'DELETE', url: '/backends/x?timeout=1s' })).statusCode).toBe(204)
  })
})
