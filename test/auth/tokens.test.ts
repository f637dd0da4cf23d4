import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { TokenRegistry, TokensFileError, hashToken, parseTokensFile } from '../../src/auth/tokens.ts'

const secret = (): string => `hapctl_${randomBytes(32).toString('base64url')}`
const entry = (name: string, token: string, scopes: string[]) => ({ name, hash: hashToken(token), scopes })
const fileText = (tokens: object[]): string => JSON.stringify({ tokens }, null, 2)

/** A logger that keeps every line, to check what was said and that no secret was. */
function memoryLogger () {
  const lines: Array<{ level: string, obj: object, msg: string }> = []
  const at = (level: string) => (obj: object, msg: string) => { lines.push({ level, obj, msg }) }
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error') }, text: () => JSON.stringify(lines) }
}

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })
function tempDir (): string {
  const d = mkdtempSync(join(tmpdir(), 'hapctl-tokens-'))
  dirs.push(d)
  return d
}

/** Polls until `check` holds (file events arrive asynchronously), failing after a generous 5 s. */
async function eventually (check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within 5 s: ${what}`)
    await delay(20)
  }
}

describe('hashToken', () => {
  it('is sha256: and the hex digest of the token', () => {
    expect(hashToken('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})

describe('parseTokensFile', () => {
  it('reads names, scopes (duplicates dropped) and hashes', () => {
    const t = secret()
    const [e] = parseTokensFile(fileText([entry('deployer', t, ['read', 'maps:write:virt@geo-*', 'read'])]))
    expect(e?.name).toBe('deployer')
    expect(e?.scopes).toEqual(['read', 'maps:write:virt@geo-*'])
    expect(e?.digest.toString('hex')).toBe(hashToken(t).slice('sha256:'.length))
    expect(parseTokensFile('{"tokens":[]}')).toEqual([])
  })

  it('refuses what it cannot be sure of, saying where and why', () => {
    const t = secret()
    const bad: Array<[string, RegExp]> = [
      ['', /not valid JSON/],
      ['[]', /file: .*object/i],
      ['{"tokens":[],"other":1}', /file: .*other/i],
      [fileText([{ ...entry('a', t, ['read']), scope: 'x' }]), /tokens\[0\]: .*scope/],
      [fileText([entry('a', t, ['maps:wrte'])]), /tokens\[0\]\.scopes\[0\]: unknown scope \(known: read, /],
      [fileText([entry('a', t, ['maps:write:a b'])]), /tokens\[0\]\.scopes\[0\]: .*glob/],
      [fileText([entry('a', t, [])]), /tokens\[0\]\.scopes: a token needs at least one scope/],
      [fileText([entry('a', t, ['read']), entry('a', secret(), ['read'])]), /tokens\[1\]\.name: 'a' is also the name of tokens\[0\]/],
      [fileText([entry('a', t, ['read']), entry('b', t, ['admin'])]), /tokens\[1\]\.hash: the same token as tokens\[0\] \('a'\)/],
      [fileText([entry('api-token', t, ['read'])]), /tokens\[0\]\.name: 'api-token' is API_TOKEN's name/],
      [fileText([entry('has space', t, ['read'])]), /tokens\[0\]\.name: letters/],
      [fileText([{ name: 'a', hash: 'sha256:ABC', scopes: ['read'] }]), /tokens\[0\]\.hash: must be 'sha256:'/]
    ]
    for (const [text, reason] of bad) {
      expect(() => parseTokensFile(text, '/etc/hapctl/tokens.json'), text).toThrow(TokensFileError)
      expect(() => parseTokensFile(text, '/etc/hapctl/tokens.json'), text).toThrow(reason)
    }
  })

  it('never repeats what the file holds where a hash should be, nor the JSON around a syntax error', () => {
    const t = randomBytes(32).toString('base64url')
    const messages: string[] = []
    for (const text of [`{"tokens":[{"name":"a","hash":"${t}","scopes":["read"]}]}`, `{"tokens":[{"name":"a","hash":${t}}]}`, `${t}`, fileText([{ name: 'a', hash: hashToken(t), scopes: [t] }])]) {
      try {
        parseTokensFile(text)
        expect.unreachable()
      } catch (err) {
        messages.push((err as Error).message)
      }
    }
    expect(messages[0]).toMatch(/tokens\[0\]\.hash/)
    expect(messages[1]).toMatch(/not valid JSON/)
    expect(messages[2]).toMatch(/not valid JSON/)
    expect(messages[3]).toMatch(/tokens\[0\]\.scopes\[0\]: unknown scope/)
    for (const m of messages) expect(m).not.toContain(t.slice(0, 6))
  })
})

describe('TokenRegistry', () => {
  it('accepts API_TOKEN as admin `api-token` and the file tokens with their scopes, nothing else', () => {
    const dir = tempDir()
    const api = secret()
    const deployer = secret()
    writeFileSync(join(dir, 'tokens.json'), fileText([entry('deployer', deployer, ['read', 'servers:write'])]))
    const reg = new TokenRegistry({ apiToken: api, file: join(dir, 'tokens.json'), logger: memoryLogger().logger })
    expect(reg.authenticate(api)).toEqual({ name: 'api-token', scopes: ['admin'] })
    expect(reg.authenticate(deployer)).toEqual({ name: 'deployer', scopes: ['read', 'servers:write'] })
    expect(reg.authenticate(deployer.slice(0, -1))).toBeUndefined()
    expect(reg.authenticate(hashToken(deployer))).toBeUndefined()
    expect(reg.authenticate('')).toBeUndefined()
    expect(reg.names).toEqual(['api-token', 'deployer'])

    const onlyApi = new TokenRegistry({ apiToken: api, logger: memoryLogger().logger })
    expect(onlyApi.authenticate(api)?.name).toBe('api-token')
    expect(onlyApi.authenticate(deployer)).toBeUndefined()
  })

  it('refuses to start with a file that is missing, invalid, or holds API_TOKEN', () => {
    const dir = tempDir()
    const file = join(dir, 'tokens.json')
    const log = memoryLogger().logger
    expect(() => new TokenRegistry({ file, logger: log })).toThrow(`tokens file ${file}: cannot be read (ENOENT)`)
    writeFileSync(file, '{"tokens":[{"name":"a"}]}')
    expect(() => new TokenRegistry({ file, logger: log })).toThrow(/tokens\[0\]\.hash/)
    const api = secret()
    writeFileSync(file, fileText([entry('copy', api, ['read'])]))
    expect(() => new TokenRegistry({ apiToken: api, file, logger: log })).toThrow("token 'copy' is the same token as API_TOKEN")
  })

  it('re-reads the file on reload() (SIGHUP) and logs the names added, removed and changed', async () => {
    const dir = tempDir()
    const file = join(dir, 'tokens.json')
    const [a, b, c] = [secret(), secret(), secret()]
    writeFileSync(file, fileText([entry('a', a, ['read']), entry('b', b, ['read'])]))
    const log = memoryLogger()
    const reg = new TokenRegistry({ file, logger: log.logger })
    writeFileSync(file, fileText([entry('a', a, ['read', 'maps:write']), entry('c', c, ['admin'])]))
    // Not watched: nothing changes until reload().
    await delay(50)
    expect(reg.authenticate(c)).toBeUndefined()
    expect(await reg.reload('SIGHUP')).toBe(true)
    expect(reg.authenticate(c)).toEqual({ name: 'c', scopes: ['admin'] })
    expect(reg.authenticate(b)).toBeUndefined()
    expect(reg.authenticate(a)?.scopes).toEqual(['read', 'maps:write'])
    expect(log.lines.at(-1)).toEqual({
      level: 'info',
      msg: 'tokens file reloaded',
      obj: { file, reason: 'SIGHUP', added: ['c'], removed: ['b'], changed: ['a'], tokens: ['a', 'c'] }
    })
    expect(await reg.reload('SIGHUP')).toBe(false)
    expect(log.lines.at(-1)?.msg).toBe('tokens file re-read: unchanged')
  })

  it('keeps the tokens it had when the new file is invalid or gone, and says so', async () => {
    const dir = tempDir()
    const file = join(dir, 'tokens.json')
    const a = secret()
    writeFileSync(file, fileText([entry('a', a, ['read'])]))
    const log = memoryLogger()
    const reg = new TokenRegistry({ file, logger: log.logger })
    const b = secret()
    writeFileSync(file, fileText([entry('b', b, ['no-such-scope'])]))
    expect(await reg.reload()).toBe(false)
    expect(reg.authenticate(a)?.name).toBe('a')
    expect(reg.authenticate(b)).toBeUndefined()
    expect(log.lines.at(-1)).toMatchObject({ level: 'error', msg: 'tokens file is invalid: the tokens loaded before stay in use', obj: { kept: ['a'] } })
    expect((log.lines.at(-1)?.obj as { error: string }).error).toMatch(/unknown scope/)
    rmSync(file)
    expect(await reg.reload()).toBe(false)
    expect(reg.authenticate(a)?.name).toBe('a')
    expect(log.lines.at(-1)).toMatchObject({ level: 'error', msg: 'tokens file cannot be read: the tokens loaded before stay in use', obj: { error: 'ENOENT' } })
    expect(log.text()).not.toContain(a)
    expect(log.text()).not.toContain(hashToken(a).slice(7))
    expect(log.text()).not.toContain(b)
    expect(log.text()).not.toContain(hashToken(b).slice(7))
  })

  it('notices a file replaced by rename or written in place, and ignores the other files of its directory', async () => {
    const dir = tempDir()
    const file = join(dir, 'tokens.json')
    const [a, b, c] = [secret(), secret(), secret()]
    writeFileSync(file, fileText([entry('a', a, ['read'])]))
    const log = memoryLogger()
    const reg = new TokenRegistry({ file, logger: log.logger, debounceMs: 20 })
    onTestFinished(() => reg.close())
    reg.watch()

    // An editor: write a new file next to it, rename over it.
    writeFileSync(join(dir, '.tokens.json.swp'), fileText([entry('b', b, ['read'])]))
    renameSync(join(dir, '.tokens.json.swp'), file)
    await eventually(() => reg.authenticate(b) !== undefined, 'the renamed file is read')
    expect(reg.authenticate(a)).toBeUndefined()

    // In place; an invalid version first, which is refused while the good one stays.
    writeFileSync(file, '{"tokens": [')
    await eventually(() => log.lines.some(l => l.level === 'error'), 'the invalid file is reported')
    expect(reg.authenticate(b)?.name).toBe('b')
    writeFileSync(file, fileText([entry('c', c, ['admin'])]))
    await eventually(() => reg.authenticate(c) !== undefined, 'the file written in place is read')
    expect(reg.authenticate(b)).toBeUndefined()
    expect(log.lines.filter(l => l.msg === 'tokens file reloaded').map(l => (l.obj as { added: string[] }).added)).toEqual([['b'], ['c']])

    // Other files of the directory are not its business.
    const before = log.lines.length
    writeFileSync(join(dir, 'unrelated.txt'), 'x')
    await delay(150)
    expect(log.lines.length).toBe(before)

    reg.close()
    writeFileSync(file, fileText([entry('a', a, ['read'])]))
    await delay(150)
    expect(reg.authenticate(a)).toBeUndefined()
  })

  it('follows a Kubernetes-style secret volume (tokens.json → ..data/tokens.json, ..data swapped)', async () => {
    const dir = tempDir()
    const [a, b] = [secret(), secret()]
    mkdirSync(join(dir, '..v1'))
    writeFileSync(join(dir, '..v1', 'tokens.json'), fileText([entry('a', a, ['read'])]))
    symlinkSync('..v1', join(dir, '..data'))
    symlinkSync('..data/tokens.json', join(dir, 'tokens.json'))
    const reg = new TokenRegistry({ file: join(dir, 'tokens.json'), logger: memoryLogger().logger, debounceMs: 20 })
    onTestFinished(() => reg.close())
    reg.watch()
    expect(reg.authenticate(a)?.name).toBe('a')

    mkdirSync(join(dir, '..v2'))
    writeFileSync(join(dir, '..v2', 'tokens.json'), fileText([entry('b', b, ['read'])]))
    symlinkSync('..v2', join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
    await eventually(() => reg.authenticate(b) !== undefined, 'the swapped volume is read')
    expect(reg.authenticate(a)).toBeUndefined()
  })
})
