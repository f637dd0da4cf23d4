/**
 * Liveness and readiness. Both are polled by orchestrators, so they log at `warn` only.
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import type { Runtime } from '../runtime/client.ts'
import { showInfo } from '../runtime/commands/index.ts'
import { ProblemSchema, RUNTIME_PROBLEMS } from '../schemas/common.ts'
import { OperationError } from '../engine/outcomes.ts'

const HealthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' })
const ReadySchema = z.object({
  status: z.literal('ready'),
  haproxy: z.object({
    version: z.string(),
    releaseDate: z.string(),
    pid: z.number().int(),
    uptimeSec: z.number().int(),
    startTimeSec: z.number().int().describe('Epoch seconds of the process start; changes on restart and reload'),
    stopping: z.boolean()
  })
}).meta({ id: 'Ready' })

export const healthRoutes: FastifyPluginAsyncZod<{ runtime: Runtime }> = async function (app, opts) {
  app.get('/health', {
    logLevel: 'warn',
    schema: {
      tags: ['health'],
      summary: 'The hapctl process is running',
      operationId: 'getHealth',
      description: '503 (`HAPX_SHUTTING_DOWN`) once hapctl is stopping.',
      security: [],
      response: { 200: HealthSchema, 503: ProblemSchema }
    }
  }, async function () {
    return { status: 'ok' as const }
  })

  app.get('/ready', {
    logLevel: 'warn',
    schema: {
      tags: ['health'],
      summary: 'HAProxy answers on its Runtime API',
      description: 'Sends `show info` to HAProxy. 503 when HAProxy cannot be reached or the process answering is stopping after a reload, 504 when it does not answer in time.',
      operationId: 'getReady',
      response: { 200: ReadySchema, ...RUNTIME_PROBLEMS }
    }
  }, async function () {
    const [info] = await opts.runtime.execute([showInfo()])
    if (info.stopping) {
      // An old worker after a reload: it accepts changes and then loses them (docs/runtime-api.md#reload-and-restart).
      throw new OperationError('HAPROXY_STOPPING', `the HAProxy process answering (pid ${info.pid}) is stopping after a reload; changes sent to it would be lost`)
    }
    const { nodeName: _node, ...haproxy } = info
    return { status: 'ready' as const, haproxy }
  })
}
