import { readFile } from 'node:fs/promises'
import { compileErrors, validate } from '@readme/openapi-parser'
import { describe, expect, it } from 'vitest'
import type { ZodType } from 'zod'
import { SPEC_PATH, generateSpec } from '../src/openapi.ts'
import { CreateBackendSchema, PatchBackendSchema } from '../src/schemas/backends.ts'
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
      // /health needs nothing; /status, /audit and /events answer from memory and the store, never waiting for HAProxy.
      if (path !== '/health') expect(Object.keys(op.responses), `${where} 503`).toContain('503')
      if (path !== '/health' && path !== '/status' && path !== '/audit' && path !== '/events') expect(Object.keys(op.responses), `${where} 504`).toContain('504')
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
