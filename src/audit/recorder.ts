/**
 * The audit recorder: collects the commands each write sends (attributed to its request through
 * AsyncLocalStorage), appends the entries to the store in groups, and prunes by age and by count.
 *
 * Group commit: entries that arrive while one append is being written, or within the same turn of
 * the event loop, go together in the next one, so that concurrent writes share one transaction
 * instead of queueing for one each. An append is not fsynced by itself (DesiredStateStore.appendAudit):
 * an entry is in the store before its reply (it survives a crash of hapctl), and on disk with the
 * next desired-state commit's fsync or a fraction of a second later; a write costs one fsync, for
 * the change it made, which an OS crash or a power loss cannot take after the reply.
 *
 * When an append fails (disk full, store closed), the reply of the write is sent as decided: the
 * change was made, and answering an error would make the client retry or give up on what HAProxy now
 * has. The entries are logged at error level instead (they hold no secret: token names only, never
 * bodies) and appended again with the next group, up to MAX_RETAINED.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { GroupCommit } from '../engine/store/group-commit.ts'
import type { AuditCommand, AuditOutcome, AuditRecord, DesiredStateStore } from '../engine/store/types.ts'
import { MAX_COMMANDS_PER_ENTRY, targetOfCommand } from './commands.ts'
import type { CommandSink } from './recording-runtime.ts'
import type { Logger } from '../logger.ts'

/** What a request in progress has sent so far. */
export type AuditContext = {
  readonly commands: AuditCommand[]
  omitted: number
  /** The desired-state revision the request committed. */
  revision: number | null
  /** False once its entry is written: later commands (work that outlived the reply) get entries of their own. */
  open: boolean
  readonly actor: () => string | null
  readonly requestId: string
  readonly method: string
  readonly route: string | null
  readonly path: string
  readonly client: string
}

export type AuditLogger = Logger<'info' | 'error'>

export type AuditRecorderOptions = {
  store: DesiredStateStore
  retentionDays: number
  maxEntries: number
  logger?: AuditLogger | undefined
  /** How often to prune when few writes come (default: hourly). */
  pruneIntervalMs?: number
}

const DAY_MS = 86_400_000
/**
 * Refusals of requests without a valid token (401) are kept up to a tenth of the trail: they cost a
 * client nothing (answered before the body is read), and without a limit of their own a flood of
 * them would push out the entries of real writes.
 */
export function unauthenticatedLimit (maxEntries: number): number {
  return Math.max(100, Math.floor(maxEntries / 10))
}

/** Also prune after this many appended entries, so that a burst cannot outgrow maxEntries by much. */
const PRUNE_EVERY = 1000
/** Entries kept in memory for another try when appends fail; older ones are dropped (and were logged). */
const MAX_RETAINED = 10_000

export class AuditRecorder {
  readonly context = new AsyncLocalStorage<AuditContext>()
  readonly #o: AuditRecorderOptions
  /** The entries decided in one turn of the event loop (or while the previous group is written) go in one append. */
  readonly #group = new GroupCommit<AuditRecord, void>(async entries => {
    await this.#write(entries)
    return entries.map(() => ({ ok: true, value: undefined }))
  })

  /** Prunes, one after another. */
  #chain: Promise<void> = Promise.resolve()
  #retry: AuditRecord[] = []
  #sincePrune = 0
  #timer: NodeJS.Timeout | undefined
  #failures = 0

  constructor (opts: AuditRecorderOptions) {
    this.#o = opts
  }

  /** Appends that failed since start (entries then logged instead). */
  get failures (): number {
    return this.#failures
  }

  /**
   * For the API's runtime: commands go to the request in whose async context they were sent. Sent
   * outside any request still in progress (start-up import, work that outlived its reply), they get
   * entries of their own, as `actor` or as the request they came from.
   */
  requestSink (actor: string): CommandSink {
    return () => {
      const ctx = this.context.getStore()
      return commands => {
        if (ctx?.open === true) addCommands(ctx, commands)
        else this.#background(ctx === undefined ? actor : ctx.actor() ?? actor, ctx, commands)
      }
    }
  }

  /**
   * For the reconciler's runtime: its own entries, whatever the async context (a pass kicked by a
   * request runs in timers created in that request's context).
   */
  backgroundSink (actor: string): CommandSink {
    return () => commands => { this.#background(actor, undefined, commands) }
  }

  /** The executor committed a revision: it belongs to the request in progress, if any. */
  committed (event: { revision: number, actor: string }): void {
    const ctx = this.context.getStore()
    if (ctx?.open === true && event.actor !== 'reconciler') ctx.revision = event.revision
  }

  /** Queues the entry and resolves once it is in the store (or its append failed and was logged). */
  async record (entry: AuditRecord): Promise<void> {
    await this.#group.submit(entry)
  }

  /** Prunes now, then periodically. */
  start (): void {
    this.prune()
    clearInterval(this.#timer)
    this.#timer = setInterval(() => this.prune(), this.#o.pruneIntervalMs ?? 3_600_000)
    this.#timer.unref()
  }

  /** Stops pruning and waits for every queued entry to be written. */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#group.drain()
    // A prune the last write asked for.
    await this.#chain
  }

  /** Deletes entries older than the retention and the oldest beyond maxEntries (one prune at a time). */
  prune (): void {
    this.#chain = this.#chain.then(async () => {
      this.#sincePrune = 0
      try {
        const olderThan = new Date(Date.now() - this.#o.retentionDays * DAY_MS)
        const deleted = await this.#o.store.pruneAudit({ olderThan, maxEntries: this.#o.maxEntries, maxUnauthenticated: unauthenticatedLimit(this.#o.maxEntries) })
        if (deleted > 0) this.#o.logger?.info({ deleted, retentionDays: this.#o.retentionDays, maxEntries: this.#o.maxEntries }, 'audit entries pruned')
      } catch (err) {
        this.#o.logger?.error({ err }, 'could not prune the audit trail')
      }
    })
  }

  /** Never rejects: a failed append is logged and its entries are tried again with the next. */
  async #write (batch: readonly AuditRecord[]): Promise<void> {
    const entries = [...this.#retry, ...batch]
    try {
      await this.#o.store.appendAudit(entries)
      this.#retry = []
      this.#sincePrune += entries.length
    } catch (err) {
      this.#failures++
      this.#o.logger?.error({ err, entries: batch }, 'could not store audit entries; they are in this log and will be tried again')
      this.#retry = entries.slice(-MAX_RETAINED)
    }
    if (this.#sincePrune >= PRUNE_EVERY) this.prune()
  }

  #background (actor: string, ctx: AuditContext | undefined, commands: readonly AuditCommand[]): void {
    // One entry per object acted on, in the order sent (a grouped create of 25 backends is 25 entries).
    const groups: Array<{ target: { kind: string, id: string } | null, commands: AuditCommand[] }> = []
    for (const c of commands) {
      const target = targetOfCommand(c.text)
      const last = groups.at(-1)
      if (last !== undefined && last.target?.kind === target?.kind && last.target?.id === target?.id) last.commands.push(c)
      else groups.push({ target, commands: [c] })
    }
    const at = new Date().toISOString()
    for (const g of groups) {
      const kept = g.commands.slice(0, MAX_COMMANDS_PER_ENTRY)
      this.record({
        at,
        actor,
        client: ctx?.client ?? null,
        requestId: ctx?.requestId ?? null,
        method: ctx?.method ?? null,
        route: ctx?.route ?? null,
        path: ctx?.path ?? null,
        target: g.target,
        commands: kept,
        commandsOmitted: g.commands.length - kept.length,
        outcome: outcomeOfCommands(g.commands),
        status: null,
        code: null,
        revision: null,
        durationMs: null
      }).catch(() => {})
    }
  }
}

export function addCommands (ctx: AuditContext, commands: readonly AuditCommand[]): void {
  for (const c of commands) {
    if (ctx.commands.length < MAX_COMMANDS_PER_ENTRY) ctx.commands.push(c)
    else ctx.omitted++
  }
}

/** What commands alone say about how HAProxy was left (no problem body to tell it). */
export function outcomeOfCommands (commands: readonly AuditCommand[]): AuditOutcome {
  if (commands.length === 0) return 'rejected'
  if (commands.some(c => c.result === 'unknown')) return 'unknown'
  if (commands.every(c => c.result === 'ok')) return 'applied'
  // A refusal: nothing changed if it was the first; otherwise what came before it stays (or was undone by later commands).
  return commands[0]?.result === 'refused' && commands.length === 1 ? 'refused' : 'left'
}
