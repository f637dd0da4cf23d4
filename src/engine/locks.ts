/**
 * Per-object serialization: operations on the same key run one after another, in arrival order;
 * different keys run in parallel. HAProxy offers no transactions for backends, servers or single map
 * entries, so two interleaved multi-command operations on one backend could each see the other
 * half-done. Every wait has a deadline: a caller queued behind a stalled operation gets LockTimeoutError
 * instead of waiting n × the runtime timeout.
 */
export class LockTimeoutError extends Error {
  constructor (key: string, waitedMs: number) {
    const i = key.indexOf(':')
    super(`another operation on ${i === -1 ? key : `${key.slice(0, i)} '${key.slice(i + 1)}'`} did not finish within ${waitedMs} ms`)
    this.name = 'LockTimeoutError'
  }
}

/** A holder or a waiter of one key. */
type Waiter = { readonly shared: boolean, readonly grant: () => void }

/** One key: who holds it now (several shared holders, or one exclusive), and who waits, in order. */
type KeyState = { holders: number, exclusive: boolean, readonly queue: Waiter[] }

export class KeyedLock {
  readonly #keys = new Map<string, KeyState>()

  /**
   * Runs `fn` once the key is free for it, in arrival order: an exclusive holder waits for every
   * earlier holder; a `shared` one only for earlier exclusive ones (writes to distinct entries of one
   * map share the map, a whole-map replace excludes them). With `timeoutMs`, gives up waiting after
   * that long (fn never runs then); with `signal`, gives up when it is aborted, with its reason (a
   * shutdown); those queued behind still wait for the earlier holders.
   */
  async run<T> (key: string, fn: () => Promise<T>, opts: { timeoutMs?: number, signal?: AbortSignal | undefined, shared?: boolean } = {}): Promise<T> {
    const shared = opts.shared === true
    await this.#acquire(key, shared, opts)
    try {
      return await fn()
    } finally {
      this.#release(key, shared)
    }
  }

  /** Keys currently held or waited for. */
  get size (): number {
    return this.#keys.size
  }

  #acquire (key: string, shared: boolean, opts: { timeoutMs?: number, signal?: AbortSignal | undefined }): Promise<void> {
    let state = this.#keys.get(key)
    if (state === undefined) {
      state = { holders: 0, exclusive: false, queue: [] }
      this.#keys.set(key, state)
    }
    // Nobody waits ahead, and the key is free for this kind of holder: taken at once.
    if (state.queue.length === 0 && (state.holders === 0 || (shared && !state.exclusive))) {
      state.holders++
      state.exclusive = !shared
      return Promise.resolve()
    }
    const s = state
    return new Promise<void>((resolve, reject) => {
      if (opts.signal?.aborted === true) { this.#forgetIfIdle(key, s); reject(opts.signal.reason); return }
      const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => { giveUp(new LockTimeoutError(key, opts.timeoutMs as number)) }, opts.timeoutMs)
      const onAbort = (): void => { giveUp(opts.signal?.reason) }
      const waiter: Waiter = {
        shared,
        grant: () => {
          clearTimeout(timer)
          opts.signal?.removeEventListener('abort', onAbort)
          resolve()
        }
      }
      const giveUp = (err: unknown): void => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        const i = s.queue.indexOf(waiter)
        if (i !== -1) s.queue.splice(i, 1)
        // A waiter leaving the head may let the ones behind it in (shared waiters behind an exclusive one).
        this.#grantWaiting(s)
        this.#forgetIfIdle(key, s)
        reject(err)
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      s.queue.push(waiter)
    })
  }

  #release (key: string, shared: boolean): void {
    const state = this.#keys.get(key)
    if (state === undefined) return
    state.holders--
    if (!shared) state.exclusive = false
    this.#grantWaiting(state)
    this.#forgetIfIdle(key, state)
  }

  /** Lets in, in order, every waiter the key is free for now. */
  #grantWaiting (state: KeyState): void {
    for (let next = state.queue[0]; next !== undefined; next = state.queue[0]) {
      if (next.shared ? state.exclusive : state.holders > 0) return
      state.queue.shift()
      state.holders++
      state.exclusive = !next.shared
      next.grant()
    }
  }

  /** Forget a key nobody holds or waits for, so the map does not grow with every name ever used. */
  #forgetIfIdle (key: string, state: KeyState): void {
    if (state.holders === 0 && state.queue.length === 0 && this.#keys.get(key) === state) this.#keys.delete(key)
  }
}
