/**
 * The one error handler: every failure leaves as an RFC 9457 problem document with a stable code.
 * Runtime errors are mapped in src/errors.ts; request validation errors list each field; anything
 * unexpected is a 500 whose cause is logged, not shown.
 * @see https://www.rfc-editor.org/rfc/rfc9457
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from '@fastify/type-provider-zod'
import { ApiError, PROBLEM_TYPE_BASE, asApiError, retryAfterOf } from '../errors.ts'
import type { Reason } from '../engine/outcomes.ts'
import { MAX_FIELD_ERRORS } from './body.ts'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

/** The RFC 9457 document of an error; `instance` is the request's URL when there is one. */
export function problemBody (err: ApiError, instance?: string): Record<string, unknown> {
  return {
    type: PROBLEM_TYPE_BASE + err.code.toLowerCase().replace(/^hapx_/, '').replace(/_/g, '-'),
    title: err.title,
    status: err.status,
    detail: err.message,
    ...(instance === undefined ? {} : { instance }),
    code: err.code,
    ...err.extras
  }
}

export function sendProblem (reply: FastifyReply, request: FastifyRequest, err: ApiError): FastifyReply {
  const retryAfter = retryAfterOf(err.code)
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
  return reply.code(err.status).type(PROBLEM_CONTENT_TYPE).send(problemBody(err, request.url))
}

/**
 * For what Node's HTTP parser refuses before Fastify sees a request (a bad header, headers too large,
 * a client too slow): the same document, written straight to the socket, which is then closed.
 */
export function writeProblemToSocket (socket: { end: (data: string) => void }, err: ApiError): void {
  const body = JSON.stringify(problemBody(err))
  socket.end(`HTTP/1.1 ${err.status} ${err.title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}

/** Fastify's own refusals of a body, as reasons of the catalog. */
const FASTIFY_REASONS: Record<string, Reason> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_BODY',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_BODY',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_BODY'
}

function toApiError (err: unknown, request: FastifyRequest): ApiError {
  if (err instanceof ApiError) return err
  const mapped = asApiError(err)
  if (mapped instanceof ApiError) return mapped
  if (hasZodFastifySchemaValidationErrors(err)) {
    // A body with thousands of mistakes answers with the first few, not with megabytes.
    const errors = err.validation.slice(0, MAX_FIELD_ERRORS).map(v => ({
      field: [err.validationContext, ...String(v.instancePath ?? '').split('/').filter(Boolean)].join('.'),
      message: v.message ?? 'invalid'
    }))
    const more = err.validation.length > errors.length ? ` (and ${err.validation.length - errors.length} more)` : ''
    return ApiError.of('VALIDATION_FAILED', `invalid request: ${errors.slice(0, 3).map(e => `${e.field}: ${e.message}`.slice(0, 300)).join('; ')}` +
      (errors.length > 3 ? '; …' : '') + more, { errors })
  }
  if (isResponseSerializationError(err)) {
    return new ApiError(500, 'HAPX_INTERNAL', 'the response did not match its schema', {}, { cause: err })
  }
  const fe = err as FastifyError
  const reason = FASTIFY_REASONS[fe.code]
  if (reason === 'BODY_TOO_LARGE') {
    return ApiError.of(reason, `the body is larger than this route accepts (${request.routeOptions.bodyLimit} bytes)`)
  }
  if (reason !== undefined) return ApiError.of(reason, fe.message)
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ApiError(fe.statusCode, fe.code === undefined ? 'HAPX_BAD_REQUEST' : `HAPX_${fe.code.replace(/^FST_ERR_/, '')}`, fe.message)
  }
  return new ApiError(500, 'HAPX_INTERNAL', 'internal error', {}, { cause: err })
}

/**
 * A route's URL as a regular expression over request paths, as the router matches them: a `:param`
 * is one non-empty segment, `*` the rest, and a trailing slash is optional (ignoreTrailingSlash).
 */
export function routePattern (url: string): RegExp {
  const body = url.replace(/\/+$/, '').split('/').map(segment => segment === '*'
    ? '.*'
    : segment.replace(/:[A-Za-z0-9_]+(\([^)]*\))?|[^:]+/g, part => part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  ).join('/')
  return new RegExp(`^${body}/?$`)
}

export function registerErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler(function (err, request, reply) {
    const problem = toApiError(err, request)
    // HAProxy being down, slow or odd (502/503/504) is an operational condition, not a bug: no stack.
    if (problem.status === 500) request.log.error({ err }, problem.message)
    else if (problem.status >= 500) request.log.warn({ code: problem.code, detail: problem.message }, 'HAProxy Runtime API problem')
    else request.log.info({ code: problem.code, detail: problem.message }, 'request refused')
    return sendProblem(reply, request, problem)
  })
  // Registered before any route (the documentation's included), so that it sees all of them.
  const routes: Array<{ pattern: RegExp, methods: string[] }> = []
  app.addHook('onRoute', function (route) {
    const methods = [route.method].flat().map(m => m.toUpperCase())
    const pattern = routePattern(route.url ?? route.path)
    const known = routes.find(r => r.pattern.source === pattern.source)
    if (known === undefined) routes.push({ pattern, methods })
    else known.methods.push(...methods.filter(m => !known.methods.includes(m)))
  })
  app.setNotFoundHandler(function (request, reply) {
    const path = request.url.split('?')[0] as string
    const allowed = new Set(routes.filter(r => r.pattern.test(path)).flatMap(r => r.methods))
    if (allowed.size > 0) {
      // RFC 9110 §15.5.6: a 405 lists what the resource does support.
      if (allowed.has('GET')) allowed.add('HEAD')
      const allow = [...allowed].sort().join(', ')
      reply.header('allow', allow)
      return sendProblem(reply, request, ApiError.of('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}; allowed: ${allow}`))
    }
    return sendProblem(reply, request, ApiError.of('ROUTE_NOT_FOUND', `no route ${request.method} ${path}`))
  })
}
