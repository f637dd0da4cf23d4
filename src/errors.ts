/**
 * The one table from a failure's reason to its HTTP status and `HAPX_*` code, and the HTTP error
 * type built from it. Every error leaves the service as an RFC 9457 problem document
 * (`application/problem+json`) with a stable `code`; the reasons and what they mean are listed once,
 * in src/engine/outcomes.ts, and in the OpenAPI description.
 * @see https://www.rfc-editor.org/rfc/rfc9457
 */
import { OperationError, REASONS, fromRuntime } from './engine/outcomes.ts'
import type { ProblemOutcome, Reason } from './engine/outcomes.ts'
import { RuntimeError } from './runtime/errors.ts'

export const PROBLEM_TYPE_BASE = 'https://hapctl.dev/problems/'

/** The status of every reason. A missing reason does not compile. */
export const STATUS_OF: Record<Reason, number> = {
  VALIDATION_FAILED: 400,
  INVALID_ARGUMENT: 400,
  DUPLICATE_KEYS: 400,
  INVALID_CURSOR: 400,
  BAD_REQUEST: 400,
  BAD_HTTP_REQUEST: 400,
  INVALID_BODY: 400,
  BODY_TOO_COMPLEX: 400,
  HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  METHOD_NOT_ALLOWED: 405,
  MODE_REQUIRED: 400,
  NO_DYNAMIC_SERVERS: 400,
  SERVER_REJECTED: 400,
  REJECTED_BY_HAPROXY: 422,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  BACKEND_NOT_FOUND: 404,
  SERVER_NOT_FOUND: 404,
  MAP_NOT_FOUND: 404,
  MAP_ENTRY_NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  BACKEND_EXISTS: 409,
  SERVER_EXISTS: 409,
  MAP_ENTRY_EXISTS: 409,
  CONFLICT: 409,
  NOT_REMOVABLE: 409,
  BACKEND_NOT_REMOVABLE: 409,
  BACKEND_STATIC: 409,
  CHECKS_NOT_CONFIGURED: 409,
  AGENT_NOT_CONFIGURED: 409,
  SERVER_HAS_NO_IP: 409,
  MAP_UNWRITABLE: 409,
  MAP_VERSION_CONFLICT: 409,
  CURSOR_STALE: 409,
  PRECONDITION_FAILED: 412,
  STATE_INVALID: 400,
  DEFAULTS_NOT_FOUND: 422,
  INTERNAL: 500,
  NOT_IMPLEMENTED: 501,
  RUNTIME_FORBIDDEN: 502,
  RUNTIME_UNSUPPORTED: 502,
  RUNTIME_PROTOCOL: 502,
  RUNTIME_ERROR: 502,
  MAP_LOAD_INCOMPLETE: 502,
  RUNTIME_UNAVAILABLE: 503,
  HAPROXY_STOPPING: 503,
  BUSY: 503,
  LARGE_BODIES_BUSY: 503,
  TOO_MANY_WATCHERS: 503,
  SHUTTING_DOWN: 503,
  RESTORING: 503,
  STORE_UNAVAILABLE: 503,
  RUNTIME_TIMEOUT: 504,
  NOT_UP: 504,
  RUNTIME_BUSY: 503
}

/** `HAPROXY_STOPPING` → `HAPX_HAPROXY_STOPPING`. */
export function codeOf (reason: Reason): string {
  return `HAPX_${reason}`
}

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
  /** refused, undone, left, unknown or applied: what HAProxy was left like. */
  outcome?: ProblemOutcome
  /** The scope a 403 lacked. */
  requiredScope?: string
}

/**
 * Retry-After (seconds, RFC 9110 §10.2.3) of the 503s a client should simply retry: a lock wait that
 * ran out clears when the operation ahead finishes; so do the large bodies ahead; a watcher's place
 * frees when another stream ends; a stopping hapctl is back (or replaced) after a restart.
 */
const RETRY_AFTER_S: Partial<Record<Reason, number>> = { BUSY: 1, LARGE_BODIES_BUSY: 1, RUNTIME_BUSY: 1, SHUTTING_DOWN: 5, TOO_MANY_WATCHERS: 5 }

/** The Retry-After of a problem code, when its reason has one. */
export function retryAfterOf (code: string): number | undefined {
  return RETRY_AFTER_S[code.replace(/^HAPX_/, '') as Reason]
}

/** An error as the HTTP layer sends it: status, stable code, human detail and extras. */
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

  /** An HTTP-layer error for one of the catalog's reasons. */
  static of (reason: Reason, detail: string, extras: ProblemExtras = {}): ApiError {
    return new ApiError(STATUS_OF[reason], codeOf(reason), detail, extras)
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

export function titleFor (status: number): string {
  return TITLES[status] ?? 'Error'
}

/** An operation's failure as the HTTP error it is answered with. */
export function fromOperationError (err: OperationError): ApiError {
  const extras: ProblemExtras = {}
  if (err.haproxyMessage !== undefined) extras.haproxyMessage = err.haproxyMessage
  if (err.command !== undefined) extras.command = err.command
  if (err.errors !== undefined) extras.errors = err.errors
  if (err.state !== undefined) extras.state = err.state
  if (err.warnings !== undefined) extras.warnings = err.warnings
  if (err.outcome !== undefined) extras.outcome = err.outcome
  return new ApiError(STATUS_OF[err.reason], codeOf(err.reason), err.message, extras, { cause: err })
}

/** Operation and runtime failures become HTTP errors; anything else is returned as is. */
export function asApiError (err: unknown): unknown {
  if (err instanceof OperationError) return fromOperationError(err)
  if (err instanceof RuntimeError) return fromOperationError(fromRuntime(err))
  return err
}

/** The catalog as a Markdown table, for the OpenAPI description. */
export function problemCatalogMarkdown (): string {
  const rows = (Object.keys(REASONS) as Reason[])
    .sort((a, b) => STATUS_OF[a] - STATUS_OF[b] || a.localeCompare(b))
    .map(r => `| \`${codeOf(r)}\` | ${STATUS_OF[r]} | ${REASONS[r]} |`)
  return ['| code | status | meaning |', '|---|---|---|', ...rows].join('\n')
}
