import { readFile } from 'node:fs/promises'
import { compileErrors, validate } from '@readme/openapi-parser'
import { describe, expect, it } from 'vitest'
import type { ZodType } from 'zod'
import { SPEC_PATH, generateSpec } from '../src/openapi.ts'
import { CreateBackendSchema, PatchBackendSchema } from '../src/schemas/backends.ts'
import { REASONS } from '../src/engine/outcomes.ts'
import type { Reason } from '../src/engine/outcomes.ts'
import { codeOf } from '../src/errors.ts'
import { CreateServerSchema, PatchServerSchema } from '../src/schemas/servers.ts'

describe('openapi/openapi.json', () => {
  it('is what the code generates (run `npm run openapi` and commit when this fails)', async () => {
    const committed = await readFile(SPEC_PATH, 'utf8')
    expect(committed).toBe(await generateSpec())
  })

  it('is a valid OpenAPI 3.1 document', async () => {
    const spec = JSON.parse(await generateSpec())
    expect(spec.openapi).toBe('3.1.0')
    const result = await validate(spec)
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true)
  })

  it('declares tags, summary, operationId and error responses on every operation', async () => {
    const spec = JSON.parse(await generateSpec())
    const operations = Object.entries(spec.paths as Record<string, Record<string, any>>)
      .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })))
    expect(operations.length).toBeGreaterThan(5)
    const ids = new Set<string>()
    for (const { path, method, op } of operations) {
      const where = `${method.toUpperCase()} ${path}`
      expect(op.tags?.length, where).toBeGreaterThan(0)
      expect(op.summary, where).toBeTruthy()
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z]+$/)
      expect(ids.has(op.operationId), `duplicate operationId ${op.operationId}`).toBe(false)
      ids.add(op.operationId)
      // /health needs nothing; /status, /audit, /events and /metrics answer from memory and the store, never waiting for HAProxy.
      if (path !== '/health') expect(Object.keys(op.responses), `${where} 503`).toContain('503')
      if (path !== '/health' && path !== '/status' && path !== '/audit' && path !== '/events' && path !== '/metrics') expect(Object.keys(op.responses), `${where} 504`).toContain('504')
    }
  })

  it('describes each response by what its status means (Swagger UI shows it next to the code)', async () => {
    const spec = JSON.parse(await generateSpec())
    const success: Record<string, string> = { 200: 'OK', 201: 'Created', 204: 'No Content' }
    for (const [path, item] of Object.entries(spec.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses as Record<string, { description: string }>)) {
          const where = `${method.toUpperCase()} ${path} ${status}`
          if (success[status] !== undefined) expect(response.description, where).toBe(success[status])
          expect(response.description, where).not.toMatch(/^(Error|Default Response|)$/)
        }
      }
    }
  })

  const WITH_ETAG = ['GET /maps/{map}/entries', 'PUT /maps/{map}/entries', 'PATCH /maps/{map}/entries', 'GET /maps/{map}/entries/{key}', 'GET /state', 'PUT /state', 'PATCH /state']
  it('documents the headers clients read, and where calls go', async () => {
    const spec = JSON.parse(await generateSpec())
    expect(spec.servers).toEqual([{ url: '/', description: expect.any(String) }])
    let created = 0
    for (const [path, item] of Object.entries(spec.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses as Record<string, { headers?: Record<string, { $ref: string }> }>)) {
          const where = `${method.toUpperCase()} ${path} ${status}`
          const headers = Object.keys(response.headers ?? {})
          expect(headers, where).toContain('x-request-id')
          if (status === '201') { created++; expect(headers, where).toContain('Location') }
          if (status === '401' || status === '403') expect(headers, where).toContain('WWW-Authenticate')
          if (status === '503') expect(headers, where).toContain('Retry-After')
          // The versions If-Match takes: a map's content and the desired-state revision.
          if (status === '200') expect(headers.includes('ETag'), where).toBe(WITH_ETAG.includes(`${method.toUpperCase()} ${path}`))
          for (const h of Object.values(response.headers ?? {})) expect(spec.components.headers[h.$ref.split('/').pop() as string], where).toBeDefined()
        }
      }
    }
    expect(created).toBeGreaterThanOrEqual(4)
  })

  it('says what each problem code means', async () => {
    const spec = JSON.parse(await generateSpec())
    for (const reason of Object.keys(REASONS) as Reason[]) {
      const row = (spec.info.description as string).split('\n').find(l => l.startsWith(`| \`${codeOf(reason)}\` |`))
      expect(row, reason).toBeDefined()
      expect(row?.split('|')[3]?.trim().length ?? 0, reason).toBeGreaterThan(10)
    }
  })

  // Swagger UI's "Try it out" starts from these: generated ones (from the regexes) are refused.
  it('has request examples that the schemas accept', async () => {
    const spec = JSON.parse(await generateSpec())
    const examples: Array<[string, ZodType]> = [
      ['CreateBackendInput', CreateBackendSchema],
      ['PatchBackendInput', PatchBackendSchema],
      ['CreateServerInput', CreateServerSchema],
      ['PatchServerInput', PatchServerSchema]
    ]
    for (const [component, schema] of examples) {
      const example = spec.components.schemas[component]?.example
      expect(example, component).toBeDefined()
      const result = schema.safeParse(example)
      expect(result.success, `${component}: ${result.error?.message ?? ''}`).toBe(true)
    }
  })
})
