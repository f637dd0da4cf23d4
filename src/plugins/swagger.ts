/**
 * The OpenAPI 3.1 document, generated from the routes' zod schemas, and Swagger UI at /docs.
 * Registered before the routes so that it sees all of them (@fastify/swagger README).
 * @see https://github.com/fastify/fastify-swagger
 */
import type { FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifySwaggerUiOptions } from '@fastify/swagger-ui'
import { jsonSchemaTransform, jsonSchemaTransformObject } from '@fastify/type-provider-zod'
import { problemCatalogMarkdown, titleFor } from '../errors.ts'
import { requirementOf } from '../auth/scopes.ts'
import { OPERATION_EXAMPLES } from '../schemas/examples.ts'

export const API_VERSION = '0.1.0'

type Json = Record<string, any>

/** Descriptions of the success statuses (titleFor names the error statuses only). */
const SUCCESS_DESCRIPTIONS: Readonly<Record<string, string>> = { 200: 'OK', 201: 'Created', 204: 'No Content' }

/**
 * The response headers a client may read, as `components.headers`: generated clients type them only
 * when the document names them. Which response carries which: {@link headersOf}.
 */
const HEADERS: Readonly<Record<string, Json>> = {
  RequestId: {
    description: "The request's id: the caller's `x-request-id` when it is 1-128 characters of `A-Za-z0-9._:@/+=-`, otherwise a new UUID. " +
      'Every log line of the request and its audit entry carry it.',
    schema: { type: 'string' }
  },
  ETag: {
    description: 'The version of what was read or written (a map\'s whole content, or the desired-state revision): give it in `If-Match` to write only if nothing changed since.',
    schema: { type: 'string' }
  },
  Location: { description: 'The path of what was created', schema: { type: 'string' } },
  WWWAuthenticate: {
    description: 'The bearer challenge (RFC 6750 §3): `Bearer realm="hapctl"`, with `error="insufficient_scope", scope="<scope>"` on a 403.',
    schema: { type: 'string' }
  },
  RetryAfter: {
    description: 'Seconds to wait before retrying, sent when the cause clears by itself (HAPX_BUSY, HAPX_RUNTIME_BUSY, HAPX_LARGE_BODIES_BUSY, ' +
      'HAPX_TOO_MANY_WATCHERS, HAPX_SHUTTING_DOWN)',
    schema: { type: 'integer', minimum: 0 }
  }
}

/** The operations whose 200 carries an ETag (src/routes/maps.ts and state.ts set it). */
const ETAG_OPERATIONS: ReadonlySet<string> = new Set(['listMapEntries', 'replaceMapEntries', 'patchMapEntries', 'getMapEntry', 'getState', 'replaceState', 'patchState'])

/** The headers of one response: x-request-id on every one (src/app.ts), the others where the code sets them. */
function headersOf (operationId: string, status: string): Record<string, string> {
  const names: Record<string, string> = { 'x-request-id': 'RequestId' }
  if (status === '200' && ETAG_OPERATIONS.has(operationId)) names.ETag = 'ETag'
  if (status === '201') names.Location = 'Location'
  if (status === '401' || status === '403') names['WWW-Authenticate'] = 'WWWAuthenticate'
  if (status === '503') names['Retry-After'] = 'RetryAfter'
  return names
}

/**
 * Finishing touches the generator cannot express: error responses are `application/problem+json`
 * (RFC 9457), response descriptions say what the status means instead of "Default Response", and
 * component schemas nothing refers to (the provider emits an input variant of every schema) are dropped,
 * and each operation says which scope it needs (`x-hapctl-scope`, from the one table in src/auth/scopes.ts).
 */
export function polishDocument (doc: Json): Json {
  for (const [path, item] of Object.entries<Json>(doc.paths ?? {})) {
    for (const [method, op] of Object.entries<Json>(item)) {
      const scope = requirementOf(path.replace(/\{([^}]+)\}/g, ':$1'), op.operationId)
      if (scope !== 'open') {
        op['x-hapctl-scope'] = scope
        const needs = scope === 'maps:write'
          ? 'Scope: `maps:write`, or `maps:write:<glob>` matching the map\'s name as given in the path (or `admin`).'
          : `Scope: \`${scope}\`${scope === 'admin' ? '' : ' (or `admin`)'}.`
        op.description = op.description === undefined ? needs : `${op.description}\n\n${needs}`
      }
      // Fastify reads a body on these methods whether the route takes one or not: its limit (413) and
      // its content type (415) are checked before the handler.
      if (op.requestBody !== undefined || ['post', 'put', 'patch', 'delete'].includes(method)) {
        op.responses['413'] ??= { description: '', content: { 'application/json': { schema: { $ref: '#/components/schemas/Problem' } } } }
        op.responses['415'] ??= { description: '', content: { 'application/json': { schema: { $ref: '#/components/schemas/Problem' } } } }
      }
      if (op.requestBody !== undefined) {
        // A body taken as JSON or as text/plain is one zod union; each media type gets its own branch.
        // (Both media types may share one object, so new ones are built from the union first.)
        const content: Json | undefined = op.requestBody.content
        const union: Json[] | undefined = content?.['text/plain']?.schema?.anyOf
        const text = union?.find(s => s.type === 'string')
        const others = union?.filter(s => s.type !== 'string') ?? []
        if (content !== undefined && text !== undefined && others.length === 1) {
          content['text/plain'] = { schema: text }
          if (content['application/json'] !== undefined) content['application/json'] = { schema: others[0] }
        }
      }
      // Swagger UI prefills "Try it out" with a parameter's `example` first, then its schema's.
      const examples = OPERATION_EXAMPLES[op.operationId]
      for (const param of op.parameters ?? []) {
        const example = examples?.params?.[param.name]
        if (example !== undefined) param.example = example
      }
      for (const [mediaType, example] of Object.entries(examples?.body ?? {})) {
        const media = op.requestBody?.content?.[mediaType]
        if (media === undefined) throw new Error(`an example for ${op.operationId} ${mediaType}, which it does not take`)
        media.example = example
      }
      for (const [status, response] of Object.entries<Json>(op.responses ?? {})) {
        if (response.description === 'Default Response' || response.description === '') response.description = SUCCESS_DESCRIPTIONS[status] ?? titleFor(Number(status))
        response.headers = Object.fromEntries(Object.entries(headersOf(op.operationId, status))
          .map(([name, component]) => [name, { $ref: `#/components/headers/${component}` }]))
        const json = response.content?.['application/json']
        if (json?.schema?.$ref === '#/components/schemas/Problem') {
          response.content = { 'application/problem+json': json }
        }
      }
    }
  }
  const schemas: Json = doc.components?.schemas ?? {}
  const used = reachableSchemas(schemas, [doc.paths])
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name]
  doc.components.headers = { ...HEADERS }
  describeDefaultsOfRequests(doc)
  return doc
}

/** The component schemas `roots` refer to, directly or through other schemas. */
function reachableSchemas (schemas: Json, roots: unknown[]): Set<string> {
  const seen = new Set<string>()
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) { node.forEach(visit); return }
    if (node === null || typeof node !== 'object') return
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')) {
        const name = v.slice('#/components/schemas/'.length)
        if (!seen.has(name)) { seen.add(name); visit(schemas[name]) }
      } else visit(v)
    }
  }
  roots.forEach(visit)
  return seen
}

/**
 * In the schemas only requests use, a property's `default` becomes a sentence of its description.
 * The value is what hapctl uses when the field is absent, but generators read `default` as "always
 * present": openapi-typescript at its default settings (defaultNonNullable) makes such fields required
 * in every component, so a typed client would have to send `published`, `check`, `enabled`… (issue 11).
 * Parameters keep theirs: Swagger UI prefills a parameter with it and generators leave parameters optional.
 */
function describeDefaultsOfRequests (doc: Json): void {
  const schemas: Json = doc.components?.schemas ?? {}
  const reachable = (roots: unknown[]): Set<string> => reachableSchemas(schemas, roots)
  const operations = Object.values<Json>(doc.paths ?? {}).flatMap(item => Object.values<Json>(item))
  const inResponses = reachable(operations.map(op => op.responses))
  const requestOnly = [...reachable(operations.map(op => op.requestBody))].filter(name => !inResponses.has(name))
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) { node.forEach(strip); return }
    if (node === null || typeof node !== 'object') return
    const properties: Json | undefined = (node as Json).properties
    for (const property of Object.values<Json>(properties ?? {})) {
      if (property !== null && typeof property === 'object' && 'default' in property) {
        const said = `Default: \`${JSON.stringify(property.default)}\`.`
        property.description = property.description === undefined ? said : `${String(property.description).replace(/\.?$/, '.')} ${said}`
        delete property.default
      }
    }
    for (const v of Object.values(node)) strip(v)
  }
  for (const name of requestOnly) strip(schemas[name])
  for (const op of operations) strip(op.requestBody)
}

/** What the browser tab and the top bar of /docs say. */
export const DOCS_TITLE = 'hapctl — HAProxy control plane'

/**
 * Swagger UI as a console a new user can work in (Swagger UI configuration reference,
 * docs/usage/configuration.md in swagger-api/swagger-ui):
 * - persistAuthorization: the bearer token given to "Authorize" is kept (in the browser's
 *   localStorage) across reloads, instead of every call answering 401 after one.
 * - displayOperationId: the names a generated client uses (createBackend…) are shown next to each path.
 * - displayRequestDuration: how long hapctl took to answer, next to the curl line of each call.
 * - filter: a search box over tags, for a document with this many operations.
 * The top bar shows hapctl's name in place of Swagger's logo and link to swagger.io.
 */
const SWAGGER_UI_OPTIONS: FastifySwaggerUiOptions = {
  theme: { title: DOCS_TITLE },
  logo: {
    type: 'image/svg+xml',
    content: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="150" height="40" viewBox="0 0 150 40">' +
      '<text x="0" y="28" font-family="sans-serif" font-size="26" font-weight="bold" fill="#fff">hapctl</text></svg>'),
    href: './'
  },
  uiConfig: {
    persistAuthorization: true,
    displayOperationId: true,
    displayRequestDuration: true,
    filter: true
  }
}

export async function registerSwagger (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'hapctl',
        version: API_VERSION,
        description: "A REST control plane for HAProxy 3.4's Runtime API: dynamic backends, servers and maps, validated, " +
          'with structured errors (RFC 9457 problem details) instead of free-text replies.\n\n' +
          'What is done through hapctl is kept as desired state (a store with revisions) and put back into HAProxy by a ' +
          'reconciler after every restart or reload of HAProxy, and whenever it drifts: `GET /status` shows how HAProxy compares. ' +
          'A failed write says in `outcome` what HAProxy was left like: `refused`, `undone`, `left`, or `unknown` (no answer came; ' +
          'the change was recorded and hapctl makes HAProxy match it).\n\n' +
          '## Problem codes\n\n' + problemCatalogMarkdown(),
        license: { name: 'MIT', identifier: 'MIT' }
      },
      // Relative: calls go to the hapctl that served the document, wherever it listens (the demo: 127.0.0.1:5555).
      servers: [{ url: '/', description: 'This hapctl' }],
      tags: [
        { name: 'backends', description: 'Dynamic and static backends' },
        { name: 'servers', description: 'Servers of a backend: add, drain, change, delete' },
        { name: 'maps', description: 'Map entries: single changes and atomic replacement' },
        { name: 'health', description: 'Liveness and readiness' },
        { name: 'status', description: 'Desired state, reconciliation and drift' },
        { name: 'metrics', description: 'Metrics for Prometheus' },
        { name: 'audit', description: 'Who changed what, and the Runtime API commands each change sent' },
        { name: 'events', description: 'Changes, server health and reconciler passes as they happen' },
        { name: 'state', description: 'The whole desired state as one document: read, replace, patch, dry-run' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description: 'API_TOKEN (every scope), or a token of the tokens file (HAPCTL_TOKENS_FILE) with the scopes its entry lists; ' +
              'each operation names the scope it needs (`x-hapctl-scope`). No token is needed when the service sets neither.'
          }
        }
      },
      security: [{ bearerAuth: [] }]
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => polishDocument(jsonSchemaTransformObject(input) as Json) as ReturnType<typeof jsonSchemaTransformObject>
  })
  await app.register(swaggerUi, { routePrefix: '/docs', ...SWAGGER_UI_OPTIONS })

  app.get('/openapi.json', { schema: { hide: true } }, async function () {
    return app.swagger()
  })
}
