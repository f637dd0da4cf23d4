/**
 * Bearer-token authentication, enabled when API_TOKEN is set. `/health` stays open for liveness
 * probes; the API description and Swagger UI stay open so a browser can load the console and then
 * send the token with "Authorize".
 */
import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ApiError } from '../errors.ts'
import { sendProblem } from './error-handler.ts'

const OPEN = [/^\/health(\?|$)/, /^\/docs(\/|\?|$)/, /^\/openapi\.json(\?|$)/]

// Compare digests so that neither the length nor the content of the token leaks through timing.
const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

export function registerAuth (app: FastifyInstance, token: string): void {
  const expected = digest(token)
  app.addHook('onRequest', async function (request, reply) {
    if (OPEN.some(p => p.test(request.url))) return
    const header = request.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (m === null || !timingSafeEqual(digest(m[1] as string), expected)) {
      reply.header('www-authenticate', 'Bearer realm="hapctl"')
      return sendProblem(reply, request, new ApiError(401, 'HAPX_UNAUTHORIZED',
        m === null ? 'this route needs an Authorization: Bearer <API_TOKEN> header' : 'the bearer token is not valid'))
    }
  })
}
