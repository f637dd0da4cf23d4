import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { TOKEN_NAME_PATTERN, hashToken, parseTokensFile } from '../../src/auth/tokens.ts'
import { FIXED_SCOPES, GLOB_PATTERN } from '../../src/auth/scopes.ts'
import { nodeCommand } from '../helpers/node.ts'

const SCRIPT = fileURLToPath(new URL('../../scripts/token.mjs', import.meta.url))
const node = nodeCommand()
const mint = (args: string[], input?: string) => spawnSync(node.command, [...node.args, SCRIPT, ...args], { input, encoding: 'utf8' })

describe('scripts/token.mjs', () => {
  it('mints a long random token, printed once, and an entry with its hash that hapctl accepts', () => {
    const res = mint(['--json', 'deployer', 'read', 'servers:write', 'maps:write:virt@geo-*', 'read'])
    expect(res.status).toBe(0)
    const { token, entry } = JSON.parse(res.stdout)
    expect(token).toMatch(/^hapctl_[A-Za-z0-9_-]{43}$/)
    expect(entry).toEqual({ name: 'deployer', hash: hashToken(token), scopes: ['read', 'servers:write', 'maps:write:virt@geo-*'] })
    const [parsed] = parseTokensFile(JSON.stringify({ tokens: [entry] }))
    expect(parsed?.scopes).toEqual(['read', 'servers:write', 'maps:write:virt@geo-*'])
    expect(mint(['--json', 'x', 'read']).stdout).not.toContain(token)
  })

  it('prints the token and the entry for a person', () => {
    const res = mint(['ci', 'admin'])
    expect(res.status).toBe(0)
    const token = /^ {2}(hapctl_\S+)$/m.exec(res.stdout)?.[1] as string
    expect(res.stdout).toContain(JSON.stringify({ name: 'ci', hash: hashToken(token), scopes: ['admin'] }))
  })

  it('hashes a token given on stdin, refusing one shorter than 32 characters', () => {
    const existing = 'x'.repeat(31) + 'y'
    const ok = mint(['--json', '--stdin', 'legacy', 'read'], existing + '\n')
    expect(ok.status).toBe(0)
    expect(JSON.parse(ok.stdout)).toEqual({ entry: { name: 'legacy', hash: hashToken(existing), scopes: ['read'] } })
    const short = mint(['--stdin', 'legacy', 'read'], 'x'.repeat(31))
    expect(short.status).toBe(2)
    expect(short.stderr).toMatch(/^token: the token on standard input has 31 characters; at least 32 are needed/)
    expect(short.stdout).toBe('')
  })

  it('refuses what hapctl would refuse', () => {
    for (const [args, reason] of [
      [['a', 'maps:wrte'], /unknown scope 'maps:wrte'/],
      [['a', 'maps:write:a b'], /unknown scope/],
      [['a'], /at least one scope/],
      [['api-token', 'read'], /API_TOKEN's name/],
      [['has space', 'read'], /name 'has space'/],
      [['--nope', 'a', 'read'], /unknown option --nope/]
    ] as Array<[string[], RegExp]>) {
      const res = mint(args)
      expect(res.status, args.join(' ')).toBe(2)
      expect(res.stderr, args.join(' ')).toMatch(reason)
      // ...and so would hapctl (options aside).
      const name = args.find(a => !a.startsWith('--')) as string
      const scopes = args.filter(a => !a.startsWith('--')).slice(1)
      if (!args[0]?.startsWith('--')) expect(() => parseTokensFile(JSON.stringify({ tokens: [{ name, hash: hashToken('t'.repeat(40)), scopes }] }))).toThrow()
    }
  })

  it('has the same rules as hapctl (it copies them to stay plain Node): names, scopes, globs', () => {
    const source = readFileSync(SCRIPT, 'utf8')
    const constant = (name: string): string => new RegExp(`^const ${name} = (.*)$`, 'm').exec(source)?.[1] ?? `no const ${name}`
    expect(constant('NAME')).toBe(String(TOKEN_NAME_PATTERN))
    expect(constant('GLOB')).toBe(String(GLOB_PATTERN))
    expect(JSON.parse(constant('FIXED').replace(/'/g, '"'))).toEqual(FIXED_SCOPES)
  })
})
