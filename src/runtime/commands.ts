/**
 * Command builders: the only place where Runtime API command text is composed. Each builder takes
 * already-validated values, checks them again, and returns the line to send together with the
 * parser that decides, from HAProxy's exact text, whether the command succeeded.
 *
 * HAProxy answers every command with free text and no status code; an empty reply is success for
 * most `set`/`enable`/`add map` commands, and some failures look like successes (runtime-notes,
 * pitfalls 4-6). Every parser here accepts only the success strings observed on 3.4.7 and treats
 * anything else as a rejection carrying HAProxy's own message.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import { RuntimeCommandError, RuntimeProtocolError } from './errors.ts'
import type { RejectionKind } from './errors.ts'
import { MAX_LINE_BYTES, lastLine, withoutNotices } from './protocol.ts'
import { assertSafeToken, checkMapName, checkMode, checkName, checkWaitMs } from './validation.ts'
import type { ProxyMode } from './validation.ts'
import { parseServersState, parseShowBackend, parseShowInfo, parseShowStat } from './parsers.ts'
import type { ProcessInfo, Row } from './parsers.ts'
import { RuntimeArgumentError } from './errors.ts'

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
}

export type CommandResult<C> = C extends Command<infer R> ? R : never

/**
 * HAProxy's refusals mapped to what they mean, from the strings 3.4.7 prints (runtime-notes 3-5).
 * First match wins; unmatched text is 'rejected'.
 */
const REJECTIONS: ReadonlyArray<readonly [RegExp, RejectionKind]> = [
  [/^Permission denied/, 'forbidden'],
  [/^Unknown command/, 'unsupported'],
  [/^No such (backend|server)\.|^Can't find backend\.|^Cannot find default proxy|^Unknown map identifier|^Key not found\.|^entry not found\.|^key or pattern not found\.|^Failed\. No such/, 'not_found'],
  [/name is already used by other proxy|^Already exists a server with the same name|duplicate entry/, 'exists'],
  [/must be unpublished|^Only a backend without server|^This proxy cannot be removed|still has attached streams|^Only servers in maintenance mode|still has connections attached|^Wait delay expired|^Failed\./, 'conflict'],
  [/^Usage:|^Require |^Invalid character|is not permitted|^Unknown proxy mode|^Mode is required|compatible with only|^Invalid duration|^Missing|expects|unknown keyword|not accepted for dynamic server|^invalid|^Invalid/, 'invalid']
]

export function classifyRejection (message: string): RejectionKind {
  for (const [pattern, kind] of REJECTIONS) if (pattern.test(message)) return kind
  return 'rejected'
}

export function rejection (verb: string, reply: string): RuntimeCommandError {
  const message = withoutNotices(reply).trim() || reply.trim() || '(empty reply)'
  return new RuntimeCommandError(verb, classifyRejection(lastLine(message) || message), message)
}

/** Composes one command line from its keywords and checked arguments. */
function line (verb: string, ...args: string[]): string {
  for (const a of args) assertSafeToken(verb, a)
  const text = [verb, ...args].join(' ')
  if (Buffer.byteLength(text) + 1 > MAX_LINE_BYTES) {
    throw new RuntimeArgumentError(verb, `command would be ${Buffer.byteLength(text)} bytes, over the ${MAX_LINE_BYTES}-byte line limit`)
  }
  return text
}

/** For commands whose only success is an empty reply (runtime-notes pitfall 4). */
function expectEmpty (verb: string): (reply: string) => void {
  return reply => { if (reply !== '') throw rejection(verb, reply) }
}

/** For commands whose success is one known last line, possibly after stray state-change notices. */
function expectLastLine (verb: string, success: string): (reply: string) => void {
  return reply => { if (lastLine(reply) !== success) throw rejection(verb, reply) }
}

/** For `wait …` commands: `Done.` or a refusal/expiry message. */
function expectDone (verb: string): (reply: string) => void {
  return expectLastLine(verb, 'Done.')
}

function showCommand<T> (verb: string, text: string, parse: (reply: string) => T, looksValid: (reply: string) => boolean): Command<T> {
  return {
    text,
    verb,
    parse: reply => {
      if (!looksValid(reply)) {
        if (reply.trim() !== '' && classifyRejection(lastLine(reply)) !== 'rejected') throw rejection(verb, reply)
        throw new RuntimeProtocolError(`'${verb}' returned an unexpected reply`, { verb, reply })
      }
      return parse(reply)
    }
  }
}

const serverRef = (backend: string, server: string): string =>
  `${checkName('backend', backend)}/${checkName('server', server)}`

// --- process ----------------------------------------------------------------------------------

/** `show info` (management §9.3): version, pid and start time identify the process we talk to. */
export function showInfo (): Command<ProcessInfo> {
  return showCommand('show info', 'show info', parseShowInfo, r => r.includes('\nPid: ') || r.startsWith('Name: '))
}

// --- backends ---------------------------------------------------------------------------------

/** `show stat [<proxy> <type> -1]` (management §9.1, §9.3). Without a backend: every proxy. */
export function showStat (backend?: string): Command<Row[]> {
  const text = backend === undefined ? 'show stat' : line('show stat', checkName('backend', backend), '-1', '-1')
  return showCommand('show stat', text, parseShowStat, r => r.startsWith('# pxname,'))
}

/** `show servers state [<backend>]` (management §9.3). Unknown backend: `Can't find backend.` */
export function showServersState (backend?: string): Command<Row[]> {
  const text = backend === undefined ? 'show servers state' : line('show servers state', checkName('backend', backend))
  return showCommand('show servers state', text, parseServersState, r => r.startsWith('1\n# be_id'))
}

/** `show backend` (management §9.3): backend names only. */
export function showBackend (): Command<string[]> {
  return showCommand('show backend', 'show backend', parseShowBackend, r => r.startsWith('# name'))
}

export type AddBackendResult = {
  /**
   * False when the defaults section uses a static balance algorithm: HAProxy still creates the
   * backend but answers `New backend registered (no support for dynamic servers: …)`, and every
   * `add server` on it will fail (runtime-notes 3.1).
   */
  dynamicServers: boolean
  /** HAProxy's explanation when dynamicServers is false. */
  note: string | undefined
}

/**
 * `add backend <name> from <defaults> [mode <mode>]` (management §9.3). The word order matters:
 * 3.4.7 rejects `add backend <name> mode http from <defaults>` with a usage error (runtime-notes 3.1).
 */
export function addBackend (name: string, from: string, mode?: ProxyMode): Command<AddBackendResult> {
  const args = [checkName('backend', name), 'from', checkName('defaults', from)]
  if (mode !== undefined) args.push('mode', checkMode(mode))
  const verb = 'add backend'
  return {
    text: line(verb, ...args),
    verb,
    experimental: true,
    parse: reply => {
      const last = lastLine(reply)
      if (last === 'New backend registered.') return { dynamicServers: true, note: undefined }
      const limited = /^New backend registered \(no support for dynamic servers: (.*)\)\.$/.exec(last)
      if (limited !== null) return { dynamicServers: false, note: limited[1] }
      throw rejection(verb, reply)
    }
  }
}

/** `publish backend <name>` (management §9.3). Needs level admin on 3.4.7 although §9.3 says operator. */
export function publishBackend (name: string): Command<void> {
  const verb = 'publish backend'
  return { text: line(verb, checkName('backend', name)), verb, parse: expectLastLine(verb, 'Backend published.') }
}

/** `unpublish backend <name>` (management §9.3): use_backend and default_backend then skip it. */
export function unpublishBackend (name: string): Command<void> {
  const verb = 'unpublish backend'
  return { text: line(verb, checkName('backend', name)), verb, parse: expectLastLine(verb, 'Backend unpublished.') }
}

/**
 * `del backend <name>` (management §9.3). The reply may start with state-change notices about this
 * or another backend; only the last line is the verdict (runtime-notes 3.4).
 */
export function delBackend (name: string): Command<void> {
  const verb = 'del backend'
  return { text: line(verb, checkName('backend', name)), verb, experimental: true, parse: expectLastLine(verb, 'Backend deleted.') }
}

/** `wait <delay> be-removable <backend>` (management §9.3): returns as soon as the backend is removable. */
export function waitBackendRemovable (name: string, timeoutMs: number): Command<void> {
  const verb = 'wait be-removable'
  const ms = checkWaitMs(timeoutMs)
  return { text: line('wait', `${ms}ms`, 'be-removable', checkName('backend', name)), verb, parse: expectDone(verb), extraTimeMs: ms }
}

// --- servers ----------------------------------------------------------------------------------

export const SERVER_ADMIN_STATES = ['ready', 'drain', 'maint'] as const
export type ServerAdminState = typeof SERVER_ADMIN_STATES[number]

/** `set server <b>/<s> state ready|drain|maint` (management §9.3); answers an empty line. */
export function setServerState (backend: string, server: string, state: ServerAdminState): Command<void> {
  const verb = 'set server state'
  if (!(SERVER_ADMIN_STATES as readonly string[]).includes(state)) throw new RuntimeArgumentError('state', `must be one of ${SERVER_ADMIN_STATES.join(', ')}`)
  return { text: line('set server', serverRef(backend, server), 'state', state), verb, parse: expectEmpty(verb) }
}

/** `shutdown sessions server <b>/<s>` (management §9.3): closes every stream on the server. */
export function shutdownSessions (backend: string, server: string): Command<void> {
  const verb = 'shutdown sessions server'
  return { text: line(verb, serverRef(backend, server)), verb, parse: expectEmpty(verb) }
}

/** `disable agent <b>/<s>` (management §9.3): an agent would otherwise undo a CLI `state maint` (runtime-notes 4.6). */
export function disableAgent (backend: string, server: string): Command<void> {
  const verb = 'disable agent'
  return { text: line(verb, serverRef(backend, server)), verb, parse: expectEmpty(verb) }
}

/** `wait <delay> srv-removable <b>/<s>` (management §9.3). */
export function waitServerRemovable (backend: string, server: string, timeoutMs: number): Command<void> {
  const verb = 'wait srv-removable'
  const ms = checkWaitMs(timeoutMs)
  return { text: line('wait', `${ms}ms`, 'srv-removable', serverRef(backend, server)), verb, parse: expectDone(verb), extraTimeMs: ms }
}

/** `del server <b>/<s>` (management §9.3): only servers in maintenance without connections. */
export function delServer (backend: string, server: string): Command<void> {
  const verb = 'del server'
  return { text: line(verb, serverRef(backend, server)), verb, parse: expectLastLine(verb, 'Server deleted.') }
}

// --- maps (the single-entry forms; the maps resource builds on these) -------------------------

/** `add map <map> <key> <value>` (management §9.3): answers an empty line; never de-duplicates. */
export function addMapEntry (map: string, key: string, value: string): Command<void> {
  const verb = 'add map'
  return { text: line(verb, checkMapName(map), key, value), verb, parse: expectEmpty(verb) }
}

/** `experimental-mode on` (management §9.3), sent by the client before experimental commands. */
export function experimentalModeOn (): Command<void> {
  const verb = 'experimental-mode on'
  return { text: verb, verb, parse: expectEmpty(verb) }
}
