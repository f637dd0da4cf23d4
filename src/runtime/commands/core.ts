/**
 * Command builders (this folder): the only place where Runtime API command text is composed. Each builder takes
 * already-validated values, checks them again, and returns the line to send together with the
 * parser that decides, from HAProxy's exact text, whether the command succeeded.
 *
 * HAProxy answers every command with free text and no status code; an empty reply is success for
 * most `set`/`enable`/`add map` commands, and some failures look like successes
 * (docs/runtime-api.md#misleading-replies). Every parser here accepts only the success strings
 * observed on 3.4.7 and treats anything else as a rejection carrying HAProxy's own message.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import { RuntimeCommandError, RuntimeProtocolError } from '../errors.ts'
import type { RejectionKind } from '../errors.ts'
import { MAX_LINE_BYTES, lastLine, withoutNotices } from '../protocol.ts'
import { assertSafeToken, checkName } from '../validation.ts'
import { RuntimeArgumentError } from '../errors.ts'

export type Command<T> = {
  /** The command line, without the final `\n`. Never contains `;`, `\`, NUL, CR or LF. */
  readonly text: string
  /** The command's keywords (`add backend`), for logs and errors; never its arguments. */
  readonly verb: string
  /** Turns HAProxy's reply into a value, or throws RuntimeCommandError / RuntimeProtocolError. */
  readonly parse: (reply: string) => T
  /**
   * 3.4.0 marks `add backend`/`del backend` experimental (3.4.7 no longer does). The mode is per
   * connection and harmless, so the client sends `experimental-mode on` first on that connection.
   */
  readonly experimental?: boolean
  /** Time the command may legitimately take on the server side (`wait <delay>`), added to the deadline. */
  readonly extraTimeMs?: number
  /**
   * For replies too large to hold whole (`show map` of a million entries): when present, the client
   * gives the reply to a new sink in pieces as it arrives instead of calling `parse` with all of it,
   * so that only what the sink keeps stays in memory. `parse(reply)` must give the same result.
   */
  readonly sink?: () => ReplySink<T>
}

/**
 * Consumes one reply in pieces: `write` gets consecutive pieces of its text (the terminating empty
 * line excluded; a piece may end anywhere, even inside a line), `end` returns the value or throws as
 * `parse` would.
 */
export type ReplySink<T> = {
  readonly write: (text: string) => void
  readonly end: () => T
}

export type CommandResult<C> = C extends Command<infer R> ? R : never

/**
 * HAProxy's refusals mapped to what they mean, from the strings 3.4.7 prints (docs/runtime-api.md#misleading-replies).
 * First match wins; unmatched text is 'rejected'.
 */
const REJECTIONS: ReadonlyArray<readonly [RegExp, RejectionKind]> = [
  [/^Permission denied/, 'forbidden'],
  [/^Unknown command/, 'unsupported'],
  [/^No such (backend|server|proxy)\.|^Can't find backend\.|^Cannot find default proxy|^Unknown map identifier|^Key not found\.|^entry not found\.|^key or pattern not found\.|^Failed\. No such/, 'not_found'],
  [/name is already used by other proxy|^Already exists a server with the same name|duplicate entry/, 'exists'],
  [/^Interrupted\.|must be unpublished|^Only a backend without server|^This proxy cannot be removed|still has attached streams|^Only servers in maintenance mode|still has connections attached|^Wait delay expired|^Failed\./, 'conflict'],
  [/^Usage:|^Require |^Invalid character|is not permitted|^Unknown proxy mode|^Mode is required|compatible with only|^Invalid duration|^Missing|expects|unknown keyword|not accepted for dynamic server|^invalid|^Invalid/, 'invalid']
]

export function classifyRejection (message: string): RejectionKind {
  for (const [pattern, kind] of REJECTIONS) if (pattern.test(message)) return kind
  return 'rejected'
}

/**
 * The verdict is on the last line, except after `Unknown command: 'x', but maybe…`, which is followed
 * by a list of suggested commands (docs/runtime-api.md#misleading-replies): then the first line decides.
 */
function classifyReply (message: string): RejectionKind {
  const kind = classifyRejection(lastLine(message) || message)
  return kind !== 'rejected' ? kind : classifyRejection(message.split('\n')[0] ?? '')
}

export function rejection (verb: string, reply: string): RuntimeCommandError {
  const message = withoutNotices(reply).trim() || reply.trim() || '(empty reply)'
  return new RuntimeCommandError(verb, classifyReply(message), message)
}

/** Composes one command line from its keywords and checked arguments. */
export function line (verb: string, ...args: string[]): string {
  for (const a of args) assertSafeToken(verb, a)
  const text = [verb, ...args].join(' ')
  if (Buffer.byteLength(text) + 1 > MAX_LINE_BYTES) {
    throw new RuntimeArgumentError(verb, `command would be ${Buffer.byteLength(text)} bytes, over the ${MAX_LINE_BYTES}-byte line limit`)
  }
  return text
}

/** For commands whose only success is an empty reply (docs/runtime-api.md#framing). */
export function expectEmpty (verb: string): (reply: string) => void {
  return reply => { if (reply !== '') throw rejection(verb, reply) }
}

/** For commands whose success is one known last line, possibly after stray state-change notices. */
export function expectLastLine (verb: string, success: string): (reply: string) => void {
  return reply => { if (lastLine(reply) !== success) throw rejection(verb, reply) }
}

/** For `wait …` commands: `Done.` or a refusal/expiry message. */
export function expectDone (verb: string): (reply: string) => void {
  return expectLastLine(verb, 'Done.')
}

export function showCommand<T> (verb: string, text: string, parse: (reply: string) => T, looksValid: (reply: string) => boolean): Command<T> {
  return {
    text,
    verb,
    parse: reply => {
      if (!looksValid(reply)) {
        if (reply.trim() !== '' && classifyReply(reply.trim()) !== 'rejected') throw rejection(verb, reply)
        throw new RuntimeProtocolError(`'${verb}' returned an unexpected reply`, { verb, reply })
      }
      return parse(reply)
    }
  }
}

export const serverRef = (backend: string, server: string): string =>
  `${checkName('backend', backend)}/${checkName('server', server)}`

/** `experimental-mode on` (management §9.3), sent by the client before experimental commands. */
export function experimentalModeOn (): Command<void> {
  const verb = 'experimental-mode on'
  return { text: verb, verb, parse: expectEmpty(verb) }
}

/**
 * `set timeout cli <seconds>` (management §9.3): this connection's idle timeout; the unit is seconds
 * and 0 is refused (docs/runtime-api.md#cli-timeout). Sent by the client before `wait` commands.
 */
export function setCliTimeout (seconds: number): Command<void> {
  const verb = 'set timeout cli'
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) throw new RuntimeArgumentError('timeout', 'must be 1 to 86400 seconds')
  return { text: line(verb, String(seconds)), verb, parse: expectEmpty(verb) }
}
