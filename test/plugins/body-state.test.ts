/**
 * What src/plugins/body.ts does for the state document: records (z.record) bounded by their
 * maxProperties in the scan limits, the merge-patch and YAML parsers, and YAML only where a route
 * takes it. Route behaviour of /state itself is in test/routes/state.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { MAX_YAML_BYTES, jsonShapeLimits, scanJson } from '../../src/plugins/body.ts'
import { MAX_REPLACE_ENTRIES } from '../../src/schemas/maps.ts'
import { MAX_STATE_BACKENDS, MAX_STATE_SERVERS, StateDocumentSchema } from '../../src/schemas/state.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8')

describe('jsonShapeLimits of records', () => {
  it('bounds a record by its maxProperties (plus the slack for unknown keys)', () => {
    expect(jsonShapeLimits(z.record(z.string(), z.number()).meta({ maxProperties: 5000 }))).toMatchObject({ maxDepth: 1, maxKeys: [5000 + 8] })
    // Without maxProperties, the same default bound as an array without maxItems.
    expect(jsonShapeLimits(z.record(z.string(), z.number()))).toMatchObject({ maxDepth: 1, maxKeys: [1000 + 8] })
    // Each member's value counts: a record of 10 objects of 2 numbers holds 1 + 10 × (1 key + 1 object + 2 × 2) values.
    const limits = jsonShapeLimits(z.record(z.string(), z.object({ a: z.number(), b: z.number() })).meta({ maxProperties: 10 }))
    expect(limits.maxDepth).toBe(2)
    expect(limits.maxValues - 64).toBe(1 + 10 * (1 + 1 + 2 * 2))
  })

  it('the state document: records of backends, servers and maps as deep and as wide as the schema allows', () => {
    const limits = jsonShapeLimits(StateDocumentSchema)
    // document → backends → backend → servers → server (maps: document → maps → map → entries → entry)
    expect(limits.maxDepth).toBe(5)
    expect(limits.maxKeys[0]).toBe(4 + 8)
    expect(limits.maxKeys[1]).toBe(MAX_STATE_BACKENDS + 8)
    expect(limits.maxKeys[3]).toBeGreaterThanOrEqual(MAX_STATE_SERVERS)
    expect(limits.maxItems[3]).toBe(MAX_REPLACE_ENTRIES)
  })

  it('lets through 5,000 backends, and refuses more members than a record may have before parsing', () => {
    const limits = jsonShapeLimits(StateDocumentSchema)
    const backends = (n: number): string => JSON.stringify({ backends: Object.fromEntries(Array.from({ length: n }, (_, i) => [`b${i}`, { from: 'd', servers: { s: { address: '10.0.0.1', port: 80 } } }])) })
    expect(scanJson(bytes(backends(5000)), limits)).toBeUndefined()
    expect(scanJson(bytes(backends(MAX_STATE_BACKENDS + 8)), limits)).toBeUndefined()
    expect(scanJson(bytes(backends(MAX_STATE_BACKENDS + 9)), limits)).toMatchObject({ reason: 'BODY_TOO_COMPLEX', message: expect.stringContaining('depth 2') })
    expect(scanJson(bytes('{"backends":{"b":{"servers":{"s":{"x":[[[]]]}}}}}'), limits)).toMatchObject({ reason: 'BODY_TOO_COMPLEX', message: expect.stringContaining('deeper than 5') })
  })
})

describe('state bodies through the app', () => {
  const app = async () => buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))
  const send = async (a: Awaited<ReturnType<typeof app>>, method: 'PUT' | 'PATCH' | 'POST', url: string, contentType: string, payload: string | Buffer) => {
    const res = await a.inject({ method, url, headers: { 'content-type': contentType }, payload })
    return { status: res.statusCode, code: res.json().code as string | undefined, body: res.json() }
  }

  it('takes YAML as application/yaml, application/x-yaml and text/yaml on /state; elsewhere 415', async () => {
    const a = await app()
    for (const type of ['application/yaml', 'application/x-yaml', 'text/yaml', 'application/yaml; charset=utf-8']) {
      // An invalid document: validated (400 VALIDATION_FAILED) means it was parsed as YAML.
      expect(await send(a, 'PUT', '/state', type, 'backends:\n  b: { from: 12 }\n')).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    }
    expect(await send(a, 'PUT', '/maps/virt%40m/entries', 'application/yaml', '- { key: /a, value: b }\n')).toMatchObject({ status: 415, code: 'HAPX_UNSUPPORTED_MEDIA_TYPE' })
  })

  it('refuses YAML in another charset (415) or not UTF-8 (400)', async () => {
    const a = await app()
    expect(await send(a, 'PUT', '/state', 'application/yaml; charset=latin1', 'backends: {}\n')).toMatchObject({ status: 415, code: 'HAPX_UNSUPPORTED_MEDIA_TYPE' })
    expect(await send(a, 'PUT', '/state', 'application/yaml', Buffer.from('maps: { "\xe9": {} }\n', 'latin1'))).toMatchObject({ status: 400, code: 'HAPX_INVALID_BODY' })
  })

  it('refuses YAML over MAX_YAML_BYTES before parsing it, and says to send JSON', async () => {
    const a = await app()
    const big = `# ${'x'.repeat(MAX_YAML_BYTES)}\nbackends: {}\n`
    const res = await send(a, 'PUT', '/state', 'application/yaml', big)
    expect(res).toMatchObject({ status: 400, code: 'HAPX_BODY_TOO_COMPLEX' })
    expect(res.body.detail).toMatch(/JSON/)
  })

  it('does not merge YAML `<<` keys (a merge key is an unknown member) and refuses repeated keys', async () => {
    const a = await app()
    const merge = await send(a, 'PUT', '/state', 'application/yaml', 'base: &b { from: mydefaults }\n')
    expect(merge).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    const mergeKey = await send(a, 'PUT', '/state', 'application/yaml', 'backends:\n  x: &b { from: mydefaults }\n  y: { <<: *b }\n')
    expect(mergeKey).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    expect(JSON.stringify(mergeKey.body.errors)).toContain('<<')
    expect(await send(a, 'PUT', '/state', 'application/yaml', 'maps: {}\nmaps: {}\n')).toMatchObject({ status: 400, code: 'HAPX_INVALID_BODY' })
  })

  it('takes a few aliases, refuses more than 100 expansions', async () => {
    const a = await app()
    // Every map's entries are the same (invalid: a key with a space) list: VALIDATION_FAILED means it was parsed.
    const doc = (n: number): string => `maps:\n  virt@m:\n    entries: &e [{ key: "a b", value: x }]\n${Array.from({ length: n }, (_, i) => `  virt@m${i}: { entries: *e }`).join('\n')}\n`
    expect(await send(a, 'PUT', '/state', 'application/yaml', doc(3))).toMatchObject({ status: 400, code: 'HAPX_VALIDATION_FAILED' })
    expect(await send(a, 'PUT', '/state', 'application/yaml', doc(101))).toMatchObject({ status: 400, code: 'HAPX_INVALID_BODY' })
  })

  it('scans a merge patch as the document it patches: too deep or a poisoned prototype refused', async () => {
    const a = await app()
    expect(await send(a, 'PATCH', '/state', 'application/merge-patch+json', '{"backends":{"b":{"servers":{"s":{"x":[[[]]]}}}}}')).toMatchObject({ status: 400, code: 'HAPX_BODY_TOO_COMPLEX' })
    expect((await send(a, 'PATCH', '/state', 'application/merge-patch+json', '{"__proto__":{"x":1}}')).status).toBe(400)
    expect(await send(a, 'PATCH', '/state', 'application/merge-patch+json; charset=latin1', '{}')).toMatchObject({ status: 415 })
    expect(await send(a, 'PATCH', '/state', 'application/merge-patch+json', '{"maps":{"m":{"entries":[{"key":"\\udc00"}]}}}')).toMatchObject({ status: 400, code: 'HAPX_INVALID_BODY' })
  })
})
