/**
 * The request a piece of work is done for, so that the log lines of modules that know nothing of HTTP
 * (the Runtime API client, the executor) carry its id: Fastify's own lines of a request carry `reqId`
 * (its child logger), and a module's logger wrapped by `logger()` adds the same `reqId` to every line
 * it writes while it works for a request.
 *
 * An AsyncLocalStorage entered in onRequest, and again in preHandler (the body is parsed in stream
 * callbacks that run outside it; the handler runs from preHandler's callback). A context stops
 * counting once its answer is sent: work that goes on in timers started during a request (a
 * reconciler pass it kicked) is not that request's any more.
 * @see https://nodejs.org/api/async_context.html#class-asynclocalstorage
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Logger, LogLevel } from '../logger.ts'
import type { Runtime } from '../runtime/client.ts'
import { aroundRuntime } from '../runtime/around.ts'

type Context = { readonly requestId: string, open: boolean }

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']

/** A logger that can say whether a level is on (pino's), so that a line nobody reads costs no copy. */
type BaseLogger = Logger<LogLevel> & { isLevelEnabled?: (level: string) => boolean }

export class RequestContext {
  readonly #storage = new AsyncLocalStorage<Context>()

  /** The id of the request the current work is done for, while its answer is not sent yet. */
  get requestId (): string | undefined {
    const ctx = this.#storage.getStore()
    return ctx?.open === true ? ctx.requestId : undefined
  }

  register (app: FastifyInstance): void {
    const contexts = new WeakMap<FastifyRequest, Context>()
    app.addHook('onRequest', (request, _reply, done) => {
      const ctx: Context = { requestId: request.id, open: true }
      contexts.set(request, ctx)
      this.#storage.run(ctx, done)
    })
    app.addHook('preHandler', (request, _reply, done) => {
      const ctx = contexts.get(request)
      if (ctx === undefined) { done(); return }
      this.#storage.run(ctx, done)
    })
    app.addHook('onResponse', (request, _reply, done) => {
      const ctx = contexts.get(request)
      if (ctx !== undefined) ctx.open = false
      done()
    })
  }

  /** `base` with the request's id (`reqId`, as Fastify names it) added to each line written for a request. */
  logger (base: BaseLogger): Logger<LogLevel> {
    const line = (level: LogLevel) => (obj: object, msg: string): void => {
      const requestId = this.requestId
      if (requestId === undefined) { base[level](obj, msg); return }
      if (base.isLevelEnabled?.(level) === false) return
      base[level]({ reqId: requestId, ...obj }, msg)
    }
    return Object.fromEntries(LEVELS.map(l => [l, line(l)])) as Logger<LogLevel>
  }

  /**
   * `runtime` with its calls made outside any request: for background work (the watch stream's health
   * poll, shared by every watcher) that the first request to need it happens to start.
   */
  detached (runtime: Runtime): Runtime {
    const storage = this.#storage
    // A view: the runtime's owner closes it.
    return aroundRuntime(runtime, (_, call) => storage.exit(call), { close: async () => {} })
  }
}
