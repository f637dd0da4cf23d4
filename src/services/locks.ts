/**
 * Per-resource serialization: operations on the same key run one after another, in arrival order;
 * different keys run in parallel. HAProxy offers no transactions for backends, servers or single map
 * entries, so two interleaved multi-command requests on one backend could each see the other half-done.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(fn, fn)
    const tail = result.then(() => undefined, () => undefined)
    this.#tails.set(key, tail)
    try {
      return await result
    } finally {
      // Forget the key once nobody queued behind us, so the map does not grow with every name ever used.
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    }
  }

  get size (): number {
    return this.#tails.size
  }
}
