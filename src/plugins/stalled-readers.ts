/**
 * Clients that ask for an answer and then read nothing. Node's headers, request and keep-alive
 * timeouts (src/app.ts) cover receiving a request and the wait for the next one, not sending an
 * answer: an answer larger than the socket buffers (Swagger UI's 1.6 MB bundle, open to anyone; a
 * page of long map entries) that the client never reads holds its connection, and a file descriptor,
 * forever, and a few hundred of them make /health unreachable. A timeout on the whole connection is
 * no answer: it would also cut the operations that rightly send nothing for minutes (a drain). Here the
 * connection gets an inactivity timeout once its answer starts going out: when the client takes no
 * byte of it for that long, the connection is destroyed.
 * @see https://nodejs.org/api/http.html#responsesettimeoutmsecs-callback
 */
import type { FastifyInstance } from 'fastify'

export function registerStalledReaders (app: FastifyInstance, timeoutMs: number): void {
  app.addHook('onSend', async (request, reply) => {
    const socket = request.raw.socket
    // Once the answer is written, Node sets the keep-alive timeout (or closes) in its place.
    reply.raw.setTimeout(timeoutMs, () => { socket?.destroy() })
  })
}
