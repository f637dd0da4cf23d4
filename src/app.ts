/**
 * buildApp: the whole HTTP application, with its dependencies injected. It neither reads the
 * environment nor listens (src/server.ts does both), so tests and the OpenAPI generator build it
 * with a fake runtime.
 * @see https://fastify.dev/docs/latest/Guides/Testing/
 */
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from 'fastify'
import { serializerCompiler } from '@fastify/type-provider-zod'
import type { Config } from './config.ts'
import { RuntimeClient } from './runtime/client.ts'
import type { Runtime } from './runtime/client.ts'
import { registerErrorHandler, sendProblem, writeProblemToSocket } from './plugins/error-handler.ts'
import { BODY_LIMITS, boundedValidatorCompiler, registerBodyParsing } from './plugins/body.ts'
import { ApiError } from './errors.ts'
import { registerAuth } from './plugins/auth.ts'
import { registerSwagger } from './plugins/swagger.ts'
import { registerShutdown } from './plugins/shutdown.ts'
import { registerStalledReaders } from './plugins/stalled-readers.ts'
import { registerLinger } from './plugins/linger.ts'
import { registerLargeBodies } from './plugins/large-bodies.ts'
import { healthRoutes } from './routes/health.ts'
import { backendRoutes } from './routes/backends.ts'
import { mapRoutes } from './routes/maps.ts'
import { serverRoutes } from './routes/servers.ts'
import { statusRoutes } from './routes/status.ts'
import { auditRoutes } from './routes/audit.ts'
import { eventRoutes } from './routes/events.ts'
import { EventHub } from './events/hub.ts'
import { stateRoutes } from './routes/state.ts'
import { StateService } from './resources/state/service.ts'
import { AuditRecorder } from './audit/recorder.ts'
import { registerAuditHooks } from './audit/http.ts'
import { recordingRuntime } from './audit/recording-runtime.ts'
import { MapService } from './resources/maps/service.ts'
import { BackendService } from './resources/backends/service.ts'
import { ServerService } from './resources/servers/service.ts'
import { Executor } from './engine/executor.ts'
import { ProcessIdentity } from './engine/identity.ts'
import { Reconciler } from './engine/reconciler.ts'
import { openStore } from './engine/store/index.ts'
import type { DesiredStateStore } from './engine/store/types.ts'
import { importLegacyStateFile } from './engine/legacy-import.ts'
import { Metrics } from './metrics/metrics.ts'
import { registerHttpMetrics } from './metrics/http.ts'
import { metricsRoutes } from './routes/metrics.ts'
import { RequestContext } from './plugins/request-context.ts'

/** What a caller's x-request-id may be: no blank, no control character, nothing a log or a header could be split at. */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

export type AppDeps = {
  config: Config
  /** Defaults to a RuntimeClient for config.runtimeApi. */
  runtime?: Runtime
  /** A pino logger, or Fastify logger options; `false` for none (tests). */
  logger?: FastifyBaseLogger | FastifyServerOptions['logger']
  /** Defaults to the store config.store names, opened here and closed with the app. */
  store?: DesiredStateStore
  /** Start the reconciler when the app is ready (default true; route tests on a fake runtime turn it off). */
  reconcile?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The reconciler, for tests and the benchmark (reconcileNow). */
    reconciler: Reconciler
    /** The watch stream's hub (GET /events), for tests. */
    events: EventHub
  }
}

export async function buildApp (deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps
  const loggerOption = deps.logger === undefined
    ? { level: config.logLevel, redact: ['req.headers.authorization'] }
    : deps.logger
  const isInstance = typeof loggerOption === 'object' && loggerOption !== null && 'child' in loggerOption
  const app = Fastify({
    ...(isInstance ? { loggerInstance: loggerOption as FastifyBaseLogger } : { logger: loggerOption as FastifyServerOptions['logger'] }),
    // Small by default; the routes that take many items (a whole map, a backend with its servers) say more.
    bodyLimit: BODY_LIMITS.default,
    // A client must send its headers, and its whole request, in time; an idle keep-alive connection
    // is closed. Node checks the first two every connectionsCheckingInterval (30 s by default, which
    // would let a 1 s headers timeout fire 30 s late).
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: {
      // Node refuses a headersTimeout above the requestTimeout it is created with (300 s by default).
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.ceil(config.headersTimeoutMs / 4))
    },
    // src/plugins/shutdown.ts answers requests that arrive during a stop with a problem document.
    return503OnClosing: false,
    // Request ids are in the logs and the audit trail, which outlive a process: Fastify's own
    // (req-1, req-2, …) start again at every start. A caller's `x-request-id` is kept, so that one
    // id follows a request across services, when it is a plain token that cannot forge a log line.
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    routerOptions: {
      ignoreTrailingSlash: true,
      // Names may be 128 characters and map keys 1024 bytes (3 × that URL-encoded); Fastify's default
      // of 100 would let a client create what it could then never address.
      maxParamLength: 4096
    },
    // Requests Node's HTTP parser rejects (bad method, bad header, oversized headers) never reach
    // Fastify; they get a minimal problem document written straight to the socket.
    clientErrorHandler: function (err: NodeJS.ErrnoException, socket) {
      if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
      // Node raises ERR_HTTP_REQUEST_TIMEOUT when headersTimeout or requestTimeout passes.
      writeProblemToSocket(socket, err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ApiError.of('REQUEST_TIMEOUT', 'the request was not received in time')
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? ApiError.of('HEADERS_TOO_LARGE', 'the request headers are larger than the server accepts')
          : ApiError.of('BAD_HTTP_REQUEST', 'the HTTP request could not be parsed'))
    },
    // Errors raised before routing (a malformed URL, a too-long parameter) are problems too.
    frameworkErrors: function (err, request, reply) {
      const status = typeof err.statusCode === 'number' ? err.statusCode : 400
      sendProblem(reply, request, new ApiError(status, `HAPX_${(err.code ?? 'BAD_REQUEST').replace(/^FST_ERR_/, '')}`, err.message))
    }
  })
  app.setValidatorCompiler(boundedValidatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  // First, so that every later hook and the handler run inside it: the id of the request a module's
  // log line is written for (src/plugins/request-context.ts).
  const requestContext = new RequestContext()
  requestContext.register(app)
  // GET /metrics: this app's registry (tests build many apps in one process).
  const metrics = new Metrics()
  registerHttpMetrics(app, metrics)

  // Which HAProxy process answers: the reconciler polls it, and the API's kept connections are used
  // only while their process is this one.
  const identity = new ProcessIdentity()
  /** A Runtime API client with its own connections, closed with the app. */
  const newClient = (bindings: Record<string, string>, keep = false): Runtime => new RuntimeClient({
    endpoint: config.runtimeApi,
    timeoutMs: config.runtimeTimeoutMs,
    maxConnections: config.runtimeMaxConnections,
    persistent: keep,
    identity: keep ? identity : undefined,
    // The API's calls are made for requests: their lines carry the request's id (the reconciler's are its own).
    logger: bindings.for === undefined
      ? requestContext.logger(app.log.child({ module: 'runtime', ...bindings }))
      : app.log.child({ module: 'runtime', ...bindings })
  })
  // The API's requests reuse connections (a pool checked against the process identity); the
  // reconciler opens a new one per call, so that its identity poll always reaches the process that
  // owns the socket now, never an old worker a kept connection would still talk to.
  const client = metrics.runtime(deps.runtime ?? newClient({}, config.runtimeKeepConnections), 'api')
  app.addHook('onClose', async () => { await client.close() })

  // Auth first: its onRoute hook sees every route (the documentation's too) and checks it has a scope.
  registerAuth(app, config)
  // Before the documentation's routes too: the 405 handler and the body limits see every route.
  registerErrorHandler(app)
  registerBodyParsing(app)
  // An answer the client takes no byte of for as long as a whole request may take: the connection ends.
  registerStalledReaders(app, config.requestTimeoutMs)
  // A few whole-map replaces at once, not as many as clients send (each costs hundreds of MB).
  registerLargeBodies(app, { max: config.maxLargeBodies, waitMs: config.lockTimeoutMs })
  // Every answer says which request it answers (the id of the logs and the audit trail).
  app.addHook('onSend', async (request, reply) => { reply.header('x-request-id', request.id) })
  // An answer sent before the body was read reaches the client instead of a reset.
  registerLinger(app)
  await registerSwagger(app)

  const store = deps.store ?? await openStore(config.store)
  const audit = new AuditRecorder({ store, ...config.audit, logger: app.log.child({ module: 'audit' }) })
  // The audit trail's last entries are written before the store closes.
  app.addHook('onClose', async () => { await audit.close(); if (deps.store === undefined) await store.close() })
  registerAuditHooks(app, audit)
  // Every command the API sends goes through the audit trail, attributed to its request.
  const runtime = recordingRuntime(client, audit.requestSink('hapctl'))
  const executor = new Executor({ runtime, store, lockTimeoutMs: config.lockTimeoutMs, logger: requestContext.logger(app.log.child({ module: 'executor' })) })
  executor.onCommit(event => { audit.committed(event) })
  const servers = new ServerService({ runtime, executor })
  const backends = new BackendService({ runtime, executor, identity })
  const maps = new MapService({ runtime, executor })
  // The reconciler gets connections of its own, so that a replay of thousands of objects after a
  // restart does not queue the API's requests behind it (both limits together stay within HAProxy's
  // 10 connections per stats socket at the default of 4 each, leaving room for operators).
  const reconcilerRuntime = deps.runtime === undefined ? metrics.runtime(newClient({ for: 'reconciler' }), 'reconciler') : client
  if (reconcilerRuntime !== client) app.addHook('onClose', async () => { await reconcilerRuntime.close() })
  const reconciler = new Reconciler({
    runtime: recordingRuntime(reconcilerRuntime, audit.backgroundSink('reconciler')),
    executor,
    identity,
    created: backends.created,
    intervalMs: config.reconcileIntervalMs,
    identityPollMs: config.identityPollMs,
    concurrency: config.runtimeMaxConnections,
    logger: app.log.child({ module: 'reconciler' })
  })
  app.decorate('reconciler', reconciler)
  if (config.stateFile !== undefined) await importLegacyStateFile(config.stateFile, { runtime, store, logger: app.log })
  if (deps.reconcile !== false) {
    app.addHook('onReady', async () => { reconciler.start() })
  }
  app.addHook('onReady', async () => { audit.start() })
  // preClose runs before every onClose hook: running operations are interrupted or finished and the
  // reconciler stops before the runtime client and the store close under them.
  registerShutdown(app, { executor, reconciler })
  // GET /events: its health poll uses the API's pooled client. Its streams end after the shutdown's
  // own preClose (they see the last events), and before the HTTP server waits for open answers.
  // (The health poll is shared by every watcher: not the request of the first one.)
  const events = new EventHub({ store, executor, reconciler, runtime: requestContext.detached(client), ...config.events, logger: app.log.child({ module: 'events' }) })
  app.decorate('events', events)
  metrics.watch({ reconciler, identity, events, store, audit })
  app.addHook('onClose', async () => { metrics.close() })
  app.addHook('onReady', async () => { await events.start() })
  app.addHook('preClose', async () => { events.close() })

  await app.register(healthRoutes, { runtime })
  await app.register(statusRoutes, { reconciler, identity, store })
  await app.register(metricsRoutes, { metrics })
  await app.register(auditRoutes, { store })
  await app.register(eventRoutes, { events, requestTimeoutMs: config.requestTimeoutMs })
  await app.register(backendRoutes, { prefix: '/backends', backends })
  await app.register(mapRoutes, { prefix: '/maps', maps })
  await app.register(serverRoutes, { prefix: '/backends/:backend/servers', servers })
  await app.register(stateRoutes, { prefix: '/state', state: new StateService({ runtime, executor, identity, created: backends.created }) })
  return app
}
