/**
 * A signal that is aborted when the client of a request goes away before its answer is sent: a route
 * that waits (for a server to come UP) stops asking HAProxy for somebody who no longer listens.
 * Not Fastify's `request.signal`: it follows the incoming request's `close`, which Node emits as soon
 * as a body has been read, and would end every wait of a POST at once.
 * @see https://nodejs.org/api/http.html#event-close_2
 */
import type { FastifyReply } from 'fastify'

export function clientGone (reply: FastifyReply): AbortSignal {
  const gone = new AbortController()
  const res = reply.raw
  // `close` also comes after a complete answer; only one that comes before it means the client left.
  res.once('close', () => { if (!res.writableFinished) gone.abort(new Error('the client closed the connection')) })
  return gone.signal
}
