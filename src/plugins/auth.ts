/**
 * Bearer tokens and scopes. Tokens come from API_TOKEN (one `admin` token) and the tokens file
 * (src/auth/tokens.ts); what each route needs comes from one table (src/auth/scopes.ts). Checked in
 * onRequest, before the body is read: a 401 or 403 closes the connection, so an unauthorized client
 * cannot make hapctl read (or wait for) a large body. With neither API_TOKEN nor a tokens file, every
 * request passes and `request.principal` is undefined.
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isLoopback } from '../config.ts'
import type { Config } from '../config.ts'
import { ApiError } from '../errors.ts'
import { isListed, missingScope, requirementOf } from '../auth/scopes.ts'
import type { Requirement } from '../auth/scopes.ts'
import { TokenRegistry } from '../auth/tokens.ts'
import type { Principal } from '../auth/tokens.ts'
import { sendProblem } from './error-handler.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The token the request was authenticated with (its name and scopes); undefined when no authentication is configured or the route is open. */
    principal: Principal | undefined
  }
  interface FastifyInstance {
    /** The accepted tokens (undefined when no authentication is configured); `reload()` re-reads the tokens file. */
    tokens: TokenRegistry | undefined
    /** Every route registered after the auth plugin, with what it needs (for tests and the start-up check). */
    routeScopes: readonly RouteScope[]
  }
}

export type RouteScope = { method: string, url: string, operationId: string | undefined, requirement: Requirement }

export type AuthConfig = Pick<Config, 'apiToken' | 'tokensFile' | 'host' | 'allowUnauthenticated'>

/** 401 and 403 end the connection: the unread body (up to the body limit) is never read. */
function refuse (reply: FastifyReply, request: FastifyRequest, err: ApiError, challenge: string): FastifyReply {
  reply.header('www-authenticate', challenge)
  reply.header('connection', 'close')
  return sendProblem(reply, request, err)
}

/**
 * Throws (a TokensFileError) when the tokens file cannot be read or is invalid: the service does not
 * start rather than start with tokens nobody meant.
 */
export function registerAuth (app: FastifyInstance, config: AuthConfig): void {
  app.decorateRequest('principal', undefined)
  const routeScopes: RouteScope[] = []
  app.decorate('routeScopes', routeScopes)
  app.addHook('onRoute', function (route) {
    const operationId = (route.schema as { operationId?: string } | undefined)?.operationId
    for (const method of [route.method].flat()) routeScopes.push({ method, url: route.url, operationId, requirement: requirementOf(route.url, operationId) })
  })
  const enabled = config.apiToken !== undefined || config.tokensFile !== undefined
  if (!enabled) {
    app.decorate('tokens', undefined)
    if (config.allowUnauthenticated && !isLoopback(config.host)) {
      app.addHook('onListen', async function () {
        app.log.warn({ host: config.host }, `hapctl listens on ${config.host} with no authentication (HAPCTL_ALLOW_UNAUTHENTICATED=true): ` +
          'anyone who reaches this port can change HAProxy; set API_TOKEN or HAPCTL_TOKENS_FILE')
      })
    }
    return
  }

  const log = app.log.child({ module: 'auth' })
  const tokens = new TokenRegistry({ apiToken: config.apiToken, file: config.tokensFile, logger: log })
  app.decorate('tokens', tokens)
  if (tokens.file !== undefined) {
    log.info({ file: tokens.file, tokens: tokens.names }, 'tokens loaded')
    tokens.watch()
    // SIGHUP re-reads the file, for systems where file events do not arrive (some network file systems).
    const onHangup = (): void => { tokens.reload('SIGHUP').catch(() => {}) }
    process.on('SIGHUP', onHangup)
    app.addHook('onClose', async () => {
      process.off('SIGHUP', onHangup)
      tokens.close()
    })
  }

  app.addHook('onReady', async function () {
    for (const r of routeScopes) {
      if (!isListed(r.url, r.operationId)) {
        log.warn({ method: r.method, url: r.url, operationId: r.operationId }, 'route missing from the scope table (src/auth/scopes.ts): only admin tokens may call it')
      }
    }
  })

  app.addHook('onRequest', async function (request, reply) {
    const route = request.routeOptions
    const operationId = (route.schema as { operationId?: string } | undefined)?.operationId
    // No route (404, 405): a token is still needed, so that an anonymous client cannot map the API.
    const requirement = route.url === undefined ? undefined : requirementOf(route.url, operationId)
    if (requirement === 'open') return

    const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
    const principal = m === null ? undefined : tokens.authenticate(m[1] as string)
    if (principal === undefined) {
      return refuse(reply, request, ApiError.of('UNAUTHORIZED',
        m === null ? 'this route needs an Authorization: Bearer <token> header' : 'the bearer token is not valid'), 'Bearer realm="hapctl"')
    }
    request.principal = principal
    if (requirement === undefined) return

    const params = request.params as Record<string, unknown> | undefined
    const map = typeof params?.map === 'string' ? params.map : undefined
    const missing = missingScope(principal.scopes, requirement, map)
    if (missing !== undefined) {
      const detail = requirement === 'maps:write' && missing !== 'maps:write'
        ? `token '${principal.name}' may not change this map: it needs ${missing}, or maps:write:<glob> matching the map's name, maps:write or admin`
        : `token '${principal.name}' lacks the scope this route needs: ${missing}${missing === 'admin' ? '' : ' (or admin)'}`
      return refuse(reply, request, ApiError.of('FORBIDDEN', detail, { requiredScope: missing }),
        `Bearer realm="hapctl", error="insufficient_scope", scope="${missing}"`)
    }
  })
}
