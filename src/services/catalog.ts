/**
 * What hapctl knows that HAProxy does not tell: which backends were created at runtime, from which
 * defaults section, and whether HAProxy said they cannot take dynamic servers (runtime-notes 3.6).
 *
 * Everything created at runtime vanishes when HAProxy restarts or reloads, so the catalog is tied
 * to one HAProxy process (pid + start time, runtime-notes 6); seeing another process empties it.
 * With a state file it also survives a restart of hapctl itself: without one, a redeployed hapctl
 * would take its own backends for static ones. The desired-state store that replays changes after
 * an HAProxy restart will hook in here.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { ProcessInfo } from '../runtime/parsers.ts'

export type DynamicBackend = {
  readonly from: string
  readonly createdAt: string
  readonly dynamicServers: boolean
  readonly dynamicServersNote: string | undefined
}

export type CatalogLogger = { warn: (obj: object, msg: string) => void }

/** What the state file holds. */
type Snapshot = { version: 1, process: string | undefined, backends: Record<string, DynamicBackend> }

export class BackendCatalog {
  readonly #backends = new Map<string, DynamicBackend>()
  #process: string | undefined
  readonly #logger: CatalogLogger | undefined
  readonly #file: string | undefined

  constructor (opts: { logger?: CatalogLogger, file?: string | undefined } = {}) {
    this.#logger = opts.logger
    this.#file = opts.file
    if (this.#file !== undefined) {
      this.#load(this.#file)
      // Find out now, not after the first backend was created, that the file cannot be written.
      const problem = this.#write()
      if (problem !== undefined) throw new Error(`cannot write HAPCTL_STATE_FILE ${this.#file}: ${problem}`)
    }
  }

  /** Records which HAProxy process answered; forgets runtime objects when it is a new one. */
  observe (info: ProcessInfo): void {
    const id = `${info.pid}@${info.startTimeSec}`
    if (this.#process === id) return
    if (this.#process !== undefined && this.#backends.size > 0) {
      this.#logger?.warn({ previous: this.#process, current: id, lost: [...this.#backends.keys()] },
        'HAProxy restarted or reloaded: backends created at runtime are gone')
      this.#backends.clear()
    }
    this.#process = id
    this.#save()
  }

  get (name: string): DynamicBackend | undefined {
    return this.#backends.get(name)
  }

  add (name: string, entry: DynamicBackend): void {
    this.#backends.set(name, entry)
    this.#save()
  }

  delete (name: string): void {
    if (this.#backends.delete(name)) this.#save()
  }

  /** Drops entries for backends HAProxy no longer has (deleted behind our back). */
  retain (existing: ReadonlySet<string>): void {
    let changed = false
    for (const name of this.#backends.keys()) {
      if (!existing.has(name)) { this.#backends.delete(name); changed = true }
    }
    if (changed) this.#save()
  }

  #load (file: string): void {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new Error(`cannot read HAPCTL_STATE_FILE ${file}: ${(err as Error).message}`)
    }
    let snapshot: Snapshot
    try {
      snapshot = JSON.parse(text) as Snapshot
      const problem = snapshotProblem(snapshot)
      if (problem !== undefined) throw new Error(problem)
    } catch (err) {
      throw new Error(`HAPCTL_STATE_FILE ${file} is not a hapctl state file (${(err as Error).message}); move it away to start afresh`)
    }
    this.#process = typeof snapshot.process === 'string' ? snapshot.process : undefined
    for (const [name, entry] of Object.entries(snapshot.backends)) this.#backends.set(name, entry)
  }

  /** Written whole to a temporary file, then renamed over the old one, so a crash never leaves half a file. */
  #save (): void {
    const problem = this.#write()
    // The change in HAProxy has happened; losing the note about it is not a reason to fail the request.
    if (problem !== undefined) this.#logger?.warn({ file: this.#file, problem }, 'could not write the state file')
  }

  /** Writes the snapshot; the problem when it could not. Its folder must exist (no mkdir: see #load). */
  #write (): string | undefined {
    if (this.#file === undefined) return undefined
    const snapshot: Snapshot = { version: 1, process: this.#process, backends: Object.fromEntries(this.#backends) }
    try {
      const tmp = `${this.#file}.${process.pid}.tmp`
      writeFileSync(tmp, JSON.stringify(snapshot, null, 2) + '\n')
      renameSync(tmp, this.#file)
      return undefined
    } catch (err) {
      return (err as Error).message
    }
  }
}

/** Why a parsed state file is not one this code wrote, or undefined. */
function snapshotProblem (s: unknown): string | undefined {
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return 'not an object'
  const { version, process: proc, backends } = s as Record<string, unknown>
  if (version !== 1) return 'unknown version'
  if (proc !== undefined && proc !== null && typeof proc !== 'string') return 'bad process'
  if (typeof backends !== 'object' || backends === null || Array.isArray(backends)) return 'bad backends'
  for (const [name, e] of Object.entries(backends)) {
    const entry = e as Record<string, unknown> | null
    if (typeof entry !== 'object' || entry === null || typeof entry.from !== 'string' || typeof entry.createdAt !== 'string' ||
      typeof entry.dynamicServers !== 'boolean' || !['string', 'undefined'].includes(typeof entry.dynamicServersNote)) {
      return `bad entry for backend '${name}'`
    }
  }
  return undefined
}
