/**
 * GET /status: what hapctl keeps and how HAProxy compares with it: the HAProxy process answering, the
 * store's revision, the last reconcile (what was put back, what failed and why) and the drift left.
 * Polled by dashboards, so it logs at `warn` only.
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import type { ReconcileReport, Reconciler } from '../engine/reconciler.ts'
import type { ProcessIdentity } from '../engine/identity.ts'
import type { DesiredStateStore } from '../engine/store/types.ts'
import { ProblemSchema } from '../schemas/common.ts'
import { OperationError } from '../engine/outcomes.ts'

const DriftSchema = z.object({
  object: z.string().describe('`backend/<b>`, `server/<b>/<s>`, `static-server/<b>/<s>`, `map/<m>`, or `haproxy` when HAProxy could not be read at all'),
  desired: z.string(),
  actual: z.string()
}).meta({ id: 'Drift' })

const StatusSchema = z.object({
  haproxy: z.object({
    process: z.string().nullable().describe('`pid@start_time` of the HAProxy process last seen; changes on every restart and reload'),
    pid: z.number().int().nullable(),
    version: z.string().nullable(),
    lastSeen: z.string().nullable().describe('When that process last answered (ISO 8601)')
  }),
  store: z.object({
    description: z.string().describe('Where the desired state is kept'),
    revision: z.number().int().describe('Revision of the last accepted change')
  }),
  reconciler: z.object({
    running: z.boolean(),
    passes: z.number().int().describe('Passes since hapctl started'),
    last: z.object({
      reason: z.string().describe('Why it ran: start, HAProxy process changed, periodic, …'),
      startedAt: z.string(),
      durationMs: z.number().int(),
      process: z.string().nullable(),
      revision: z.number().int(),
      reapplied: z.array(z.string()).describe('What was put back into HAProxy'),
      phasesMs: z.record(z.string(), z.number().int()).describe('Where the time went: store, haproxy (reading both), then each phase that had work'),
      failed: z.array(z.object({ object: z.string(), error: z.string() }))
    }).nullable()
  }),
  drift: z.array(DriftSchema).describe('Differences left after the last pass: conflicts with the configuration, failures')
}).meta({ id: 'Status' })

export const statusRoutes: FastifyPluginAsyncZod<{ reconciler: Reconciler, identity: ProcessIdentity, store: DesiredStateStore }> = async function (app, opts) {
  app.get('/status', {
    logLevel: 'warn',
    schema: {
      tags: ['status'],
      summary: 'Desired state and how HAProxy compares with it',
      description: 'The HAProxy process last seen, the store revision, the last reconcile and the drift it left. ' +
        'Answers from memory: it sends nothing to HAProxy.',
      operationId: 'getStatus',
      response: { 200: StatusSchema, 401: ProblemSchema, 403: ProblemSchema, 503: ProblemSchema }
    }
  }, async function () {
    const { identity, reconciler, store } = opts
    const last = reconciler.lastReport
    let revision: number
    try {
      revision = await store.revision()
    } catch (err) {
      throw new OperationError('STORE_UNAVAILABLE', `the desired-state store (${store.description}) cannot be read: ${(err as Error).message}`, { cause: err })
    }
    return {
      haproxy: {
        process: identity.current ?? null,
        pid: identity.info?.pid ?? null,
        version: identity.info?.version ?? null,
        lastSeen: identity.seenAt === 0 ? null : new Date(identity.seenAt).toISOString()
      },
      store: { description: store.description, revision },
      reconciler: {
        running: reconciler.running,
        passes: reconciler.passes,
        last: last === undefined ? null : { ...withoutDrift(last), process: last.process ?? null }
      },
      drift: last?.drift ?? []
    }
  })
}

/** The report without its drift, which /status shows at the top level. */
function withoutDrift ({ drift: _drift, ...rest }: ReconcileReport): Omit<ReconcileReport, 'drift'> {
  return rest
}
