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
import { experimentalModeOn } from './commands/index.ts'
import { RuntimeCommandError, RuntimeError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from './errors.ts'
import { INTERACTIVE_PREAMBLE, ReplyReader, finalReplyOnClose } from './protocol.ts'

export type Endpoint =
  | { readonly kind: 'tcp', readonly host: string, readonly port: number }
  | { readonly kind: 'unix', readonly path: string }

export function describeEndpoint (e: Endpoint): string {
  return e.kind === 'tcp' ? `tcp://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}` : `unix://${e.path}`
}

/** The subset of pino's logger the client uses. */
export type RuntimeLogger = {
  debug: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

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
}

type Results<C extends readonly Command<unknown>[]> = { -readonly [K in keyof C]: CommandResult<C[K]> }

/** What every caller of the Runtime API depends on; tests and the OpenAPI generator pass fakes. */
export type Runtime = {
  execute: <const C extends readonly Command<unknown>[]>(commands: C, options?: ExecuteOptions) => Promise<Results<C>>
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
    if (this.#closed) throw new RuntimeUnavailableError(this.endpoint, 'the client is closed')
    // Capture the caller's stack now: errors raised from socket callbacks would otherwise point nowhere useful.
    const callSite = new Error('called from')
    const extra = commands.reduce((sum, c) => sum + (c.extraTimeMs ?? 0), 0)
    const timeoutMs = (options.timeoutMs ?? this.#timeoutMs) + extra
    const deadline = Date.now() + timeoutMs
    const started = performance.now()
    try {
      await this.#acquire(deadline, timeoutMs)
      try {
        const results = await this.#run(commands, deadline, timeoutMs)
        this.#logger?.debug({ commands: commands.map(c => c.verb), ms: Math.round(performance.now() - started) }, 'runtime sequence done')
        return results as Results<C>
      } finally {
        this.#release()
      }
    } catch (err) {
      if (err instanceof RuntimeError && err.stack !== undefined && callSite.stack !== undefined) {
        err.stack += '\n' + callSite.stack.split('\n').slice(1).join('\n')
      }
      if (!(err instanceof RuntimeCommandError)) {
        this.#logger?.warn({ err, commands: commands.map(c => c.verb) }, 'runtime sequence failed')
      }
      throw err
    }
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

  #run (commands: readonly Command<unknown>[], deadline: number, timeoutMs: number): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      const socket = this.#endpoint.kind === 'tcp'
        ? net.connect({ host: this.#endpoint.host, port: this.#endpoint.port })
        : net.connect({ path: this.#endpoint.path })
      this.#sockets.add(socket)
      socket.setNoDelay(true)

      // The queue of lines to send: `prompt i`'s own (empty) reply first, then each command's.
      const queue: Array<Command<unknown> | 'preamble'> = ['preamble']
      const modeOn = commands.some(c => c.experimental === true) ? experimentalModeOn() : undefined
      for (const c of commands) {
        if (c.experimental === true && modeOn !== undefined && !queue.includes(modeOn)) queue.push(modeOn)
        queue.push(c)
      }
      const results: unknown[] = []
      const reader = new ReplyReader()
      let connected = false
      let settled = false
      let position = 0

      const finish = (err: Error | undefined): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.#sockets.delete(socket)
        socket.destroy()
        if (err === undefined) resolve(results)
        else reject(err)
      }
      const current = (): Command<unknown> | 'preamble' | undefined => queue[position]
      const currentVerb = (): string | undefined => {
        const c = current()
        return c === undefined || c === 'preamble' ? undefined : c.verb
      }

      const timer = setTimeout(() => finish(new RuntimeTimeoutError(timeoutMs, currentVerb())), Math.max(0, deadline - Date.now()))

      const sendCurrent = (): void => {
        const c = current()
        if (c === undefined) { finish(undefined); return }
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
            if (c !== modeOn) results.push(value)
          } catch (err) {
            if (err instanceof RuntimeCommandError) err.index = results.length
            finish(err instanceof Error ? err : new RuntimeProtocolError(String(err)))
            return false
          }
        } else if (reply !== '') {
          finish(new RuntimeProtocolError('HAProxy did not accept interactive mode (`prompt i`); is this a stats socket?', { reply }))
          return false
        }
        position++
        sendCurrent()
        return !settled
      }

      socket.on('connect', () => {
        connected = true
        sendCurrent()
      })
      socket.on('data', (chunk: Buffer) => {
        reader.push(chunk)
        let reply = reader.next()
        while (reply !== undefined && handleReply(reply)) reply = reader.next()
      })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected) finish(new RuntimeUnavailableError(this.endpoint, err.code ?? err.message, { cause: err }))
        else finish(new RuntimeProtocolError(`connection to HAProxy failed during '${currentVerb() ?? 'prompt i'}' (${err.code ?? err.message})`, { verb: currentVerb(), cause: err }))
      })
      socket.on('close', () => {
        if (settled) return
        // A fatal CLI error ends with a single `\n` and a close; it is the current command's reply.
        const last = finalReplyOnClose(reader.pending)
        if (last !== undefined && connected) handleReply(last)
        if (!settled) {
          finish(connected
            ? new RuntimeProtocolError(`HAProxy closed the connection during '${currentVerb() ?? 'prompt i'}' before replying in full`, { verb: currentVerb(), reply: reader.pending })
            : new RuntimeUnavailableError(this.endpoint, 'connection closed'))
        }
      })
    })
  }
}
