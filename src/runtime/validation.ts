/**
 * What HAProxy accepts at each argument position, as plain regular expressions and checks. The zod
 * schemas of the HTTP layer reuse these (one definition), and the command builders check them again
 * before composing any text, so nothing reaches the socket that was not validated here.
 */
import { RuntimeArgumentError } from './errors.ts'

/**
 * Proxy (backend, defaults) and server names: HAProxy allows letters, digits and `- . : _` only
 * (docs/runtime-api.md#names-and-values, configuration manual §4 "proxy names"); it sets no length limit, we do.
 * Starting with `-` or `.` is legal for HAProxy but useless and confusing on a command line.
 */
export const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/
export const NAME_PATTERN_TEXT = '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$'

/** `show stat` uses these as pseudo server names; a server so named would be ambiguous (docs/runtime-api.md#show-stat). */
export const RESERVED_SERVER_NAMES = ['BACKEND', 'FRONTEND'] as const

export const PROXY_MODES = ['http', 'tcp'] as const
export type ProxyMode = typeof PROXY_MODES[number]

/**
 * Map identifiers as HAProxy names them: `virt@<name>` virtual maps, a file path as written in the
 * configuration, or `#<id>`. No blanks, `;`, `\` or control characters.
 */
export const MAP_NAME_PATTERN = /^(#[0-9]{1,9}|[A-Za-z0-9_.:/@+~=-]{1,1024})$/

/** Upper bound of any `wait <delay>` we send, and its unit. */
export const MAX_WAIT_MS = 3_600_000

/**
 * The last line of defence, applied by the composer to every argument whatever its field: one token,
 * printable, and none of the bytes the CLI tokenizer treats specially: blanks split arguments,
 * `;` and NUL split commands, `\` escapes, CR/LF end the line (docs/runtime-api.md#escaping-and-injection).
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_TOKEN_CHAR = /[\x00-\x20\x7f;\\\u0080-\u009f\u2028\u2029]/

export function assertSafeToken (field: string, value: string): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new RuntimeArgumentError(field, 'must be a non-empty string')
  }
  const bad = UNSAFE_TOKEN_CHAR.exec(value)
  if (bad !== null) {
    throw new RuntimeArgumentError(field, `character ${describeChar(bad[0])} is not allowed`)
  }
}

export function describeChar (c: string): string {
  const code = c.codePointAt(0) ?? 0
  if (code > 0x20 && code < 0x7f) return `'${c}'`
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`
}

export function checkName (field: string, value: string): string {
  assertSafeToken(field, value)
  if (!NAME_PATTERN.test(value)) {
    throw new RuntimeArgumentError(field, `'${value}' must match ${NAME_PATTERN_TEXT} (letters, digits, '_', '.', ':' and '-')`)
  }
  return value
}

export function checkMode (value: string): ProxyMode {
  if (!(PROXY_MODES as readonly string[]).includes(value)) {
    throw new RuntimeArgumentError('mode', `must be one of ${PROXY_MODES.join(', ')}`)
  }
  return value as ProxyMode
}

export function checkMapName (value: string): string {
  assertSafeToken('map', value)
  if (!MAP_NAME_PATTERN.test(value)) {
    throw new RuntimeArgumentError('map', `'${value}' is not a map identifier (virt@<name>, a file path, or #<id>)`)
  }
  return value
}

/** HAProxy answers `Invalid duration.` to `wait 0ms …` (3.4.7), so the shortest wait is 1 ms. */
export function checkWaitMs (value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_WAIT_MS) {
    throw new RuntimeArgumentError('timeout', `must be an integer number of milliseconds between 1 and ${MAX_WAIT_MS}`)
  }
  return value
}

// --- map keys and values ----------------------------------------------------------------------

/** Longest key and value, in UTF-8 bytes: longer payload lines wedge the CLI (docs/runtime-api.md#long-payload-lines). */
export const MAP_KEY_MAX_BYTES = 1024
export const MAP_VALUE_MAX_BYTES = 1024

/*
 * What a map key or value may hold so that it reaches HAProxy and comes back from `show map` byte for
 * byte, in the CLI form (`add/set map <m> <k> <v>`) and in the payload form (`add map @N <m> <<`) alike:
 * - no control characters (NUL and LF split commands even when escaped, CR ends the line), no `;`
 *   (command separator) and no `\` (escape character; payloads store it raw, so no escaping rule
 *   round-trips in both forms) (docs/runtime-api.md#escaping-and-injection);
 * - no `<<`: a last word starting with `<<` turns a command line into a payload header, and the
 *   connection then waits for a payload (verified on 3.4.7, even with the space escaped);
 * - no lone UTF-16 surrogate, which has no UTF-8 form (it would be stored as U+FFFD);
 * - keys: no blank at all (the key is one word in both forms and `show map` is space-separated),
 *   and no leading `#` (`set map`/`del map` take `#…` as an entry reference, docs/runtime-api.md#names-and-values);
 * - values: single or repeated spaces inside are kept (sent as `\ ` on the CLI, raw in payloads),
 *   but not at either end: a payload drops a value's leading blanks (verified on 3.4.7), and trailing
 *   ones are invisible in every listing. No TAB (a control character).
 */
// eslint-disable-next-line no-control-regex
const MAP_FORBIDDEN = /[\x00-\x1f\x7f;\\\u0080-\u009f\u2028\u2029]|\p{Cs}/u

function mapTextProblem (text: string, maxBytes: number): string | undefined {
  if (typeof text !== 'string' || text.length === 0) return 'must be a non-empty string'
  const bad = MAP_FORBIDDEN.exec(text)
  if (bad !== null) return `character ${describeChar(bad[0])} is not allowed`
  if (text.includes('<<')) return "'<<' is not allowed (HAProxy takes a word starting with '<<' as the start of a payload)"
  if (Buffer.byteLength(text) > maxBytes) return `must be at most ${maxBytes} bytes in UTF-8`
  return undefined
}

/** Why a map key cannot be stored exactly, or undefined when it can. */
export function mapKeyProblem (key: string): string | undefined {
  const problem = mapTextProblem(key, MAP_KEY_MAX_BYTES)
  if (problem !== undefined) return problem
  if (key.includes(' ')) return 'must not contain spaces (a key is one word)'
  if (key.startsWith('#')) return "must not start with '#' (HAProxy takes '#…' as an entry reference)"
  return undefined
}

/** Why a map value cannot be stored exactly, or undefined when it can. */
export function mapValueProblem (value: string): string | undefined {
  const problem = mapTextProblem(value, MAP_VALUE_MAX_BYTES)
  if (problem !== undefined) return problem
  if (value.startsWith(' ') || value.endsWith(' ')) return 'must not start or end with a space (spaces inside are kept)'
  return undefined
}

export function checkMapKey (key: string): string {
  const problem = mapKeyProblem(key)
  if (problem !== undefined) throw new RuntimeArgumentError('key', problem)
  return key
}

export function checkMapValue (value: string): string {
  const problem = mapValueProblem(value)
  if (problem !== undefined) throw new RuntimeArgumentError('value', problem)
  return value
}
