/**
 * One read shared by the callers that ask for it at the same time. GET /backends on a thousand
 * backends is a `show stat` of ~700 KB that HAProxy takes tens of milliseconds to write; eight
 * clients asking at once made HAProxy write it eight times, and hapctl parse it eight times, with
 * all eight copies alive at every garbage collection (bench/README.md, finding 2).
 *
 * A caller never gets the result of a read that started before it called: a read already in
 * flight may predate a write the caller has seen completed. So a caller that arrives while a read
 * is in flight waits for it to end and shares the next one, which all such callers share. A caller
 * thus waits at most for two reads, and HAProxy answers at most one of them at a time.
 */
export class SharedRead<T> {
  readonly #read: () => Promise<T>
  /** The read in flight, if any. */
  #running: Promise<T> | undefined
  /** The read that starts when the one in flight ends, shared by everyone who asked meanwhile. */
  #next: Promise<T> | undefined

  constructor (read: () => Promise<T>) {
    this.#read = read
  }

  get (): Promise<T> {
    if (this.#running === undefined) return this.#start()
    if (this.#next === undefined) {
      const settled = this.#running.then(() => {}, () => {})
      this.#next = settled.then(() => {
        this.#next = undefined
        return this.#start()
      })
    }
    return this.#next
  }

  #start (): Promise<T> {
    const read = this.#read()
    this.#running = read
    const done = (): void => { if (this.#running === read) this.#running = undefined }
    read.then(done, done)
    return read
  }
}
