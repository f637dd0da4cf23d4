import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'

/*
 * package.json's `engines.node` is the range of Node.js versions the project supports: every package
 * of the lock file (run time and development, since `npm ci` installs both) must accept each version
 * in it, so that a dependency update raising its minimum fails here instead of in a user's `npm ci`.
 * The exceptions are listed with why they still work, and that reason is checked too.
 */

// semver is in the tree through better-sqlite3 (prebuild-install → node-abi); loaded as npm does.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies: (version: string, range: string) => boolean
  validRange: (range: string) => string | null
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } }
const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
  packages: Record<string, { version?: string, engines?: { node?: string } | string[] }>
}

/*
 * content-disposition 3 (required by @fastify/static, behind Swagger UI) and cookie 2 (by
 * light-my-request, behind fastify's inject) declare Node >= 22 because they ship only ES modules,
 * which their CommonJS dependents load with require(): Node.js supports that without a flag from
 * 20.19 and 22.12 on. `npm ci` on Node 20 warns EBADENGINE about them (README, Quick start).
 */
const REQUIRE_ESM = '^20.19.0 || >=22.12.0'
const DECLARED_TOO_HIGH: Record<string, string> = {
  'content-disposition': REQUIRE_ESM,
  cookie: REQUIRE_ESM
}

/** Versions at the edges of each release line, inside and outside the range. */
const PROBES = ['18.20.0', '20.18.3', '20.19.0', '20.99.0', '21.7.0', '22.12.0', '22.13.0', '22.99.0', '23.11.0', '24.0.0', '24.99.0', '25.0.0', '26.0.0', '26.99.0', '27.0.0']

describe('package.json engines.node', () => {
  const range = pkg.engines.node
  const supported = PROBES.filter(v => semver.satisfies(v, range))

  it('is a valid range that includes the Node.js versions the suite runs on (20 on CI, 24 in the image and `npm run test:node24`)', () => {
    expect(semver.validRange(range)).not.toBeNull()
    expect(semver.satisfies(process.versions.node, range), `this Node.js (${process.versions.node}) is in ${range}`).toBe(true)
    expect(semver.satisfies('20.20.2', range)).toBe(true)
    expect(semver.satisfies('24.11.0', range)).toBe(true)
  })

  it('is accepted by every package of the lock file, or the package is listed with why it works', () => {
    const refused: string[] = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      const wanted = Array.isArray(entry.engines) ? undefined : entry.engines?.node
      if (path === '' || wanted === undefined) continue
      const name = path.replace(/^.*node_modules\//, '')
      const effective = DECLARED_TOO_HIGH[name] ?? wanted
      for (const v of supported) {
        if (!semver.satisfies(v, effective)) refused.push(`${name}@${entry.version ?? '?'} (engines ${wanted}) refuses ${v}`)
      }
    }
    expect(refused).toEqual([])
  })

  it('lists only exceptions that still exist and still declare more than the range', () => {
    for (const name of Object.keys(DECLARED_TOO_HIGH)) {
      const entry = lock.packages[`node_modules/${name}`]
      const wanted = Array.isArray(entry?.engines) ? undefined : entry?.engines?.node
      expect(wanted, `${name} is in the lock file with an engines field`).toBeDefined()
      expect(supported.some(v => !semver.satisfies(v, wanted as string)), `${name} (${wanted as string}) no longer needs an exception`).toBe(true)
    }
  })
})
