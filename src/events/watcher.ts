/**
 * One GET /events stream: its filter, and its writes, which are bounded. A watcher that reads slower
 * than events come leaves bytes in its socket's buffer; once more than the limit is left unread when
 * the next event comes, the connection is cut (the client reconnects with Last-Event-ID and catches
 * up from the store and the history), never left to grow hapctl's memory. One event larger than the
 * limit still goes to a watcher that keeps up.
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
 */
import type { ServerResponse } from 'node:http'
import type { EventBody, EventKind } from './kinds.ts'

export type WatcherFilter = {
  readonly kinds: ReadonlySet<EventKind>
  /** Only events about this backend or one of its servers. */
  readonly backend?: string | undefined
  /** Only events about this object (`backend:<b>`, `server:<b>/<s>`, `map:<m>`). */
  readonly target?: string | undefined
}

/** What the filters look at. */
export type EventSubject = Pick<EventBody, 'kind' | 'subjects' | 'backends'>

/** An event with its id and its text on the wire, built once for every watcher. */
export type StreamEvent = {
  readonly body: EventSubject
  readonly revision: number
  readonly seq: number
  readonly frame: string
}

export function matches (filter: WatcherFilter, body: EventSubject): boolean {
  if (!filter.kinds.has(body.kind)) return false
  if (filter.backend !== undefined && !body.backends.includes(filter.backend)) return false
  if (filter.target !== undefined && !body.subjects.includes(filter.target)) return false
  return true
}

/** `id:`, `event:` and one `data:` line (JSON has no raw newline), then the blank line that ends an event. */
export function frameOf (id: string, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`
}

export const KEEP_ALIVE = ': keep-alive\n\n'

export type WatcherOptions = {
  maxBufferBytes: number
  /** Called once, when the stream ends for any reason. */
  onClose: (watcher: Watcher) => void
  /** Called when the watcher is cut for reading too slowly. */
  onSlow?: ((watcher: Watcher) => void) | undefined
}

export class Watcher {
  readonly filter: WatcherFilter
  readonly #res: ServerResponse
  readonly #o: WatcherOptions
  /** Live events that came during the catch-up, written after it; undefined once live. */
  #pending: StreamEvent[] | undefined = []
  #pendingBytes = 0
  #closed = false
  /** Events at or before these are already covered (by the catch-up, or by the client's own id). */
  #revisionFloor = -1
  #seqFloor = -1
  #drained: Promise<void> | undefined

  constructor (res: ServerResponse, filter: WatcherFilter, opts: WatcherOptions) {
    this.#res = res
    this.filter = filter
    this.#o = opts
    res.once('close', () => { this.#close() })
  }

  get closed (): boolean {
    return this.#closed
  }

  /** Bytes written and not yet taken by the client (beyond what the kernel's buffers hold). */
  get buffered (): number {
    return this.#res.writableLength + this.#pendingBytes
  }

  /** What the catch-up covers: live events up to these positions are not written again. */
  setFloor (revision: number, seq: number): void {
    this.#revisionFloor = revision
    this.#seqFloor = seq
  }

  /** A live event: written now, or queued while the catch-up runs. */
  offer (event: StreamEvent): void {
    if (this.#closed || !matches(this.filter, event.body)) return
    if (this.#covered(event)) return
    if (this.#pending !== undefined) {
      this.#pending.push(event)
      this.#pendingBytes += event.frame.length
      if (this.#pendingBytes > this.#o.maxBufferBytes) this.#cutSlow()
      return
    }
    this.write(event.frame)
  }

  /** Writes the catch-up's end, then what came meanwhile, and goes live. */
  goLive (): void {
    const pending = this.#pending ?? []
    this.#pending = undefined
    this.#pendingBytes = 0
    for (const e of pending) if (!this.#covered(e)) this.write(e.frame)
  }

  #covered (e: StreamEvent): boolean {
    return e.body.kind === 'change' ? e.revision <= this.#revisionFloor : e.seq <= this.#seqFloor
  }

  /** Writes text unless the client left more than the limit unread, in which case it is cut. */
  write (text: string): void {
    if (this.#closed || this.#res.writableEnded) return
    if (this.#res.writableLength > this.#o.maxBufferBytes) { this.#cutSlow(); return }
    this.#res.write(text)
  }

  /** Resolves once the client has taken what was written (or the stream ended): at once when little is left unread. */
  async writable (): Promise<void> {
    if (this.#closed || this.#res.writableLength <= this.#o.maxBufferBytes / 2) return
    // 'drain' comes only after a write that returned false (past the stream's highWaterMark: 16 KiB on
    // Node 20, 64 KiB on Node 22+). Below it none will come: one turn of the event loop lets the
    // socket take what it can (its I/O phase), which is all a client that reads needs.
    if (!this.#res.writableNeedDrain) {
      await new Promise(resolve => setImmediate(resolve))
      return
    }
    // One wait shared by every caller (the catch-up, the hub's pacing), so no listener piles up.
    this.#drained ??= new Promise<void>(resolve => {
      const done = (): void => {
        this.#res.off('drain', done)
        this.#res.off('close', done)
        this.#drained = undefined
        resolve()
      }
      this.#res.on('drain', done)
      this.#res.on('close', done)
    })
    await this.#drained
  }

  /** Ends the stream (hapctl stops); a client that does not take the rest within a few seconds is cut. */
  end (): void {
    if (this.#closed) return
    this.#res.end()
    const timer = setTimeout(() => { this.#res.destroy() }, 2000)
    timer.unref()
    this.#res.once('close', () => { clearTimeout(timer) })
  }

  #cutSlow (): void {
    if (this.#closed) return
    this.#o.onSlow?.(this)
    this.#res.destroy()
    this.#close()
  }

  #close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#pending = undefined
    this.#pendingBytes = 0
    this.#o.onClose(this)
  }
}
