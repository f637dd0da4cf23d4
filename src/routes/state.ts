/**
 * /state: the whole desired state as one document (JSON, or YAML when asked), made the desired state
 * at once with PUT (or changed in part with a JSON merge patch), with a dry run that answers the diff
 * and the exact Runtime API commands an apply would send. See src/resources/state/.
 * @see https://www.rfc-editor.org/rfc/rfc7396 (JSON merge patch)
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod'
import { z } from 'zod'
import YAML from 'yaml'
import type { ApplyOptions, StateService } from '../resources/state/service.ts'
import { etagOf } from '../resources/state/service.ts'
import { ProblemSchema, RUNTIME_PROBLEMS, WRITE_PROBLEMS } from '../schemas/common.ts'
import { StateDocumentSchema, StatePlanSchema, StateQuerySchema } from '../schemas/state.ts'
import { BODY_LIMITS, jsonShapeLimits } from '../plugins/body.ts'

const tags = ['state']

const IfMatchSchema = z.object({
  'if-match': z.string().optional().describe('Apply only if the desired state is still at this revision (the ETag of GET /state)')
})

/** Whether the client asked for YAML rather than JSON. */
function wantsYaml (request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? ''
  return /\b(application|text)\/(x-)?yaml\b/.test(accept) && !/\bapplication\/json\b/.test(accept)
}

/** What PUT and PATCH take from the request besides the body. */
function applyOptions (request: { query: { dryRun: boolean, timeout: number }, headers: { 'if-match'?: string | undefined }, id: string }): ApplyOptions {
  return { dryRun: request.query.dryRun, ifMatch: request.headers['if-match'], drainMs: request.query.timeout, requestId: request.id }
}

/** JSON, or YAML when asked; written as a string, so that a 100,000-entry document is serialised once. */
function send (request: FastifyRequest, reply: FastifyReply, body: unknown): FastifyReply {
  if (wantsYaml(request)) return reply.type('application/yaml; charset=utf-8').send(YAML.stringify(body, { lineWidth: 0 }))
  return reply.type('application/json; charset=utf-8').send(JSON.stringify(body))
}

const describeApply = 'The document replaces the whole desired state: backends and servers it does not list are drained and deleted; ' +
  'maps it does not list keep their content but are no longer kept. Under one lock, hapctl reads what HAProxy holds and works out the ' +
  'commands that make it hold the document, in dependency order: backends created (servers added, published last), then servers changed, ' +
  'then each map replaced atomically (versioned load: `prepare map`, `add map @N … <<`, `commit map`), then what goes away drained ' +
  '(`set server … state maint`, `wait srv-removable`) and deleted. With `dryRun=true` nothing is sent: the answer is the diff (desired ' +
  'vs actual) and every command the apply would send that can change HAProxy, in order. An apply runs them, puts back what it applied if ' +
  'a step fails (the problem\'s `state.steps` says how each went), and records the document in one store transaction. A document that ' +
  'cannot be applied (a backend of the configuration listed as hapctl\'s, a map HAProxy lacks, a defaults section HAProxy refuses) is ' +
  'refused whole (400, `errors`) before anything is changed: HAProxy has no command that checks a defaults section or server options, so hapctl ' +
  'creates an unpublished probe backend `hapctl-probe-N` from each defaults section used, adds one server (in maintenance) per distinct option ' +
  'set, and deletes them again; these are listed first in `commands`, and are the only commands a dry run sends. ' +
  'Body: JSON, or YAML with `Content-Type: application/yaml`.'

export const stateRoutes: FastifyPluginAsyncZod<{ state: StateService }> = async function (app, opts) {
  const { state } = opts

  app.get('/', {
    schema: {
      tags,
      summary: 'The whole desired state as one document',
      description: 'Everything hapctl keeps (backends it created with their servers, servers it added to backends of the configuration, settings of the ' +
        "configuration's servers, maps whose content it keeps), as one document that PUT takes back unchanged. The ETag is the store revision. " +
        'JSON, or YAML with `Accept: application/yaml`.',
      operationId: 'getState',
      response: { 200: StateDocumentSchema, ...RUNTIME_PROBLEMS }
    }
  }, async function (request, reply) {
    const { document, revision } = await state.get()
    reply.header('etag', etagOf(revision))
    return send(request, reply, document)
  })

  app.put('/', {
    bodyLimit: BODY_LIMITS.replaceMapEntries,
    config: { acceptsYaml: true },
    schema: {
      tags,
      summary: 'Make a document the whole desired state (or dry-run it)',
      description: describeApply,
      operationId: 'replaceState',
      querystring: StateQuerySchema,
      headers: IfMatchSchema,
      body: StateDocumentSchema,
      response: { 200: StatePlanSchema, 409: ProblemSchema, 412: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    const result = await state.apply(request.body, applyOptions(request))
    reply.header('etag', etagOf(result.revision))
    return send(request, reply, result)
  })

  app.patch('/', {
    bodyLimit: BODY_LIMITS.replaceMapEntries,
    config: { acceptsYaml: true, jsonShape: jsonShapeLimits(StateDocumentSchema) },
    schema: {
      tags,
      summary: 'Change part of the desired state with a JSON merge patch (or dry-run it)',
      description: 'A JSON merge patch (RFC 7396, `Content-Type: application/merge-patch+json`, or YAML) on the document GET answers: ' +
        '`{"backends": {"b1": null}}` removes backend b1, `{"backends": {"b1": {"servers": {"s1": {"weight": 50}}}}}` changes one weight. ' +
        "A map's `entries` is replaced whole. The result is then applied as PUT does. " + describeApply,
      operationId: 'patchState',
      querystring: StateQuerySchema,
      headers: IfMatchSchema,
      body: z.record(z.string(), z.unknown()).describe('A JSON merge patch on the state document'),
      response: { 200: StatePlanSchema, 409: ProblemSchema, 412: ProblemSchema, ...WRITE_PROBLEMS }
    }
  }, async function (request, reply) {
    const result = await state.patch(request.body, applyOptions(request))
    reply.header('etag', etagOf(result.revision))
    return send(request, reply, result)
  })
}
