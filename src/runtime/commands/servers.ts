/**
 * Server commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import { isIP } from 'node:net'
import type { Command } from './core.ts'
import { expectDone, expectEmpty, expectLastLine, line, rejection, serverRef } from './core.ts'
import { RuntimeArgumentError } from '../errors.ts'
import { lastLine } from '../protocol.ts'
import { RESERVED_SERVER_NAMES, checkWaitMs } from '../validation.ts'

// --- servers ----------------------------------------------------------------------------------

export const SERVER_ADMIN_STATES = ['ready', 'drain', 'maint'] as const
export type ServerAdminState = typeof SERVER_ADMIN_STATES[number]

/** `set server <b>/<s> state ready|drain|maint` (management §9.3); answers an empty line. */
export function setServerState (backend: string, server: string, state: ServerAdminState): Command<void> {
  const verb = 'set server state'
  if (!(SERVER_ADMIN_STATES as readonly string[]).includes(state)) throw new RuntimeArgumentError('state', `must be one of ${SERVER_ADMIN_STATES.join(', ')}`)
  return { text: line('set server', serverRef(backend, server), 'state', state), verb, parse: expectEmpty(verb) }
}

/** `<verb> <b>/<s>` with no other argument and an empty reply on success: the shape of most server switches. */
function onServer (verb: string, backend: string, server: string): Command<void> {
  return { text: line(verb, serverRef(backend, server)), verb, parse: expectEmpty(verb) }
}

/** `shutdown sessions server <b>/<s>` (management §9.3): closes every stream on the server. */
export function shutdownSessions (backend: string, server: string): Command<void> {
  return onServer('shutdown sessions server', backend, server)
}

/** `disable agent <b>/<s>` (management §9.3): an agent would otherwise undo a CLI `state maint` (docs/runtime-api.md#servers). */
export function disableAgent (backend: string, server: string): Command<void> {
  return onServer('disable agent', backend, server)
}

/** `enable agent <b>/<s>` (management §9.3): `Agent was not configured…` when it has none. */
export function enableAgent (backend: string, server: string): Command<void> {
  return onServer('enable agent', backend, server)
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

// --- adding and changing servers --------------------------------------------------------------

export const SSL_VERIFY_MODES = ['none', 'required'] as const
export type SslVerify = typeof SSL_VERIFY_MODES[number]

/** Bounds of the numeric `add server` arguments we send; HAProxy itself accepts garbage for some (docs/runtime-api.md#misleading-replies). */
export const SERVER_LIMITS = {
  port: { min: 1, max: 65535 },
  weight: { min: 0, max: 256 },
  rise: { min: 1, max: 1000 },
  fall: { min: 1, max: 1000 },
  interMs: { min: 1, max: 3_600_000 },
  maxconn: { min: 0, max: 1_000_000 }
} as const

/** Host names for `sni`: DNS labels only, so the `str(<host>)` sample expression we wrap them in stays one token. */
export const SNI_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

export type AddServerOptions = {
  /** An IPv4 or IPv6 literal: HAProxy takes anything else as an FQDN it never resolves (docs/runtime-api.md#names-and-values). */
  address: string
  port: number
  check?: boolean | undefined
  checkPort?: number | undefined
  checkAddr?: string | undefined
  interMs?: number | undefined
  rise?: number | undefined
  fall?: number | undefined
  weight?: number | undefined
  maxconn?: number | undefined
  backup?: boolean | undefined
  ssl?: boolean | undefined
  sslVerify?: SslVerify | undefined
  sni?: string | undefined
  /**
   * With check: `down` (default) keeps a new server out of traffic until its first check passes;
   * `up` puts it in traffic at once and takes it out at the first failed check, which is how a
   * configuration's servers come back after a reload and what re-adding one after a restart needs.
   */
  initState?: 'down' | 'up' | undefined
}

function checkInt (field: string, value: number, bounds: { min: number, max: number }): string {
  if (!Number.isInteger(value) || value < bounds.min || value > bounds.max) {
    throw new RuntimeArgumentError(field, `must be an integer between ${bounds.min} and ${bounds.max}`)
  }
  return String(value)
}

/** An IP literal, as `net.isIP` understands it (no brackets, no zone ids: `%` is not in HAProxy's address syntax here). */
export function checkIp (field: string, value: string): string {
  if (typeof value !== 'string' || isIP(value) === 0 || value.includes('%')) {
    throw new RuntimeArgumentError(field, `'${String(value)}' is not an IPv4 or IPv6 address (host names are not accepted: HAProxy would never resolve them)`)
  }
  return value
}

/** `<ip>:<port>` as `add server` wants it; IPv6 in brackets so the last colon is unambiguous. */
export function serverAddress (address: string, port: number): string {
  const ip = checkIp('address', address)
  const p = checkInt('port', port, SERVER_LIMITS.port)
  return isIP(ip) === 6 ? `[${ip}]:${p}` : `${ip}:${p}`
}

/** The keywords of an `add server` line, in a fixed order; exported for the property tests. */
export function addServerKeywords (o: AddServerOptions): string[] {
  const kw: string[] = []
  const check = o.check === true
  if (!check && (o.checkPort !== undefined || o.checkAddr !== undefined || o.interMs !== undefined || o.rise !== undefined || o.fall !== undefined)) {
    throw new RuntimeArgumentError('check', 'checkPort, checkAddr, inter, rise and fall need check: true')
  }
  if (o.ssl !== true && (o.sslVerify !== undefined || o.sni !== undefined)) {
    throw new RuntimeArgumentError('ssl', 'sslVerify and sni need ssl: true')
  }
  if (check) {
    kw.push('check')
    if (o.interMs !== undefined) kw.push('inter', `${checkInt('inter', o.interMs, SERVER_LIMITS.interMs)}ms`)
    if (o.rise !== undefined) kw.push('rise', checkInt('rise', o.rise, SERVER_LIMITS.rise))
    if (o.fall !== undefined) kw.push('fall', checkInt('fall', o.fall, SERVER_LIMITS.fall))
    if (o.checkPort !== undefined) kw.push('port', checkInt('checkPort', o.checkPort, SERVER_LIMITS.port))
    // `addr` on the add line works on 3.4.7 (sets the check and agent address), unlike
    // `set server … check-addr`, which rejects every IP (docs/runtime-api.md#servers).
    // The keyword takes an IPv6 address only in brackets on 3.4.7 (`addr ::1` → "invalid address:
    // ':' in '::1'"), unlike `set server … addr`, which takes it bare.
    if (o.checkAddr !== undefined) {
      const ip = checkIp('checkAddr', o.checkAddr)
      kw.push('addr', isIP(ip) === 6 ? `[${ip}]` : ip)
    }
    // Without it a server is UP before its first check has run (docs/runtime-api.md#servers): new servers get `down`.
    kw.push('init-state', o.initState === 'up' ? 'up' : 'down')
  }
  if (o.weight !== undefined) kw.push('weight', checkInt('weight', o.weight, SERVER_LIMITS.weight))
  if (o.maxconn !== undefined) kw.push('maxconn', checkInt('maxconn', o.maxconn, SERVER_LIMITS.maxconn))
  if (o.backup === true) kw.push('backup')
  if (o.ssl === true) {
    kw.push('ssl')
    if (o.sslVerify !== undefined) {
      if (!(SSL_VERIFY_MODES as readonly string[]).includes(o.sslVerify)) throw new RuntimeArgumentError('sslVerify', `must be one of ${SSL_VERIFY_MODES.join(', ')}`)
      kw.push('verify', o.sslVerify)
    }
    if (o.sni !== undefined) {
      if (!SNI_PATTERN.test(o.sni)) throw new RuntimeArgumentError('sni', `'${o.sni}' is not a host name`)
      // `sni` takes a sample expression, not a name: a bare `foo.example` is an unknown fetch method.
      kw.push('sni', `str(${o.sni})`)
    }
  }
  return kw
}

/**
 * `add server <b>/<s> <ip>:<port> [kw…]` (management §9.3 `add server`). The server starts in
 * maintenance whatever the keywords say (docs/runtime-api.md#servers); `check` only configures the check.
 */
export function addServer (backend: string, server: string, options: AddServerOptions): Command<void> {
  const verb = 'add server'
  if ((RESERVED_SERVER_NAMES as readonly string[]).includes(server)) {
    throw new RuntimeArgumentError('server', `'${server}' is reserved: show stat uses it for its summary rows`)
  }
  return {
    text: line(verb, serverRef(backend, server), serverAddress(options.address, options.port), ...addServerKeywords(options)),
    verb,
    parse: expectLastLine(verb, 'New server registered.')
  }
}

/** `set server <b>/<s> weight <n>` (management §9.3): absolute weights only; `50%` rounds down (docs/runtime-api.md#misleading-replies). */
export function setServerWeight (backend: string, server: string, weight: number): Command<void> {
  const verb = 'set server weight'
  return { text: line('set server', serverRef(backend, server), 'weight', checkInt('weight', weight, SERVER_LIMITS.weight)), verb, parse: expectEmpty(verb) }
}

/** Replies of `set server … addr` on success (docs/runtime-api.md#misleading-replies): not empty, unlike the other `set server` forms. */
const ADDR_CHANGED = /^(IP changed from '[^']*' to '[^']*'(, port changed from '[^']*' to '[^']*')?|port changed from '[^']*' to '[^']*') by 'stats socket command'$|^nothing changed$/

/**
 * `set server <b>/<s> addr <ip> [port <p>]` (management §9.3). HAProxy takes the port modulo 65536
 * without complaint (docs/runtime-api.md#misleading-replies), so it is range-checked here.
 */
export function setServerAddr (backend: string, server: string, address: string, port?: number): Command<void> {
  const verb = 'set server addr'
  const args = [serverRef(backend, server), 'addr', checkIp('address', address)]
  if (port !== undefined) args.push('port', checkInt('port', port, SERVER_LIMITS.port))
  return {
    text: line('set server', ...args),
    verb,
    parse: reply => { if (!ADDR_CHANGED.test(lastLine(reply))) throw rejection(verb, reply) }
  }
}

/** `enable health <b>/<s>` (management §9.3): `Health check was not configured…` without `check`. */
export function enableHealth (backend: string, server: string): Command<void> {
  return onServer('enable health', backend, server)
}

/** `disable health <b>/<s>` (management §9.3). Answers an empty line even without checks (docs/runtime-api.md#misleading-replies): callers check first. */
export function disableHealth (backend: string, server: string): Command<void> {
  return onServer('disable health', backend, server)
}
