/**
 * GET /audit: who changed what, when, with which Runtime API commands and how it ended; every write,
 * accepted or refused (src/audit/). Answers from the store: it sends nothing to HAProxy.
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import type { DesiredStateStore } from '../engine/store/types.ts'
import { decodeAuditCursor } from '../engine/store/audit.ts'
import { OperationError } from '../engine/outcomes.ts'
import { ProblemSchema } from '../schemas/common.ts'
import { AUDIT_TARGET_PATTERN, AuditPageSchema, AuditQuerySchema } from '../schemas/audit.ts'

export const auditRoutes: FastifyPluginAsyncZod<{ store: DesiredStateStore }> = async function (app, opts) {
  app.get('/audit', {
    schema: {
      tags: ['audit'],
      summary: 'The audit trail of writes, newest first',
      description: 'Every POST, PUT, PATCH and DELETE, accepted or refused: time, token name, client address, request id, route, ' +
        'target, the Runtime API commands sent and the outcome; also what the reconciler changed in HAProxy. ' +
        'Paginated with `limit` and the opaque `next` cursor; filtered by `target` and by time (`since` inclusive, `until` exclusive). ' +
        'Entries are kept HAPCTL_AUDIT_RETENTION_DAYS days, and at most HAPCTL_AUDIT_MAX_ENTRIES of them.',
      operationId: 'listAudit',
      querystring: AuditQuerySchema,
      response: { 200: AuditPageSchema, 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 503: ProblemSchema }
    }
  }, async function (request) {
    const q = request.query
    if (q.cursor !== undefined && decodeAuditCursor(q.cursor) === undefined) {
      throw new OperationError('INVALID_CURSOR', 'cursor is not one this API handed out; start again without it')
    }
    const m = q.target === undefined ? null : AUDIT_TARGET_PATTERN.exec(q.target)
    let page
    try {
      page = await opts.store.listAudit({
        target: m === null ? undefined : { kind: m[1] as string, id: m[2] as string },
        since: q.since === undefined ? undefined : new Date(q.since),
        until: q.until === undefined ? undefined : new Date(q.until),
        limit: q.limit,
        cursor: q.cursor
      })
    } catch (err) {
      throw new OperationError('STORE_UNAVAILABLE', `the audit trail could not be read (${(err as Error).message})`, { cause: err })
    }
    const items = page.items.map(e => ({ ...e, commands: [...e.commands] }))
    return page.next === undefined ? { items } : { items, next: page.next }
  })
}
