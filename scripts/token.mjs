#!/usr/bin/env node
/**
 * Mints a token for the tokens file (HAPCTL_TOKENS_FILE): 32 random bytes, printed once, and the
 * entry to add to the file, which holds only the token's SHA-256. Plain Node, no dependencies, so it
 * runs wherever the file is edited. The rules below mirror src/auth/tokens.ts and src/auth/scopes.ts
 * (test/auth/mint.test.ts checks that what this prints, hapctl accepts).
 *
 *   npm run -s token -- deployer read servers:write 'maps:write:virt@geo-*'
 *   npm run -s token -- --json ci read
 *   printf %s "$EXISTING" | npm run -s token -- --stdin ci read     (hash a token you already have)
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'

const MIN_LENGTH = 32
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,63}$/
const FIXED = ['read', 'backends:write', 'servers:write', 'maps:write', 'admin']
const GLOB = /^[A-Za-z0-9_.:/@+~=#*?-]{1,1024}$/
const USAGE = 'usage: npm run -s token -- [--json] [--stdin] <name> <scope>...\n' +
  `  scopes: ${FIXED.join(', ')}, maps:write:<glob> (* and ? over the map name, e.g. 'maps:write:virt@geo-*')\n` +
  `  --stdin: hash a token read from standard input (at least ${MIN_LENGTH} characters) instead of making one\n`

function fail (message) {
  process.stderr.write(`token: ${message}\n${USAGE}`)
  process.exit(2)
}

const args = process.argv.slice(2)
const flags = new Set(args.filter(a => a.startsWith('--')))
for (const f of flags) if (!['--json', '--stdin', '--help'].includes(f)) fail(`unknown option ${f}`)
if (flags.has('--help')) { process.stdout.write(USAGE); process.exit(0) }
const [name, ...scopes] = args.filter(a => !a.startsWith('--'))
if (name === undefined) fail('give a name')
if (!NAME.test(name)) fail(`name '${name}': letters, digits, '_', '.', '@', ':' and '-', starting with a letter, digit or '_', at most 64 characters`)
if (name === 'api-token') fail("'api-token' is API_TOKEN's name")
if (scopes.length === 0) fail('give at least one scope')
for (const s of scopes) {
  const ok = FIXED.includes(s) || (s.startsWith('maps:write:') && GLOB.test(s.slice('maps:write:'.length)))
  if (!ok) fail(`unknown scope '${s}'`)
}

let token
if (flags.has('--stdin')) {
  token = readFileSync(0, 'utf8').replace(/\r?\n$/, '')
  if (token.length < MIN_LENGTH) fail(`the token on standard input has ${token.length} characters; at least ${MIN_LENGTH} are needed`)
  if (!/^[\x21-\x7e]+$/.test(token)) fail('the token on standard input must be printable ASCII without blanks (it goes in an Authorization header)')
} else {
  // A recognizable prefix lets secret scanners find leaked tokens; 32 random bytes make it unguessable.
  token = `hapctl_${randomBytes(32).toString('base64url')}`
}
const entry = { name, hash: `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`, scopes: [...new Set(scopes)] }

if (flags.has('--json')) {
  process.stdout.write(JSON.stringify(flags.has('--stdin') ? { entry } : { token, entry }) + '\n')
} else {
  if (!flags.has('--stdin')) {
    process.stdout.write(`token (give it to the client; hapctl keeps only its hash, so it cannot be shown again):\n  ${token}\n\n`)
  }
  process.stdout.write(`entry for the "tokens" array of ${process.env.HAPCTL_TOKENS_FILE ?? 'the tokens file'} (hapctl reloads it by itself):\n  ${JSON.stringify(entry)}\n`)
}
