/**
 * Scopes, and the one table of what each route needs. A route is found by its OpenAPI operationId;
 * a route missing from the table needs `admin` (fail closed), and test/auth/scopes.test.ts walks every
 * registered route to keep the table complete. No HTTP types here: src/plugins/auth.ts asks
 * `missingScope` and answers 401/403.
 */
import { MAP_NAME_PATTERN } from '../runtime/validation.ts'

/** What a route needs: nothing (`open`), or one scope (or `admin`, which holds every scope). */
export type Requirement = 'open' | 'read' | 'backends:write' | 'servers:write' | 'maps:write' | 'admin'

/**
 * operationId → requirement. `maps:write` is granted by `maps:write` (every map) or by
 * `maps:write:<glob>` matching the route's `:map` parameter.
 */
export const SCOPE_OF: Readonly<Record<string, Requirement>> = {
  getHealth: 'open',
  getReady: 'read',
  getMetrics: 'read',
  getStatus: 'read',
  listAudit: 'read',
  watchEvents: 'read',
  getState: 'read',
  // A whole document changes backends, servers and maps alike.
  replaceState: 'admin',
  patchState: 'admin',
  listBackends: 'read',
  getBackend: 'read',
  createBackend: 'backends:write',
  updateBackend: 'backends:write',
  deleteBackend: 'backends:write',
  listServers: 'read',
  getServer: 'read',
  createServer: 'servers:write',
  updateServer: 'servers:write',
  deleteServer: 'servers:write',
  listMaps: 'read',
  listMapEntries: 'read',
  getMapEntry: 'read',
  replaceMapEntries: 'maps:write',
  patchMapEntries: 'maps:write',
  createMapEntry: 'maps:write',
  putMapEntry: 'maps:write',
  deleteMapEntry: 'maps:write'
}

/**
 * The API description and Swagger UI stay open so that a browser can load the console and then send
 * a token with "Authorize". Matched on the route's pattern (not the request's URL), so no spelling of
 * a URL reaches another route through it.
 */
export function isDocumentationRoute (routeUrl: string): boolean {
  return routeUrl === '/openapi.json' || routeUrl === '/docs' || routeUrl.startsWith('/docs/')
}

/** Whether the table (or the documentation rule) says what the route needs. */
export function isListed (routeUrl: string, operationId: string | undefined): boolean {
  return isDocumentationRoute(routeUrl) || (operationId !== undefined && Object.hasOwn(SCOPE_OF, operationId))
}

/** The requirement of a route, from its pattern and operationId; unknown routes need `admin` (fail closed). */
export function requirementOf (routeUrl: string, operationId: string | undefined): Requirement {
  if (isDocumentationRoute(routeUrl)) return 'open'
  return isListed(routeUrl, operationId) ? SCOPE_OF[operationId as string] as Requirement : 'admin'
}

export const FIXED_SCOPES = ['read', 'backends:write', 'servers:write', 'maps:write', 'admin'] as const
export const MAP_SCOPE_PREFIX = 'maps:write:'

/**
 * Characters of a map glob: those of a map name (src/runtime/validation.ts MAP_NAME_PATTERN, `#` for
 * `#<id>`), plus `*` (any run of characters but `/`) and `?` (one character but `/`).
 */
export const GLOB_PATTERN = /^[A-Za-z0-9_.:/@+~=#*?-]{1,1024}$/

/** Why a scope string is not one this service knows, or undefined when it is. */
export function scopeProblem (scope: string): string | undefined {
  if ((FIXED_SCOPES as readonly string[]).includes(scope)) return undefined
  if (scope.startsWith(MAP_SCOPE_PREFIX)) {
    return GLOB_PATTERN.test(scope.slice(MAP_SCOPE_PREFIX.length))
      ? undefined
      : 'the glob after maps:write: may hold the characters of a map name, * and ? only'
  }
  return `unknown scope (known: ${FIXED_SCOPES.join(', ')}, ${MAP_SCOPE_PREFIX}<glob>)`
}

const compiled = new Map<string, RegExp>()

/**
 * `virt@geo-*` → /^virt@geo-[^/]*$/. `*` and `?` do not cross `/`, as in a shell; nor do they match
 * the `#` of a map's `#<id>` (as a shell's do not match the `.` of a hidden file): an id names any
 * map, a file map included, so `maps:write:*` must not reach `/etc/haproxy/hosts.map` as `#7`. Only
 * a glob written with the `#` (`#7`, `#*`) grants ids.
 */
export function globToRegExp (glob: string): RegExp {
  let re = compiled.get(glob)
  if (re === undefined) {
    const body = glob.split('').map(c => c === '*' ? '[^/]*' : c === '?' ? '[^/]' : c.replace(/[\\^$.|+()[\]{}/-]/g, '\\$&')).join('')
    re = new RegExp(`^${glob.startsWith('#') ? '' : '(?!#)'}${body}$`)
    compiled.set(glob, re)
  }
  return re
}

/**
 * The scope this request lacks (the narrowest one that would grant it), or undefined when the scopes
 * allow it. `mapName` is the `:map` path parameter as the route received it (URL-decoded).
 */
export function missingScope (scopes: readonly string[], requirement: Requirement, mapName: string | undefined): string | undefined {
  if (requirement === 'open' || scopes.includes('admin')) return undefined
  if (requirement === 'maps:write') {
    if (scopes.includes('maps:write')) return undefined
    if (mapName === undefined) return 'maps:write'
    const granted = scopes.some(s => s.startsWith(MAP_SCOPE_PREFIX) && globToRegExp(s.slice(MAP_SCOPE_PREFIX.length)).test(mapName))
    if (granted) return undefined
    // A parameter that is no map name (answered 400 once authorized) is not echoed back as a scope.
    return MAP_NAME_PATTERN.test(mapName) ? MAP_SCOPE_PREFIX + mapName : 'maps:write'
  }
  return scopes.includes(requirement) ? undefined : requirement
}
