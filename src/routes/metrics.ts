/**
 * GET /metrics: hapctl's metrics in Prometheus's text format, for a scraper. Polled, so it logs at
 * `warn` only; it answers from memory (and the store's revision) and sends nothing to HAProxy.
 * @see https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import type { Metrics } from '../metrics/metrics.ts'
import { ProblemSchema } from '../schemas/common.ts'

const DESCRIPTION = 'Prometheus text exposition format (`text/plain; version=0.0.4`). Among the metrics: ' +
  '`hapctl_http_requests_total` and `hapctl_http_request_duration_seconds` (by method, route pattern and status); ' +
  '`hapctl_runtime_calls_total`, `hapctl_runtime_call_duration_seconds` (by client, first verb and outcome) and ' +
  '`hapctl_runtime_commands_total` (by verb and result); the connection pools; `hapctl_haproxy_up`; ' +
  'reconciler passes, their duration, drift and failures; GET /events watchers; the store revision; and the Node process\'s ' +
  '`process_*` and `nodejs_*` metrics. Sends nothing to HAProxy.'

const MetricsTextSchema = z.string().meta({
  content: {
    'text/plain': {
      schema: { type: 'string', description: 'Metrics in the Prometheus text format, version 0.0.4' },
      example: '# HELP hapctl_haproxy_up Whether HAProxy answered the last Runtime API call …\n# TYPE hapctl_haproxy_up gauge\nhapctl_haproxy_up 1\n'
    }
  }
})

export const metricsRoutes: FastifyPluginAsyncZod<{ metrics: Metrics }> = async function (app, opts) {
  app.get('/metrics', {
    logLevel: 'warn',
    schema: {
      tags: ['metrics'],
      summary: 'Metrics for Prometheus',
      description: DESCRIPTION,
      operationId: 'getMetrics',
      response: { 200: MetricsTextSchema, 401: ProblemSchema, 403: ProblemSchema, 503: ProblemSchema }
    }
  }, async function (_request, reply) {
    // A string with a content type other than JSON is sent as it is, not serialized.
    reply.type(opts.metrics.contentType)
    return await opts.metrics.scrape()
  })
}
