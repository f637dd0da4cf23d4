/**
 * Waiting until traffic really reaches a server, or a backend: `show stat` (management §9.1) says UP.
 * A health-checked server is added DOWN (`init-state down`) and turns UP once `rise` checks in a row
 * passed; a server without checks is UP (`no check`) as soon as it is in service. It only reads: what
 * the wait is for has been applied and is kept whatever it finds.
 */
import { setTimeout as delay } from 'node:timers/promises'
import type { Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { Row } from '../../runtime/parsers.ts'
import { normalizeStatus, parseCheckStatus } from './view.ts'
import type { WaitUpQuery } from '../../schemas/servers.ts'
import { WAIT_UP_DEFAULT_MS } from '../../schemas/servers.ts'

/** Between two `show stat` reads: a check interval is rarely under 100 ms, and each read is one round trip. */
const POLL_MS = 100

/** The server rows of `show stat` (type mask 4) and only the columns read here. */
const WAIT_STAT = { columns: ['pxname', 'svname', 'type', 'status', 'check_status'], serversOnly: true } as const

export type UpWait = {
  /** How long to wait at most. */
  readonly timeoutMs: number
  /** Aborted to interrupt the wait (the executor's, on shutdown): its reason is thrown. */
  readonly signal?: AbortSignal | undefined
  /** Aborted when nobody waits for the answer any more (the client went away): the wait just ends. */
  readonly gone?: AbortSignal | undefined
  /** True once hapctl is stopping: the wait ends early rather than hold the stop up. */
  readonly stopping?: (() => boolean) | undefined
}

/** A server as the wait last saw it. */
type SeenServer = { readonly name: string, readonly status: string, readonly checkStatus: string | null }

type UpResult = {
  /** A server (the one named, or any of the backend) was UP. */
  readonly up: boolean
  /** Why it stopped waiting when not up: the deadline ran out, hapctl is stopping, the client left. */
  readonly ended?: 'deadline' | 'stopping' | 'gone' | undefined
  /** The servers of the last read (only the one named, when a name was given). */
  readonly servers: readonly SeenServer[]
}

function seen (r: Row): SeenServer {
  return { name: r.svname ?? '', status: r.status ?? '', checkStatus: parseCheckStatus(r.check_status).status }
}

/**
 * Polls `show stat <backend> 4 -1` until `server` (or, without one, any server of the backend) is UP:
 * `UP`, `UP 1/2` (still in traffic while going down) or `no check`. Not DRAIN, NOLB or MAINT, which take
 * no new traffic. Reads once even with a deadline already past. A runtime failure is thrown as is; an
 * abort of `signal` throws its reason; one of `gone` ends the wait.
 */
export async function waitUntilUp (runtime: Runtime, backend: string, server: string | undefined, wait: UpWait): Promise<UpResult> {
  const deadline = Date.now() + wait.timeoutMs
  const signals = [wait.signal, wait.gone].filter(s => s !== undefined)
  const interrupted = signals.length === 0 ? undefined : AbortSignal.any(signals)
  for (;;) {
    wait.signal?.throwIfAborted()
    const [rows] = await runtime.execute([cmd.showStat(backend, WAIT_STAT)])
    const servers = rows.filter(r => server === undefined || r.svname === server).map(seen)
    if (servers.some(s => normalizeStatus(s.status) === 'up')) return { up: true, servers }
    if (wait.stopping?.() === true) return { up: false, ended: 'stopping', servers }
    if (wait.gone?.aborted === true) return { up: false, ended: 'gone', servers }
    const left = deadline - Date.now()
    if (left <= 0) return { up: false, ended: 'deadline', servers }
    try {
      await delay(Math.min(POLL_MS, left), undefined, { signal: interrupted })
    } catch {
      wait.signal?.throwIfAborted()
      return { up: false, ended: 'gone', servers }
    }
  }
}

/**
 * The wait a request's `?wait=up&waitTimeout=` asks for, if any; `gone` gives the signal that the
 * client went away, asked for only when there is a wait.
 */
export function upWaitOf (q: WaitUpQuery, gone?: () => AbortSignal): UpWait | undefined {
  return q.wait === 'up' ? { timeoutMs: q.waitTimeout ?? WAIT_UP_DEFAULT_MS, gone: gone?.() } : undefined
}

/** The servers seen, for a message: `app1 DOWN (L4CON)`. */
export function describeSeen (servers: readonly SeenServer[]): string {
  if (servers.length === 0) return 'no server'
  return servers.map(s => `${s.name} ${s.status === '' ? '?' : s.status}${s.checkStatus === null ? '' : ` (${s.checkStatus})`}`).join(', ')
}
