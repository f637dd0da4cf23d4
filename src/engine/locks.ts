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

export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>()

  /**
   * Runs `fn` once every earlier holder of `key` is done. With `timeoutMs`, gives up waiting after
   * that long (fn never runs then); with `signal`, gives up when it is aborted, with its reason (a
   * shutdown); those queued behind still wait for the earlier holders.
   */
  async run<T> (key: string, fn: () => Promise<T>, opts: { timeoutMs?: number, signal?: AbortSignal | undefined } = {}): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>(resolve => { release = resolve })
    const tail = previous.then(() => mine)
    this.#tails.set(key, tail)
    try {
      if (opts.timeoutMs === undefined && opts.signal === undefined) await previous
      else await bounded(previous, opts.timeoutMs, () => new LockTimeoutError(key, opts.timeoutMs as number), opts.signal)
      return await fn()
    } finally {
      release()
      // Forget the key once nobody queued behind us, so the map does not grow with every name ever used.
      tail.then(() => { if (this.#tails.get(key) === tail) this.#tails.delete(key) }, () => {})
    }
  }

  /** Keys currently held or waited for. */
  get size (): number {
    return this.#tails.size
  }
}

/** Waits for `p`, or rejects after `ms` (when given) or when `signal` is aborted, whichever comes first. */
function bounded (p: Promise<void>, ms: number | undefined, error: () => Error, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const timer = ms === undefined ? undefined : setTimeout(() => done(error()), ms)
    const onAbort = (): void => done(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    function done (err?: unknown): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    p.then(() => done(), () => done())
  })
}
