/**
 * What hapctl knows that HAProxy does not tell: which backends were created at runtime, from which
 * defaults section, and whether HAProxy said they cannot take dynamic servers (runtime-notes 3.6).
 *
 * Everything created at runtime vanishes when HAProxy restarts or reloads, so the catalog is tied
 * to one HAProxy process (pid + start time, runtime-notes 6); seeing another process empties it.
 * The desired-state store that replays changes after a restart will hook in here.
 */
import type { ProcessInfo } from '../runtime/parsers.ts'

export type DynamicBackend = {
  readonly from: string
  readonly createdAt: string
  readonly dynamicServers: boolean
  readonly dynamicServersNote: string | undefined
}

export type CatalogLogger = { warn: (obj: object, msg: string) => void }

export class BackendCatalog {
  readonly #backends = new Map<string, DynamicBackend>()
  #process: string | undefined
  readonly #logger: CatalogLogger | undefined

  constructor (logger?: CatalogLogger) {
    this.#logger = logger
  }

  /** Records which HAProxy process answered; forgets runtime objects when it is a new one. */
  observe (info: ProcessInfo): void {
    const id = `${info.pid}@${info.startTimeSec}`
    if (this.#process !== undefined && this.#process !== id && this.#backends.size > 0) {
      this.#logger?.warn({ previous: this.#process, current: id, lost: [...this.#backends.keys()] },
        'HAProxy restarted or reloaded: backends created at runtime are gone')
      this.#backends.clear()
    }
    this.#process = id
  }

  get (name: string): DynamicBackend | undefined {
    return this.#backends.get(name)
  }

  add (name: string, entry: DynamicBackend): void {
    this.#backends.set(name, entry)
  }

  delete (name: string): void {
    this.#backends.delete(name)
  }

  /** Drops entries for backends HAProxy no longer has (deleted behind our back). */
  retain (existing: ReadonlySet<string>): void {
    for (const name of this.#backends.keys()) if (!existing.has(name)) this.#backends.delete(name)
  }
}
