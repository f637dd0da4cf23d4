/**
 * Lingering close for answers sent before the request's body was read (401/403 from onRequest, 413
 * from Content-Length, 415): Node ends such a connection as soon as the answer is written, and a
 * socket closed with the client's bytes still arriving makes the kernel send a reset, which can
 * destroy the answer on its way: the client sees EPIPE or ECONNRESET instead of its 413. Here the
 * connection's write side is closed (the answer, then FIN) and what the client still sends is read and
 * dropped for at most LINGER_MS before the socket is destroyed (RFC 9112 §9.6 describes the problem).
 */
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'

/** Longer than a client needs to read a small answer after its last write; short enough to bound a hostile one. */
const LINGER_MS = 2000

function lingerOnClose (socket: Socket): void {
  if ((socket as Socket & { lingering?: boolean }).lingering === true) return
  ;(socket as Socket & { lingering?: boolean }).lingering = true
  // Node's HTTP server calls destroySoon() once a `Connection: close` answer is written.
  socket.destroySoon = function (this: Socket) {
    if (this.writable) this.end()
    const timer = setTimeout(() => this.destroy(), LINGER_MS)
    timer.unref()
    this.once('close', () => clearTimeout(timer))
    // The client's end (after it read the answer) closes the socket at once.
    this.once('end', () => this.destroy())
    this.resume()
  }
}

export function registerLinger (app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete && request.raw.socket !== null) {
      reply.header('connection', 'close')
      lingerOnClose(request.raw.socket)
    }
  })
}
