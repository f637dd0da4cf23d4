/**
 * Counts and times every answered HTTP request for GET /metrics, by method, route pattern and status.
 * The route's pattern (`/backends/:name`), never the URL: a label per URL would grow without bound,
 * one new series for every name a client tries. Requests no route matched share one label.
 */
import type { FastifyInstance } from 'fastify'
import type { Metrics } from './metrics.ts'

export function registerHttpMetrics (app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', function (request, reply, done) {
    // A request answered by the not-found handler (404, 405) has the handler's catch-all pattern, or none.
    const route = request.is404 ? undefined : request.routeOptions.url
    metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000)
    done()
  })
}
