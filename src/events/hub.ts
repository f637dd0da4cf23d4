/**
 * The watch stream's one source of events (GET /events): `change` events from the store's revisions,
 * `health` events from one HAProxy poll shared by every watcher, `reconcile` events from the
 * reconciler's passes. Every event gets an id `<revision>.<boot>.<seq>` (./ids.ts) that says both how
 * far the stream had reached in the store and in this process's bounded in-memory history; a watcher
 * that reconnects with it gets every event after it: changes read back from the store (which keeps
 * every revision), health and reconcile events from the history. What can no longer be replayed (the
 * history of another boot of hapctl, events pushed out of the history, health while nobody watched
 * it, revisions of a store that was reset) is said in one `history-lost` event, so that the client
 * reads the state again instead of trusting a stream with a hole in it.
 *
 * Change events are emitted in revision order by one pump that reads the store (kicked by every
 * commit, and polled while someone watches, for commits made outside the executor), so the live
 * stream and a replay from the store give the same events in the same order.
 */
import type { ServerResponse } from 'node:http'
import type { Executor } from '../engine/executor.ts'
import type { Reconciler } from '../engine/reconciler.ts'
import type { DesiredStateStore, RevisionRecord } from '../engine/store/types.ts'
import { OperationError } from '../engine/outcomes.ts'
import type { Runtime } from '../runtime/client.ts'
import type { Logger } from '../logger.ts'
import { formatEventId, newBootId } from './ids.ts'
import type { EventPosition } from './ids.ts'
import { changeEvent, healthEvent, reconcileEvent } from './kinds.ts'
import type { EventBody, EventKind, LostReason } from './kinds.ts'
import { HealthPoller } from './health-poller.ts'
import { KEEP_ALIVE, Watcher, frameOf, matches } from './watcher.ts'
import type { StreamEvent, WatcherFilter } from './watcher.ts'

export type EventHubOptions = {
  store: DesiredStateStore
  executor: Executor
  reconciler: Reconciler
  /** For the health poll (the API's pooled client). */
  runtime: Runtime
  /** Health and reconcile events kept for watchers that reconnect. */
  history: number
  healthPollMs: number
  healthLingerMs: number
  keepAliveMs: number
  maxWatchers: number
  maxBufferBytes: number
  logger?: Logger<'info' | 'warn' | 'debug'> | undefined
}

/** Revisions read from the store at a time (a revision of a whole document applied can be large). */
const PAGE = 100
/** The longest the pump waits for watchers that are behind before it sends the next revision. */
const PACING_MS = 50

type HistoryEntry = { readonly seq: number, readonly revision: number, readonly event: StreamEvent | undefined }

export class EventHub {
  /** Drawn at start: ids of another boot name a history that is gone. */
  readonly boot = newBootId()
  readonly #o: EventHubOptions
  readonly #poller: HealthPoller
  /** The store revision the stream has reached. */
  #revision = 0
  /** The last history position given out. */
  #seq = 0
  /** Oldest first; entries before #head were pushed out. Gap markers (health not polled) have no event. */
  #history: Array<HistoryEntry | undefined> = []
  #head = 0
  /** The last position pushed out of the history (0: none). */
  #dropped = 0
  readonly #watchers = new Set<Watcher>()
  #closed = false
  #keepAlive: NodeJS.Timeout | undefined
  #storePoll: NodeJS.Timeout | undefined
  #pumping = false
  #pumpAgain = false
  #slowCuts = 0

  constructor (opts: EventHubOptions) {
    this.#o = opts
    this.#poller = new HealthPoller({
      runtime: opts.runtime,
      intervalMs: opts.healthPollMs,
      lingerMs: opts.healthLingerMs,
      logger: opts.logger,
      onResume: () => { this.#record(undefined) },
      onTransitions: (transitions, at) => { for (const t of transitions) this.#record(healthEvent(t, at)) }
    })
    opts.reconciler.onPass(e => { this.#record(reconcileEvent(e)) })
    opts.executor.onCommit(e => {
      // Nobody to tell: the position moves on without reading the revision back.
      if (this.#watchers.size === 0 && !this.#pumping) this.#revision = Math.max(this.#revision, e.revision)
      else this.#pump()
    })
  }

  /** Reads the store's revision (at app start, before any watcher). */
  async start (): Promise<void> {
    this.#revision = Math.max(this.#revision, await this.#o.store.revision())
    this.#keepAlive = setInterval(() => { for (const w of this.#watchers) w.write(KEEP_ALIVE) }, this.#o.keepAliveMs)
    this.#keepAlive.unref()
  }

  /** Ends every stream and takes no new one (hapctl stops). */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#keepAlive)
    clearInterval(this.#storePoll)
    this.#poller.stop()
    for (const w of this.#watchers) w.end()
  }

  get watchers (): number {
    return this.#watchers.size
  }

  /** `show stat` polls sent so far, and whether polling runs (tests, metrics). */
  get healthPolls (): { readonly sent: number, readonly running: boolean } {
    return { sent: this.#poller.polls, running: this.#poller.running }
  }

  /** Watchers disconnected for leaving more than the buffer limit unread. */
  get slowCuts (): number {
    return this.#slowCuts
  }

  /** The current position, as the next `open` event would give it. */
  get position (): EventPosition {
    return { revision: this.#revision, boot: this.boot, seq: this.#seq }
  }

  /**
   * A new stream on `res`. Throws (before `begin` is called, so the caller can still answer with a
   * problem) when hapctl stops, when as many watchers as allowed are connected, or when `from` is not
   * a position this boot gave out. `begin` sends the response head; then the catch-up (a
   * `history-lost` event if needed, the events after `from`) and an `open` event are written, and
   * the stream goes live until the client leaves or hapctl stops.
   */
  async watch (res: ServerResponse, filter: WatcherFilter, from: EventPosition | undefined, begin: () => void): Promise<void> {
    if (this.#closed) throw new OperationError('SHUTTING_DOWN', 'hapctl is stopping and takes no new watcher; reconnect once it is back')
    if (this.#watchers.size >= this.#o.maxWatchers) {
      throw new OperationError('TOO_MANY_WATCHERS', `${this.#o.maxWatchers} watchers are connected already (HAPCTL_MAX_WATCHERS); retry later`)
    }
    if (from !== undefined && from.boot === this.boot && from.seq > this.#seq) {
      throw new OperationError('INVALID_CURSOR', 'the event id is ahead of this hapctl\'s events: it is not one this API handed out; connect without it')
    }
    const health = filter.kinds.has('health')
    const watcher = new Watcher(res, filter, {
      maxBufferBytes: this.#o.maxBufferBytes,
      onSlow: () => {
        this.#slowCuts++
        this.#o.logger?.info({ unread: res.writableLength }, 'a watcher reading too slowly was disconnected')
      },
      onClose: () => {
        this.#watchers.delete(watcher)
        if (health) this.#poller.release()
        if (this.#watchers.size === 0) { clearInterval(this.#storePoll); this.#storePoll = undefined }
      }
    })
    this.#watchers.add(watcher)
    if (this.#storePoll === undefined) {
      this.#storePoll = setInterval(() => { this.#pump() }, this.#o.healthPollMs)
      this.#storePoll.unref()
    }
    // Polling may start now, with a gap marker in the history: taken before the snapshot, so that a
    // watcher resuming from before it is told.
    const baseline = health ? this.#poller.acquire() : undefined
    const snapshot = { revision: this.#revision, seq: this.#seq }
    const plan = this.#resumePlan(from, snapshot)
    begin()
    try {
      if (baseline !== undefined) await baseline
      await this.#catchUp(watcher, plan, snapshot)
    } catch (err) {
      this.#o.logger?.warn({ err }, 'a watcher\'s catch-up failed: its stream ends (it reconnects with its last event id)')
      res.destroy()
    }
  }

  /** Where a watcher resuming from `from` starts in the history and the store, and what is lost. */
  #resumePlan (from: EventPosition | undefined, snapshot: { revision: number, seq: number }): ResumePlan {
    if (from === undefined) return { revision: snapshot.revision, seq: snapshot.seq, lost: new Map(), resumed: false }
    const lost = new Map<EventKind, LostReason>()
    let seq = from.seq
    if (from.boot !== this.boot) {
      seq = this.#dropped
      lost.set('health', 'restarted').set('reconcile', 'restarted')
    } else if (from.seq < this.#dropped) {
      seq = this.#dropped
      lost.set('health', 'expired').set('reconcile', 'expired')
    }
    if (!lost.has('health') && this.#entriesAfter(seq, snapshot.seq).some(e => e.event === undefined)) lost.set('health', 'health-unwatched')
    return { revision: from.revision, seq, lost, resumed: true }
  }

  async #catchUp (w: Watcher, plan: ResumePlan, snapshot: { revision: number, seq: number }): Promise<void> {
    const filter = w.filter
    let fromRevision = plan.revision
    // The store may be ahead of the pump (commits it has not read yet): the catch-up goes as far as
    // the store, and the pump's copies of those revisions are not written again (the floor below).
    const stored = await this.#o.store.revision()
    const upTo = Math.max(snapshot.revision, stored)
    if (fromRevision > stored) {
      // Revisions this store never had: it was emptied or replaced (a memory store after a restart).
      plan.lost.set('change', 'store-reset')
      fromRevision = upTo
    }
    const lostKinds = [...plan.lost.keys()].filter(k => filter.kinds.has(k))
    if (lostKinds.length > 0) {
      const reasons = [...new Set(lostKinds.map(k => plan.lost.get(k) as LostReason))]
      w.write(frameOf(formatEventId({ revision: fromRevision, boot: this.boot, seq: plan.seq }), 'history-lost', {
        kind: 'history-lost', lost: lostKinds, reasons, detail: lostDetail(reasons)
      }))
    }
    let replayed = 0
    const history = plan.resumed ? this.#entriesAfter(plan.seq, snapshot.seq) : []
    let h = 0
    let seq = plan.seq
    // A catch-up waits for the client to take what it was sent: only live events can make it slow.
    const send = async (e: StreamEvent): Promise<void> => {
      if (!matches(filter, e.body)) return
      await w.writable()
      w.write(e.frame)
      replayed++
    }
    const writeHistoryBefore = async (revision: number): Promise<void> => {
      for (; h < history.length && (history[h] as HistoryEntry).revision < revision && !w.closed; h++) {
        const e = history[h] as HistoryEntry
        seq = e.seq
        if (e.event !== undefined) await send(e.event)
      }
    }
    if (plan.resumed && filter.kinds.has('change')) {
      let after = fromRevision
      let done = false
      while (!done && after < upTo && !w.closed) {
        const page = await this.#o.store.changesSince(after, PAGE)
        for (const r of page) {
          if (r.revision > upTo || w.closed) { done = true; break }
          await writeHistoryBefore(r.revision)
          await send(this.#changeStreamEvent(r, seq))
          after = r.revision
        }
        if (page.length < PAGE) done = true
      }
    }
    await writeHistoryBefore(Number.POSITIVE_INFINITY)
    if (w.closed) return
    const revision = Math.max(fromRevision, upTo)
    w.setFloor(revision, snapshot.seq)
    w.write(frameOf(formatEventId({ revision, boot: this.boot, seq: snapshot.seq }), 'open', {
      kind: 'open', revision, boot: this.boot, resumed: plan.resumed, replayed
    }))
    w.goLive()
  }

  #changeStreamEvent (r: RevisionRecord, seq: number): StreamEvent {
    const body = changeEvent(r)
    return { body: subjectOf(body), revision: r.revision, seq, frame: frameOf(formatEventId({ revision: r.revision, boot: this.boot, seq }), 'change', body.data) }
  }

  /** Emits the revisions committed since the stream's position, in order; one pump at a time. */
  #pump (): void {
    if (this.#pumping) { this.#pumpAgain = true; return }
    this.#pumping = true
    const run = async (): Promise<void> => {
      do {
        this.#pumpAgain = false
        for (;;) {
          const page = await this.#o.store.changesSince(this.#revision, PAGE)
          for (const r of page) {
            if (r.revision <= this.#revision) continue
            this.#revision = r.revision
            const e = this.#changeStreamEvent(r, this.#seq)
            for (const w of this.#watchers) w.offer(e)
            await this.#paced()
          }
          if (page.length < PAGE || this.#closed) break
        }
      } while (this.#pumpAgain && !this.#closed)
    }
    run().catch(err => {
      this.#o.logger?.warn({ err }, 'reading new revisions for the watch stream failed; retried at the next commit or poll')
    }).finally(() => { this.#pumping = false })
  }

  /**
   * A burst of revisions (a page of them at once) would fill the buffer of a watcher that reads as
   * fast as it can, and get it cut: between two revisions, the pump gives the watchers that are
   * behind a moment to take what they were sent. A watcher that reads nothing fills its buffer and
   * is cut, after which the pump runs at full speed again.
   */
  async #paced (): Promise<void> {
    const behind = [...this.#watchers].filter(w => w.buffered > this.#o.maxBufferBytes / 2)
    if (behind.length === 0) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all(behind.map(async w => { await w.writable() })),
      new Promise<void>(resolve => { timer = setTimeout(resolve, PACING_MS) })
    ])
    clearTimeout(timer)
  }

  /** Adds a health or reconcile event to the history and the live streams; undefined records a gap in the health poll. */
  #record (body: EventBody | undefined): void {
    const seq = ++this.#seq
    const event = body === undefined
      ? undefined
      : { body: subjectOf(body), revision: this.#revision, seq, frame: frameOf(formatEventId({ revision: this.#revision, boot: this.boot, seq }), body.kind, body.data) }
    this.#history.push({ seq, revision: this.#revision, event })
    while (this.#history.length - this.#head > this.#o.history) {
      this.#dropped = (this.#history[this.#head] as HistoryEntry).seq
      this.#history[this.#head++] = undefined
    }
    if (this.#head > 1024 && this.#head * 2 > this.#history.length) {
      this.#history = this.#history.slice(this.#head)
      this.#head = 0
    }
    if (event !== undefined) for (const w of this.#watchers) w.offer(event)
  }

  /** History entries with after < seq <= upTo, oldest first. */
  #entriesAfter (after: number, upTo: number): HistoryEntry[] {
    // Positions grow by one per entry: the entry of seq s is at #head + (s - first seq).
    const first = (this.#history[this.#head] as HistoryEntry | undefined)?.seq
    if (first === undefined) return []
    const start = this.#head + Math.max(0, after + 1 - first)
    const end = this.#head + Math.max(0, upTo + 1 - first)
    return this.#history.slice(start, Math.min(end, this.#history.length)) as HistoryEntry[]
  }
}

type ResumePlan = { revision: number, seq: number, lost: Map<EventKind, LostReason>, resumed: boolean }

function subjectOf (body: EventBody): StreamEvent['body'] {
  return { kind: body.kind, subjects: body.subjects, backends: body.backends }
}

function lostDetail (reasons: readonly LostReason[]): string {
  const says: Record<LostReason, string> = {
    restarted: 'hapctl restarted since that event: health and reconcile events in between are not known',
    expired: 'the events after that one are no longer in the in-memory history (HAPCTL_EVENTS_HISTORY)',
    'health-unwatched': 'health was not polled for a while since that event (nobody watched it): transitions in between were not seen',
    'store-reset': 'the desired-state store does not have that revision (it was emptied or replaced)'
  }
  return `${reasons.map(r => says[r]).join('; ')}. Read the state again (GET /backends, GET /backends/{backend}/servers, GET /status); the events that follow are complete.`
}
