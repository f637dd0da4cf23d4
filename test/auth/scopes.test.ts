import { describe, expect, it } from 'vitest'
import { SCOPE_OF, globToRegExp, isListed, missingScope, requirementOf, scopeProblem } from '../../src/auth/scopes.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

describe('map globs', () => {
  it('match * and ? within one path segment, everything else literally', () => {
    const geo = globToRegExp('virt@geo-*')
    expect(geo.test('virt@geo-eu.map')).toBe(true)
    expect(geo.test('virt@geo-')).toBe(true)
    expect(geo.test('virt@geo-eu/x.map')).toBe(false)
    expect(geo.test('virt@geoeu')).toBe(false)
    expect(geo.test('xvirt@geo-eu')).toBe(false)
    expect(globToRegExp('/etc/haproxy/*.map').test('/etc/haproxy/hosts.map')).toBe(true)
    expect(globToRegExp('/etc/haproxy/*.map').test('/etc/haproxy/sub/hosts.map')).toBe(false)
    expect(globToRegExp('/etc/haproxy/*.map').test('/etc/haproxy/hostsxmap')).toBe(false)
    expect(globToRegExp('a?c').test('abc')).toBe(true)
    expect(globToRegExp('a?c').test('ac')).toBe(false)
    expect(globToRegExp('a?c').test('a/c')).toBe(false)
    expect(globToRegExp('a+b').test('a+b')).toBe(true)
    expect(globToRegExp('a+b').test('aab')).toBe(false)
    expect(globToRegExp('#5').test('#5')).toBe(true)
    expect(globToRegExp('#*').test('#5')).toBe(true)
  })

  it('do not match the # of a map id unless written with it: an id may name a file map', () => {
    for (const glob of ['*', '?', '?5', '*5', '**']) expect(globToRegExp(glob).test('#5'), glob).toBe(false)
    expect(globToRegExp('*').test('hosts.map')).toBe(true)
  })
})

describe('scope strings', () => {
  it('accepts the fixed scopes and maps:write:<glob>, and says why others are refused', () => {
    for (const s of ['read', 'admin', 'backends:write', 'servers:write', 'maps:write', 'maps:write:virt@geo-*', 'maps:write:/etc/haproxy/*.map', 'maps:write:#5']) {
      expect(scopeProblem(s), s).toBeUndefined()
    }
    expect(scopeProblem('maps:wrte')).toMatch(/unknown scope/)
    expect(scopeProblem('write')).toMatch(/unknown scope/)
    expect(scopeProblem('Read')).toMatch(/unknown scope/)
    expect(scopeProblem('maps:write:')).toMatch(/glob/)
    expect(scopeProblem('maps:write:a b')).toMatch(/glob/)
    expect(scopeProblem('maps:write:[ab]')).toMatch(/glob/)
  })
})

describe('missingScope', () => {
  it('grants admin everything, read only reads, and each write scope its own kind', () => {
    expect(missingScope(['admin'], 'maps:write', 'virt@x')).toBeUndefined()
    expect(missingScope(['admin'], 'backends:write', undefined)).toBeUndefined()
    expect(missingScope(['read'], 'read', undefined)).toBeUndefined()
    expect(missingScope(['read'], 'backends:write', undefined)).toBe('backends:write')
    expect(missingScope(['backends:write'], 'read', undefined)).toBe('read')
    expect(missingScope(['backends:write'], 'servers:write', undefined)).toBe('servers:write')
    expect(missingScope(['servers:write', 'maps:write'], 'admin', undefined)).toBe('admin')
    expect(missingScope([], 'open', undefined)).toBeUndefined()
  })

  it('grants a map write through maps:write or a matching glob, and names the narrowest missing scope', () => {
    expect(missingScope(['maps:write'], 'maps:write', 'virt@paths.map')).toBeUndefined()
    expect(missingScope(['maps:write:virt@geo-*'], 'maps:write', 'virt@geo-eu.map')).toBeUndefined()
    expect(missingScope(['maps:write:virt@geo-*'], 'maps:write', 'virt@paths.map')).toBe('maps:write:virt@paths.map')
    expect(missingScope(['maps:write:virt@geo-*', 'maps:write:virt@paths.map'], 'maps:write', 'virt@paths.map')).toBeUndefined()
    // The id form is another spelling of a map: a name glob does not grant it.
    expect(missingScope(['maps:write:virt@geo-*'], 'maps:write', '#5')).toBe('maps:write:#5')
    // Nor does a glob of every map without a path: #5 may be /etc/haproxy/hosts.map.
    expect(missingScope(['maps:write:*'], 'maps:write', '#5')).toBe('maps:write:#5')
    expect(missingScope(['maps:write:#5'], 'maps:write', '#5')).toBeUndefined()
    // What is no map name is not echoed back as a scope.
    expect(missingScope(['maps:write:virt@geo-*'], 'maps:write', 'a b\n')).toBe('maps:write')
    expect(missingScope(['read'], 'maps:write', undefined)).toBe('maps:write')
  })
})

describe('the scope table', () => {
  it('is fail-closed: documentation routes are open, unknown operations need admin', () => {
    expect(requirementOf('/docs', undefined)).toBe('open')
    expect(requirementOf('/docs/static/*', undefined)).toBe('open')
    expect(requirementOf('/openapi.json', undefined)).toBe('open')
    expect(requirementOf('/docsx', undefined)).toBe('admin')
    expect(requirementOf('/backends', 'somethingNew')).toBe('admin')
    expect(requirementOf('/backends', undefined)).toBe('admin')
    expect(requirementOf('/backends', 'toString')).toBe('admin')
    expect(requirementOf('/backends', 'listBackends')).toBe('read')
  })

  it('has an entry for every registered route and none for a route that does not exist; reads need read, writes a write scope', async () => {
    const app = await buildTestApp(fakeRuntime(() => new Error('unused')))
    await app.ready()
    const routes = app.routeScopes
    expect(routes.length).toBeGreaterThan(20)
    const unlisted = routes.filter(r => !isListed(r.url, r.operationId)).map(r => `${r.method} ${r.url}`)
    expect(unlisted).toEqual([])
    const operations = new Set(routes.map(r => r.operationId))
    expect(Object.keys(SCOPE_OF).filter(id => !operations.has(id))).toEqual([])
    for (const r of routes) {
      const label = `${r.method} ${r.url} (${r.operationId ?? 'no operationId'})`
      if (r.method === 'GET' || r.method === 'HEAD') expect(['open', 'read'], label).toContain(r.requirement)
      // A whole state document changes backends, servers and maps at once: only admin may write it.
      else if (r.url === '/state') expect(r.requirement, label).toBe('admin')
      else expect(['backends:write', 'servers:write', 'maps:write'], label).toContain(r.requirement)
      if (r.requirement === 'open') expect(r.url === '/health' || r.url === '/openapi.json' || r.url.startsWith('/docs'), label).toBe(true)
      if (r.requirement === 'maps:write') expect(r.url, label).toMatch(/^\/maps\/:map\//)
      if (r.requirement === 'servers:write') expect(r.url, label).toMatch(/\/servers(\/|$)/)
      if (r.requirement === 'backends:write') expect(r.url, label).toMatch(/^\/backends(\/:name)?$/)
    }
  })
})
