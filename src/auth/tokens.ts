/**
 * The tokens hapctl accepts: API_TOKEN (one token named `api-token` with `admin`) and the tokens file
 * (HAPCTL_TOKENS_FILE), which holds names, SHA-256 hashes and scopes, never a token itself:
 *
 *   {"tokens": [{"name": "deployer", "hash": "sha256:<64 hex>", "scopes": ["read", "maps:write:virt@geo-*"]}]}
 *
 * The file is re-read when it changes (its directory is watched: editors and Kubernetes replace files
 * by rename) and on `reload()` (SIGHUP). At start an unreadable or invalid file is an error; later, an
 * invalid file keeps the tokens loaded before and logs why. Log lines name tokens, never their secret or hash.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync, watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { z } from 'zod'
import { scopeProblem } from './scopes.ts'
import type { Logger } from '../logger.ts'

/** Who a request comes from. `scopes` are the token's, as written in the file. */
export type Principal = { readonly name: string, readonly scopes: readonly string[] }

/** The name API_TOKEN's principal goes by (in the audit trail); a token in the file cannot take it. */
export const API_TOKEN_NAME = 'api-token'
/** A token's name, as logs and the audit trail show it. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,63}$/

type Entry = Principal & { readonly digest: Buffer }

/** `sha256:<hex>` of a token, as the tokens file stores it. */
export function hashToken (token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`
}

const digestOf = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest()

const TokenSchema = z.strictObject({
  name: z.string().regex(TOKEN_NAME_PATTERN,
    "letters, digits, '_', '.', '@', ':' and '-', starting with a letter, digit or '_', at most 64 characters"),
  hash: z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be 'sha256:' and 64 lowercase hex digits (npm run token prints it)"),
  scopes: z.array(z.string().max(1100).superRefine((s, ctx) => {
    const problem = scopeProblem(s)
    // Said by position only: a secret pasted at the wrong place must not reach the log.
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })).min(1, 'a token needs at least one scope')
})

const FileSchema = z.strictObject({ tokens: z.array(TokenSchema) }).superRefine((file, ctx) => {
  const names = new Map<string, number>()
  const hashes = new Map<string, number>()
  file.tokens.forEach((t, i) => {
    if (t.name === API_TOKEN_NAME) ctx.addIssue({ code: 'custom', path: ['tokens', i, 'name'], message: `'${API_TOKEN_NAME}' is API_TOKEN's name` })
    const sameName = names.get(t.name)
    if (sameName !== undefined) ctx.addIssue({ code: 'custom', path: ['tokens', i, 'name'], message: `'${t.name}' is also the name of tokens[${sameName}]` })
    const sameHash = hashes.get(t.hash)
    if (sameHash !== undefined) ctx.addIssue({ code: 'custom', path: ['tokens', i, 'hash'], message: `the same token as tokens[${sameHash}] ('${file.tokens[sameHash]?.name}')` })
    names.set(t.name, i)
    hashes.set(t.hash, i)
  })
})

export class TokensFileError extends Error {
  constructor (file: string, reason: string) {
    super(`tokens file ${file}: ${reason}`)
    this.name = 'TokensFileError'
  }
}

/**
 * The entries of a tokens file's text. Errors say where and why, never what the file holds at that
 * place (a secret pasted where a hash belongs must not end up in a log).
 */
export function parseTokensFile (text: string, file = 'HAPCTL_TOKENS_FILE'): Entry[] {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // JSON.parse's message quotes the text around the error: it is not repeated.
    throw new TokensFileError(file, 'not valid JSON')
  }
  const result = FileSchema.safeParse(json)
  if (!result.success) {
    const issues = result.error.issues.map(i => `${formatPath(i.path)}: ${i.message}`)
    throw new TokensFileError(file, issues.slice(0, 5).join('; ') + (issues.length > 5 ? ` (and ${issues.length - 5} more)` : ''))
  }
  return result.data.tokens.map(t => ({
    name: t.name,
    scopes: Object.freeze([...new Set(t.scopes)]),
    digest: Buffer.from(t.hash.slice('sha256:'.length), 'hex')
  }))
}

function formatPath (path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'file'
  return path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? String(p) : `.${String(p)}`)).join('')
}

export type TokenLogger = Logger<'info' | 'warn' | 'error'>

export type TokenRegistryOptions = {
  apiToken?: string | undefined
  file?: string | undefined
  logger: TokenLogger
  /** Quiet time after the last change event before the file is read (editors write in several steps). */
  debounceMs?: number
}

/** The accepted tokens, and the file they come from kept up to date. */
export class TokenRegistry {
  readonly file: string | undefined
  readonly #apiToken: Entry | undefined
  readonly #log: TokenLogger
  readonly #debounceMs: number
  #entries: Entry[] = []
  #text: string | undefined
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  #reloading: Promise<boolean> | undefined
  #again = false
  #closed = false

  constructor (opts: TokenRegistryOptions) {
    this.file = opts.file
    this.#log = opts.logger
    this.#debounceMs = opts.debounceMs ?? 100
    if (opts.apiToken !== undefined) {
      this.#apiToken = { name: API_TOKEN_NAME, scopes: Object.freeze(['admin']), digest: digestOf(opts.apiToken) }
    }
    if (this.file !== undefined) {
      // At start the file must be right: a service that silently accepted no token would lock everyone out.
      let text: string
      try {
        text = readFileSync(this.file, 'utf8')
      } catch (err) {
        throw new TokensFileError(this.file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      }
      this.#entries = this.#checked(parseTokensFile(text, this.file))
      this.#text = text
    }
  }

  /** The names of the tokens accepted now (API_TOKEN's first). */
  get names (): string[] {
    return [...(this.#apiToken === undefined ? [] : [this.#apiToken.name]), ...this.#entries.map(e => e.name)]
  }

  /**
   * The principal a bearer token stands for, or undefined. Every entry is compared, in constant time,
   * whichever matches: how long the answer takes says nothing about which token is close.
   */
  authenticate (token: string): Principal | undefined {
    const digest = digestOf(token)
    let found: Entry | undefined
    for (const e of this.#apiToken === undefined ? this.#entries : [this.#apiToken, ...this.#entries]) {
      if (timingSafeEqual(e.digest, digest) && found === undefined) found = e
    }
    return found === undefined ? undefined : { name: found.name, scopes: found.scopes }
  }

  /** Watches the file's directory (a file replaced by rename is a new inode: watching it would miss the change). */
  watch (): void {
    if (this.file === undefined || this.#watcher !== undefined || this.#closed) return
    const name = basename(this.file)
    try {
      this.#watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
        // Kubernetes swaps a `..data` symlink, not the file: its `..` entries count too (a read that
        // finds the same text changes nothing).
        if (changed !== null && changed !== name && !String(changed).startsWith('..')) return
        clearTimeout(this.#timer)
        this.#timer = setTimeout(() => { this.reload('change').catch(() => {}) }, this.#debounceMs)
        this.#timer.unref()
      })
      this.#watcher.on('error', err => {
        this.#log.warn({ file: this.file, error: err.message }, 'tokens file: watching stopped; send SIGHUP to re-read it')
        this.#watcher?.close()
      })
    } catch (err) {
      this.#log.warn({ file: this.file, error: (err as Error).message }, 'tokens file: cannot be watched; send SIGHUP to re-read it')
    }
  }

  /**
   * Reads the file again. Resolves true when the tokens changed. A file that cannot be read or is
   * invalid keeps the tokens loaded before (logged as an error). Reloads never overlap: one asked
   * for during another runs after it.
   */
  async reload (reason: 'change' | 'SIGHUP' | 'test' = 'SIGHUP'): Promise<boolean> {
    if (this.file === undefined || this.#closed) return false
    if (this.#reloading !== undefined) {
      this.#again = true
      return await this.#reloading
    }
    this.#reloading = (async () => {
      let changed = false
      do {
        this.#again = false
        changed = await this.#readOnce(this.file as string, reason) || changed
      } while (this.#again && !this.#closed)
      return changed
    })()
    try {
      return await this.#reloading
    } finally {
      this.#reloading = undefined
    }
  }

  close (): void {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#watcher?.close()
    this.#watcher = undefined
  }

  async #readOnce (file: string, reason: string): Promise<boolean> {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      this.#log.error({ file, reason, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message, kept: this.names },
        'tokens file cannot be read: the tokens loaded before stay in use')
      return false
    }
    if (text === this.#text) {
      if (reason === 'SIGHUP') this.#log.info({ file, tokens: this.names }, 'tokens file re-read: unchanged')
      return false
    }
    let next: Entry[]
    try {
      next = this.#checked(parseTokensFile(text, file))
    } catch (err) {
      this.#log.error({ file, reason, error: (err as Error).message, kept: this.names }, 'tokens file is invalid: the tokens loaded before stay in use')
      return false
    }
    const before = new Map(this.#entries.map(e => [e.name, e]))
    const after = new Map(next.map(e => [e.name, e]))
    const added = next.filter(e => !before.has(e.name)).map(e => e.name)
    const removed = this.#entries.filter(e => !after.has(e.name)).map(e => e.name)
    const changed = next.filter(e => {
      const old = before.get(e.name)
      return old !== undefined && (!old.digest.equals(e.digest) || old.scopes.join(' ') !== e.scopes.join(' '))
    }).map(e => e.name)
    this.#entries = next
    this.#text = text
    this.#log.info({ file, reason, added, removed, changed, tokens: this.names }, 'tokens file reloaded')
    return added.length + removed.length + changed.length > 0
  }

  /** The file may not hold API_TOKEN (two names for one secret would blur the audit trail). */
  #checked (entries: Entry[]): Entry[] {
    const api = this.#apiToken
    const clash = api === undefined ? undefined : entries.find(e => e.digest.equals(api.digest))
    if (clash !== undefined) throw new TokensFileError(this.file as string, `token '${clash.name}' is the same token as API_TOKEN`)
    return entries
  }
}
