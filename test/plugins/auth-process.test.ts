/**
 * The tokens file in the real process: SIGHUP re-reads it (the signal handler's wiring, which an
 * in-process app cannot show), an invalid file stops the start with one line, and no token or hash
 * reaches the log, at the most verbose level, whatever the requests.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/auth/tokens.ts'
import { freePort } from '../helpers/haproxy.ts'
import { startHapctl } from '../helpers/hapctl-process.ts'

const dir = mkdtempSync(join(tmpdir(), 'hapctl-auth-process-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })
const secret = (): string => `hapctl_${randomBytes(32).toString('base64url')}`
const entry = (name: string, token: string, scopes: string[]) => ({ name, hash: hashToken(token), scopes })

async function status (url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
  await res.arrayBuffer()
  return res.status
}

describe('hapctl process with a tokens file', () => {
  it('re-reads the tokens file on SIGHUP and never logs a token or a hash', async () => {
    // The watched directory holds a symlink to a file elsewhere: editing that file in place makes no
    // event where hapctl watches, so only SIGHUP can make it re-read.
    mkdirSync(join(dir, 'watched'))
    mkdirSync(join(dir, 'elsewhere'))
    const real = join(dir, 'elsewhere', 'tokens.json')
    const file = join(dir, 'watched', 'tokens.json')
    symlinkSync(real, file)
    const api = secret()
    const reader = secret()
    const late = secret()
    const wrong = secret()
    writeFileSync(real, JSON.stringify({ tokens: [entry('reader', reader, ['read'])] }))

    const p = await startHapctl({
      env: { API_TOKEN: api, HAPCTL_TOKENS_FILE: file, LOG_LEVEL: 'trace', HAPROXY_RUNTIME_API: `tcp://127.0.0.1:${await freePort()}` }
    })
    const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } })
    expect(await status(`${p.url}/status`)).toBe(401)
    expect(await status(`${p.url}/status`, auth(wrong))).toBe(401)
    expect(await status(`${p.url}/status`, { headers: { authorization: `Basic ${reader}` } })).toBe(401)
    expect(await status(`${p.url}/status`, auth(hashToken(reader)))).toBe(401)
    expect(await status(`${p.url}/status`, auth(reader))).toBe(200)
    expect(await status(`${p.url}/status`, auth(api))).toBe(200)
    expect(await status(`${p.url}/backends`, { ...auth(reader), method: 'POST', body: JSON.stringify({ name: 'x', from: 'y' }), headers: { ...auth(reader).headers, 'content-type': 'application/json' } })).toBe(403)
    expect(await status(`${p.url}/status`, auth(late))).toBe(401)

    writeFileSync(real, JSON.stringify({ tokens: [entry('reader', reader, ['read']), entry('late', late, ['read'])] }))
    await delay(500)
    expect(await status(`${p.url}/status`, auth(late)), 'no file event should reach the watcher in this set-up').toBe(401)

    process.kill(p.pid, 'SIGHUP')
    const deadline = Date.now() + 5000
    while (await status(`${p.url}/status`, auth(late)) !== 200) {
      expect(Date.now(), 'the SIGHUP reload did not happen within 5 s').toBeLessThan(deadline)
      await delay(50)
    }
    expect(p.child.exitCode).toBeNull()
    const reloaded = p.output().split('\n').filter(l => l.includes('tokens file reloaded')).map(l => JSON.parse(l))
    expect(reloaded).toEqual([expect.objectContaining({ level: 30, reason: 'SIGHUP', added: ['late'], removed: [], changed: [], tokens: ['api-token', 'reader', 'late'] })])

    const log = p.output()
    expect(log).toContain('"url":"/backends"')
    for (const s of [api, reader, late, wrong]) {
      expect(log).not.toContain(s)
      expect(log).not.toContain(s.slice('hapctl_'.length, 20))
      expect(log).not.toContain(hashToken(s).slice('sha256:'.length, 20))
    }
  })

  it('does not start with an invalid tokens file, and says why in one line', async () => {
    const file = join(dir, 'bad.json')
    writeFileSync(file, JSON.stringify({ tokens: [entry('a', secret(), ['read']), entry('a', secret(), ['read'])] }))
    const p = await startHapctl({ env: { HAPCTL_TOKENS_FILE: file }, waitReady: false })
    const { code } = await p.exited
    expect(code).toBe(1)
    expect(p.output()).toBe(`hapctl: tokens file ${file}: tokens[1].name: 'a' is also the name of tokens[0]\n`)
  })
})
