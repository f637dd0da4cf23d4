/**
 * RuntimeClient: sends command sequences to HAProxy's Runtime API over TCP or a unix socket.
 *
 * Each call runs on one connection in interactive mode (`prompt i`), one command at a time: each reply
 * is read and judged before the next command goes out, so a sequence stops at its first failure and
 * the caller knows exactly which commands ran (what rollback needs).
 *
 * Connections are kept between calls when the client is `persistent` (a pool): opening one costs a TCP
 * handshake and `prompt i`, several times the cost of a command. A kept connection stays attached to
 * the process it was opened to, and after a master-worker reload that process is an old, stopping
 * worker that accepts changes and then loses them (README, "Behaviour worth knowing"). So every pooled
 * connection learns its process (`show info` when it is opened) and is used only while that process is
 * the current one of the `identity` tracker, which the reconciler polls on new connections; when the
 * identity changes, connections to the old process are closed, never reused, and the reconciler puts
 * back on the new process whatever the old one was told (it is all in the desired state).
 *
 * HAProxy serves at most 10 connections per stats socket and the 11th hangs without an answer, so the
 * client never has more than `maxConnections` open, pooled or not; callers over that wait in a FIFO
 * queue, and their deadline runs while they wait. Payload commands always get a new non-interactive
 * connection of their own (in the same limit): on a `prompt i` connection a payload cut at HAProxy's
 * 16 KiB buffer boundary runs its remaining lines as commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import net from 'node:net'
import type { Command, CommandResult, ReplySink } from './commands/index.ts'
import { experimentalModeOn, setCliTimeout, showInfo } from './commands/index.ts'
import {
  RuntimeAbortedError, RuntimeArgumentError, RuntimeBusyError, RuntimeCommandError, RuntimeStaleProcessError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError
} from './errors.ts'
import { INTERACTIVE_PREAMBLE, MAX_LINE_BYTES, ReplyReader, finalReplyOnClose, nonInteractiveReply } from './protocol.ts'
import type { ProcessInfo } from './parsers.ts'
import type { Logger } from '../logger.ts'

export type Endpoint =
  | { readonly kind: 'tcp', readonly host: string, readonly port: number }
  | { readonly kind: 'unix', readonly path: string }

export function describeEndpoint (e: Endpoint): string {
  return e.kind === 'tcp' ? `tcp://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}` : `unix://${e.path}`
}

/** The subset of pino's logger the client uses. */
export type RuntimeLogger = Logger<'debug'>

/** `pid@start_time`: one HAProxy process (management §9.3 `show info`); a restart or a reload makes a new one. */
export function processIdOf (info: Pick<ProcessInfo, 'pid' | 'startTimeSec'>): string {
  return `${info.pid}@${info.startTimeSec}`
}

/**
 * Which HAProxy process is the current one (src/engine/identity.ts keeps it): a pooled connection is
 * used only while its process is `current`; every process a new connection meets is `observe`d.
 */
export type ProcessTracker = {
  readonly current: string | undefined
  observe: (info: ProcessInfo) => void
  onChange: (listener: (change: { readonly current: string }) => void) => () => void
}

export type RuntimeClientOptions = {
  endpoint: Endpoint
  /**
   * Deadline of one sequence, plus the delay of any `wait` in it: first to get a connection, then
   * again from then on to the last reply. The second is HAProxy's: while a reply is still arriving
   * when it passes (hapctl was busy parsing others), it is extended, so that hapctl's own work does
   * not read as HAProxy not answering.
   */
  timeoutMs: number
  /** Connections open at once; HAProxy's `stats maxconn` defaults to 10 per socket. */
  maxConnections?: number
  /** Keep connections open between calls (default false: a new connection per call). */
  persistent?: boolean
  /** With `persistent`: the process identity that pooled connections are checked against. */
  identity?: ProcessTracker | undefined
  /** With `persistent`: how long an unused connection stays open (default 10 s). */
  idleMs?: number
  logger?: RuntimeLogger
}

export type ExecuteOptions = {
  /** Overrides the client's deadline for this call. */
  timeoutMs?: number
  /**
   * Ends the sequence early at a `wait` (a command with `extraTimeMs`), which changes nothing: a wait in
   * flight is ended by closing the connection, a wait not sent yet is not sent, and the call rejects
   * with RuntimeAbortedError (its `index` says which commands ran). Other commands always run to their
   * verdict: cutting them would leave a change in doubt. execute() only; payload commands never wait.
   */
  signal?: AbortSignal | undefined
}

type Results<C extends readonly Command<unknown>[]> = { -readonly [K in keyof C]: CommandResult<C[K]> }

/**
 * A command followed by a payload (`add map @N <map> <<`, management §9.3 "payload"): `payload` is the
 * lines to send, each ending with `\n`, without the empty line that ends the payload (the client adds it).
 */
export type PayloadCommand<T> = Command<T> & { readonly payload: string }

/**
 * The largest payload request (command line + payload + final empty line) the client sends. HAProxy
 * ends a payload early when a payload line ends exactly at a 16384-byte boundary of the connection's
 * input; a request of at most 16000 bytes on a fresh connection has no byte at or past offset 16384, so
 * that boundary is never reached.
 */
export const MAX_PAYLOAD_REQUEST_BYTES = MAX_LINE_BYTES

/** What every caller of the Runtime API depends on; tests and the OpenAPI generator pass fakes. */
export type Runtime = {
  execute: <const C extends readonly Command<unknown>[]>(commands: C, options?: ExecuteOptions) => Promise<Results<C>>
  /**
   * Sends one command with its payload on a new non-interactive connection. Optional so that fakes
   * without payload support still type-check; features that need it refuse to run without it.
   */
  executePayload?: <T>(command: PayloadCommand<T>, options?: ExecuteOptions) => Promise<T>
  close: () => Promise<void>
}

/** Connections of the pool and calls waiting for one, for tests and metrics. */
export type PoolStats = { open: number, idle: number, waiting: number, opened: number }

/**
 * How long, once the deadline has passed, a reply that is still arriving gets before the next check:
 * bytes received since the previous check mean HAProxy is answering.
 */
const FLOW_GRACE_MS = 1000

/**
 * Refusals that may come from an old worker still attached to a kept connection: checked with
 * `show info` on that connection before they are believed. Not `not_found` (an upsert's `set map`
 * expects "entry not found.") nor `exists`.
 */
const SUSPICIOUS: ReadonlySet<string> = new Set(['rejected', 'conflict', 'invalid', 'forbidden', 'unsupported'])

/** A command that only reads (`show …`): sending it again cannot change anything. */
function isRead (command: Command<unknown> | undefined): boolean {
  return command !== undefined && command.verb.startsWith('show ')
}

/**
 * A pooled connection unused for longer is asked its process (`show info`) before it is used: a
 * reload during the pause would otherwise send the call to the old worker. Connections in steady use
 * rely on the identity poll (HAPCTL_IDENTITY_POLL_MS) and on the check after a refusal (SUSPICIOUS).
 */
const RECHECK_AFTER_IDLE_MS = 200

/** Opening a pooled connection meets a stopping process (a reload under way): tried again this often. */
const MAX_STOPPING_RETRIES = 3

/** A call waiting for a pooled connection or a slot; `grant` gets one, or the error that ends its wait. */
type Waiter = { readonly kind: 'pooled' | 'fresh', readonly grant: (g: Connection | 'slot' | Error) => void }

/**
 * A call's deadline: first for a connection (one of hapctl's own, all in use: RuntimeBusyError), then,
 * from when it has one, for HAProxy's answers (moved while a reply is still arriving; see
 * RuntimeClientOptions.timeoutMs). So a call takes at most twice its timeout, and neither hapctl's
 * queue nor its parsing reads as HAProxy not answering.
 */
type Deadline = { at: number, readonly timeoutMs: number }

function haproxysTurn (deadline: Deadline): void {
  deadline.at = Date.now() + deadline.timeoutMs
}

/**
 * One connection to the stats socket, in interactive mode once set up. While a call uses it, `call`
 * gets its events; while it waits in the pool, any byte or close makes it unusable.
 */
class Connection {
  readonly socket: net.Socket
  readonly reader = new ReplyReader()
  readonly pooled: boolean
  connected = false
  /** Closed, failed, or in a state the client cannot vouch for: never used again. */
  dead = false
  /** Its process is no longer the current one: closed as soon as it is not in use. */
  retired = false
  processId: string | undefined
  /** The idle timeout `set timeout cli` gave it, in seconds; 0 while HAProxy's default applies. */
  cliTimeoutSec = 0
  experimental = false
  /** Calls it has served, the current one included. */
  uses = 0
  /** performance.now() when its last call ended. */
  lastUsedAt = 0
  /** performance.now() of the last bytes received; the deadline check reads it. */
  lastDataAt = 0
  idleTimer: NodeJS.Timeout | undefined
  /** What ended it (socket error), for the call's error. */
  failure: NodeJS.ErrnoException | undefined
  call: { data: () => void, closed: () => void } | undefined

  constructor (endpoint: Endpoint, pooled: boolean, onGone: (c: Connection) => void) {
    this.pooled = pooled
    this.socket = endpoint.kind === 'tcp'
      ? net.connect({ host: endpoint.host, port: endpoint.port })
      : net.connect({ path: endpoint.path })
    this.socket.setNoDelay(true)
    this.socket.on('connect', () => { this.connected = true })
    this.socket.on('data', (chunk: Buffer) => {
      this.lastDataAt = performance.now()
      this.reader.push(chunk)
      if (this.call !== undefined) this.call.data()
      // Nothing is asked while it waits in the pool: whatever comes is not ours to read.
      else this.destroy()
    })
    this.socket.on('error', (err: NodeJS.ErrnoException) => { this.failure ??= err })
    // HAProxy closing a pooled connection (a restart, `shutdown session`) takes it out of the pool.
    this.socket.on('end', () => { this.dead = true })
    this.socket.on('close', () => {
      this.dead = true
      clearTimeout(this.idleTimer)
      onGone(this)
      this.call?.closed()
    })
  }

  destroy (): void {
    this.dead = true
    this.socket.destroy()
  }

  /**
   * Ends an unused connection the way HAProxy sees first: our FIN, then its close (the CLI ends a
   * session whose client closed), so that its slot is free only once HAProxy has let it go.
   */
  end (): void {
    this.dead = true
    this.socket.end()
    setTimeout(() => { this.socket.destroy() }, 1000).unref()
  }
}

export class RuntimeClient implements Runtime {
  readonly #endpoint: Endpoint
  readonly #timeoutMs: number
  readonly #maxConnections: number
  readonly #persistent: boolean
  readonly #identity: ProcessTracker | undefined
  readonly #idleMs: number
  readonly #logger: RuntimeLogger | undefined
  /** Sockets counted against maxConnections: every connection, pooled or not, until it closes. */
  readonly #counted = new Set<net.Socket>()
  /** Slots taken for connections being opened (not yet in #counted). */
  #reserved = 0
  /** Pooled connections not in use, most recently used last. */
  readonly #idle: Connection[] = []
  readonly #pooled = new Set<Connection>()
  /** Processes a pooled connection found stopping: never used again, whatever the tracker says yet. */
  readonly #stopped = new Set<string>()
  readonly #waiting: Waiter[] = []
  #opened = 0
  #closed = false
  readonly #unsubscribe: (() => void) | undefined

  constructor (options: RuntimeClientOptions) {
    this.#endpoint = options.endpoint
    this.#timeoutMs = options.timeoutMs
    this.#maxConnections = Math.max(1, options.maxConnections ?? 4)
    this.#persistent = options.persistent === true
    this.#identity = options.identity
    this.#idleMs = options.idleMs ?? 10_000
    this.#logger = options.logger
    // A new process (seen here or by the reconciler's poll): connections to the old one must not be used.
    this.#unsubscribe = this.#identity?.onChange(({ current }) => {
      // (A connection still being set up has no process yet: it checks its own when it learns it.)
      for (const c of this.#pooled) if (c.processId !== undefined && c.processId !== current) this.#retire(c)
    })
  }

  get endpoint (): string {
    return describeEndpoint(this.#endpoint)
  }

  get stats (): PoolStats {
    return { open: this.#counted.size, idle: this.#idle.length, waiting: this.#waiting.length, opened: this.#opened }
  }

  /**
   * Runs the commands in order on one connection and resolves with each command's parsed result.
   * Rejects at the first command HAProxy refuses (RuntimeCommandError with `index`), or with
   * RuntimeUnavailableError / RuntimeTimeoutError / RuntimeProtocolError; later commands are not sent.
   */
  async execute<const C extends readonly Command<unknown>[]> (commands: C, options: ExecuteOptions = {}): Promise<Results<C>> {
    const extra = commands.reduce((sum, c) => sum + (c.extraTimeMs ?? 0), 0)
    const verbs = commands.map(c => c.verb)
    return this.#call(verbs, (options.timeoutMs ?? this.#timeoutMs) + extra, async (deadline) => {
      for (let attempt = 1; ; attempt++) {
        const conn = await this.#connection(deadline)
        const reused = ++conn.uses > 1
        const dataBefore = conn.lastDataAt
        try {
          return await this.#attempt(conn, reused, commands, deadline, options.signal)
        } catch (err) {
          // A kept connection HAProxy closed while it sat idle (`shutdown session`, a CLI timeout) can
          // be picked before its close reaches us: the first command then meets a closed connection and
          // gets no byte back. When that command only reads (`show …`), nothing can have changed, and
          // it is sent again once on a new connection; a write's outcome stays unknown and is reported.
          const unanswered = err instanceof RuntimeProtocolError && err.position?.done === 0 && conn.lastDataAt === dataBefore
          if (attempt === 1 && reused && unanswered && isRead(commands[0])) continue
          throw err
        }
      }
    })
  }

  async #attempt<const C extends readonly Command<unknown>[]> (conn: Connection, reused: boolean, commands: C, deadline: Deadline, signal: AbortSignal | undefined): Promise<Results<C>> {
    let healthy = false
    try {
      const results = await this.#converse(conn, commands, deadline, signal)
      healthy = true
      return results as Results<C>
    } catch (err) {
      // A refusal leaves the connection as it was: the reply was read whole, the next command is ours.
      healthy = err instanceof RuntimeCommandError
      // …unless it came from an old worker a reload has just replaced (it refuses changes to its
      // disabled proxies, "Proxy is disabled."), before the identity poll noticed. The caller (the
      // executor) can then start its operation again: what the old worker did is lost with it.
      if (err instanceof RuntimeCommandError && reused && SUSPICIOUS.has(err.kind)) {
        const process = await this.#stopping(conn, deadline)
        healthy = process === 'current'
        if (process === 'stopping') throw new RuntimeStaleProcessError(err)
      }
      throw err
    } finally {
      this.#done(conn, healthy)
    }
  }

  /**
   * Whether the process behind a pooled connection is stopping (a reload replaced it): asked on the
   * connection itself; the connections to that process are then never used again.
   */
  async #stopping (conn: Connection, deadline: Deadline): Promise<'stopping' | 'current' | 'failed'> {
    let info: ProcessInfo
    try {
      [info] = await this.#converse(conn, [showInfo()], deadline) as [ProcessInfo]
    } catch {
      conn.dead = true
      return 'failed'
    }
    if (!info.stopping) return 'current'
    this.#stopped.add(processIdOf(info))
    for (const c of this.#pooled) if (c.processId === processIdOf(info)) this.#retire(c)
    return 'stopping'
  }

  /**
   * Runs one payload command on its own NON-interactive connection: writes the command line, the
   * payload and the empty line that ends it, reads until HAProxy closes the connection, and parses
   * what it received. Never on a `prompt i` connection: there, a payload cut short by HAProxy's
   * buffer-boundary bug runs its remaining lines as commands. The request must fit in
   * MAX_PAYLOAD_REQUEST_BYTES; callers split larger payloads. Same deadline and connection limit as
   * execute().
   */
  async executePayload<T> (command: PayloadCommand<T>, options: ExecuteOptions = {}): Promise<T> {
    const { payload } = command
    // An empty line would end the payload early; a line starting with a blank stores an empty key.
    if (payload.length === 0 || !payload.endsWith('\n') || /^[ \t\n]|\n[ \t\n]/.test(payload.slice(0, -1))) {
      throw new RuntimeArgumentError(command.verb, 'a payload is one or more non-empty lines, each ending with a newline and none starting with a blank')
    }
    const request = command.text + '\n' + payload + '\n'
    const bytes = Buffer.byteLength(request)
    if (bytes > MAX_PAYLOAD_REQUEST_BYTES) {
      throw new RuntimeArgumentError(command.verb, `payload request would be ${bytes} bytes, over ${MAX_PAYLOAD_REQUEST_BYTES}; split it`)
    }
    return this.#call([command.verb], (options.timeoutMs ?? this.#timeoutMs) + (command.extraTimeMs ?? 0), async (deadline) => {
      const granted = await this.#acquire('fresh', deadline)
      haproxysTurn(deadline)
      if (granted !== 'slot') throw new Error('a payload is granted a slot, never a pooled connection')
      const received = await this.#exchange(request, command.verb, deadline)
      try {
        return command.parse(nonInteractiveReply(received))
      } catch (err) {
        if (err instanceof RuntimeCommandError) err.index = 0
        throw err
      }
    })
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#unsubscribe?.()
    // Every socket, pooled or not, is counted until it closes.
    for (const s of this.#counted) s.destroy()
    for (const w of this.#waiting.splice(0)) w.grant(new RuntimeUnavailableError(this.endpoint, 'the client is closed'))
  }

  /** What every call shares: a deadline, the caller's stack on errors, and logs. */
  async #call<T> (verbs: string[], timeoutMs: number, work: (deadline: Deadline) => Promise<T>): Promise<T> {
    if (this.#closed) throw new RuntimeUnavailableError(this.endpoint, 'the client is closed')
    // Capture the caller's stack now: errors raised from socket callbacks would otherwise point nowhere useful.
    const callSite = new Error('called from')
    const started = performance.now()
    try {
      const result = await work({ at: Date.now() + timeoutMs, timeoutMs })
      this.#logger?.debug({ commands: verbs, ms: Math.round(performance.now() - started) }, 'runtime call done')
      return result
    } catch (err) {
      // Not for HAProxy's refusals: they are answers (an upsert expects one), and formatting two stacks
      // for each cost more than the command.
      if (err instanceof RuntimeError && !(err instanceof RuntimeCommandError) && err.stack !== undefined && callSite.stack !== undefined) {
        err.stack += '\n' + callSite.stack.split('\n').slice(1).join('\n')
      }
      // Callers decide how loud a failure is (the HTTP layer logs every 5xx once); here it is detail.
      this.#logger?.debug({ err, commands: verbs }, 'runtime call failed')
      throw err
    }
  }

  // --- connections and the limit ------------------------------------------------------------------

  /** A connection in interactive mode for one call: a pooled one, or a new one (set up first). */
  async #connection (deadline: Deadline): Promise<Connection> {
    for (let stopping = 0; ; stopping++) {
      const granted = await this.#acquire(this.#persistent ? 'pooled' : 'fresh', deadline)
      haproxysTurn(deadline)
      if (granted !== 'slot') {
        // Unused for a while: a reload may have happened meanwhile (nothing told the pool yet). Asking
        // its process costs a round trip, far less than a new connection, and nothing was sent on it.
        if (performance.now() - granted.lastUsedAt < RECHECK_AFTER_IDLE_MS || await this.#stopping(granted, deadline) === 'current') return granted
        this.#done(granted, false)
        continue
      }
      const conn = this.#open(this.#persistent)
      try {
        await this.#converse(conn, [], deadline, undefined, true)
      } catch (err) {
        this.#done(conn, false)
        throw err
      }
      if (!this.#persistent) return conn
      // Which process it talks to: used only while that process is the current one.
      let info: ProcessInfo
      try {
        [info] = await this.#converse(conn, [showInfo()], deadline) as [ProcessInfo]
      } catch (err) {
        this.#done(conn, false)
        throw err
      }
      conn.processId = processIdOf(info)
      if (!info.stopping) {
        this.#identity?.observe(info)
        if (this.#identity?.current === undefined || this.#identity.current === conn.processId) return conn
      }
      // An old worker still taking connections during a reload, or a process the tracker already knows
      // was replaced: not one to send changes to.
      this.#done(conn, false)
      if (stopping >= MAX_STOPPING_RETRIES) {
        throw new RuntimeUnavailableError(this.endpoint, `only a stopping or replaced HAProxy process answered (${conn.processId})`)
      }
    }
  }

  /** A new connection in a slot already taken; counted until it closes. */
  #open (pooled: boolean): Connection {
    this.#reserved--
    this.#opened++
    const conn = new Connection(this.#endpoint, pooled, c => {
      this.#counted.delete(c.socket)
      this.#pooled.delete(c)
      const i = this.#idle.indexOf(c)
      if (i !== -1) this.#idle.splice(i, 1)
      this.#pump()
    })
    this.#counted.add(conn.socket)
    if (pooled) this.#pooled.add(conn)
    return conn
  }

  /** After a call: a healthy pooled connection goes back to the pool, anything else is closed. */
  #done (conn: Connection, healthy: boolean): void {
    conn.call = undefined
    if (!healthy || !conn.pooled || conn.retired || conn.dead || this.#closed || conn.reader.pending !== '') {
      conn.destroy()
      return
    }
    conn.lastUsedAt = performance.now()
    conn.idleTimer = setTimeout(() => { this.#discard(conn) }, this.#idleMs)
    conn.idleTimer.unref()
    this.#idle.push(conn)
    this.#pump()
  }

  #retire (conn: Connection): void {
    conn.retired = true
    if (this.#idle.includes(conn)) this.#discard(conn)
  }

  /** Closes a connection that is not in use; its slot is free once the close arrives. */
  #discard (conn: Connection): void {
    clearTimeout(conn.idleTimer)
    const i = this.#idle.indexOf(conn)
    if (i !== -1) this.#idle.splice(i, 1)
    conn.end()
  }

  #usable (conn: Connection): boolean {
    const current = this.#identity?.current
    return !conn.dead && !conn.retired && conn.socket.readyState === 'open' &&
      (current === undefined || conn.processId === current) && !this.#stopped.has(conn.processId ?? '')
  }

  /**
   * What a waiter of `kind` can have now: a pooled connection (idle, still usable), or a slot to open a
   * new one in; undefined when neither. A `fresh` waiter may close an idle pooled connection for its slot.
   */
  #grant (kind: 'pooled' | 'fresh'): Connection | 'slot' | undefined {
    if (kind === 'pooled') {
      for (let c = this.#idle.pop(); c !== undefined; c = this.#idle.pop()) {
        if (this.#usable(c)) {
          clearTimeout(c.idleTimer)
          return c
        }
        this.#discard(c)
      }
    }
    if (this.#counted.size + this.#reserved < this.#maxConnections) {
      this.#reserved++
      return 'slot'
    }
    // A new connection takes the slot of the idle one used least recently, once it is closed: the
    // limit counts a socket until its close, so HAProxy never sees one more than allowed.
    const idle = this.#idle[0]
    if (idle !== undefined) this.#discard(idle)
    return undefined
  }

  async #acquire (kind: 'pooled' | 'fresh', deadline: Deadline): Promise<Connection | 'slot'> {
    if (this.#closed) throw new RuntimeUnavailableError(this.endpoint, 'the client is closed')
    if (this.#waiting.length === 0) {
      const g = this.#grant(kind)
      if (g !== undefined) return g
    }
    return await new Promise<Connection | 'slot'>((resolve, reject) => {
      const waiter: Waiter = {
        kind,
        grant: (g: Connection | 'slot' | Error): void => {
          clearTimeout(timer)
          if (g instanceof Error) reject(g)
          else resolve(g)
        }
      }
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(waiter)
        if (i !== -1) this.#waiting.splice(i, 1)
        reject(new RuntimeBusyError(deadline.timeoutMs, this.#maxConnections))
      }, Math.max(0, deadline.at - Date.now()))
      this.#waiting.push(waiter)
    })
  }

  /** Hands what became free to the callers waiting, in order. */
  #pump (): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      const w = this.#waiting[0] as Waiter
      const g = this.#grant(w.kind)
      if (g === undefined) return
      this.#waiting.shift()
      w.grant(g)
    }
  }

  // --- conversations ------------------------------------------------------------------------------

  /**
   * Sends `commands` on `conn`, one reply at a time, with the connection settings some of them need
   * first (their results are not returned); `setup` sends `prompt i` instead. Resolves with the
   * results; the caller decides what becomes of the connection.
   */
  #converse (conn: Connection, commands: readonly Command<unknown>[], deadline: Deadline, signal?: AbortSignal, setup = false): Promise<unknown[]> {
    let onAbort: (() => void) | undefined
    return new Promise<unknown[]>((resolve, reject) => {
      // The queue of lines to send: `prompt i`'s own (empty) reply, or each command's, with the
      // connection settings some commands need; those are `internal` (their results are not returned).
      const queue: Array<Command<unknown> | 'preamble'> = setup ? ['preamble'] : []
      const internal = new Set<Command<unknown>>()
      const addInternal = (c: Command<unknown>): void => { internal.add(c); queue.push(c) }
      // The CLI's idle timer (`stats timeout`, 10 s by default) closes a pooled connection that waits in
      // the pool, and interrupts a running `wait` ("Interrupted. …"): each connection gets a timer of its
      // own, longer than both (management §9.3 `set timeout cli`).
      const waits = commands.some(c => (c.extraTimeMs ?? 0) > 0)
      const cliTimeout = Math.max(conn.pooled ? Math.ceil(this.#idleMs / 1000) + 30 : 0, waits ? Math.ceil(deadline.timeoutMs / 1000) + 5 : 0)
      if (!setup && cliTimeout > conn.cliTimeoutSec) addInternal(setCliTimeout(Math.min(cliTimeout, 86_400)))
      let modeOn = conn.experimental
      for (const c of commands) {
        if (c.experimental === true && !modeOn) { addInternal(experimentalModeOn()); modeOn = true }
        queue.push(c)
      }
      const results: unknown[] = []
      const { reader, socket } = conn
      let position = 0
      let sink: ReplySink<unknown> | undefined
      let settled = false
      const current = (): Command<unknown> | 'preamble' | undefined => queue[position]
      const currentVerb = (): string | undefined => {
        const c = current()
        return c === undefined || c === 'preamble' ? undefined : c.verb
      }

      // The deadline, extended while a reply is still arriving (hapctl may have been too busy to read it).
      let checkedAt = performance.now()
      let sentAt = 0
      let timer: NodeJS.Timeout
      const arm = (): void => { timer = setTimeout(check, Math.max(0, deadline.at - Date.now())) }
      const check = (): void => {
        // After the I/O phase, so that bytes already received are counted.
        setImmediate(() => {
          if (settled) return
          // HAProxy answering (bytes since the last check), or not given its time yet (the command
          // went out since: hapctl was busy before it could send it).
          if (conn.lastDataAt > checkedAt || sentAt > checkedAt) {
            checkedAt = performance.now()
            deadline.at = Date.now() + Math.min(FLOW_GRACE_MS, deadline.timeoutMs)
            arm()
            return
          }
          stop(new RuntimeTimeoutError(deadline.timeoutMs, currentVerb()))
        })
      }

      // Every failure says where the sequence stopped (the executor and the audit trail list exactly
      // what went out): a refusal, the index of the refused command; no verdict, how far it got.
      const stop = (err: Error | undefined): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        conn.call = undefined
        if (err === undefined) { resolve(results); return }
        if (err instanceof RuntimeCommandError) err.index = results.length
        if (err instanceof RuntimeTimeoutError || err instanceof RuntimeProtocolError) {
          const c = current()
          err.position = { done: results.length, inFlight: c !== undefined && c !== 'preamble' && !internal.has(c) }
        }
        reject(err)
      }

      // A wait is the only command a signal may cut: it changes nothing, so the commands before it are
      // exactly what ran. Closing the connection (the caller does, on any failure) ends it on HAProxy's side too.
      const isWait = (c: Command<unknown> | 'preamble' | undefined): c is Command<unknown> =>
        c !== undefined && c !== 'preamble' && !internal.has(c) && (c.extraTimeMs ?? 0) > 0
      const interrupt = (c: Command<unknown>): void => stop(new RuntimeAbortedError(c.verb, results.length, signal?.reason))
      onAbort = () => { const c = current(); if (isWait(c)) interrupt(c) }
      signal?.addEventListener('abort', onAbort)

      const sendCurrent = (): void => {
        const c = current()
        if (c === undefined) { stop(undefined); return }
        if (signal?.aborted === true && isWait(c)) { interrupt(c); return }
        sink = c !== 'preamble' && c.sink !== undefined ? c.sink() : undefined
        sentAt = performance.now()
        socket.write(c === 'preamble' ? INTERACTIVE_PREAMBLE : c.text + '\n')
      }

      /** Judges one complete reply (or what a sink made of it); false when the sequence ended. */
      const verdict = (parse: () => unknown): boolean => {
        const c = current()
        if (c === undefined) {
          stop(new RuntimeProtocolError('HAProxy sent a reply nobody asked for', { reply: reader.pending }))
          return false
        }
        try {
          const value = parse()
          if (c !== 'preamble') {
            if (!internal.has(c)) results.push(value)
            else if (c.verb === 'experimental-mode on') conn.experimental = true
            else if (c.verb === 'set timeout cli') conn.cliTimeoutSec = cliTimeout
          }
        } catch (err) {
          stop(err instanceof Error ? err : new RuntimeProtocolError(String(err)))
          return false
        }
        sink = undefined
        position++
        sendCurrent()
        return !settled
      }

      const judge = (reply: string): unknown => {
        const c = current()
        if (c === 'preamble') {
          if (reply !== '') throw new RuntimeProtocolError('HAProxy did not accept interactive mode (`prompt i`); is this a stats socket?', { reply })
          return undefined
        }
        return (c as Command<unknown>).parse(reply)
      }

      conn.call = {
        data: () => {
          // Every reply complete in what arrived; verdict() returns false once the sequence ended.
          for (;;) {
            if (sink !== undefined) {
              const piece = reader.nextPiece()
              if (piece === undefined) return
              try {
                sink.write(piece.text)
              } catch (err) {
                stop(err instanceof Error ? err : new RuntimeProtocolError(String(err)))
                return
              }
              if (!piece.done) continue
              const s = sink
              if (!verdict(() => s.end())) return
            } else {
              const reply = reader.next()
              if (reply === undefined) return
              if (!verdict(() => judge(reply))) return
            }
          }
        },
        closed: () => {
          if (settled) return
          // A fatal CLI error ends with a single `\n` and a close; it is the current command's reply.
          // Only a refusal is taken from it: a "success" may be multi-line output cut short at a line end.
          const last = sink === undefined ? finalReplyOnClose(reader.pending) : undefined
          const c = current()
          if (last !== undefined && conn.connected && c !== undefined && c !== 'preamble') {
            try {
              c.parse(last)
            } catch (err) {
              if (err instanceof RuntimeCommandError) { stop(err); return }
            }
          }
          const what = conn.failure?.code ?? conn.failure?.message
          stop(!conn.connected
            ? new RuntimeUnavailableError(this.endpoint, what ?? 'connection closed', { cause: conn.failure })
            : what !== undefined
              ? new RuntimeProtocolError(`connection to HAProxy failed during '${currentVerb() ?? 'prompt i'}' (${what})`, { verb: currentVerb(), cause: conn.failure })
              : new RuntimeProtocolError(`HAProxy closed the connection during '${currentVerb() ?? 'prompt i'}' before replying in full`, { verb: currentVerb(), reply: reader.pending }))
        }
      }
      arm()
      if (conn.dead) { conn.call.closed(); return }
      if (conn.connected) sendCurrent()
      else socket.once('connect', () => { if (!settled) sendCurrent() })
    }).finally(() => { if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort) })
  }

  /** Writes `request` on a new connection (its slot taken) and resolves with everything received until HAProxy closes it. */
  #exchange (request: string, verb: string, deadline: Deadline): Promise<string> {
    this.#reserved--
    this.#opened++
    return new Promise((resolve, reject) => {
      const socket = this.#endpoint.kind === 'tcp'
        ? net.connect({ host: this.#endpoint.host, port: this.#endpoint.port })
        : net.connect({ path: this.#endpoint.path })
      this.#counted.add(socket)
      let connected = false
      let settled = false
      const chunks: Buffer[] = []
      const finish = (outcome: Error | { value: string }): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        socket.destroy()
        if (outcome instanceof Error) reject(outcome)
        else resolve(outcome.value)
      }
      const timer = setTimeout(() => { finish(new RuntimeTimeoutError(deadline.timeoutMs, verb)) }, Math.max(0, deadline.at - Date.now()))
      socket.on('connect', () => { connected = true; socket.write(request) })
      socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        const what = err.code ?? err.message
        finish(connected
          ? new RuntimeProtocolError(`connection to HAProxy failed during '${verb}' (${what})`, { verb, cause: err })
          : new RuntimeUnavailableError(this.endpoint, what, { cause: err }))
      })
      socket.on('close', () => {
        this.#counted.delete(socket)
        this.#pump()
        if (!connected) finish(new RuntimeUnavailableError(this.endpoint, 'connection closed'))
        else if (chunks.length === 0) finish(new RuntimeProtocolError(`HAProxy closed the connection during '${verb}' without replying`, { verb }))
        else finish({ value: Buffer.concat(chunks).toString('utf8') })
      })
    })
  }
}
