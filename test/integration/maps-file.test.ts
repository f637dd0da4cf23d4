import { readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { defaultConfig, httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * File maps (a path as written in the configuration) and `#<id>` addressing, with host-based routing
 * through `map_str`: the virtual-map suite covers map_beg; this one checks the other names a map has.
 */
let h: HaproxyInstance
let app: FastifyInstance
let file: string

beforeAll(async () => {
  h = await startHaproxy({
    config: ctx => {
      file = join(ctx.dir, 'hosts.map')
      writeFileSync(file, '# host → backend\na.example static_unref\n')
      return defaultConfig(ctx).replace(/(frontend myfrontend1[^\n]*\n(?:[ \t]+[^\n]*\n)*?)([ \t]+use_backend %\[path)/,
        `$1    use_backend %[req.hdr(host),lower,map_str(${file})] if { req.hdr(host),lower,map_str(${file}) -m found }\n$2`)
    }
  })
  expect(h.config).toContain(`map_str(${file})`)
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), logger: false })
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

/** Who answers `GET /` for this Host header (a new connection each time). */
async function hostGet (host: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const req = request(h.frontendUrl + '/', { headers: { host }, agent: false }, res => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve(body.split(' ')[0] ?? ''))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('a file map', () => {
  it('is listed under its path with its id and entry count, and routes by host', async () => {
    const res = await app.inject({ url: '/maps' })
    expect(res.statusCode).toBe(200)
    const map = (res.json().items as Array<{ name: string, kind: string, id: number, entries: number }>).find(m => m.name === file)
    expect(map).toMatchObject({ kind: 'file', entries: 1, managed: false })
    expect(await hostGet('a.example')).toBe('srv=s1')
    expect(await hostGet('b.example')).toBe('srv=web1')
    expect((await httpGet(h.frontendUrl + '/')).status).toBe(200)
  })

  it('is written through its URL-encoded path, and through #<id> too', async () => {
    const byPath = `/maps/${encodeURIComponent(file)}/entries`
    const created = await app.inject({ method: 'POST', url: byPath, payload: { key: 'b.example', value: 'static_ref' } })
    expect(created.statusCode, created.body).toBe(201)
    expect(await hostGet('b.example')).toBe('srv=r1')

    const list = await app.inject({ url: '/maps' })
    const id = (list.json().items as Array<{ name: string, id: number }>).find(m => m.name === file)?.id as number
    const byId = `/maps/${encodeURIComponent(`#${id}`)}/entries`
    const entries = await app.inject({ url: byId })
    expect(entries.json().items).toEqual([{ key: 'a.example', value: 'static_unref' }, { key: 'b.example', value: 'static_ref' }])

    const replaced = await app.inject({ method: 'PUT', url: byId, headers: { 'content-type': 'text/plain' }, payload: 'a.example static_ref\n' })
    expect(replaced.statusCode, replaced.body).toBe(200)
    expect(await hostGet('a.example')).toBe('srv=r1')
    expect(await hostGet('b.example')).toBe('srv=web1')
    // Runtime changes are not written to the file (docs/runtime-api.md#maps); hapctl keeps the content under the map's path.
    expect(readFileSync(file, 'utf8')).toBe('# host → backend\na.example static_unref\n')
    const after = await app.inject({ url: '/maps' })
    expect((after.json().items as Array<{ name: string, managed: boolean }>).find(m => m.name === file)?.managed).toBe(true)
  })
})
