/**
 * Bounded work per request body. Fastify's own parsers read a body up to the route's bodyLimit and
 * hand it to JSON.parse, then zod validates every element and lists every problem: a few megabytes
 * of `[{},{},…]` cost a gigabyte. Here, before anything is built from the bytes:
 * - the charset must be UTF-8 (415 otherwise) and the bytes valid UTF-8 (400): what cannot be stored
 *   exactly is refused, never replaced with U+FFFD;
 * - a JSON body is scanned once (strings and escapes respected) and refused with 400 when it nests
 *   deeper, or holds longer arrays, more members or more values than the route's schema can accept
 *   (limits derived from the schema itself), or a lone surrogate escape (`"\ud800"`);
 * - then it is parsed with Fastify's own JSON parser (secure-json-parse: prototype poisoning refused);
 * - validation of an array body stops at the first MAX_FIELD_ERRORS elements in error.
 * @see https://fastify.dev/docs/latest/Reference/ContentTypeParser/
 * @see https://www.rfc-editor.org/rfc/rfc8259#section-8.1 (JSON is UTF-8)
 */
import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest, FastifySchemaCompiler } from 'fastify'
import { validatorCompiler } from '@fastify/type-provider-zod'
import { z } from 'zod'
import YAML from 'yaml'
import { ApiError } from '../errors.ts'
import { MAX_REPLACE_ENTRIES } from '../schemas/maps.ts'

const KiB = 1024
const MiB = 1024 * KiB

/**
 * Body limits in bytes. Small by default; large only where a whole map is sent at once. A client
 * going over gets 413 as soon as its Content-Length says so (or once that many bytes arrived).
 */
export const BODY_LIMITS = {
  /** Every route not named below: a server, a map entry, a backend's publication. */
  default: 64 * KiB,
  /** POST /backends: up to 1,000 servers of a few hundred bytes each. */
  createBackend: 1 * MiB,
  /** PATCH /maps/{map}/entries: up to 100,000 changes (about 160 bytes each on average). */
  patchMapEntries: 16 * MiB,
  /** PUT /maps/{map}/entries: a whole map, up to MAX_REPLACE_ENTRIES entries. */
  replaceMapEntries: 64 * MiB
} as const

/** The largest YAML body taken: its parser builds a document tree many times the text's size. */
export const MAX_YAML_BYTES = 16 * MiB

/** Most per-field problems computed and reported for one body (the rest are counted, not listed). */
export const MAX_FIELD_ERRORS = 20

/** A map file may hold comments and blank lines besides its entries, but not without bound. */
export const MAX_TEXT_LINES = 2 * MAX_REPLACE_ENTRIES

/**
 * What a route's JSON body may look like, at most: container depth, the members of an array or an
 * object at each depth (index 0 is the outermost container), and the number of values (object keys
 * included) in the whole document.
 */
export type JsonShapeLimits = {
  maxDepth: number
  maxItems: readonly number[]
  maxKeys: readonly number[]
  maxValues: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set for every route by registerBodyParsing's onRoute hook, from the route's body schema. */
    jsonShape?: JsonShapeLimits
    /** The route takes a YAML body too (application/yaml): the state document. */
    acceptsYaml?: boolean
  }
}

/** A route without a body schema takes at most a small flat object (some clients send `{}` with DELETE). */
export const NO_BODY_SHAPE: JsonShapeLimits = { maxDepth: 1, maxItems: [16], maxKeys: [16], maxValues: 64 }

/**
 * Unknown keys tolerated per object by the scan, so that zod can name them (it refuses them anyway);
 * also the members of an object, or the items of an array, where the schema has the other kind of
 * container: a wrong type is zod's to name ("expected array"), not a body "too complex".
 */
const KEY_SLACK = 8
/** Values tolerated over the schema's own maximum (the unknown keys above, a few wrong types). */
const VALUE_SLACK = 64
/**
 * JSON.parse spends about 60 bytes on each array or object, however small its text: `[{},{},…]`
 * costs 22 times its size. Beyond the first CONTAINER_ALLOWANCE, a body holds at most one array or
 * object per BYTES_PER_CONTAINER bytes (hapctl's own bodies use 24 or more), which keeps what parsing
 * allocates within a few times the body's size whatever its shape.
 */
export const BYTES_PER_CONTAINER = 8
const CONTAINER_ALLOWANCE = 1000
/** An array schema without maxItems: the scan still needs a bound. */
const UNBOUNDED_ARRAY_ITEMS = 1000

type Shape = { depth: number, values: number, items: number[], keys: number[] }
type JsonSchema = Record<string, unknown>

const SCALAR: Shape = { depth: 0, values: 1, items: [], keys: [] }

function maxAt (a: readonly number[], b: readonly number[]): number[] {
  return Array.from({ length: Math.max(a.length, b.length) }, (_, i) => Math.max(a[i] ?? 0, b[i] ?? 0))
}

function either (a: Shape, b: Shape): Shape {
  return { depth: Math.max(a.depth, b.depth), values: Math.max(a.values, b.values), items: maxAt(a.items, b.items), keys: maxAt(a.keys, b.keys) }
}

/** The largest body a JSON Schema (zod's rendering of the route's schema) accepts, as a Shape. */
function shapeOf (node: unknown, defs: Record<string, unknown>, seen: ReadonlySet<string>): Shape {
  if (node === null || typeof node !== 'object') return SCALAR
  const s = node as JsonSchema
  if (typeof s.$ref === 'string') {
    const name = s.$ref.replace(/^#\/\$defs\//, '')
    if (seen.has(name) || defs[name] === undefined) throw new Error(`cannot bound the recursive or unknown schema ${s.$ref}`)
    return shapeOf(defs[name], defs, new Set([...seen, name]))
  }
  for (const k of ['anyOf', 'oneOf', 'allOf'] as const) {
    const branches = s[k]
    if (Array.isArray(branches) && branches.length > 0) return branches.map(b => shapeOf(b, defs, seen)).reduce(either)
  }
  if (s.type === 'array' || s.items !== undefined) {
    const item = shapeOf(s.items, defs, seen)
    const n = typeof s.maxItems === 'number' ? s.maxItems : UNBOUNDED_ARRAY_ITEMS
    return { depth: 1 + item.depth, values: 1 + n * item.values, items: [n, ...item.items], keys: [KEY_SLACK, ...item.keys] }
  }
  if (s.type === 'object' || s.properties !== undefined) {
    const props = Object.values((s.properties ?? {}) as Record<string, unknown>).map(p => shapeOf(p, defs, seen))
    // A record (additionalProperties): as many members as its maxProperties says.
    const extra = typeof s.additionalProperties === 'object' && s.additionalProperties !== null ? shapeOf(s.additionalProperties, defs, seen) : undefined
    const n = extra === undefined ? 0 : typeof s.maxProperties === 'number' ? s.maxProperties : UNBOUNDED_ARRAY_ITEMS
    const inner = [...props, ...(extra === undefined ? [] : [extra])].reduce(either, { depth: 0, values: 0, items: [], keys: [] })
    return {
      depth: 1 + inner.depth,
      values: 1 + props.reduce((sum, p) => sum + 1 + p.values, 0) + n * (1 + (extra?.values ?? 0)),
      items: [KEY_SLACK, ...inner.items],
      keys: [props.length + n + KEY_SLACK, ...inner.keys]
    }
  }
  return SCALAR
}

/** The scan limits of a route whose body is validated by `schema` (a zod schema). */
export function jsonShapeLimits (schema: z.ZodType): JsonShapeLimits {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
  const shape = shapeOf(json, (json.$defs ?? {}) as Record<string, unknown>, new Set())
  return { maxDepth: shape.depth, maxItems: shape.items, maxKeys: shape.keys, maxValues: shape.values + VALUE_SLACK }
}

export type BodyProblem = { reason: 'BODY_TOO_COMPLEX' | 'INVALID_BODY', message: string }

const QUOTE = 0x22
const BACKSLASH = 0x5c
const isBlank = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

function hex4 (b: Uint8Array, at: number): number {
  if (at + 4 > b.length) return -1
  let v = 0
  for (let k = at; k < at + 4; k++) {
    const c = b[k] as number
    const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1
    if (d < 0) return -1
    v = v * 16 + d
  }
  return v
}

/**
 * One pass over a JSON text's bytes, allocating nothing that grows with it: depth, members of each
 * container, values, and `\u` escapes that would decode to a lone surrogate. Malformed JSON is left to
 * JSON.parse (this only counts); a problem found here means JSON.parse never runs.
 */
export function scanJson (b: Uint8Array, limits: JsonShapeLimits): BodyProblem | undefined {
  const { maxDepth, maxItems, maxKeys, maxValues } = limits
  // Per open container (index = depth): 1 for an object, its commas so far, and whether it has a member.
  const isObject = new Uint8Array(maxDepth + 1)
  const commas = new Float64Array(maxDepth + 1)
  const nonEmpty = new Uint8Array(maxDepth + 1)
  let depth = 0
  let values = 0
  let containers = 0
  const maxContainers = CONTAINER_ALLOWANCE + Math.floor(b.length / BYTES_PER_CONTAINER)
  const tooMany = (d: number, members: number): BodyProblem | undefined => {
    const limit = (isObject[d] === 1 ? maxKeys : maxItems)[d - 1] ?? 0
    if (members <= limit) return undefined
    const what = isObject[d] === 1 ? `an object at depth ${d} has more than ${limit} members` : `an array at depth ${d} has more than ${limit} items`
    return { reason: 'BODY_TOO_COMPLEX', message: `${what}; this route accepts no more` }
  }
  /** A value (or key) begins at the current depth. */
  const member = (): BodyProblem | undefined => {
    if (++values > maxValues) return { reason: 'BODY_TOO_COMPLEX', message: `the body holds more than ${maxValues} JSON values; this route accepts no more` }
    if (depth > 0 && nonEmpty[depth] === 0) {
      nonEmpty[depth] = 1
      return tooMany(depth, 1)
    }
    return undefined
  }
  const n = b.length
  let i = 0
  while (i < n) {
    const c = b[i] as number
    if (isBlank(c) || c === 0x3a /* : */) { i++; continue }
    if (c === QUOTE) {
      const problem = member()
      if (problem !== undefined) return problem
      i++
      while (i < n) {
        const s = b[i] as number
        if (s === QUOTE) { i++; break }
        if (s !== BACKSLASH) { i++; continue }
        if (b[i + 1] !== 0x75 /* u */) { i += 2; continue }
        const unit = hex4(b, i + 2)
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const low = b[i + 6] === BACKSLASH && b[i + 7] === 0x75 ? hex4(b, i + 8) : -1
          if (low < 0xdc00 || low > 0xdfff) return loneSurrogate(unit)
          i += 12
          continue
        }
        if (unit >= 0xdc00 && unit <= 0xdfff) return loneSurrogate(unit)
        i += 2
      }
      continue
    }
    if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      const problem = member()
      if (problem !== undefined) return problem
      if (++containers > maxContainers) {
        return { reason: 'BODY_TOO_COMPLEX', message: `the body holds more than ${maxContainers} arrays and objects for its ${b.length} bytes (at most one per ${BYTES_PER_CONTAINER} bytes beyond the first ${CONTAINER_ALLOWANCE})` }
      }
      if (++depth > maxDepth) {
        return { reason: 'BODY_TOO_COMPLEX', message: `the body nests deeper than ${maxDepth} level(s) of arrays and objects; this route accepts no deeper` }
      }
      isObject[depth] = c === 0x7b ? 1 : 0
      commas[depth] = 0
      nonEmpty[depth] = 0
      i++
      continue
    }
    if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      if (depth > 0) depth--
      i++
      continue
    }
    if (c === 0x2c /* , */) {
      if (depth > 0) {
        const problem = tooMany(depth, ++(commas[depth] as number) + 1)
        if (problem !== undefined) return problem
      }
      i++
      continue
    }
    // A number, true, false or null (or garbage JSON.parse will refuse): one value up to the next delimiter.
    const problem = member()
    if (problem !== undefined) return problem
    i++
    while (i < n) {
      const s = b[i] as number
      if (isBlank(s) || s === 0x2c || s === 0x5d || s === 0x7d || s === 0x3a || s === QUOTE || s === 0x5b || s === 0x7b) break
      i++
    }
  }
  return undefined
}

function loneSurrogate (unit: number): BodyProblem {
  return {
    reason: 'INVALID_BODY',
    message: `the body holds the escape \\u${unit.toString(16).padStart(4, '0')}, half of a UTF-16 surrogate pair: such text cannot be stored exactly`
  }
}

/**
 * The charset parameter of a Content-Type: only UTF-8 (or none, which means UTF-8 here) is accepted.
 * Returns the charset named when it is another one.
 */
export function foreignCharset (contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*("?)([^";\s]*)\1/i.exec(contentType ?? '')
  if (m === null) return undefined
  const charset = (m[2] as string).toLowerCase()
  return charset === 'utf-8' || charset === 'utf8' ? undefined : charset
}

function refuse (problem: BodyProblem): ApiError {
  return ApiError.of(problem.reason, problem.message)
}

/** Checks shared by both media types: charset, then bytes. */
function checkText (request: FastifyRequest, body: Buffer): ApiError | undefined {
  const charset = foreignCharset(request.headers['content-type'])
  if (charset !== undefined) {
    return ApiError.of('UNSUPPORTED_MEDIA_TYPE', `the body's charset is '${charset}'; hapctl accepts UTF-8 only (say charset=utf-8, or nothing)`)
  }
  if (!isUtf8(body)) return refuse({ reason: 'INVALID_BODY', message: 'the body is not valid UTF-8' })
  return undefined
}

/** Lines of a map file, and those holding an entry (neither blank nor a `#` comment), as parseMapFile reads them. */
export function countLines (b: Uint8Array): { lines: number, entries: number } {
  let lines = 0
  let entries = 0
  let start = 0
  while (start <= b.length) {
    let end = b.indexOf(0x0a, start)
    if (end === -1) end = b.length
    lines++
    let k = start
    while (k < end && (b[k] === 0x20 || b[k] === 0x09)) k++
    if (k < end && b[k] !== 0x23 /* # */ && !(b[k] === 0x0d && k + 1 === end)) entries++
    start = end + 1
  }
  return { lines, entries }
}

function formatBytes (n: number): string {
  return n % MiB === 0 ? `${n / MiB} MiB` : n % KiB === 0 ? `${n / KiB} KiB` : `${n} bytes`
}

/** Replaces Fastify's application/json and text/plain parsers, and bounds each route's JSON body by its schema. */
export function registerBodyParsing (app: FastifyInstance): void {
  app.addHook('onRoute', function (route) {
    const schema = route.schema as { body?: unknown, description?: string } | undefined
    const body = schema?.body
    // A route may set its own (PATCH /state: a merge patch is bounded by the document it patches).
    const jsonShape = route.config?.jsonShape ?? (body instanceof z.ZodType ? jsonShapeLimits(body) : NO_BODY_SHAPE)
    route.config = { ...route.config, jsonShape }
    if (schema !== undefined && body !== undefined && schema.description?.includes('Body: at most') !== true) {
      // The API description says what the 413 of each route means.
      const limit = `Body: at most ${formatBytes(route.bodyLimit ?? app.initialConfig.bodyLimit ?? BODY_LIMITS.default)} (413 beyond), UTF-8.`
      schema.description = schema.description === undefined ? limit : `${schema.description}\n\n${limit}`
    }
  })

  const parseJson = app.getDefaultJsonParser(app.initialConfig.onProtoPoisoning ?? 'error', app.initialConfig.onConstructorPoisoning ?? 'error')
  app.removeContentTypeParser(['application/json', 'text/plain'])

  // RFC 7396 merge patches are JSON, bounded the same way.
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'buffer' }, function (request, body, done) {
    const bytes = body as Buffer
    const error = checkText(request, bytes)
    if (error !== undefined) { done(error, undefined); return }
    const problem = scanJson(bytes, request.routeOptions.config.jsonShape ?? NO_BODY_SHAPE)
    if (problem !== undefined) { done(refuse(problem), undefined); return }
    parseJson(request, bytes.toString('utf8'), done)
  })

  // YAML, only where a route says so (the state document), with aliases bounded: a few lines of
  // nested aliases would otherwise expand to gigabytes ("billion laughs").
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'buffer' }, function (request, body, done) {
    if (request.routeOptions.config.acceptsYaml !== true) {
      done(ApiError.of('UNSUPPORTED_MEDIA_TYPE', 'this route takes application/json'), undefined)
      return
    }
    const bytes = body as Buffer
    const error = checkText(request, bytes)
    if (error !== undefined) { done(error, undefined); return }
    if (bytes.length > MAX_YAML_BYTES) {
      done(refuse({ reason: 'BODY_TOO_COMPLEX', message: `a YAML body is at most ${formatBytes(MAX_YAML_BYTES)} (parsing YAML costs many times its size); send larger documents as JSON` }), undefined)
      return
    }
    try {
      // `__proto__` as a key is refused, as secure-json-parse refuses it in JSON.
      done(null, YAML.parse(bytes.toString('utf8'), (key, value) => {
        if (key === '__proto__') throw new Error('a "__proto__" key is not allowed')
        return value
      }, { maxAliasCount: 100, merge: false, uniqueKeys: true }))
    } catch (err) {
      done(refuse({ reason: 'INVALID_BODY', message: `the body is not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}` }), undefined)
    }
  })

  app.addContentTypeParser('text/plain', { parseAs: 'buffer' }, function (request, body, done) {
    const bytes = body as Buffer
    const error = checkText(request, bytes)
    if (error !== undefined) { done(error, undefined); return }
    const { lines, entries } = countLines(bytes)
    if (lines > MAX_TEXT_LINES || entries > MAX_REPLACE_ENTRIES) {
      done(refuse({ reason: 'BODY_TOO_COMPLEX', message: `a map file has at most ${MAX_REPLACE_ENTRIES} entries and ${MAX_TEXT_LINES} lines; this one has ${entries} and ${lines}` }), undefined)
      return
    }
    done(null, bytes.toString('utf8'))
  })
}

/*
 * zod validates every element of an array before it looks at the array's own checks, and keeps an
 * issue object for each problem: an array of a million wrong elements costs hundreds of megabytes.
 * Bodies that are arrays (or a union with an array) are therefore validated element by element,
 * stopping after MAX_FIELD_ERRORS problems, and then as a whole with the elements already parsed (the
 * same schema with `unknown` elements: its length and refinements still apply). Arrays inside an
 * object body (a backend's servers) are checked element by element first, with the same stop, then
 * the whole body is validated as usual.
 */

type Issue = { code: string, path: PropertyKey[], message: string }

function unwrap (schema: z.ZodType): z.ZodType {
  let s = schema
  while (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType
  return s
}

/** For an array schema, or a union holding one: its elements' schema, and itself with elements left unchecked. */
export function splitArraySchema (schema: z.ZodType): { element: z.ZodType, shallow: z.ZodType } | undefined {
  if (schema instanceof z.ZodArray) {
    return { element: schema.element as z.ZodType, shallow: schema.clone({ ...schema.def, element: z.unknown() }) }
  }
  if (schema instanceof z.ZodUnion) {
    const options = schema.options as readonly z.ZodType[]
    const arrays = options.filter(o => o instanceof z.ZodArray)
    const split = arrays.length === 1 ? splitArraySchema(arrays[0] as z.ZodType) : undefined
    if (split === undefined) return undefined
    return { element: split.element, shallow: schema.clone({ ...schema.def, options: options.map(o => o === arrays[0] ? split.shallow : o) }) }
  }
  return undefined
}

/** Elements decoded per call: few enough that a slice of wrong elements costs little, enough to amortize each call. */
const SLICE = 256

/**
 * Decodes the elements of `items` with `element`, a slice at a time, until `cap` issues are collected
 * (their paths prefixed with `path` and the index). Returns the decoded elements when there was none.
 */
function decodeElements (element: z.ZodType, items: readonly unknown[], path: PropertyKey[], out: Issue[], cap: number): unknown[] | undefined {
  const slice = z.array(element)
  const decoded: unknown[] = []
  for (let start = 0; start < items.length && out.length < cap; start += SLICE) {
    const result = z.safeDecode(slice, items.slice(start, start + SLICE))
    if (result.success) {
      for (const value of result.data) decoded.push(value)
      continue
    }
    for (const issue of result.error.issues.slice(0, cap - out.length)) {
      const [index, ...rest] = issue.path
      out.push({ code: issue.code, path: [...path, start + (index as number), ...rest], message: issue.message })
    }
  }
  return out.length === 0 ? decoded : undefined
}

/** Collects the first `cap` issues of the elements of arrays held directly by an object body. */
export function nestedElementIssues (schema: z.ZodType, data: unknown, out: Issue[], cap: number): void {
  const s = unwrap(schema)
  if (!(s instanceof z.ZodObject) || data === null || typeof data !== 'object' || Array.isArray(data)) return
  for (const [key, child] of Object.entries(s.shape as Record<string, z.ZodType>)) {
    const value = (data as Record<string, unknown>)[key]
    const split = splitArraySchema(unwrap(child))
    if (Array.isArray(value) && split !== undefined && out.length < cap) decodeElements(split.element, value, [key], out, cap)
  }
}

// The marker @fastify/type-provider-zod's hasZodFastifySchemaValidationErrors looks for (a registered symbol).
const ZOD_VALIDATION_ERROR = Symbol.for('ZodFastifySchemaValidationError')

function validationError (issues: readonly Issue[]): Array<Record<PropertyKey, unknown>> {
  return issues.map(issue => ({
    [ZOD_VALIDATION_ERROR]: true,
    keyword: issue.code,
    instancePath: `/${issue.path.map(String).join('/')}`,
    schemaPath: `#/${issue.path.map(String).join('/')}/${issue.code}`,
    message: issue.message,
    params: {}
  }))
}

/** type-provider-zod's validator compiler, with element-wise early exit for bodies holding arrays. */
export const boundedValidatorCompiler: FastifySchemaCompiler<z.ZodType> = function (route) {
  const validate = validatorCompiler(route)
  if (route.httpPart !== 'body') return validate
  const split = splitArraySchema(route.schema)
  const validateShallow = split === undefined ? undefined : validatorCompiler({ ...route, schema: split.shallow })
  type Result = ReturnType<typeof validate>
  return function (data: unknown): Result {
    const issues: Issue[] = []
    if (Array.isArray(data) && split !== undefined && validateShallow !== undefined) {
      const decoded = decodeElements(split.element, data, [], issues, MAX_FIELD_ERRORS)
      return decoded === undefined ? { error: validationError(issues) } as unknown as Result : validateShallow(decoded)
    }
    nestedElementIssues(route.schema, data, issues, MAX_FIELD_ERRORS)
    return issues.length === 0 ? validate(data) : { error: validationError(issues) } as unknown as Result
  }
}
