/**
 * The audit trail's HTTP side: every POST, PUT, PATCH and DELETE that reaches Fastify is recorded,
 * accepted or refused (401, 403, 404, 405, 400, 409, 5xx…), whether or not a handler ran. The entry is
 * written in onSend, before the reply leaves: a client that got its answer can find the entry.
 *
 * Kept: time, the token's name (never the token), client address, request id, method, route
 * pattern, URL path (not the query string), target, the commands sent (./recording-runtime.ts), the
 * outcome, status and problem code, the desired-state revision, duration. Never headers and never
 * bodies: a body is read only for the `name` of what a POST creates.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AuditCommand, AuditOutcome, AuditRecord } from '../engine/store/types.ts'
import { PROBLEM_OUTCOMES } from '../engine/outcomes.ts'
import { targetOfCommand } from './commands.ts'
import type { AuditContext, AuditRecorder } from './recorder.ts'

export const AUDITED_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

const OUTCOMES: ReadonlySet<string> = new Set(PROBLEM_OUTCOMES)

/** Longest path or target id kept; longer ones (hostile URLs) are clipped. */
const MAX_PATH = 2048

/**
 * The token's name when one authenticated the request (src/plugins/auth.ts sets `principal`), null
 * otherwise: no authentication configured, or a request it refused.
 */
export function actorOf (request: FastifyRequest): string | null {
  return request.principal?.name ?? null
}

const clip = (s: string): string => s.length <= MAX_PATH ? s : `${s.slice(0, MAX_PATH)}…`

/**
 * What the request acts on, from its route's parameters (`backend:<b>`, `server:<b>/<s>`, `map:<m>`),
 * and for creations from the body's `name` (only when it is a short string).
 */
export function targetOf (request: FastifyRequest): { kind: string, id: string } | null {
  const params = (request.params ?? {}) as Record<string, unknown>
  const str = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? clip(v) : undefined
  const body = request.body as { name?: unknown } | null | undefined
  const created = typeof body === 'object' && body !== null && typeof body.name === 'string' && body.name.length <= 256 ? str(body.name) : undefined
  const route = request.routeOptions.url ?? ''
  const map = str(params.map)
  if (map !== undefined) return { kind: 'map', id: map }
  const backend = str(params.backend)
  if (backend !== undefined) {
    const server = str(params.server) ?? (route.endsWith('/servers') ? created : undefined)
    return server === undefined ? { kind: 'backend', id: backend } : { kind: 'server', id: `${backend}/${server}` }
  }
  if (route.startsWith('/backends')) {
    const name = str(params.name) ?? (route === '/backends' ? created : undefined)
    return name === undefined ? null : { kind: 'backend', id: name }
  }
  return null
}

/**
 * A map addressed as `#<id>` is entered under the name its commands used (the service resolves the id
 * and addresses the map by name), so that `GET /audit?target=map:<name>` finds every write to it. With
 * no write sent, the id is all there is to say.
 */
export function namedTarget (target: { kind: string, id: string } | null, commands: readonly AuditCommand[]): { kind: string, id: string } | null {
  if (target?.kind !== 'map' || !target.id.startsWith('#')) return target
  for (const c of commands) {
    const t = targetOfCommand(c.text)
    if (t?.kind === 'map') return t
  }
  return target
}

/** The problem body's code and outcome, read from the serialized reply (problem bodies are small). */
function problemOf (payload: unknown): { code: string | null, outcome: string | null } {
  if (typeof payload !== 'string' || payload.length > 1_000_000) return { code: null, outcome: null }
  try {
    const body = JSON.parse(payload) as { code?: unknown, outcome?: unknown }
    return { code: typeof body.code === 'string' ? body.code : null, outcome: typeof body.outcome === 'string' ? body.outcome : null }
  } catch {
    return { code: null, outcome: null }
  }
}

/**
 * 2xx is applied; an error says in its `outcome` what HAProxy was left like; an error without one
 * that sent nothing never reached HAProxy (rejected). One that sent commands and says nothing is
 * unknown, unless HAProxy refused its very first command.
 */
export function outcomeOf (status: number, problemOutcome: string | null, ctx: AuditContext): AuditOutcome {
  if (status < 400) return 'applied'
  if (problemOutcome !== null && OUTCOMES.has(problemOutcome)) return problemOutcome as AuditOutcome
  if (ctx.commands.length === 0 && ctx.omitted === 0) return 'rejected'
  return ctx.commands.length === 1 && ctx.commands[0]?.result === 'refused' ? 'refused' : 'unknown'
}

function contextOf (request: FastifyRequest): AuditContext {
  return {
    commands: [],
    omitted: 0,
    revision: null,
    open: true,
    actor: () => actorOf(request),
    requestId: request.id,
    method: request.method,
    route: request.routeOptions.url ?? null,
    path: clip(request.url.split('?')[0] ?? ''),
    client: request.ip
  }
}

export function entryOf (request: FastifyRequest, reply: FastifyReply, payload: unknown, ctx: AuditContext): AuditRecord {
  const status = reply.statusCode
  const problem = status >= 400 ? problemOf(payload) : { code: null, outcome: null }
  return {
    at: new Date().toISOString(),
    actor: ctx.actor(),
    client: ctx.client,
    requestId: ctx.requestId,
    method: ctx.method,
    route: ctx.route,
    path: ctx.path,
    target: namedTarget(targetOf(request), ctx.commands),
    commands: ctx.commands,
    commandsOmitted: ctx.omitted,
    outcome: outcomeOf(status, problem.outcome, ctx),
    status,
    code: problem.code,
    revision: ctx.revision,
    durationMs: Math.round(reply.elapsedTime)
  }
}

/**
 * Registers the hooks. onRequest opens the request's context; preHandler enters it again, because
 * the body is parsed in stream callbacks that run outside it, and the handler (where commands are
 * sent) runs from preHandler's callback. onSend writes the entry and waits for it.
 */
export function registerAuditHooks (app: FastifyInstance, recorder: AuditRecorder): void {
  const contexts = new WeakMap<FastifyRequest, AuditContext>()
  app.addHook('onRequest', function (request, _reply, done) {
    if (!AUDITED_METHODS.has(request.method)) { done(); return }
    const ctx = contextOf(request)
    contexts.set(request, ctx)
    recorder.context.run(ctx, done)
  })
  app.addHook('preHandler', function (request, _reply, done) {
    const ctx = contexts.get(request)
    if (ctx === undefined) { done(); return }
    recorder.context.run(ctx, done)
  })
  app.addHook('onSend', async function (request, reply, payload) {
    if (!AUDITED_METHODS.has(request.method)) return payload
    // No context when the request was answered before this plugin's onRequest ran (an earlier hook
    // refused it): it is recorded all the same, with nothing sent.
    let ctx = contexts.get(request)
    if (ctx === undefined) {
      ctx = contextOf(request)
      contexts.set(request, ctx)
    }
    if (!ctx.open) return payload // a second send for one request (an error while replying): one entry
    ctx.open = false
    await recorder.record(entryOf(request, reply, payload, ctx))
    return payload
  })
}
