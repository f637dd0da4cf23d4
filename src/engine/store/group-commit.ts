/**
 * Group commit: commits asked for in the same turn of the event loop, or while the previous group is
 * being written, go to the store together (one transaction, one fsync), and each caller still gets its
 * own result, in the order asked. What a group is written as (one transaction with a savepoint per
 * commit, one transaction each when that fails) is the store's business: this only gathers and hands
 * back. It knows nothing of SQLite, so a store over the network (PostgreSQL) can use it as it is, with
 * a `write` that returns a promise.
 *
 * The callers see nothing of it: DesiredStateStore.commit still resolves once its own commit is
 * durable, with its own revision, and rejects with its own error.
 */

/** What one commit of a group came to. */
export type Settled<R> = { readonly ok: true, readonly value: R } | { readonly ok: false, readonly error: unknown }

type Waiting<T, R> = { readonly item: T, readonly resolve: (value: R) => void, readonly reject: (err: unknown) => void }

export class GroupCommit<T, R> {
  readonly #write: (items: readonly T[]) => Array<Settled<R>> | Promise<Array<Settled<R>>>
  readonly #queue: Array<Waiting<T, R>> = []
  #scheduled = false
  #writing: Promise<void> | undefined

  /** `write` gets every commit of a group, in the order asked, and returns one result for each. */
  constructor (write: (items: readonly T[]) => Array<Settled<R>> | Promise<Array<Settled<R>>>) {
    this.#write = write
  }

  /** Resolves with this item's own result once its group is written. */
  async submit (item: T): Promise<R> {
    return await new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject })
      this.#schedule()
    })
  }

  /** Writes what is queued now and waits for every group in progress (before closing the store). */
  async drain (): Promise<void> {
    while (this.#writing !== undefined || this.#queue.length > 0) {
      await (this.#writing ?? this.#start())
    }
  }

  #schedule (): void {
    if (this.#scheduled || this.#writing !== undefined) return
    this.#scheduled = true
    // setImmediate, not a microtask: the commits of every reply read in this turn join the group. In
    // a lone write it costs one turn of an otherwise idle loop (microseconds).
    setImmediate(() => {
      this.#scheduled = false
      if (this.#writing === undefined && this.#queue.length > 0) this.#start().catch(() => {})
    })
  }

  /** Writes the queued commits as one group; the next group is scheduled once this one is done. */
  #start (): Promise<void> {
    const writing = this.#next(this.#queue.splice(0)).then(() => {
      this.#writing = undefined
      // Asked for while this group was being written: the next group.
      if (this.#queue.length > 0) this.#schedule()
    })
    this.#writing = writing
    return writing
  }

  /** Never rejects: every failure goes to the callers. */
  async #next (group: ReadonlyArray<Waiting<T, R>>): Promise<void> {
    let results: Array<Settled<R>>
    try {
      results = await this.#write(group.map(w => w.item))
      if (results.length !== group.length) throw new Error(`group commit: ${group.length} commits written, ${results.length} results`)
    } catch (err) {
      for (const w of group) w.reject(err)
      return
    }
    // In the order asked: the first caller's continuation runs first (listeners see revisions in order).
    for (const [i, w] of group.entries()) {
      const r = results[i] as Settled<R>
      if (r.ok) w.resolve(r.value)
      else w.reject(r.error)
    }
  }
}
