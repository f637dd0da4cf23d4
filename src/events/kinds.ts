/**
 * What each kind of event of GET /events carries (src/schemas/events.ts documents the same shapes),
 * and what it is about: its subjects (`backend:<b>`, `server:<b>/<s>`, `map:<m>`, as the audit
 * trail names targets) and the backends it concerns, which the `target` and `backend` filters match.
 */
import type { RevisionRecord } from '../engine/store/types.ts'
import type { PassEvent } from '../engine/reconciler.ts'
import type { OperationalStatus } from '../resources/servers/view.ts'

export const EVENT_KINDS = ['change', 'health', 'reconcile'] as const
export type EventKind = typeof EVENT_KINDS[number]

/** Why a `history-lost` event is sent. */
export const LOST_REASONS = ['restarted', 'expired', 'health-unwatched', 'store-reset'] as const
export type LostReason = typeof LOST_REASONS[number]

/** An event before it gets its id: its payload and what the filters match. */
export type EventBody = {
  readonly kind: EventKind
  readonly data: Record<string, unknown>
  /** Exact subjects (`target=` matches one of them); empty for events about no object (reconcile). */
  readonly subjects: readonly string[]
  /** Backends concerned (`backend=` matches one of them). */
  readonly backends: readonly string[]
}

/** A server's health as one poll saw it. */
export type ServerHealth = { readonly status: OperationalStatus, readonly rawStatus: string, readonly checkStatus: string | null }

/** A server whose status changed between two polls; previous undefined: it appeared, current undefined: it went away. */
export type HealthTransition = {
  readonly backend: string
  readonly server: string
  readonly previous: ServerHealth | undefined
  readonly current: ServerHealth | undefined
}

const backendOfServerId = (id: string): string => id.slice(0, Math.max(0, id.indexOf('/')))

/** The object one desired-state change is about. */
function subjectOfChange (change: unknown): string | undefined {
  if (change === null || typeof change !== 'object') return undefined
  const c = change as Record<string, any>
  switch (c.op) {
    case 'backend.put': return `backend:${c.backend?.name as string}`
    case 'backend.delete': return `backend:${c.name as string}`
    case 'server.put': return `server:${c.server?.backend as string}/${c.server?.name as string}`
    case 'staticServer.put': return `server:${c.settings?.backend as string}/${c.settings?.name as string}`
    case 'server.delete':
    case 'staticServer.delete': return `server:${c.backend as string}/${c.name as string}`
    case 'map.replace':
    case 'map.set':
    case 'map.delete':
    case 'map.forget': return `map:${c.name as string}`
    default: return undefined
  }
}

function backendOfSubject (subject: string): string | undefined {
  if (subject.startsWith('backend:')) return subject.slice('backend:'.length)
  if (subject.startsWith('server:')) return backendOfServerId(subject.slice('server:'.length)) || undefined
  return undefined
}

/**
 * A committed revision: who changed what, and the changes themselves (a map.replace as its entry
 * count). Its subjects are the commit's target and every object a change touches, so that a
 * document applied whole (one revision) matches the filters of each object in it.
 */
/** Changes listed in one `change` event at most. */
export const MAX_EVENT_CHANGES = 100

export function changeEvent (r: RevisionRecord): EventBody {
  const subjects = new Set<string>([`${r.target.kind}:${r.target.id}`])
  for (const c of r.changes) {
    const s = subjectOfChange(c)
    if (s !== undefined) subjects.add(s)
  }
  const backends = new Set<string>()
  for (const s of subjects) {
    const b = backendOfSubject(s)
    if (b !== undefined) backends.add(b)
  }
  return {
    kind: 'change',
    data: {
      kind: 'change',
      revision: r.revision,
      at: r.at,
      actor: r.actor,
      action: r.action,
      target: { kind: r.target.kind, id: r.target.id },
      requestId: r.requestId ?? null,
      // A whole state document is one revision of thousands of changes: the event says the first
      // ones and how many more (GET /state has them all), so that one event stays a few KB.
      changes: r.changes.length > MAX_EVENT_CHANGES ? r.changes.slice(0, MAX_EVENT_CHANGES) : r.changes,
      ...(r.changes.length > MAX_EVENT_CHANGES ? { changesOmitted: r.changes.length - MAX_EVENT_CHANGES } : {})
    },
    subjects: [...subjects],
    backends: [...backends]
  }
}

export function healthEvent (t: HealthTransition, at: Date): EventBody {
  return {
    kind: 'health',
    data: {
      kind: 'health',
      at: at.toISOString(),
      backend: t.backend,
      server: t.server,
      previousStatus: t.previous?.status ?? null,
      status: t.current?.status ?? null,
      previousRawStatus: t.previous?.rawStatus ?? null,
      rawStatus: t.current?.rawStatus ?? null,
      checkStatus: t.current?.checkStatus ?? null
    },
    subjects: [`server:${t.backend}/${t.server}`],
    backends: [t.backend]
  }
}

/** At most this many failures are listed in a `finished` event (the counts are always whole). */
export const MAX_LISTED_FAILURES = 100

export function reconcileEvent (e: PassEvent): EventBody {
  if (e.phase === 'started') {
    return { kind: 'reconcile', data: { kind: 'reconcile', phase: 'started', reason: e.reason, startedAt: e.startedAt }, subjects: [], backends: [] }
  }
  const r = e.report
  return {
    kind: 'reconcile',
    data: {
      kind: 'reconcile',
      phase: 'finished',
      reason: r.reason,
      startedAt: r.startedAt,
      durationMs: r.durationMs,
      revision: r.revision,
      process: r.process ?? null,
      reapplied: r.reapplied.length,
      drift: r.drift.length,
      failures: r.failed.length,
      failed: r.failed.slice(0, MAX_LISTED_FAILURES).map(f => ({ object: f.object, error: f.error }))
    },
    subjects: [],
    backends: []
  }
}
