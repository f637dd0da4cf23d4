/**
 * HTTP-facing errors and the one mapping from runtime errors to HTTP. Every error leaves the service
 * as an RFC 9457 problem document (`application/problem+json`) with a stable `code`.
 * @see https://www.rfc-editor.org/rfc/rfc9457
 */
import {
  RuntimeArgumentError, RuntimeCommandError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError
} from './runtime/errors.ts'
import type { RejectionKind } from './runtime/errors.ts'

export const PROBLEM_TYPE_BASE = 'https://hapctl.dev/problems/'

export type ProblemExtras = {
  /** HAProxy's own message, verbatim, when HAProxy refused something. */
  haproxyMessage?: string
  /** The Runtime API command that failed (its verb, never its arguments). */
  command?: string
  /** Per-field validation problems. */
  errors?: Array<{ field: string, message: string }>
  /** What the resource was left like when a multi-step request stopped half-way. */
  state?: Record<string, unknown>
  /** Things the caller should know although the request succeeded or was refused. */
  warnings?: string[]
}

/** An error with an HTTP status, a stable code (`HAPX_*`) and a human detail. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly title: string
  readonly extras: ProblemExtras
  constructor (status: number, code: string, detail: string, extras: ProblemExtras = {}, options?: { cause?: unknown }) {
    super(detail, options)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.title = TITLES[status] ?? 'Error'
    this.extras = extras
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

export function titleFor (status: number): string {
  return TITLES[status] ?? 'Error'
}

const REJECTION_STATUS: Record<RejectionKind, readonly [number, string]> = {
  not_found: [404, 'HAPX_NOT_FOUND'],
  exists: [409, 'HAPX_ALREADY_EXISTS'],
  conflict: [409, 'HAPX_CONFLICT'],
  invalid: [400, 'HAPX_REJECTED_BY_HAPROXY'],
  // Our own socket lacks `level admin`: a deployment problem, not the client's.
  forbidden: [502, 'HAPX_RUNTIME_FORBIDDEN'],
  unsupported: [502, 'HAPX_RUNTIME_UNSUPPORTED'],
  rejected: [422, 'HAPX_REJECTED_BY_HAPROXY']
}

/** The single mapping from runtime errors to HTTP errors. */
export function fromRuntimeError (err: RuntimeError): ApiError {
  if (err instanceof RuntimeUnavailableError) {
    return new ApiError(503, 'HAPX_RUNTIME_UNAVAILABLE', err.message, {}, { cause: err })
  }
  if (err instanceof RuntimeTimeoutError) {
    return new ApiError(504, 'HAPX_RUNTIME_TIMEOUT', err.message, err.verb === undefined ? {} : { command: err.verb }, { cause: err })
  }
  if (err instanceof RuntimeProtocolError) {
    return new ApiError(502, 'HAPX_RUNTIME_PROTOCOL', err.message, err.verb === undefined ? {} : { command: err.verb }, { cause: err })
  }
  if (err instanceof RuntimeArgumentError) {
    return new ApiError(400, 'HAPX_INVALID_ARGUMENT', err.message, { errors: [{ field: err.field, message: err.message }] }, { cause: err })
  }
  if (err instanceof RuntimeCommandError) {
    const [status, code] = REJECTION_STATUS[err.kind]
    const detail = err.kind === 'forbidden'
      ? `HAProxy refused '${err.verb}' for lack of privileges: HAPROXY_RUNTIME_API must point at a stats socket with 'level admin'`
      : err.message
    return new ApiError(status, code, detail, { haproxyMessage: err.haproxyMessage, command: err.verb }, { cause: err })
  }
  return new ApiError(502, 'HAPX_RUNTIME_ERROR', err.message, {}, { cause: err })
}

/** The refusal inside `err`, if HAProxy refused something. */
export function rejectionOf (err: unknown): RuntimeCommandError | undefined {
  return err instanceof RuntimeCommandError ? err : undefined
}

/** Runtime errors become HTTP errors (so services can add context); anything else passes through. */
export function asApiError (err: unknown): unknown {
  return err instanceof RuntimeError ? fromRuntimeError(err) : err
}
