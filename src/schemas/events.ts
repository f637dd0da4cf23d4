/**
 * GET /events: the query of a watch stream and the events it carries (Server-Sent Events). The event
 * schemas document the `data:` line of each kind; the stream itself is text/event-stream.
 */
import { z } from 'zod'
import { NAME_PATTERN } from '../runtime/validation.ts'
import { EVENT_KINDS, LOST_REASONS } from '../events/kinds.ts'
import { EVENT_ID_PATTERN } from '../events/ids.ts'
import { OPERATIONAL_STATUSES } from './servers.ts'

const KIND_LIST = new RegExp(`^(${EVENT_KINDS.join('|')})(,(${EVENT_KINDS.join('|')}))*$`)
export const EVENT_TARGET_PATTERN = /^(backend:[^/]+|server:[^/]+\/[^/]+|map:.+)$/

const EventIdSchema = z.string().max(64).regex(EVENT_ID_PATTERN, 'an event id as this API sends them: <revision>.<boot>.<seq>')

export const EventsQuerySchema = z.object({
  kind: z.string().max(100).regex(KIND_LIST, `a comma-separated list of ${EVENT_KINDS.join(', ')}`).optional()
    .describe(`Only these kinds, comma-separated (default all: ${EVENT_KINDS.join(',')}). \`open\` and \`history-lost\` are always sent.`),
  backend: z.string().regex(NAME_PATTERN, 'a backend name').optional()
    .describe('Only events about this backend or one of its servers: its changes and its servers\' health (reconcile events, about no object, are left out)'),
  target: z.string().max(2100).regex(EVENT_TARGET_PATTERN, '`backend:<name>`, `server:<backend>/<server>` or `map:<map>`').optional()
    .describe('Only events about exactly this object, named as in the audit trail: `backend:web`, `server:web/s1`, `map:virt@paths.map` ' +
      '(a change matches when its target or any object it changes is this one; `backend:web` does not include its servers\': use `backend=web` for that)'),
  lastEventId: EventIdSchema.optional()
    .describe('Resume after this event, for clients that cannot send the `Last-Event-ID` header (the header wins when both are given)')
})

export const EventsHeadersSchema = z.object({
  'last-event-id': EventIdSchema.optional()
    .describe('The id of the last event received: the stream starts with every event after it (EventSource sends it by itself when it reconnects)')
})

const TargetSchema = z.object({ kind: z.string(), id: z.string() })

export const ChangeEventSchema = z.object({
  kind: z.literal('change'),
  revision: z.number().int().describe('The desired-state revision this change committed'),
  at: z.string().describe('When it was committed (ISO 8601)'),
  actor: z.string().describe('Who asked: the token\'s name, `api` without authentication, `reconciler`, `import`'),
  action: z.string().describe('`create`, `update`, `delete`, `replace`…'),
  target: TargetSchema.describe('What the write was about'),
  requestId: z.string().nullable().describe('The HTTP request id of the write, as in the logs and the audit trail'),
  changes: z.array(z.record(z.string(), z.unknown())).describe('The changes committed, in order, at most 100 (see changesOmitted); `op`: backend.put, server.put, map.set, map.replace with an `entryCount` instead of its entries…'),
  changesOmitted: z.number().int().optional().describe('Changes of this revision not listed (a whole state document applied at once); GET /state has them')
}).meta({ id: 'ChangeEvent' })

const StatusSchema = z.enum(OPERATIONAL_STATUSES).nullable()

export const HealthEventSchema = z.object({
  kind: z.literal('health'),
  at: z.string().describe('When the poll that saw it answered (ISO 8601)'),
  backend: z.string(),
  server: z.string(),
  previousStatus: StatusSchema.describe('null: the server was not there at the previous poll (it was added, or HAProxy restarted)'),
  status: StatusSchema.describe('null: the server is gone'),
  previousRawStatus: z.string().nullable().describe("HAProxy's own status text before (UP, DOWN, 'DOWN 1/2', MAINT, 'no check'…)"),
  rawStatus: z.string().nullable().describe("HAProxy's own status text now"),
  checkStatus: z.string().nullable().describe('The last health check\'s result (L4OK, L4CON, L7STS…), null without checks')
}).meta({ id: 'HealthEvent' })

export const ReconcileEventSchema = z.object({
  kind: z.literal('reconcile'),
  phase: z.enum(['started', 'finished']),
  reason: z.string().describe('Why the pass ran (start, HAProxy process changed, interval…)'),
  startedAt: z.string(),
  durationMs: z.number().int().optional().describe('finished only'),
  revision: z.number().int().optional().describe('finished only: the store revision it worked from'),
  process: z.string().nullable().optional().describe('finished only: the HAProxy process reconciled (`pid@start_time`)'),
  reapplied: z.number().int().optional().describe('finished only: objects put back'),
  drift: z.number().int().optional().describe('finished only: differences left (GET /status lists them)'),
  failures: z.number().int().optional().describe('finished only: objects that could not be put back'),
  failed: z.array(z.object({ object: z.string(), error: z.string() })).optional().describe('finished only: the first 100 failures')
}).meta({ id: 'ReconcileEvent' })

export const OpenEventSchema = z.object({
  kind: z.literal('open'),
  revision: z.number().int().describe('The desired-state revision the stream has reached'),
  boot: z.string().describe('Which start of hapctl serves the stream'),
  resumed: z.boolean().describe('The client gave an event id to resume from'),
  replayed: z.number().int().describe('Events sent before this one to catch up')
}).meta({ id: 'OpenEvent' })

export const HistoryLostEventSchema = z.object({
  kind: z.literal('history-lost'),
  lost: z.array(z.enum(EVENT_KINDS)).describe('The kinds (among those asked for) whose events since the given id cannot all be sent'),
  reasons: z.array(z.enum(LOST_REASONS)).describe('restarted: hapctl restarted; expired: pushed out of the in-memory history; health-unwatched: health was not polled for a while; store-reset: the store does not have that revision'),
  detail: z.string()
}).meta({ id: 'HistoryLostEvent' })

/**
 * The 200 answer: a text/event-stream of events whose `data:` line is one of these, each kind being
 * the SSE `event:` name. The route's `content` makes the document say text/event-stream, not JSON.
 */
export const EVENT_DATA_IDS = ['ChangeEvent', 'HealthEvent', 'ReconcileEvent', 'OpenEvent', 'HistoryLostEvent'] as const

export const EventStreamSchema = z.union([ChangeEventSchema, HealthEventSchema, ReconcileEventSchema, OpenEventSchema, HistoryLostEventSchema])
