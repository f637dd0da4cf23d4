/**
 * The one error handler: every failure leaves as an RFC 9457 problem document with a stable code.
 * Runtime errors are mapped in src/errors.ts; request validation errors list each field; anything
 * unexpected is a 500 whose cause is logged, not shown.
 * @see https://www.rfc-editor.org/rfc/rfc9457
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from '@fastify/type-provider-zod'
import { ApiError, PROBLEM_TYPE_BASE, asApiError } from '../errors.ts'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

export function sendProblem (reply: FastifyReply, request: FastifyRequest, err: ApiError): FastifyReply {
  const body = {
    type: PROBLEM_TYPE_BASE + err.code.toLowerCase().replace(/^hapx_/, '').replace(/_/g, '-'),
    title: err.title,
    status: err.status,
    detail: err.message,
    instance: request.url,
    code: err.code,
    ...err.extras
  }
  return reply.code(err.status).type(PROBLEM_CONTENT_TYPE).send(body)
}

function toApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const mapped = asApiError(err)
  if (mapped instanceof ApiError) return mapped
  if (hasZodFastifySchemaValidationErrors(err)) {
    const errors = err.validation.map(v => ({
      field: [err.validationContext, ...String(v.instancePath ?? '').split('/').filter(Boolean)].join('.'),
      message: v.message ?? 'invalid'
    }))
    return ApiError.of('VALIDATION_FAILED', `invalid request: ${errors.map(e => `${e.field}: ${e.message}`).join('; ')}`, { errors })
  }
  if (isResponseSerializationError(err)) {
    return new ApiError(500, 'HAPX_INTERNAL', 'the response did not match its schema', {}, { cause: err })
  }
  const fe = err as FastifyError
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ApiError(fe.statusCode, fe.code === undefined ? 'HAPX_BAD_REQUEST' : `HAPX_${fe.code.replace(/^FST_ERR_/, '')}`, fe.message)
  }
  return new ApiError(500, 'HAPX_INTERNAL', 'internal error', {}, { cause: err })
}

export function registerErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler(function (err, request, reply) {
    const problem = toApiError(err)
    // HAProxy being down, slow or odd (502/503/504) is an operational condition, not a bug: no stack.
    if (problem.status === 500) request.log.error({ err }, problem.message)
    else if (problem.status >= 500) request.log.warn({ code: problem.code, detail: problem.message }, 'HAProxy Runtime API problem')
    else request.log.info({ code: problem.code, detail: problem.message }, 'request refused')
    return sendProblem(reply, request, problem)
  })
  app.setNotFoundHandler(function (request, reply) {
    return sendProblem(reply, request, ApiError.of('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`))
  })
}
