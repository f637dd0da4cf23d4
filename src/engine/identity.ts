/**
 * Which HAProxy process answers: `pid@start_time` from `show info` (management §9.3 `show info`).
 * Everything done through the Runtime API lives in one process and is gone in the next (a restart,
 * or a master-worker reload that starts a new worker), so a new identity is what tells the
 * reconciler to put the desired state back. Every `show info` hapctl sends is fed here.
 */
import type { ProcessInfo } from '../runtime/parsers.ts'
import { processIdOf } from '../runtime/client.ts'

export { processIdOf }

export type ProcessId = string

export type IdentityChange = { previous: ProcessId | undefined, current: ProcessId, info: ProcessInfo }

export class ProcessIdentity {
  #current: ProcessId | undefined
  #info: ProcessInfo | undefined
  #seenAt = 0
  readonly #listeners = new Set<(change: IdentityChange) => void>()

  get current (): ProcessId | undefined {
    return this.#current
  }

  get info (): ProcessInfo | undefined {
    return this.#info
  }

  /** When the identity was last confirmed (epoch ms). */
  get seenAt (): number {
    return this.#seenAt
  }

  /**
   * Records an answer. A stopping process (an old worker after a reload, still answering on a
   * connection opened before it) is not the current one and is ignored.
   */
  observe (info: ProcessInfo): void {
    if (info.stopping) return
    const id = processIdOf(info)
    this.#info = info
    this.#seenAt = Date.now()
    if (id === this.#current) return
    const previous = this.#current
    this.#current = id
    for (const l of this.#listeners) l({ previous, current: id, info })
  }

  onChange (listener: (change: IdentityChange) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }
}
