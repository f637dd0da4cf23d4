/**
 * GET /events: a Server-Sent Events stream of what changes (desired-state revisions), of server
 * health (from HAProxy) and of the reconciler's passes, resumable with Last-Event-ID (src/events/).
 * The reply is hijacked: Fastify's hooks that run on an answer's head (onSend) do not run, so this
 * route sets its headers and the stalled-reader timeout of src/plugins/stalled-readers.ts itself.
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import type { EventHub } from '../events/hub.ts'
import { EVENT_KINDS } from '../events/kinds.ts'
import type { EventKind } from '../events/kinds.ts'
import { parseEventId } from '../events/ids.ts'
import { ProblemSchema } from '../schemas/common.ts'
import { EVENT_DATA_IDS, EventStreamSchema, EventsHeadersSchema, EventsQuerySchema } from '../schemas/events.ts'

export type EventRoutesOptions = {
  events: EventHub
  /** How long the client may take no byte of the stream before its connection ends (HAPCTL_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number
}

const DESCRIPTION = `A Server-Sent Events stream (\`text/event-stream\`; \`curl -N\`, or \`new EventSource('/events')\` in a browser). Each event has an \`event:\` name (its kind), an \`id:\` and one \`data:\` line of JSON:
- \`change\`: a desired-state revision was committed (revision, actor, action, target, the changes);
- \`health\`: a server's status changed in HAProxy (backend, server, previous and new status, check status), seen by polling \`show stat\` every HAPCTL_HEALTH_POLL_MS (one poll for all watchers, only while someone watches health);
- \`reconcile\`: a reconciler pass started or finished (reapplied, drift and failure counts);
- \`open\`: sent once the stream has caught up; its id is where to resume from even if nothing else comes;
- \`history-lost\`: the events after the given id cannot all be sent (hapctl restarted, the in-memory history no longer holds them, health was not polled for a while, the store does not have that revision): read the state again.

**Resuming.** An id is \`<revision>.<boot>.<seq>\`: the desired-state revision the stream had reached, which start of hapctl sent it, and its position in that start's in-memory history of health and reconcile events (HAPCTL_EVENTS_HISTORY of them). Send the last id received in \`Last-Event-ID\` (EventSource does) or \`lastEventId\`: the stream starts with every event after it, \`change\` events read back from the store (never lost while the store keeps its revisions), health and reconcile events from the history.

**Filters** (all must match): \`kind\`; \`backend\` (the backend and its servers); \`target\` (exactly one object, as the audit trail names them: \`backend:<b>\`, \`server:<b>/<s>\`, \`map:<m>\`). Reconcile events are about no object: a \`backend\` or \`target\` filter leaves them out.

A \`: keep-alive\` comment comes every HAPCTL_EVENTS_KEEPALIVE_MS. A client that leaves more than HAPCTL_EVENTS_BUFFER_BYTES unread is disconnected (it reconnects with its last id and catches up). When HAProxy cannot be polled, no health event comes; the first answer after is compared with the last one seen. Streams end when hapctl stops.`

export const eventRoutes: FastifyPluginAsyncZod<EventRoutesOptions> = async function (app, opts) {
  app.get('/events', {
    schema: {
      tags: ['events'],
      summary: 'Watch changes, server health and reconciler passes (Server-Sent Events)',
      description: DESCRIPTION,
      operationId: 'watchEvents',
      querystring: EventsQuerySchema,
      headers: EventsHeadersSchema,
      response: {
        200: EventStreamSchema.meta({
          content: {
            'text/event-stream': {
              schema: { type: 'string', description: 'A stream of events: `id: <revision>.<boot>.<seq>`, `event: <kind>`, `data: <JSON>` (one of ChangeEvent, HealthEvent, ReconcileEvent, OpenEvent, HistoryLostEvent), and `: keep-alive` comments' },
              // OpenAPI 3.1 has no schema for the items of a stream (3.2's itemSchema): an extension names them.
              'x-event-data': { oneOf: EVENT_DATA_IDS.map(id => ({ $ref: `#/components/schemas/${id}` })) }
            }
          }
        }),
        400: ProblemSchema,
        401: ProblemSchema,
        403: ProblemSchema,
        503: ProblemSchema
      }
    }
  }, async function (request, reply) {
    const q = request.query
    const id = request.headers['last-event-id'] ?? q.lastEventId
    // Both were checked against EVENT_ID_PATTERN by the schemas.
    const from = id === undefined ? undefined : parseEventId(id)
    const kinds = new Set<EventKind>(q.kind === undefined ? EVENT_KINDS : q.kind.split(',') as EventKind[])
    const res = reply.raw
    await opts.events.watch(res, { kinds, backend: q.backend, target: q.target }, from, () => {
      reply.hijack()
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        // nginx buffers answers by default, which would hold events back.
        'x-accel-buffering': 'no',
        'x-request-id': request.id
      })
      res.flushHeaders()
      // A client that takes no byte for this long is cut (src/plugins/stalled-readers.ts); the
      // keep-alive comments, more frequent (src/config.ts checks it), keep an idle reader's stream going.
      res.setTimeout(opts.requestTimeoutMs, () => { request.raw.socket?.destroy() })
    })
  })
}
