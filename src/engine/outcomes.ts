/**
 * Typed failures of operations: what went wrong (a reason from one catalog), on what, and what
 * HAProxy was left like. No HTTP here: src/errors.ts is the one table from a reason to a status and a
 * `HAPX_*` code, so a new resource or a second HAProxy node never needs its own error mapping.
 */
import {
  RuntimeAbortedError, RuntimeArgumentError, RuntimeBusyError, RuntimeStaleProcessError, RuntimeCommandError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError
} from '../runtime/errors.ts'

/**
 * Every reason an operation (or a request) can fail for, with what it means. The HAPX_* code of a
 * reason is `HAPX_` + its name; the OpenAPI description lists this catalog.
 */
export const REASONS = {
  VALIDATION_FAILED: 'The request does not match its schema; `errors` lists each field.',
  INVALID_ARGUMENT: 'A value that may not be sent to HAProxy at that position (a blank, `;`, a control character…).',
  DUPLICATE_KEYS: 'The same map key is given twice.',
  INVALID_CURSOR: 'A pagination cursor this API did not hand out.',
  BAD_REQUEST: 'The request could not be understood (body, headers, URL).',
  BAD_HTTP_REQUEST: 'The HTTP request could not be parsed.',
  INVALID_BODY: 'The body is not well-formed JSON, or not valid UTF-8, or holds text that cannot be stored exactly (a lone surrogate escape such as `\\ud800`).',
  BODY_TOO_COMPLEX: 'The JSON body nests deeper, or holds longer arrays, more members or more values, than the route can accept (or a map file has too many lines); nothing was parsed.',
  HEADERS_TOO_LARGE: 'The request headers are larger than the server accepts (Node\'s limit, 16 KiB by default).',
  REQUEST_TIMEOUT: 'The client did not send its request headers, or its whole request, in time; the connection is closed.',
  BODY_TOO_LARGE: 'The body is larger than the route accepts (the README lists each route\'s limit).',
  UNSUPPORTED_MEDIA_TYPE: 'The body is neither application/json nor (where the route says so) text/plain, or its charset is not UTF-8.',
  METHOD_NOT_ALLOWED: 'The path exists but not with this method; the `Allow` header lists those it has.',
  MODE_REQUIRED: 'The defaults section sets no mode: give `mode`.',
  NO_DYNAMIC_SERVERS: 'The backend\'s load-balancing algorithm does not allow servers to be added at runtime.',
  SERVER_REJECTED: 'HAProxy refused a server\'s keywords (`haproxyMessage` says why).',
  REJECTED_BY_HAPROXY: 'HAProxy refused the command; `haproxyMessage` is its own reply.',
  UNAUTHORIZED: 'No token, or a wrong one.',
  FORBIDDEN: 'The token lacks the scope the route needs; `requiredScope` names it.',
  NOT_FOUND: 'The object does not exist.',
  ROUTE_NOT_FOUND: 'No such route.',
  BACKEND_NOT_FOUND: 'There is no backend with that name.',
  SERVER_NOT_FOUND: 'The backend has no server with that name.',
  MAP_NOT_FOUND: 'HAProxy has no such map (maps cannot be created at runtime).',
  MAP_ENTRY_NOT_FOUND: 'The map has no entry with that key.',
  ALREADY_EXISTS: 'The name is taken.',
  BACKEND_EXISTS: 'A proxy with that name exists already.',
  SERVER_EXISTS: 'The backend has a server with that name already.',
  MAP_ENTRY_EXISTS: 'The map has an entry with that key already.',
  CONFLICT: 'The object is not in a state that allows the change.',
  NOT_REMOVABLE: 'Connections were still open when the deadline passed; `state` says what was left.',
  BACKEND_NOT_REMOVABLE: 'HAProxy can never remove this backend at runtime (the configuration refers to it).',
  BACKEND_STATIC: 'The backend comes from HAProxy\'s configuration; deleting it needs force=true and lasts until the next reload.',
  CHECKS_NOT_CONFIGURED: 'The server was added without health checks.',
  AGENT_NOT_CONFIGURED: 'The server has no agent check.',
  SERVER_HAS_NO_IP: 'The server has no IP address to change (FQDN or socket server).',
  MAP_UNWRITABLE: 'The map holds entries hapctl cannot write back exactly.',
  MAP_VERSION_CONFLICT: 'Another client prepared or committed a version of the map meanwhile.',
  CURSOR_STALE: 'The map changed too much since the previous page.',
  PRECONDITION_FAILED: 'The ETag given in If-Match no longer matches.',
  STATE_INVALID: 'The state document cannot be applied as a whole (`errors` says why: an object of HAProxy\'s configuration named as hapctl\'s, a map HAProxy lacks, …); nothing was changed.',
  DEFAULTS_NOT_FOUND: 'There is no defaults section with that name.',
  RUNTIME_FORBIDDEN: 'HAProxy refused for lack of privileges: the stats socket needs `level admin`.',
  RUNTIME_UNSUPPORTED: 'This HAProxy does not know the command.',
  RUNTIME_PROTOCOL: 'HAProxy\'s reply made no sense or was cut short.',
  RUNTIME_ERROR: 'The Runtime API failed in an unexpected way.',
  MAP_LOAD_INCOMPLETE: 'HAProxy did not hold every entry sent into a prepared map version; nothing was committed.',
  NOT_IMPLEMENTED: 'This runtime cannot do what the request needs.',
  RUNTIME_UNAVAILABLE: 'HAProxy\'s Runtime API cannot be reached.',
  HAPROXY_STOPPING: 'The HAProxy process answering is stopping after a reload.',
  BUSY: 'Another operation on the same object did not finish in time; retry.',
  TOO_MANY_WATCHERS: 'As many GET /events streams as `HAPCTL_MAX_WATCHERS` allows are open; retry (`Retry-After`).',
  LARGE_BODIES_BUSY: 'As many large bodies (over 1 MiB) as `HAPCTL_MAX_LARGE_BODIES` allows are being received or handled; retry (`Retry-After`).',
  SHUTTING_DOWN: 'hapctl is stopping: the operation was not started, or was interrupted while it waited and what it had changed was put back (`outcome` says which); retry (`Retry-After`), against this hapctl once it is back.',
  RESTORING: 'hapctl keeps the object but HAProxy does not have it (yet): it is put back after a restart or reload; retry (GET /status says why if it lasts).',
  STORE_UNAVAILABLE: 'The desired-state store cannot be read or could not record the change (HAProxy was then put back as it was).',
  RUNTIME_TIMEOUT: 'HAProxy did not answer in time.',
  NOT_UP: 'The change was applied and is kept, but with `?wait=up` no server was UP (`show stat`) when `waitTimeout` ran out, or when hapctl began to stop (`outcome: applied`, `state.servers` says what they were); traffic reaches it once its health checks pass: follow it with GET, do not send the change again.',
  RUNTIME_BUSY: 'Every Runtime API connection hapctl may open (`HAPROXY_MAX_CONNECTIONS`) stayed in use until the deadline; nothing was sent; retry (`Retry-After`).',
  INTERNAL: 'A bug in hapctl; the log has the details.'
} as const

export type Reason = keyof typeof REASONS

/**
 * What HAProxy was left like by a failed operation:
 * - refused: nothing was applied;
 * - undone: some steps were applied and all were put back;
 * - left: some steps were applied and could not all be put back (`state` says which); the reconciler
 *   brings managed objects back to the desired state;
 * - unknown: a step got no verdict (timeout, cut connection); the change was recorded as desired and
 *   the reconciler settles it.
 */
export type FailureOutcome = 'refused' | 'undone' | 'left' | 'unknown'

/**
 * What an error says HAProxy was left like: a failure outcome, or `applied` when the change itself
 * went through (and was recorded) and only what came after it failed, such as reading the result back.
 * The one list: the problem schema, the audit trail and its schema derive theirs from it.
 */
export const PROBLEM_OUTCOMES = ['refused', 'undone', 'left', 'unknown', 'applied'] as const

export type ProblemOutcome = typeof PROBLEM_OUTCOMES[number]

export type OperationErrorDetails = {
  /** HAProxy's own message, verbatim, when HAProxy refused something. */
  haproxyMessage?: string | undefined
  /** The Runtime API command that failed (its keywords, never its arguments). */
  command?: string | undefined
  errors?: Array<{ field: string, message: string }> | undefined
  state?: Record<string, unknown> | undefined
  warnings?: string[] | undefined
  outcome?: ProblemOutcome | undefined
  cause?: unknown
}

export class OperationError extends Error {
  readonly reason: Reason
  readonly haproxyMessage: string | undefined
  readonly command: string | undefined
  readonly errors: Array<{ field: string, message: string }> | undefined
  readonly warnings: string[] | undefined
  state: Record<string, unknown> | undefined
  outcome: ProblemOutcome | undefined

  constructor (reason: Reason, message: string, details: OperationErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'OperationError'
    this.reason = reason
    this.haproxyMessage = details.haproxyMessage
    this.command = details.command
    this.errors = details.errors
    this.warnings = details.warnings
    this.state = details.state
    this.outcome = details.outcome
  }

  /** The same failure with more said about it (a prefix or suffix to the message, more state). */
  extend (opts: { prefix?: string, suffix?: string, state?: Record<string, unknown>, outcome?: ProblemOutcome }): OperationError {
    return new OperationError(this.reason, `${opts.prefix ?? ''}${this.message}${opts.suffix ?? ''}`, {
      haproxyMessage: this.haproxyMessage,
      command: this.command,
      errors: this.errors,
      warnings: this.warnings,
      state: opts.state === undefined ? this.state : { ...this.state, ...opts.state },
      outcome: opts.outcome ?? this.outcome,
      cause: this.cause
    })
  }
}

/** What a HAProxy refusal means, when the planner has nothing more precise to say. */
const REJECTION_REASONS: Record<RuntimeCommandError['kind'], Reason> = {
  not_found: 'NOT_FOUND',
  exists: 'ALREADY_EXISTS',
  conflict: 'CONFLICT',
  invalid: 'REJECTED_BY_HAPROXY',
  forbidden: 'RUNTIME_FORBIDDEN',
  unsupported: 'RUNTIME_UNSUPPORTED',
  rejected: 'REJECTED_BY_HAPROXY'
}

/** A runtime error as an operation failure (its reason from the error's type or HAProxy's refusal). */
export function fromRuntime (err: RuntimeError): OperationError {
  if (err instanceof RuntimeUnavailableError) return new OperationError('RUNTIME_UNAVAILABLE', err.message, { cause: err })
  if (err instanceof RuntimeBusyError) return new OperationError('RUNTIME_BUSY', err.message, { cause: err })
  if (err instanceof RuntimeStaleProcessError) return new OperationError('HAPROXY_STOPPING', err.message, { haproxyMessage: err.refusal.haproxyMessage, command: err.verb, cause: err })
  if (err instanceof RuntimeTimeoutError) return new OperationError('RUNTIME_TIMEOUT', err.message, { command: err.verb, cause: err })
  if (err instanceof RuntimeProtocolError) return new OperationError('RUNTIME_PROTOCOL', err.message, { command: err.verb, cause: err })
  if (err instanceof RuntimeAbortedError) {
    // Interrupted by whoever holds the signal (the executor, on shutdown): its reason says why.
    const why = err.cause instanceof OperationError ? err.cause : undefined
    return new OperationError(why?.reason ?? 'RUNTIME_ERROR', why === undefined ? err.message : `${why.message}: '${err.verb}' was interrupted`, { command: err.verb, cause: err })
  }
  if (err instanceof RuntimeArgumentError) {
    return new OperationError('INVALID_ARGUMENT', err.message, { errors: [{ field: err.field, message: err.message }], cause: err })
  }
  if (err instanceof RuntimeCommandError) {
    const message = err.kind === 'forbidden'
      ? `HAProxy refused '${err.verb}' for lack of privileges: HAPROXY_RUNTIME_API must point at a stats socket with 'level admin'`
      : err.message
    return new OperationError(REJECTION_REASONS[err.kind], message, { haproxyMessage: err.haproxyMessage, command: err.verb, cause: err })
  }
  return new OperationError('RUNTIME_ERROR', err.message, { cause: err })
}

/** Any thrown value as an OperationError; unknown values become INTERNAL (a bug). */
export function toOperationError (err: unknown): OperationError {
  if (err instanceof OperationError) return err
  if (err instanceof RuntimeError) return fromRuntime(err)
  return new OperationError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err })
}

/** The runtime error of `type` inside `err`: `err` itself, or the cause of an OperationError. */
export function runtimeErrorOf<E> (err: unknown, type: abstract new (...args: never[]) => E): E | undefined {
  if (err instanceof type) return err
  if (err instanceof OperationError && err.cause instanceof type) return err.cause
  return undefined
}

/** The HAProxy refusal inside `err`, if HAProxy refused something. */
export function rejectionOf (err: unknown): RuntimeCommandError | undefined {
  return runtimeErrorOf(err, RuntimeCommandError)
}

/**
 * True when a failure says nothing about whether HAProxy applied the command: it went out and no
 * verdict came back. A refusal, an argument error and an unreachable socket are verdicts (nothing ran).
 */
export function isVerdictless (err: unknown): boolean {
  const e = err instanceof OperationError ? err.cause : err
  // No verb: it failed while waiting for a connection or during `prompt i`, before any command went out.
  return (e instanceof RuntimeTimeoutError || e instanceof RuntimeProtocolError) && e.verb !== undefined
}
