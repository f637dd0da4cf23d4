/**
 * What a stop of hapctl does to the operations under way (src/server.ts calls app.close() on
 * SIGTERM/SIGINT). Fastify stops routing first (new requests get 503 and `Connection: close`); then,
 * before the HTTP server waits for the answers still owed: the executor refuses new operations and
 * cuts running waits (drains, health checks) short, which puts back what those operations changed
 * and answers 503 SHUTTING_DOWN with `outcome: undone`; the reconciler stops; and the close waits until
 * no operation is left, so the runtime client and the store close under nothing. What a harder stop
 * (SIGKILL, the grace running out) leaves half-done, the reconciler of the next start puts back to the
 * desired state.
 * @see https://fastify.dev/docs/latest/Reference/Hooks/#preclose
 */
import type { FastifyInstance } from 'fastify'
import type { Executor } from '../engine/executor.ts'
import type { Reconciler } from '../engine/reconciler.ts'
import { ApiError } from '../errors.ts'
import { sendProblem } from './error-handler.ts'

export function registerShutdown (app: FastifyInstance, deps: { executor: Executor, reconciler: Reconciler }): void {
  const { executor, reconciler } = deps
  // A request that arrives once the stop began (on a kept-alive connection) gets a problem document
  // with Retry-After, not Fastify's own 503 body (app.ts turns return503OnClosing off for this).
  app.addHook('onRequest', async (request, reply) => {
    if (!executor.closing) return
    // (The onSend hook below closes its connection.)
    return sendProblem(reply, request, ApiError.of('SHUTTING_DOWN', 'hapctl is stopping and takes no new request; retry once it is back'))
  })
  app.addHook('preClose', async () => {
    executor.shutdown()
    await reconciler.stop()
    await executor.idle()
  })
  // Answers owed once the stop began end their connection: an idle keep-alive connection would hold
  // the HTTP server's close (and the exit) until the client drops it (seconds).
  app.addHook('onSend', async (_request, reply) => {
    if (executor.closing) reply.header('connection', 'close')
  })
}
