/**
 * /backends/:backend/servers: the servers of a backend, static or dynamic (HAProxy 3.4 `add server`,
 * `set server`, `enable|disable health|agent`, `del server`).
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import type { ServerService } from '../resources/servers/service.ts'
import { ProblemSchema, RUNTIME_PROBLEMS, WRITE_PROBLEMS } from '../schemas/common.ts'
import {
  BackendServersParamsSchema, CreateServerSchema, DeleteServerQuerySchema, PatchServerSchema, ServerListSchema, ServerParamsSchema, ServerSchema,
  WaitUpQuerySchema
} from '../schemas/servers.ts'
import { upWaitOf } from '../resources/servers/wait-up.ts'
import { clientGone } from '../plugins/client-gone.ts'

const tags = ['servers']

export const serverRoutes: FastifyPluginAsyncZod<{ servers: ServerService }> = async function (app, opts) {
  const { servers } = opts

  app.get('/', {
    schema: {
      tags,
      summary: "List a backend's servers",
      description: 'One `show servers state` + `show stat` round trip. Dynamic servers come newest first.',
      operationId: 'listServers',
      params: BackendServersParamsSchema,
      response: { 200: ServerListSchema, 400: ProblemSchema, 404: ProblemSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request) {
    return { items: await servers.list(request.params.backend) }
  })

  app.post('/', {
    schema: {
      tags,
      summary: 'Add a server',
      description: 'Runs `add server <b>/<s> <ip>:<port> [keywords]` (with `check … init-state down` when checks are on), then ' +
        '`enable health` (with check) and `set server … state ready` (when enabled). With checks, the server takes traffic once ' +
        'its first checks pass. If a step after `add server` fails, the server is removed again. ' +
        'The address must be an IP literal and the port is required. 400 with `haproxyMessage` when HAProxy refuses a keyword ' +
        'or the backend uses a load-balancing algorithm that forbids runtime servers. ' +
        'With `?wait=up` it answers only once the server is UP in `show stat` (traffic reaches it), polling every 100 ms for at most ' +
        '`waitTimeout` (default 10s, at most 60s); still not UP then: 504 `HAPX_NOT_UP` with `outcome: applied` (the server stays added).',
      operationId: 'createServer',
      params: BackendServersParamsSchema,
      querystring: WaitUpQuerySchema,
      body: CreateServerSchema,
      response: { 201: ServerSchema, 404: ProblemSchema, 409: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    const server = await servers.create(request.params.backend, request.body, { waitUp: upWaitOf(request.query, () => clientGone(reply)) })
    reply.code(201).header('location', `/backends/${encodeURIComponent(server.backend)}/servers/${encodeURIComponent(server.name)}`)
    return server
  })

  app.get('/:server', {
    schema: {
      tags,
      summary: 'Get one server',
      operationId: 'getServer',
      params: ServerParamsSchema,
      response: { 200: ServerSchema, 400: ProblemSchema, 404: ProblemSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request) {
    return servers.get(request.params.backend, request.params.server)
  })

  app.patch('/:server', {
    schema: {
      tags,
      summary: "Change a server's state, weight, address or checks",
      description: 'Sends, in this order and only for the fields given: `set server … addr <ip> [port <p>]`, `set server … weight`, ' +
        '`enable|disable health`, `enable|disable agent`, `set server … state`. Changing checks the server was added without is ' +
        'refused with 409 (HAProxy would silently ignore `disable health`). If a command fails, `state` says which were applied.',
      operationId: 'updateServer',
      params: ServerParamsSchema,
      body: PatchServerSchema,
      response: { 200: ServerSchema, 404: ProblemSchema, 409: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request) {
    return servers.update(request.params.backend, request.params.server, request.body)
  })

  app.delete('/:server', {
    schema: {
      tags,
      summary: 'Drain and delete a server',
      description: 'Disables its agent check (if enabled), puts it in maintenance (with force=true also closes its sessions), waits until ' +
        'it has no connections (at most `timeout`) and deletes it. Still busy at the deadline: 409, and the server stays in maintenance.',
      operationId: 'deleteServer',
      params: ServerParamsSchema,
      querystring: DeleteServerQuerySchema,
      response: { 204: z.undefined(), 404: ProblemSchema, 409: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    await servers.delete(request.params.backend, request.params.server, { timeoutMs: request.query.timeout, force: request.query.force })
    return reply.code(204).send()
  })
}
