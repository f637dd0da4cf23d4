/**
 * Typed errors of the Runtime API client. They carry a stable `code` and no HTTP status: mapping them
 * to HTTP is the caller's job (src/errors.ts), as undici's transport errors do.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */

export const RuntimeErrorCode = {
  UNAVAILABLE: 'RUNTIME_UNAVAILABLE',
  TIMEOUT: 'RUNTIME_TIMEOUT',
  BUSY: 'RUNTIME_BUSY',
  STALE_PROCESS: 'RUNTIME_STALE_PROCESS',
  PROTOCOL: 'RUNTIME_PROTOCOL',
  COMMAND_REJECTED: 'RUNTIME_COMMAND_REJECTED',
  ABORTED: 'RUNTIME_ABORTED',
  INVALID_ARGUMENT: 'RUNTIME_INVALID_ARGUMENT'
} as const
export type RuntimeErrorCodeValue = typeof RuntimeErrorCode[keyof typeof RuntimeErrorCode]

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCodeValue
  constructor (code: RuntimeErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** The socket could not be reached: connection refused, no such unix socket, reset before any write. */
export class RuntimeUnavailableError extends RuntimeError {
  readonly endpoint: string
  constructor (endpoint: string, detail: string, options?: { cause?: unknown }) {
    super(RuntimeErrorCode.UNAVAILABLE,
      `HAProxy Runtime API at ${endpoint} is unreachable (${detail}); check that HAProxy runs and HAPROXY_RUNTIME_API points at a 'level admin' stats socket`,
      options)
    this.endpoint = endpoint
  }
}

/**
 * Where a sequence stopped without a verdict: `done` commands got their reply; `inFlight` says whether
 * the next one had been sent (it may have run) or not (the client was still on its own preamble).
 * Commands after it were never sent.
 */
export type Position = { readonly done: number, readonly inFlight: boolean }

/** No complete reply before the deadline (a stalled HAProxy, a full `stats maxconn`, a long `wait`). */
export class RuntimeTimeoutError extends RuntimeError {
  readonly verb: string | undefined
  readonly timeoutMs: number
  /** Set by the client: where the sequence stopped (see {@link Position}). */
  position: Position | undefined
  constructor (timeoutMs: number, verb?: string) {
    super(RuntimeErrorCode.TIMEOUT,
      verb === undefined
        ? `HAProxy Runtime API did not answer within ${timeoutMs} ms`
        : `HAProxy Runtime API did not answer '${verb}' within ${timeoutMs} ms`)
    this.verb = verb
    this.timeoutMs = timeoutMs
  }
}

/**
 * No connection became free before the deadline: every one the client may open was in use all along
 * (hapctl's own congestion, not HAProxy's silence). Nothing was sent.
 */
export class RuntimeBusyError extends RuntimeError {
  readonly timeoutMs: number
  constructor (timeoutMs: number, connections: number) {
    super(RuntimeErrorCode.BUSY, `none of the ${connections} Runtime API connection(s) hapctl may open (HAPROXY_MAX_CONNECTIONS) became free within ${timeoutMs} ms`)
    this.timeoutMs = timeoutMs
  }
}

/**
 * A kept connection turned out to reach an old worker a reload has replaced (it refused a change to
 * its disabled proxies, and `show info` on it said `Stopping: 1`). Whatever that worker was told is
 * lost with it, so an operation can start again from scratch against the current process; the
 * connections to the old one are no longer used.
 */
export class RuntimeStaleProcessError extends RuntimeError {
  readonly verb: string
  readonly refusal: RuntimeCommandError
  constructor (refusal: RuntimeCommandError) {
    super(RuntimeErrorCode.STALE_PROCESS, `'${refusal.verb}' reached an HAProxy process that is stopping after a reload (it answered: ${refusal.haproxyMessage}); changes sent to it are lost`, { cause: refusal })
    this.verb = refusal.verb
    this.refusal = refusal
  }
}

/** A reply that cannot be HAProxy's answer to what we sent: cut short, garbage, or an unknown shape. */
export class RuntimeProtocolError extends RuntimeError {
  readonly verb: string | undefined
  readonly reply: string | undefined
  /** Set by the client: where the sequence stopped (see {@link Position}). */
  position: Position | undefined
  constructor (message: string, opts: { verb?: string, reply?: string, cause?: unknown } = {}) {
    super(RuntimeErrorCode.PROTOCOL, message, { cause: opts.cause })
    this.verb = opts.verb
    this.reply = opts.reply
  }
}

/**
 * What a rejection means for the caller; derived from HAProxy's own text, since the CLI has no
 * numeric error codes (docs/runtime-api.md#framing).
 * - not_found: the object named does not exist (`No such backend.`)
 * - exists: the name is taken (`name is already used`, `Already exists a server …`)
 * - conflict: the object is not in a state that allows it (`must be unpublished`, `Wait delay expired`)
 * - invalid: HAProxy refused an argument or keyword (`Unknown proxy mode.`, `unknown keyword`)
 * - forbidden: the socket's level is too low (`Permission denied`)
 * - unsupported: this HAProxy does not know the command (`Unknown command`)
 * - rejected: anything else
 */
export type RejectionKind = 'not_found' | 'exists' | 'conflict' | 'invalid' | 'forbidden' | 'unsupported' | 'rejected'

/** HAProxy answered, and its answer is a refusal. `haproxyMessage` is HAProxy's own text. */
export class RuntimeCommandError extends RuntimeError {
  readonly verb: string
  readonly kind: RejectionKind
  readonly haproxyMessage: string
  /** Position of the failed command in the sequence sent (0-based); set by the client. */
  index: number | undefined
  constructor (verb: string, kind: RejectionKind, haproxyMessage: string) {
    super(RuntimeErrorCode.COMMAND_REJECTED, `HAProxy rejected '${verb}': ${haproxyMessage}`)
    this.verb = verb
    this.kind = kind
    this.haproxyMessage = haproxyMessage
  }
}

/** A value that may not be sent to HAProxy at that position; raised before anything is sent. */
export class RuntimeArgumentError extends RuntimeError {
  readonly field: string
  constructor (field: string, reason: string) {
    super(RuntimeErrorCode.INVALID_ARGUMENT, `invalid ${field}: ${reason}`)
    this.field = field
  }
}

/**
 * The caller's signal ended a `wait` (management §9.3 `wait`) before HAProxy's verdict: the connection
 * was closed, which ends the wait, and the commands after it were not sent. A wait changes nothing, so
 * what ran is exactly the commands before `index`. `cause` is the signal's reason.
 */
export class RuntimeAbortedError extends RuntimeError {
  readonly verb: string
  /** Position of the interrupted wait in the sequence sent (0-based): the commands before it ran. */
  readonly index: number
  constructor (verb: string, index: number, reason: unknown) {
    super(RuntimeErrorCode.ABORTED, `'${verb}' was interrupted by the caller${reason instanceof Error ? ` (${reason.message})` : ''}`, { cause: reason })
    this.verb = verb
    this.index = index
  }
}
