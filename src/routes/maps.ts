/**
 * /maps: HAProxy maps and their entries (`show map`, `add/set/del map`, and whole-map replacement
 * through `prepare map` / `add map @N <<` / `commit map`). Map names and keys go URL-encoded in paths:
 * `/maps/virt%40paths.map/entries/%2Fapi`, `/maps/%2Fetc%2Fhaproxy%2Fhosts.map/entries`, `/maps/%235/entries`.
 * Reads show what HAProxy holds; writes are kept as desired state (src/resources/maps/service.ts).
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { ApiError } from '../errors.ts'
import { z } from 'zod'
import type { MapService } from '../resources/maps/service.ts'
import { parseMapFile } from '../resources/maps/service.ts'
import { ProblemSchema, RUNTIME_PROBLEMS, WRITE_PROBLEMS } from '../schemas/common.ts'
import { BODY_LIMITS, boundedValidatorCompiler } from '../plugins/body.ts'
import {
  EntryListQuerySchema, EntryPageSchema, IfMatchHeadersSchema, MapEntryParamsSchema, MapEntrySchema, MapListSchema, StoredMapEntrySchema, MapParamsSchema,
  PatchBodySchema, PutEntryBodySchema, ReplaceBodySchema, ReplaceResultSchema, isValidReplaceArray
} from '../schemas/maps.ts'

const tags = ['maps']
const writeErrors = { 404: ProblemSchema, 412: ProblemSchema, ...WRITE_PROBLEMS }

/** What a single-entry write does to a map hapctl does not keep yet. */
const ADOPTION = 'On a map hapctl does not keep yet, the write makes it kept: its whole current content is recorded with the change ' +
  '(the first entry of a duplicated key only); a map holding entries hapctl could not write back is refused with 409 (HAPX_MAP_UNWRITABLE).'

const entryLocation = (map: string, key: string): string => `/maps/${encodeURIComponent(map)}/entries/${encodeURIComponent(key)}`

export const mapRoutes: FastifyPluginAsyncZod<{ maps: MapService }> = async function (app, opts) {
  const { maps } = opts

  app.get('/', {
    schema: {
      tags,
      summary: 'List every map',
      description: 'Entry counts are counted from `show map <map>` (HAProxy\'s own entry_cnt is wrong for maps used by two converters). ' +
        '`managed` says whether hapctl keeps the map\'s content: a map becomes managed when it is first written through hapctl, ' +
        'and its content is then put back after every HAProxy reload or restart.',
      operationId: 'listMaps',
      response: { 200: MapListSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function () {
    return { items: await maps.list() }
  })

  app.get('/:map/entries', {
    schema: {
      tags,
      summary: "List a map's entries in HAProxy's order",
      description: 'Paginated with `limit` and the opaque `next` cursor; `prefix` keeps keys starting with it. ' +
        'The ETag header hashes the whole current content (not only the page); give it in If-Match to write only if nothing changed.',
      operationId: 'listMapEntries',
      params: MapParamsSchema,
      querystring: EntryListQuerySchema,
      response: { 200: EntryPageSchema, 400: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request, reply) {
    const { items, next, etag } = await maps.page(request.params.map, request.query)
    reply.header('etag', etag)
    return next === undefined ? { items } : { items, next }
  })

  app.put('/:map/entries', {
    bodyLimit: BODY_LIMITS.replaceMapEntries,
    // A map file (a string) or an array of valid entries passes as it is; whatever else goes through
    // the schema, which says what is wrong (schemas/maps.ts isValidReplaceArray).
    validatorCompiler: route => {
      // Fastify types a route's own compiler with the whole route schema; it gets one part's zod schema.
      const validate = boundedValidatorCompiler(route as unknown as Parameters<typeof boundedValidatorCompiler>[0])
      if (route.httpPart !== 'body') return validate
      return data => typeof data === 'string' || isValidReplaceArray(data) ? { value: data } : validate(data)
    },
    schema: {
      tags,
      summary: "Replace a map's whole content atomically",
      description: 'Body: JSON `[{key, value}]`, or `text/plain` in map file format (`<key> <value>` per line, blank lines and `#` comments skipped). ' +
        'Loaded into a new version with `prepare map`, counted, then switched with `commit map`: lookups see the old content or the new one, never a mix. ' +
        'Duplicate keys are refused. On failure nothing changes.',
      operationId: 'replaceMapEntries',
      consumes: ['application/json', 'text/plain'],
      params: MapParamsSchema,
      headers: IfMatchHeadersSchema,
      body: ReplaceBodySchema,
      response: { 200: ReplaceResultSchema, 409: ProblemSchema, ...writeErrors }
    }
  }, async function (request, reply) {
    // The body schema is one union for both media types: a JSON string must not pass for a map file
    // (a double-encoded body would otherwise replace the whole map).
    const isText = /^text\/plain\b/i.test(request.headers['content-type'] ?? '')
    if (typeof request.body === 'string' && !isText) {
      throw new ApiError(400, 'HAPX_VALIDATION_FAILED', 'an application/json body is an array of {key, value}; send a map file as text/plain',
        { errors: [{ field: 'body', message: 'expected an array' }] })
    }
    if (typeof request.body !== 'string' && isText) {
      throw new ApiError(400, 'HAPX_VALIDATION_FAILED', 'a text/plain body is a map file', { errors: [{ field: 'body', message: 'expected text' }] })
    }
    const entries = typeof request.body === 'string' ? parseMapFile(request.body) : request.body
    const result = await maps.replace(request.params.map, entries, request.headers['if-match'])
    reply.header('etag', result.etag)
    return { entries: result.entries }
  })

  app.patch('/:map/entries', {
    bodyLimit: BODY_LIMITS.patchMapEntries,
    schema: {
      tags,
      summary: 'Set and delete several entries atomically',
      description: '`{key, value}` sets (a new key goes last), `{key, delete: true}` deletes (absent keys are ignored). ' +
        'The resulting content is committed as a new map version, so all changes apply at once.',
      operationId: 'patchMapEntries',
      params: MapParamsSchema,
      headers: IfMatchHeadersSchema,
      body: PatchBodySchema,
      response: { 200: ReplaceResultSchema, 409: ProblemSchema, ...writeErrors }
    }
  }, async function (request, reply) {
    const result = await maps.patch(request.params.map, request.body, request.headers['if-match'])
    reply.header('etag', result.etag)
    return { entries: result.entries }
  })

  app.post('/:map/entries', {
    schema: {
      tags,
      summary: 'Add an entry',
      description: 'Refused with 409 when the key already exists (HAProxy itself would store a duplicate). ' + ADOPTION,
      operationId: 'createMapEntry',
      params: MapParamsSchema,
      headers: IfMatchHeadersSchema,
      body: MapEntrySchema,
      response: { 201: StoredMapEntrySchema, 409: ProblemSchema, ...writeErrors }
    }
  }, async function (request, reply) {
    const entry = await maps.create(request.params.map, request.body, request.headers['if-match'])
    reply.code(201).header('location', entryLocation(request.params.map, entry.key))
    return entry
  })

  app.get('/:map/entries/:key', {
    schema: {
      tags,
      summary: 'Get the entry with exactly this key',
      description: 'An exact key match (not `get map`, which applies the map\'s matching method).',
      operationId: 'getMapEntry',
      params: MapEntryParamsSchema,
      response: { 200: StoredMapEntrySchema, 400: ProblemSchema, 404: ProblemSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request, reply) {
    const { entry, etag } = await maps.get(request.params.map, request.params.key)
    reply.header('etag', etag)
    return entry
  })

  app.put('/:map/entries/:key', {
    schema: {
      tags,
      summary: 'Set the value of an entry, creating it if needed',
      description: ADOPTION,
      operationId: 'putMapEntry',
      params: MapEntryParamsSchema,
      headers: IfMatchHeadersSchema,
      body: PutEntryBodySchema,
      response: { 200: StoredMapEntrySchema, 201: StoredMapEntrySchema, 409: ProblemSchema, ...writeErrors }
    }
  }, async function (request, reply) {
    const entry = { key: request.params.key, value: request.body.value }
    const outcome = await maps.put(request.params.map, entry, request.headers['if-match'])
    if (outcome === 'created') reply.code(201).header('location', entryLocation(request.params.map, entry.key))
    return entry
  })

  app.delete('/:map/entries/:key', {
    schema: {
      tags,
      summary: 'Delete an entry (every duplicate of the key)',
      description: ADOPTION,
      operationId: 'deleteMapEntry',
      params: MapEntryParamsSchema,
      headers: IfMatchHeadersSchema,
      response: { 204: z.undefined(), 409: ProblemSchema, ...writeErrors }
    }
  }, async function (request, reply) {
    await maps.delete(request.params.map, request.params.key, request.headers['if-match'])
    return reply.code(204).send()
  })
}
