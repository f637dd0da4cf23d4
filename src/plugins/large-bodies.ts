/**
 * At most `max` large bodies (over 1 MiB: whole-map replaces, big patches) are received and handled at
 * once. Each is bounded on its own (./body.ts), but a valid 1M-entry replace still costs hundreds of
 * megabytes while it is parsed, validated and loaded, so without a limit a few clients at once could
 * exhaust the process. A request over the limit waits for a slot (the lock deadline), then gets 503
 * with Retry-After, decided before its body is read. Runs after authentication: a client without a
 * valid token never takes a slot.
 */
import type { FastifyInstance } from 'fastify'
import { ApiError } from '../errors.ts'
import { sendProblem } from './error-handler.ts'

/** Bodies above this are "large"; every route's default limit (64 KiB) is far below it. */
export const LARGE_BODY_BYTES = 1024 * 1024

/** A counting semaphore with FIFO waiters and a deadline per wait. */
export class Slots {
  readonly #max: number
  #used = 0
  readonly #waiting: Array<() => void> = []

  constructor (max: number) {
    this.#max = max
  }

  get used (): number {
    return this.#used
  }

  /** Resolves with a release function, or rejects after `timeoutMs` without a slot. */
  acquire (timeoutMs: number): Promise<() => void> {
    const release = (): void => {
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#used--
    }
    if (this.#used < this.#max) {
      this.#used++
      return Promise.resolve(once(release))
    }
    return new Promise((resolve, reject) => {
      const wake = (): void => { clearTimeout(timer); resolve(once(release)) }
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(wake)
        if (i !== -1) this.#waiting.splice(i, 1)
        reject(new Error('no slot'))
      }, timeoutMs)
      this.#waiting.push(wake)
    })
  }
}

function once (fn: () => void): () => void {
  let done = false
  return () => { if (!done) { done = true; fn() } }
}

export function registerLargeBodies (app: FastifyInstance, opts: { max: number, waitMs: number }): void {
  const slots = new Slots(opts.max)
  app.addHook('onRequest', async function (request, reply) {
    // Only routes that accept a large body at all; others refuse it with 413 before reading it.
    if ((request.routeOptions.bodyLimit ?? 0) <= LARGE_BODY_BYTES) return
    const declared = Number(request.headers['content-length'])
    const chunked = request.headers['transfer-encoding'] !== undefined
    if (!chunked && !(declared > LARGE_BODY_BYTES)) return
    let release: () => void
    try {
      release = await slots.acquire(opts.waitMs)
    } catch {
      return sendProblem(reply, request, ApiError.of('LARGE_BODIES_BUSY',
        `${opts.max} large bodies (over 1 MiB) are being received or handled already; retry (HAPCTL_MAX_LARGE_BODIES)`))
    }
    // Freed when the answer is sent, or when the client goes away first.
    reply.raw.once('close', release)
  })
}
