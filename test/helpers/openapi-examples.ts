/**
 * The requests Swagger UI's "Try it out" sends when run as prefilled, read from the generated OpenAPI
 * document: a parameter's `example`, else its schema's `example`, else its schema's `default` (what
 * Swagger UI's ParameterRow fills in); a body's media-type `example`, else its schema's. Listed in the
 * console's order: the document's `tags`, then operations in path order within each tag.
 */
export type Json = Record<string, any>

export type ExampleRequest = {
  operationId: string
  method: string
  /** The path template, e.g. /backends/{name}. */
  path: string
  url: string
  headers: Record<string, string>
  /** The body as sent, and its media type (one request per media type the operation takes). */
  body?: string
  mediaType?: string
  /** Statuses the operation declares. */
  statuses: string[]
}

export type Operation = { path: string, method: string, op: Json }

function resolve (spec: Json, schema: Json | undefined): Json | undefined {
  if (schema?.$ref === undefined) return schema
  return spec.components.schemas[String(schema.$ref).replace('#/components/schemas/', '')]
}

/** Operations in the order Swagger UI lists them. */
export function consoleOrder (spec: Json): Operation[] {
  const all = Object.entries<Json>(spec.paths).flatMap(([path, item]) => Object.entries<Json>(item).map(([method, op]) => ({ path, method, op })))
  const tags: string[] = (spec.tags ?? []).map((t: Json) => t.name)
  for (const o of all) for (const t of o.op.tags ?? []) if (!tags.includes(t)) tags.push(t)
  return tags.flatMap(tag => all.filter(o => (o.op.tags ?? [])[0] === tag))
}

/** A parameter's prefilled value, undefined when Swagger UI leaves it empty. */
export function parameterValue (spec: Json, param: Json): unknown {
  const schema = resolve(spec, param.schema)
  return param.example ?? param.schema?.example ?? schema?.example ?? param.schema?.default ?? schema?.default
}

/** A body media type's prefilled value, undefined when there is none (Swagger UI would then generate one). */
export function bodyExample (spec: Json, media: Json): unknown {
  return media.example ?? resolve(spec, media.schema)?.example
}

export function exampleRequests (spec: Json): ExampleRequest[] {
  const requests: ExampleRequest[] = []
  for (const { path, method, op } of consoleOrder(spec)) {
    let url = path
    const query = new URLSearchParams()
    const headers: Record<string, string> = {}
    for (const param of op.parameters ?? []) {
      const value = parameterValue(spec, param)
      if (value === undefined) {
        if (param.required === true) throw new Error(`${op.operationId}: required parameter ${param.name} has no example`)
        continue
      }
      if (param.in === 'path') url = url.replace(`{${param.name}}`, encodeURIComponent(String(value)))
      else if (param.in === 'query') query.set(param.name, String(value))
      else if (param.in === 'header') headers[param.name] = String(value)
    }
    if (query.size > 0) url += `?${query.toString()}`
    const base = { operationId: op.operationId, method: method.toUpperCase(), path, url, statuses: Object.keys(op.responses) }
    const content: Json | undefined = op.requestBody?.content
    if (content === undefined) {
      requests.push({ ...base, headers })
      continue
    }
    for (const [mediaType, media] of Object.entries<Json>(content)) {
      const example = bodyExample(spec, media)
      if (example === undefined) throw new Error(`${op.operationId}: the ${mediaType} body has no example`)
      const body = typeof example === 'string' ? example : JSON.stringify(example)
      requests.push({ ...base, headers: { ...headers, 'content-type': mediaType }, body, mediaType })
    }
  }
  return requests
}
