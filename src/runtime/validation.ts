/**
 * What HAProxy accepts at each argument position, as plain regular expressions and checks. The zod
 * schemas of the HTTP layer reuse these (one definition), and the command builders check them again
 * before composing any text, so nothing reaches the socket that was not validated here.
 */
import { RuntimeArgumentError } from './errors.ts'

/**
 * Proxy (backend, defaults) and server names: HAProxy allows letters, digits and `- . : _` only
 * (runtime-notes 2.4, configuration manual §4 "proxy names"); it sets no length limit, we do.
 * Starting with `-` or `.` is legal for HAProxy but useless and confusing on a command line.
 */
export const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/
export const NAME_PATTERN_TEXT = '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$'

/** `show stat` uses these as pseudo server names; a server so named would be ambiguous (runtime-notes 4.9). */
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
 * `;` and NUL split commands, `\` escapes, CR/LF end the line (runtime-notes 2.1, 2.3).
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
