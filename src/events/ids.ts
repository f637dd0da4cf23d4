/**
 * Event ids of GET /events: `<revision>.<boot>.<seq>`, one id telling both positions a reconnecting
 * watcher resumes from.
 * - `revision`: the desired-state revision the stream had reached (a `change` event's own revision);
 *   `change` events after it are read back from the store, which keeps every revision across restarts.
 * - `boot`: 8 hex digits drawn when hapctl starts; the in-memory history (health, reconcile) of
 *   another boot is gone.
 * - `seq`: the position in this boot's in-memory history: the last health/reconcile event the stream
 *   had reached (0 before the first).
 * A client treats the id as opaque (EventSource sends it back in `Last-Event-ID` by itself).
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#the-last-event-id-header
 */
import { randomBytes } from 'node:crypto'

export type EventPosition = { readonly revision: number, readonly boot: string, readonly seq: number }

/** Digits of a position: up to 15, within Number.MAX_SAFE_INTEGER. */
export const EVENT_ID_PATTERN = /^(0|[1-9][0-9]{0,14})\.([0-9a-f]{8})\.(0|[1-9][0-9]{0,14})$/

export function newBootId (): string {
  return randomBytes(4).toString('hex')
}

export function formatEventId (p: EventPosition): string {
  return `${p.revision}.${p.boot}.${p.seq}`
}

/** The position an id names, or undefined when it is not one this API hands out. */
export function parseEventId (id: string): EventPosition | undefined {
  const m = EVENT_ID_PATTERN.exec(id)
  if (m === null) return undefined
  return { revision: Number(m[1]), boot: m[2] as string, seq: Number(m[3]) }
}
