/**
 * RuntimeClient: sends command sequences to HAProxy's Runtime API over TCP or a unix socket.
 *
 * One connection per sequence, in interactive mode (`prompt i`), one command at a time: each reply is
 * read and judged before the next command goes out, so a sequence stops at its first failure and the
 * caller knows exactly which commands ran (what rollback needs). Connections are not kept between
 * sequences: a connection opened before a master-worker reload stays attached to the old, stopping
 * worker, which accepts changes and then loses them (runtime-notes 6.3).
 *
 * HAProxy serves at most 10 connections per stats socket and the 11th hangs without an answer
 * (runtime-notes 1.8), so the client never opens more than `maxConnections` at once; callers over that
 * wait in a FIFO queue, and their deadline runs while they wait.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import net from 'node:net'
import type { Command, CommandResult } from './commands/index.ts'
import { experimentalModeOn, setCliTimeout } from './commands/index.ts'
import {
  RuntimeAbortedError, RuntimeArgumentError, RuntimeCommandError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError
} from './errors.ts'
import { INTERACTIVE_PREAMBLE, MAX_LINE_BYTES, ReplyReader, finalReplyOnClose, nonInteractiveReply } from './protocol.ts'
import type { Logger } from '../logger.ts'

export type Endpoint =
  | { readonly kind: 'tcp', readonly host: string, readonly port: number }
  | { readonly kind: 'unix', readonly path: string }

export function describeEndpoint (e: Endpoint): string {
  return e.kind === 'tcp' ? `tcp://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}` : `unix://${e.path}`
}

/** The subset of pino's logger the client uses. */
export type RuntimeLogger = Logger<'debug'>

export type RuntimeClientOptions = {
  endpoint: Endpoint
  /** Deadline of one sequence, from the call to the last reply, plus the delay of any `wait` in it. */
  timeoutMs: number
  /** Connections open at once; HAProxy's `stats maxconn` defaults to 10 per socket. */
  maxConnections?: number
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

/** A connection and how its call ends; see RuntimeClient.#session. */
type Session<T> = {
  readonly socket: net.Socket
  connected: boolean
  settled: boolean
  finish: (outcome: Error | { value: T }) => void
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
 * input (runtime-notes 5.10); a request of at most 16000 bytes on a fresh connection has no byte at or
 * past offset 16384, so that boundary is never reached.
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

export class RuntimeClient implements Runtime {
  readonly #endpoint: Endpoint
  readonly #timeoutMs: number
  readonly #maxConnections: number
  readonly #logger: RuntimeLogger | undefined
  #active = 0
  readonly #waiting: Array<() => void> = []
  readonly #sockets = new Set<net.Socket>()
  #closed = false

  constructor (options: RuntimeClientOptions) {
    this.#endpoint = options.endpoint
    this.#timeoutMs = options.timeoutMs
    this.#maxConnections = Math.max(1, options.maxConnections ?? 4)
    this.#logger = options.logger
  }

  get endpoint (): string {
    return describeEndpoint(this.#endpoint)
  }

  /**
   * Runs the commands in order on one connection and resolves with each command's parsed result.
   * Rejects at the first command HAProxy refuses (RuntimeCommandError with `index`), or with
   * RuntimeUnavailableError / RuntimeTimeoutError / RuntimeProtocolError; later commands are not sent.
   */
  async execute<const C extends readonly Command<unknown>[]> (commands: C, options: ExecuteOptions = {}): Promise<Results<C>> {
    const extra = commands.reduce((sum, c) => sum + (c.extraTimeMs ?? 0), 0)
    const verbs = commands.map(c => c.verb)
    return this.#call(verbs, (options.timeoutMs ?? this.#timeoutMs) + extra, async (deadline, timeoutMs) =>
      await this.#run(commands, deadline, timeoutMs, options.signal) as Results<C>)
  }

  /**
   * Runs one payload command on its own NON-interactive connection: writes the command line, the
   * payload and the empty line that ends it, reads until HAProxy closes the connection, and parses
   * what it received. Never on a `prompt i` connection: there, a payload cut short by HAProxy's
   * buffer-boundary bug runs its remaining lines as commands (runtime-notes 5.10, pitfall 2). The
   * request must fit in MAX_PAYLOAD_REQUEST_BYTES; callers split larger payloads. Same deadline and
   * connection limit as execute().
   */
  async executePayload<T> (command: PayloadCommand<T>, options: ExecuteOptions = {}): Promise<T> {
    const { payload } = command
    // An empty line would end the payload early; a line starting with a blank stores an empty key (runtime-notes 5.9).
    if (payload.length === 0 || !payload.endsWith('\n') || /^[ \t\n]|\n[ \t\n]/.test(payload.slice(0, -1))) {
      throw new RuntimeArgumentError(command.verb, 'a payload is one or more non-empty lines, each ending with a newline and none starting with a blank')
    }
    const request = command.text + '\n' + payload + '\n'
    const bytes = Buffer.byteLength(request)
    if (bytes > MAX_PAYLOAD_REQUEST_BYTES) {
      throw new RuntimeArgumentError(command.verb, `payload request would be ${bytes} bytes, over ${MAX_PAYLOAD_REQUEST_BYTES}; split it`)
    }
    return this.#call([command.verb], (options.timeoutMs ?? this.#timeoutMs) + (command.extraTimeMs ?? 0), async (deadline, timeoutMs) => {
      const received = await this.#exchange(request, command.verb, deadline, timeoutMs)
      try {
        return command.parse(nonInteractiveReply(received))
      } catch (err) {
        if (err instanceof RuntimeCommandError) err.index = 0
        throw err
      }
    })
  }

  /** What every call shares: a deadline, a connection slot, the caller's stack on errors, and logs. */
  async #call<T> (verbs: string[], timeoutMs: number, work: (deadline: number, timeoutMs: number) => Promise<T>): Promise<T> {
    if (this.#closed) throw new RuntimeUnavailableError(this.endpoint, 'the client is closed')
    // Capture the caller's stack now: errors raised from socket callbacks would otherwise point nowhere useful.
    const callSite = new Error('called from')
    const deadline = Date.now() + timeoutMs
    const started = performance.now()
    try {
      await this.#acquire(deadline, timeoutMs)
      try {
        const result = await work(deadline, timeoutMs)
        this.#logger?.debug({ commands: verbs, ms: Math.round(performance.now() - started) }, 'runtime call done')
        return result
      } finally {
        this.#release()
      }
    } catch (err) {
      if (err instanceof RuntimeError && err.stack !== undefined && callSite.stack !== undefined) {
        err.stack += '\n' + callSite.stack.split('\n').slice(1).join('\n')
      }
      // Callers decide how loud a failure is (the HTTP layer logs every 5xx once); here it is detail.
      this.#logger?.debug({ err, commands: verbs }, 'runtime call failed')
      throw err
    }
  }

  /**
   * One connection under one deadline. `finish` settles the call exactly once: it clears the timer,
   * forgets and destroys the socket. A socket error before `connect` means HAProxy cannot be reached;
   * after it, the exchange broke half-way. `verb` names what was in flight, for errors.
   */
  #session<T> (deadline: number, timeoutMs: number, verb: () => string | undefined,
    resolve: (value: T) => void, reject: (err: Error) => void): Session<T> {
    const socket = this.#endpoint.kind === 'tcp'
      ? net.connect({ host: this.#endpoint.host, port: this.#endpoint.port })
      : net.connect({ path: this.#endpoint.path })
    this.#sockets.add(socket)
    const session: Session<T> = {
      socket,
      connected: false,
      settled: false,
      finish: (outcome) => {
        if (session.settled) return
        session.settled = true
        clearTimeout(timer)
        this.#sockets.delete(socket)
        socket.destroy()
        if (outcome instanceof Error) reject(outcome)
        else resolve(outcome.value)
      }
    }
    const timer = setTimeout(() => session.finish(new RuntimeTimeoutError(timeoutMs, verb())), Math.max(0, deadline - Date.now()))
    socket.on('connect', () => { session.connected = true })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const what = err.code ?? err.message
      session.finish(session.connected
        ? new RuntimeProtocolError(`connection to HAProxy failed during '${verb() ?? 'prompt i'}' (${what})`, { verb: verb(), cause: err })
        : new RuntimeUnavailableError(this.endpoint, what, { cause: err }))
    })
    return session
  }

  /** Writes `request` on a new connection and resolves with everything received until HAProxy closes it. */
  #exchange (request: string, verb: string, deadline: number, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const session = this.#session<string>(deadline, timeoutMs, () => verb, resolve, reject)
      const { socket } = session
      const chunks: Buffer[] = []
      socket.on('connect', () => { socket.write(request) })
      socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      socket.on('close', () => {
        if (!session.connected) session.finish(new RuntimeUnavailableError(this.endpoint, 'connection closed'))
        else if (chunks.length === 0) session.finish(new RuntimeProtocolError(`HAProxy closed the connection during '${verb}' without replying`, { verb }))
        else session.finish({ value: Buffer.concat(chunks).toString('utf8') })
      })
    })
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
    for (const wake of this.#waiting.splice(0)) wake()
  }

  async #acquire (deadline: number, timeoutMs: number): Promise<void> {
    if (this.#active < this.#maxConnections) { this.#active++; return }
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer)
        if (this.#closed) reject(new RuntimeUnavailableError(this.endpoint, 'the client is closed'))
        else { this.#active++; resolve() }
      }
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(wake)
        if (i !== -1) this.#waiting.splice(i, 1)
        reject(new RuntimeTimeoutError(timeoutMs))
      }, Math.max(0, deadline - Date.now()))
      this.#waiting.push(wake)
    })
  }

  #release (): void {
    this.#active--
    const next = this.#waiting.shift()
    if (next !== undefined) next()
  }

  #run (commands: readonly Command<unknown>[], deadline: number, timeoutMs: number, signal?: AbortSignal): Promise<unknown[]> {
    let onAbort: (() => void) | undefined
    return new Promise<unknown[]>((resolve, reject) => {
      // The queue of lines to send: `prompt i`'s own (empty) reply first, then each command's, with the
      // connection settings some commands need; those are `internal` (their results are not returned).
      const queue: Array<Command<unknown> | 'preamble'> = ['preamble']
      const internal = new Set<Command<unknown>>()
      const addInternal = (c: Command<unknown>): void => { internal.add(c); queue.push(c) }
      // The CLI's idle timer (`stats timeout`, 10 s by default) also interrupts a running `wait`
      // ("Interrupted. …"), so a connection that waits gets a longer timer of its own (management §9.3).
      if (commands.some(c => (c.extraTimeMs ?? 0) > 0)) addInternal(setCliTimeout(Math.ceil(timeoutMs / 1000) + 5))
      let modeOn = false
      for (const c of commands) {
        if (c.experimental === true && !modeOn) { addInternal(experimentalModeOn()); modeOn = true }
        queue.push(c)
      }
      const results: unknown[] = []
      const reader = new ReplyReader()
      let position = 0
      const current = (): Command<unknown> | 'preamble' | undefined => queue[position]
      const currentVerb = (): string | undefined => {
        const c = current()
        return c === undefined || c === 'preamble' ? undefined : c.verb
      }
      // Every failure says where the sequence stopped (the executor and the audit trail list exactly
      // what went out): a refusal, the index of the refused command; no verdict, how far it got.
      const stopped = (err: Error): void => {
        if (err instanceof RuntimeCommandError) err.index = results.length
        if (err instanceof RuntimeTimeoutError || err instanceof RuntimeProtocolError) {
          const c = current()
          err.position = { done: results.length, inFlight: c !== undefined && c !== 'preamble' && !internal.has(c) }
        }
        reject(err)
      }
      const session = this.#session<unknown[]>(deadline, timeoutMs, currentVerb, resolve, stopped)
      const { socket } = session
      socket.setNoDelay(true)
      const finish = (err: Error | undefined): void => session.finish(err ?? { value: results })

      // A wait is the only command a signal may cut: it changes nothing, so the commands before it are
      // exactly what ran. Closing the connection ends it on HAProxy's side too.
      const isWait = (c: Command<unknown> | 'preamble' | undefined): c is Command<unknown> =>
        c !== undefined && c !== 'preamble' && !internal.has(c) && (c.extraTimeMs ?? 0) > 0
      const interrupt = (c: Command<unknown>): void => finish(new RuntimeAbortedError(c.verb, results.length, signal?.reason))
      onAbort = () => { const c = current(); if (isWait(c)) interrupt(c) }
      signal?.addEventListener('abort', onAbort)

      const sendCurrent = (): void => {
        const c = current()
        if (c === undefined) { finish(undefined); return }
        if (signal?.aborted === true && isWait(c)) { interrupt(c); return }
        socket.write(c === 'preamble' ? INTERACTIVE_PREAMBLE : c.text + '\n')
      }

      const handleReply = (reply: string): boolean => {
        const c = current()
        if (c === undefined) {
          finish(new RuntimeProtocolError('HAProxy sent a reply nobody asked for', { reply }))
          return false
        }
        if (c !== 'preamble') {
          try {
            const value = c.parse(reply)
            if (!internal.has(c)) results.push(value)
          } catch (err) {
            finish(err instanceof Error ? err : new RuntimeProtocolError(String(err)))
            return false
          }
        } else if (reply !== '') {
          finish(new RuntimeProtocolError('HAProxy did not accept interactive mode (`prompt i`); is this a stats socket?', { reply }))
          return false
        }
        position++
        sendCurrent()
        return !session.settled
      }

      socket.on('connect', () => { sendCurrent() })
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk)
        let reply = reader.next()
        while (reply !== undefined && handleReply(reply)) reply = reader.next()
      })
      socket.on('close', () => {
        if (session.settled) return
        // A fatal CLI error ends with a single `\n` and a close; it is the current command's reply. Only
        // a refusal is taken from it: a "success" may be multi-line output cut short at a line end.
        const last = finalReplyOnClose(reader.pending)
        const c = current()
        if (last !== undefined && session.connected && c !== undefined && c !== 'preamble') {
          try {
            c.parse(last)
          } catch (err) {
            if (err instanceof RuntimeCommandError) finish(err)
          }
        }
        if (!session.settled) {
          finish(session.connected
            ? new RuntimeProtocolError(`HAProxy closed the connection during '${currentVerb() ?? 'prompt i'}' before replying in full`, { verb: currentVerb(), reply: reader.pending })
            : new RuntimeUnavailableError(this.endpoint, 'connection closed'))
        }
      })
    }).finally(() => { if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort) })
  }
}
