/**
 * Process and backend commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Command } from './core.ts'
import { expectDone, expectLastLine, line, rejection, showCommand } from './core.ts'
import { lastLine } from '../protocol.ts'
import { RuntimeCommandError, RuntimeProtocolError } from '../errors.ts'
import { checkMode, checkName, checkWaitMs } from '../validation.ts'
import type { ProxyMode } from '../validation.ts'
import { ShowStatReader, parseServersState, parseShowBackend, parseShowInfo, parseShowStat } from '../parsers.ts'
import type { ProcessInfo, Row } from '../parsers.ts'

// --- process ----------------------------------------------------------------------------------

/** `show info` (management §9.3): version, pid and start time identify the process we talk to. */
export function showInfo (): Command<ProcessInfo> {
  return showCommand('show info', 'show info', parseShowInfo, r => r.includes('\nPid: ') || r.startsWith('Name: '))
}

// --- backends ---------------------------------------------------------------------------------

export type ShowStatOptions = {
  /** Keep only these columns (management §9.1 names); the others are skipped without being cut out. */
  columns?: readonly string[]
  /** Rows of backends and servers only (type mask 6): no frontends, no listeners. */
  backendsAndServersOnly?: boolean
  /** Rows of servers only (type mask 4). */
  serversOnly?: boolean
  /** The BACKEND row only (type mask 2). */
  backendOnly?: boolean
}

/**
 * `show stat [<proxy> <type> -1]` (management §9.1, §9.3). Without a backend: every proxy. 3.4 has
 * no column selection (`show stat [desc|json|no-maint|typed|up]`), so `columns` narrows on our side,
 * as the reply arrives when the client streams it (`sink`).
 */
export function showStat (backend?: string, opts: ShowStatOptions = {}): Command<Row[]> {
  // `show stat <iid> <type> <sid>`: type is a mask, 1 = frontends, 2 = backends, 4 = servers; -1 = all.
  const types = opts.serversOnly === true ? '4' : opts.backendOnly === true ? '2' : opts.backendsAndServersOnly === true ? '6' : '-1'
  const text = backend === undefined
    ? (types === '-1' ? 'show stat' : line('show stat', '-1', types, '-1'))
    : line('show stat', checkName('backend', backend), types, '-1')
  const command = showCommand('show stat', text, reply => parseShowStat(reply, opts.columns), r => r.startsWith('# pxname,'))
  return {
    ...command,
    sink: () => {
      const reader = new ShowStatReader(opts.columns)
      return {
        write: piece => { reader.write(piece) },
        end: () => {
          try {
            return reader.end()
          } catch (err) {
            // Not a CSV reply (a refusal such as `No such proxy.`): judged as parse() judges it.
            if (err instanceof RuntimeProtocolError && err.reply !== undefined) return command.parse(err.reply)
            throw err
          }
        }
      }
    }
  }
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
   * `add server` on it will fail (docs/runtime-api.md#misleading-replies).
   */
  dynamicServers: boolean
  /** HAProxy's explanation when dynamicServers is false. */
  note: string | undefined
}

/**
 * `add backend <name> from <defaults> [mode <mode>]` (management §9.3). The word order matters:
 * 3.4.7 rejects `add backend <name> mode http from <defaults>` with a usage error (docs/runtime-api.md#backends).
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
 * What `del backend` answered: its verdict, or notices without one. In the second case HAProxy has
 * most likely deleted the backend, and only `show backend` can say (see delBackend); `refusal` is
 * the error to raise if the backend is still there.
 */
export type DelBackendResult = { confirmed: true } | { confirmed: false, refusal: RuntimeCommandError }

/**
 * `del backend <name>` (management §9.3). HAProxy 3.4.7 does not print its verdict directly: it adds
 * `Backend deleted.` to a 1024-byte buffer of warnings and notices kept per thread, and prints that
 * buffer. `add backend`, `add server`, `publish` and `unpublish backend` empty the buffer when they
 * start; `del backend` does not, so the buffer also holds what the thread logged since: server state
 * changes (`Server b/s enters drain state…`, `backend 'b' has no server available!`) and the
 * `Server deleted.` of each `del server`, about this backend or another one. A message that does not
 * fit is dropped: after about ten state changes (drain, ready…), the verdict is missing although the
 * backend is gone (test/integration/backend-delete-notices.test.ts). A refusal is printed alone,
 * without the buffer. So: `Backend deleted.` last is success; a known refusal is thrown; any other
 * reply is `confirmed: false`, for the caller to ask `show backend`.
 */
export function delBackend (name: string): Command<DelBackendResult> {
  const verb = 'del backend'
  return {
    text: line(verb, checkName('backend', name)),
    verb,
    experimental: true,
    parse: reply => {
      if (lastLine(reply) === 'Backend deleted.') return { confirmed: true }
      const refusal = rejection(verb, reply)
      // Not a known refusal: notices only, or a refusal never seen yet (`show backend` still lists the backend then).
      if (refusal.kind !== 'rejected') throw refusal
      return { confirmed: false, refusal }
    }
  }
}

/** `wait <delay> be-removable <backend>` (management §9.3): returns as soon as the backend is removable. */
export function waitBackendRemovable (name: string, timeoutMs: number): Command<void> {
  const verb = 'wait be-removable'
  const ms = checkWaitMs(timeoutMs)
  return { text: line('wait', `${ms}ms`, 'be-removable', checkName('backend', name)), verb, parse: expectDone(verb), extraTimeMs: ms }
}

/** What `wait 1ms be-removable` answers when asked as a question (see probeBackendRemovable). */
export type BackendRemovability = { removable: true } | { removable: false, haproxyMessage: string }

/** Refusals of `wait … be-removable` that the removal's own steps, or time, clear (management §9.3 `del backend`). */
const NOT_REMOVABLE_YET = /must be unpublished|Only a backend without server|still has attached streams|Wait delay expired/

/**
 * `wait 1ms be-removable <backend>` as a question: removable now, or not yet (published, has servers,
 * has streams: what a removal's own steps and its drain clear), as a value. Any other refusal
 * (referenced by the configuration, a listen section, a stick-table, no such backend) is thrown as
 * waitBackendRemovable() throws it: HAProxy checks those first (verified on 3.4.7), so the question
 * refuses such a backend before anything is changed. Being a value, a "not yet" does not end the
 * sequence it is sent in.
 */
export function probeBackendRemovable (name: string): Command<BackendRemovability> {
  const wait = waitBackendRemovable(name, 1)
  return {
    text: wait.text,
    verb: wait.verb,
    extraTimeMs: wait.extraTimeMs,
    parse: reply => {
      try {
        wait.parse(reply)
        return { removable: true }
      } catch (err) {
        if (err instanceof RuntimeCommandError && NOT_REMOVABLE_YET.test(err.haproxyMessage)) return { removable: false, haproxyMessage: err.haproxyMessage }
        throw err
      }
    }
  }
}
