/**
 * A Runtime decorator that times each Runtime API call and says how it ended, for GET /metrics: the
 * client, the services and the executor send through it as through the client, and know nothing of
 * metrics. How a call ended is read from the client's typed errors (src/runtime/errors.ts); which of
 * its commands went out, and with what verdict, the same way the audit trail reads it.
 */
import type { Runtime } from '../runtime/client.ts'
import { aroundRuntime } from '../runtime/around.ts'
import type { Around } from '../runtime/around.ts'
import { RuntimeError } from '../runtime/errors.ts'
import type { RuntimeErrorCodeValue } from '../runtime/errors.ts'
import { sentCommands } from '../audit/recording-runtime.ts'

/**
 * How a call ended:
 * - ok: every command succeeded;
 * - refused: HAProxy refused a command (its verdict was read; the commands after it were not sent);
 * - stale: a refusal from an HAProxy process stopping after a reload (the caller starts again);
 * - timeout: HAProxy did not answer in time;
 * - unavailable: HAProxy could not be reached (connection refused, no socket);
 * - protocol: the connection broke, or the reply made no sense, before a verdict;
 * - busy: no connection of hapctl's own came free in time (HAProxy was not asked);
 * - interrupted: a `wait` cut short because hapctl stops;
 * - invalid: an argument refused before anything was sent;
 * - error: anything else.
 */
export const CALL_OUTCOMES = ['ok', 'refused', 'stale', 'timeout', 'unavailable', 'protocol', 'busy', 'interrupted', 'invalid', 'error'] as const
type CallOutcome = typeof CALL_OUTCOMES[number]

/** Each of the client's error codes as an outcome: a new code does not compile until it has one. */
const OUTCOME_OF: Record<RuntimeErrorCodeValue, CallOutcome> = {
  RUNTIME_COMMAND_REJECTED: 'refused',
  RUNTIME_STALE_PROCESS: 'stale',
  RUNTIME_TIMEOUT: 'timeout',
  RUNTIME_UNAVAILABLE: 'unavailable',
  RUNTIME_PROTOCOL: 'protocol',
  RUNTIME_BUSY: 'busy',
  RUNTIME_ABORTED: 'interrupted',
  RUNTIME_INVALID_ARGUMENT: 'invalid'
}

export function callOutcome (err?: unknown): CallOutcome {
  if (err === undefined) return 'ok'
  return err instanceof RuntimeError ? OUTCOME_OF[err.code] : 'error'
}

/**
 * What an outcome says about HAProxy: it answered (true), it could not be reached or did not answer
 * (false), or nothing (undefined: the call ended on hapctl's side before HAProxy was asked, or by its choice).
 */
export function haproxyAnswered (outcome: CallOutcome): boolean | undefined {
  switch (outcome) {
    case 'ok': case 'refused': case 'stale': return true
    case 'timeout': case 'unavailable': case 'protocol': return false
    default: return undefined
  }
}

/** One finished call. `verb` is its first command's (a call sends one or more on one connection). */
export type CallObservation = {
  readonly verb: string
  readonly outcome: CallOutcome
  readonly seconds: number
  /** The commands that went out, and how each ended: ok, refused, interrupted, or unknown (no verdict). */
  readonly commands: ReadonlyArray<{ readonly verb: string, readonly result: string }>
}

export function measuredRuntime (inner: Runtime, observe: (o: CallObservation) => void): Runtime {
  const measured: Around = async (commands, call) => {
    const started = performance.now()
    const done = (err?: unknown): void => {
      observe({
        verb: commands[0]?.verb ?? 'none',
        outcome: callOutcome(err),
        seconds: (performance.now() - started) / 1000,
        commands: sentCommands(commands, err).map(s => ({ verb: s.command.verb, result: s.result }))
      })
    }
    let result
    try {
      result = await call()
    } catch (err) {
      done(err)
      throw err
    }
    done()
    return result
  }
  return aroundRuntime(inner, measured)
}
