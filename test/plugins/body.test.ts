import { describe, expect, it } from 'vitest'
import { validatorCompiler } from '@fastify/type-provider-zod'
import type { FastifyRouteSchemaDef } from 'fastify/types/schema.js'
import type { z } from 'zod'
import {
  BODY_LIMITS, MAX_FIELD_ERRORS, MAX_TEXT_LINES, boundedValidatorCompiler, countLines, foreignCharset, jsonShapeLimits, scanJson
} from '../../src/plugins/body.ts'
import type { JsonShapeLimits } from '../../src/plugins/body.ts'
import { MAX_REPLACE_ENTRIES, PatchBodySchema, ReplaceBodySchema } from '../../src/schemas/maps.ts'
import { CreateBackendSchema } from '../../src/schemas/backends.ts'
import { PatchServerSchema } from '../../src/schemas/servers.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8')
const LOOSE: JsonShapeLimits = { maxDepth: 4, maxItems: [10, 10, 10, 10], maxKeys: [10, 10, 10, 10], maxValues: 100 }

describe('jsonShapeLimits: the largest body each schema accepts', () => {
  it('PUT /maps/{map}/entries: one array of at most MAX_REPLACE_ENTRIES objects of two strings', () => {
    expect(jsonShapeLimits(ReplaceBodySchema)).toEqual({
      maxDepth: 2, maxItems: [MAX_REPLACE_ENTRIES, 8], maxKeys: [8, 2 + 8], maxValues: 1 + MAX_REPLACE_ENTRIES * 5 + 64
    })
  })

  it('PATCH /maps/{map}/entries: at most 100,000 changes', () => {
    expect(jsonShapeLimits(PatchBodySchema)).toMatchObject({ maxDepth: 2, maxItems: [100_000, 8], maxKeys: [8, 10] })
  })

  it('POST /backends: an object whose servers array holds at most 1,000 flat objects', () => {
    const limits = jsonShapeLimits(CreateBackendSchema)
    expect(limits.maxDepth).toBe(3)
    expect(limits.maxItems).toEqual([8, 1000, 8])
    expect(limits.maxKeys[0]).toBe(5 + 8)
    expect(limits.maxKeys[2]).toBeGreaterThanOrEqual(16)
  })

  it('a flat object body', () => {
    expect(jsonShapeLimits(PatchServerSchema)).toMatchObject({ maxDepth: 1, maxItems: [8], maxKeys: [6 + 8] })
  })
})

describe('scanJson', () => {
  const shape = jsonShapeLimits(ReplaceBodySchema)

  it('accepts what the schema could accept, whatever the spacing and string content', () => {
    expect(scanJson(bytes('[]'), shape)).toBeUndefined()
    expect(scanJson(bytes(' [ { "key" : "/a" , "value" : "x" } , {"key":"[{,:}]\\"\\\\","value":"\\ud83d\\ude00 é"} ] '), shape)).toBeUndefined()
    expect(scanJson(bytes('"a map file as a JSON string"'), shape)).toBeUndefined()
  })

  it('refuses nesting deeper than the schema, before looking further', () => {
    expect(scanJson(bytes('[{"key":{}}]'), shape)).toMatchObject({ reason: 'BODY_TOO_COMPLEX', message: expect.stringContaining('deeper than 2') })
    expect(scanJson(bytes('['.repeat(1_000_000)), shape)?.reason).toBe('BODY_TOO_COMPLEX')
  })

  it('refuses an array longer than its depth allows, and any member where the schema has no array', () => {
    const small: JsonShapeLimits = { maxDepth: 2, maxItems: [3, 0], maxKeys: [0, 2], maxValues: 100 }
    expect(scanJson(bytes('[1,2,3]'), small)).toBeUndefined()
    expect(scanJson(bytes('[1,2,3,4]'), small)).toMatchObject({ message: expect.stringContaining('an array at depth 1 has more than 3 items') })
    expect(scanJson(bytes('[[]]'), small)).toBeUndefined()
    expect(scanJson(bytes('[[0]]'), small)).toMatchObject({ message: expect.stringContaining('an array at depth 2 has more than 0 items') })
    expect(scanJson(bytes('[{"a":1,"b":2}]'), small)).toBeUndefined()
    expect(scanJson(bytes('[{"a":1,"b":2,"c":3}]'), small)).toMatchObject({ message: expect.stringContaining('an object at depth 2 has more than 2 members') })
  })

  it('lets a container of the wrong kind through to validation, which names the field', async () => {
    const backend = jsonShapeLimits(CreateBackendSchema)
    expect(scanJson(bytes('{"name":"b","from":"d","servers":{"a":1}}'), backend)).toBeUndefined()
    expect(scanJson(bytes('{"name":"b","from":"d","servers":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9}}'), backend)?.reason).toBe('BODY_TOO_COMPLEX')
    const app = await buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))
    const res = await app.inject({ method: 'POST', url: '/backends', payload: { name: 'b', from: 'mydefaults', servers: { a: 1 } } })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toMatchObject({ code: 'HAPX_VALIDATION_FAILED', errors: [{ field: 'body.servers' }] })
  })

  it('counts every value, keys included', () => {
    const limits: JsonShapeLimits = { ...LOOSE, maxValues: 6 }
    expect(scanJson(bytes('{"a":1,"b":[2]}'), limits)).toBeUndefined()
    expect(scanJson(bytes('{"a":1,"b":[2,true]}'), limits)).toMatchObject({ message: expect.stringContaining('more than 6 JSON values') })
  })

  it('refuses many arrays and objects for the size of the body (each costs JSON.parse ~60 bytes)', () => {
    const many: JsonShapeLimits = { maxDepth: 2, maxItems: [10_000_000, 10], maxKeys: [0, 10], maxValues: 100_000_000 }
    expect(scanJson(bytes(`[${'{},'.repeat(999)}{}]`), many)).toBeUndefined()
    expect(scanJson(bytes(`[${'{},'.repeat(100_000)}{}]`), many)).toMatchObject({ message: expect.stringContaining('arrays and objects for its') })
    expect(scanJson(bytes(`[${'{"key":"k","value":"v"},'.repeat(100_000)}{}]`), many)).toBeUndefined()
  })

  it('refuses an escape that decodes to a lone surrogate, and nothing that only looks like one', () => {
    for (const text of ['["\\ud800"]', '["\\uDBFF x"]', '["\\udc00"]', '["a\\ud800\\u0041"]', '["\\ud800\\ud800"]', '{"\\ud800":1}', '["\\ud800']) {
      expect(scanJson(bytes(text), LOOSE), text).toMatchObject({ reason: 'INVALID_BODY', message: expect.stringContaining('surrogate') })
    }
    for (const text of ['["\\ud83d\\ude00"]', '["\\\\ud800"]', '["\\\\\\\\ud800"]', '["😀"]']) {
      expect(scanJson(bytes(text), LOOSE), text).toBeUndefined()
    }
  })
})

describe('charsets and map files', () => {
  it('accepts UTF-8 or no charset, names any other', () => {
    expect(foreignCharset(undefined)).toBeUndefined()
    expect(foreignCharset('application/json')).toBeUndefined()
    expect(foreignCharset('application/json; charset=UTF-8')).toBeUndefined()
    expect(foreignCharset('text/plain;charset="utf8"')).toBeUndefined()
    expect(foreignCharset('application/json; charset=latin1')).toBe('latin1')
    expect(foreignCharset('text/plain; format=flowed; Charset="ISO-8859-1"')).toBe('iso-8859-1')
  })

  it('counts the lines of a map file and those holding an entry', () => {
    expect(countLines(bytes(''))).toEqual({ lines: 1, entries: 0 })
    expect(countLines(bytes('a b\n\n  # c\n \t\r\n\td e\r\nf g'))).toEqual({ lines: 6, entries: 3 })
    expect(MAX_TEXT_LINES).toBe(2 * MAX_REPLACE_ENTRIES)
  })
})

function compile (schema: z.ZodType) {
  const route = { schema, httpPart: 'body', method: 'PUT', url: '/' } as unknown as FastifyRouteSchemaDef<z.ZodType>
  return { bounded: boundedValidatorCompiler(route), plain: validatorCompiler(route) }
}

describe('boundedValidatorCompiler', () => {
  it('gives what the plain validator gives for valid bodies (defaults, transforms)', () => {
    const cases: Array<[z.ZodType, unknown]> = [
      [ReplaceBodySchema, Array.from({ length: 1000 }, (_, i) => ({ key: `/k${i}`, value: 'v' }))],
      [ReplaceBodySchema, 'a map file'],
      [PatchBodySchema, [{ key: '/a', value: 'x' }, { key: '/b', delete: true }]],
      [CreateBackendSchema, { name: 'b', from: 'd', servers: [{ name: 's1', address: '127.0.0.1', port: 80, check: true, inter: '2s' }] }]
    ]
    for (const [schema, data] of cases) {
      const { bounded, plain } = compile(schema)
      expect(bounded(data)).toEqual(plain(data))
    }
  })

  it('stops after MAX_FIELD_ERRORS problems in a huge array, naming the elements', () => {
    const { bounded } = compile(ReplaceBodySchema)
    const result = bounded(new Array(1_000_000).fill({})) as { error: Array<{ instancePath: string }> }
    expect(result.error).toHaveLength(MAX_FIELD_ERRORS)
    expect(result.error.slice(0, 3).map(e => e.instancePath)).toEqual(['/0/key', '/0/value', '/1/key'])
  })

  it('finds a problem far into an array, and keeps array-level checks once the elements pass', () => {
    const { bounded } = compile(PatchBodySchema)
    const many = Array.from({ length: 5000 }, (_, i) => i === 4321 ? { key: 'two words', value: 'x' } : { key: `/k${i}`, value: 'x' })
    expect((bounded(many) as { error: Array<{ instancePath: string }> }).error.map(e => e.instancePath)).toEqual(['/4321/key'])
    expect((bounded([]) as { error: Array<{ message: string }> }).error[0]?.message).toMatch(/>=1/)
  })

  it('stops early inside the servers of a backend, and keeps the object-level checks', () => {
    const { bounded } = compile(CreateBackendSchema)
    const result = bounded({ name: 'b', from: 'd', servers: new Array(1000).fill({}) }) as { error: Array<{ instancePath: string }> }
    expect(result.error).toHaveLength(MAX_FIELD_ERRORS)
    expect(result.error[0]?.instancePath).toBe('/servers/0/name')
    const twice = { name: 'b', from: 'd', servers: [{ name: 's', address: '127.0.0.1', port: 1 }, { name: 's', address: '127.0.0.1', port: 2 }] }
    expect((bounded(twice) as { error: Array<{ message: string }> }).error[0]?.message).toMatch(/unique/)
  })
})

describe('the limits through the app', () => {
  const app = async () => buildTestApp(fakeRuntime(() => new Error('nothing may be sent')))

  it('refuses a body over the route limit with 413 and the limit', async () => {
    const a = await app()
    const big = JSON.stringify({ value: 'x'.repeat(BODY_LIMITS.default) })
    const res = await a.inject({ method: 'PUT', url: '/maps/virt%40m/entries/k', headers: { 'content-type': 'application/json' }, payload: big })
    expect(res.statusCode).toBe(413)
    expect(res.json()).toMatchObject({ code: 'HAPX_BODY_TOO_LARGE', detail: expect.stringContaining(String(BODY_LIMITS.default)) })
  })

  it('refuses invalid UTF-8, a lone surrogate and a foreign charset, JSON or text', async () => {
    const a = await app()
    const url = '/maps/virt%40m/entries'
    const send = async (contentType: string, payload: Buffer) => {
      const res = await a.inject({ method: 'PUT', url, headers: { 'content-type': contentType }, payload })
      return { status: res.statusCode, code: res.json().code as string }
    }
    expect(await send('application/json', Buffer.from([0x5b, 0x22, 0xff, 0x22, 0x5d]))).toEqual({ status: 400, code: 'HAPX_INVALID_BODY' })
    expect(await send('text/plain', Buffer.from('/a \xe9t\xe9\n', 'latin1'))).toEqual({ status: 400, code: 'HAPX_INVALID_BODY' })
    expect(await send('text/plain', Buffer.from([0x2f, 0x61, 0x20, 0xed, 0xa0, 0x80]))).toEqual({ status: 400, code: 'HAPX_INVALID_BODY' })
    expect(await send('application/json', bytes('[{"key":"/a","value":"\\ud800"}]'))).toEqual({ status: 400, code: 'HAPX_INVALID_BODY' })
    expect(await send('application/json; charset=latin1', bytes('[]'))).toEqual({ status: 415, code: 'HAPX_UNSUPPORTED_MEDIA_TYPE' })
    expect(await send('text/plain; charset=iso-8859-1', bytes('/a b'))).toEqual({ status: 415, code: 'HAPX_UNSUPPORTED_MEDIA_TYPE' })
    expect(await send('application/xml', bytes('<a/>'))).toEqual({ status: 415, code: 'HAPX_UNSUPPORTED_MEDIA_TYPE' })
    expect(await send('application/json', bytes('[{"key":'))).toEqual({ status: 400, code: 'HAPX_INVALID_BODY' })
  })

  it('keeps prototype-poisoning protection', async () => {
    const a = await app()
    const res = await a.inject({ method: 'POST', url: '/backends', headers: { 'content-type': 'application/json' }, payload: '{"name":"b","from":"d","__proto__":{"x":1}}' })
    expect(res.statusCode).toBe(400)
  })

  it('lists at most MAX_FIELD_ERRORS problems and says how many more there are', async () => {
    const a = await app()
    const res = await a.inject({ method: 'POST', url: '/backends', payload: { name: 'b', from: 'd', servers: [{}], ...Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`x${i}`, i])) } })
    expect(res.statusCode).toBe(400)
    expect(res.json().errors.length).toBeLessThanOrEqual(MAX_FIELD_ERRORS)
    const bad = await a.inject({ method: 'PATCH', url: '/maps/virt%40m/entries', payload: new Array(5000).fill({ key: 'a b', value: 'c' }) })
    expect(bad.json().errors).toHaveLength(MAX_FIELD_ERRORS)
  })
})
