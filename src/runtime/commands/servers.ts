/**
 * Server commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Command } from './core.ts'
import { expectDone, expectEmpty, expectLastLine, line, serverRef } from './core.ts'
import { RuntimeArgumentError } from '../errors.ts'
import { checkWaitMs } from '../validation.ts'

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

/** `enable agent <b>/<s>` (management §9.3): `Agent was not configured…` when it has none. */
export function enableAgent (backend: string, server: string): Command<void> {
  const verb = 'enable agent'
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
