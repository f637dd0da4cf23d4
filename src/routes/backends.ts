/**
 * /backends: dynamic backends (HAProxy 3.4 `add backend`, `publish`/`unpublish backend`,
 * `del backend`) and a read-only view of the static ones.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import type { BackendService } from '../resources/backends/service.ts'
import { ProblemSchema, RUNTIME_PROBLEMS, WRITE_PROBLEMS } from '../schemas/common.ts'
import { BODY_LIMITS } from '../plugins/body.ts'
import {
  BackendListSchema, BackendParamsSchema, BackendSchema, CreateBackendSchema, DeleteBackendQuerySchema, PatchBackendSchema
} from '../schemas/backends.ts'
import { WaitUpQuerySchema } from '../schemas/servers.ts'
import { upWaitOf } from '../resources/servers/wait-up.ts'
import { clientGone } from '../plugins/client-gone.ts'

const tags = ['backends']

export const backendRoutes: FastifyPluginAsyncZod<{ backends: BackendService }> = async function (app, opts) {
  const { backends } = opts

  app.get('/', {
    schema: {
      tags,
      summary: 'List every backend, static and dynamic',
      operationId: 'listBackends',
      response: { 200: BackendListSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function () {
    return { items: await backends.list() }
  })

  app.post('/', {
    bodyLimit: BODY_LIMITS.createBackend,
    schema: {
      tags,
      summary: 'Create a backend from a named defaults section',
      description: 'Runs `add backend <name> from <defaults> [mode <mode>]`, then `publish backend` when `published` is true. ' +
        'The new backend has no servers. `warnings` says when it cannot take dynamic servers (static balance algorithm) ' +
        'or is `mode tcp` (an HTTP frontend routed to it gives clients an empty reply).',
      operationId: 'createBackend',
      body: CreateBackendSchema,
      response: { 201: BackendSchema, 409: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    const backend = await backends.create(request.body)
    reply.code(201).header('location', `/backends/${encodeURIComponent(backend.name)}`)
    return backend
  })

  app.get('/:name', {
    schema: {
      tags,
      summary: 'Get one backend',
      operationId: 'getBackend',
      params: BackendParamsSchema,
      response: { 200: BackendSchema, 400: ProblemSchema, 404: ProblemSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request) {
    return backends.get(request.params.name)
  })

  app.patch('/:name', {
    schema: {
      tags,
      summary: 'Publish or unpublish a backend',
      description: 'An unpublished backend is skipped by `use_backend` and `default_backend` rules; requests fall through to the next rule. ' +
        'With `{"published": true}` and `?wait=up` it answers only once a server of the backend is UP in `show stat`, so that requests ' +
        'routed to it reach a server rather than get 503; at most `waitTimeout` (default 10s, at most 60s), then 504 `HAPX_NOT_UP` ' +
        'with `outcome: applied` (it stays published).',
      operationId: 'updateBackend',
      params: BackendParamsSchema,
      querystring: WaitUpQuerySchema,
      body: PatchBackendSchema,
      response: { 200: BackendSchema, 404: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    return backends.setPublished(request.params.name, request.body.published, { waitUp: upWaitOf(request.query, () => clientGone(reply)) })
  })

  app.delete('/:name', {
    schema: {
      tags,
      summary: 'Drain and delete a backend',
      description: 'Unpublishes it, puts its servers in maintenance, waits until each is removable (at most `timeout`), deletes them, ' +
        'waits until the backend is removable and deletes it. If a server still has connections at the deadline, the backend and ' +
        'its servers are put back as they were and the answer is 409. A backend referenced by the configuration is refused unchanged.',
      operationId: 'deleteBackend',
      params: BackendParamsSchema,
      querystring: DeleteBackendQuerySchema,
      response: { 204: z.undefined(), 404: ProblemSchema, 409: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    await backends.delete(request.params.name, { timeoutMs: request.query.timeout, force: request.query.force })
    return reply.code(204).send()
  })
}
