/**
 * A recording TCP proxy between hapctl and HAProxy's stats socket, for tests that must know exactly
 * which Runtime API commands a request sent (a dry run's list against the apply's, nothing sent on a
 * refusal), seen from outside the code under test. Bytes are piped unchanged both ways, so HAProxy's
 * replies and their timing are HAProxy's; only the client → HAProxy direction is parsed, line by line.
 *
 *   const capture = await startRuntimeCapture({ host: '127.0.0.1', port: h.ports.runtime })
 *   config: HAPROXY_RUNTIME_API = capture.runtimeApi
 *   changingCommands(capture.commands()) → what could have changed HAProxy, in order
 *
 * A line ending with `<<` opens a payload (management §9.3 "payload"): the following lines up to the
 * first empty line are its payload, recorded as a count (and the first line) on the command itself,
 * never as commands of their own. The `prompt i` of an interactive connection is recorded like any
 * other line; changingCommands() drops it.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import net from 'node:net'

export type CapturedPayload = {
  /** Payload lines, without the empty line that ends the payload. */
  lines: number
  /** Bytes of those lines, each with its `\n`. */
  bytes: number
  /** The first payload line (for messages). */
  firstLine: string
  /** The payload lines themselves, with `keepPayloads`. */
  text?: string[]
  /** False while the empty line that ends it has not arrived (the connection closed before it). */
  complete: boolean
}

export type CapturedCommand = {
  /** The proxied connection it came on, 1-based, in the order connections were accepted. */
  conn: number
  /** Its position in the whole capture (0-based, in arrival order across connections). */
  seq: number
  /** The command line as sent, without its `\n`. */
  text: string
  /** Payload lines that followed a `<<` command line; undefined for other commands. */
  payloadLines?: number
  payload?: CapturedPayload
  /** performance.now() when the line arrived at the proxy. */
  at: number
}

export type RuntimeCapture = {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number
  /** `tcp://127.0.0.1:<port>`, for HAPROXY_RUNTIME_API. */
  readonly runtimeApi: string
  /** Every command line received so far, in arrival order (optionally of one connection only). */
  commands: (conn?: number) => CapturedCommand[]
  /** Connections accepted so far. */
  readonly connections: number
  /** Forgets what was recorded (connection numbers keep counting). */
  clear: () => void
  /**
   * Resolves with the first command (recorded so far or later) that `predicate` accepts; rejects after
   * `timeoutMs` (default 10 s).
   */
  waitForCommand: (predicate: (c: CapturedCommand) => boolean, opts?: { timeoutMs?: number }) => Promise<CapturedCommand>
  /** Stops listening and destroys every proxied connection (both sides). */
  close: () => Promise<void>
}

export type RuntimeCaptureOptions = {
  /** Keep each payload's lines (payload.text); off by default, a 1,000,000-entry map load is large. */
  keepPayloads?: boolean
}

/**
 * Starts the proxy on a free loopback port. `target` is HAProxy's TCP stats socket (or `{ path }`
 * for a unix one).
 */
export async function startRuntimeCapture (
  target: { host: string, port: number } | { path: string },
  options: RuntimeCaptureOptions = {}
): Promise<RuntimeCapture> {
  let recorded: CapturedCommand[] = []
  let seq = 0
  let connections = 0
  const sockets = new Set<net.Socket>()
  const waiters = new Set<{ predicate: (c: CapturedCommand) => boolean, resolve: (c: CapturedCommand) => void }>()

  const record = (c: CapturedCommand): void => {
    recorded.push(c)
    for (const w of waiters) {
      if (w.predicate(c)) { waiters.delete(w); w.resolve(c) }
    }
  }

  const onConnection = (client: net.Socket): void => {
    const conn = ++connections
    // Half-open both ways: a client that half-closes after its line (a non-interactive command, the
    // master CLI) must still get the whole reply, and HAProxy's close must reach the client as such.
    const server = net.connect({ ...target, allowHalfOpen: true })
    sockets.add(client)
    sockets.add(server)
    const teardown = (): void => { client.destroy(); server.destroy() }
    client.on('error', teardown)
    server.on('error', teardown)
    client.on('close', () => { sockets.delete(client); if (!server.writableEnded) server.end() })
    server.on('close', () => { sockets.delete(server); if (!client.writableEnded) client.end() })
    client.pipe(server)
    server.pipe(client)

    let pending = ''
    // The command whose payload is being read, until the empty line that ends it.
    let inPayload: CapturedCommand | undefined
    client.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1')
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        // latin1 keeps each byte one character, so a UTF-8 character split across chunks is whole
        // once decoded with its line.
        const line = Buffer.from(pending.slice(0, nl), 'latin1').toString('utf8')
        pending = pending.slice(nl + 1)
        if (inPayload !== undefined) {
          const p = inPayload.payload as CapturedPayload
          if (line === '') {
            p.complete = true
            inPayload = undefined
            continue
          }
          if (p.lines === 0) p.firstLine = line
          p.lines++
          p.bytes += Buffer.byteLength(line) + 1
          p.text?.push(line)
          inPayload.payloadLines = p.lines
          continue
        }
        const command: CapturedCommand = { conn, seq: seq++, text: line, at: performance.now() }
        if (/<<\s*$/.test(line)) {
          command.payload = { lines: 0, bytes: 0, firstLine: '', complete: false, ...(options.keepPayloads === true ? { text: [] } : {}) }
          command.payloadLines = 0
          inPayload = command
        }
        record(command)
      }
    })
  }

  const listener = net.createServer({ allowHalfOpen: true }, onConnection)
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(0, '127.0.0.1', () => { listener.off('error', reject); resolve() })
  })
  const port = (listener.address() as net.AddressInfo).port

  return {
    port,
    runtimeApi: `tcp://127.0.0.1:${port}`,
    commands: (conn?: number) => recorded.filter(c => conn === undefined || c.conn === conn),
    get connections () { return connections },
    clear: () => { recorded = [] },
    waitForCommand: (predicate, opts = {}) => {
      const seen = recorded.find(predicate)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (c: CapturedCommand) => { clearTimeout(timer); resolve(c) }
        }
        const timeoutMs = opts.timeoutMs ?? 10_000
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`runtime capture: no matching command within ${timeoutMs} ms; last ones: ${JSON.stringify(recorded.slice(-5).map(c => c.text))}`))
        }, timeoutMs)
        waiters.add(waiter)
      })
    },
    close: async () => {
      for (const s of sockets) s.destroy()
      sockets.clear()
      await new Promise<void>(resolve => listener.close(() => resolve()))
    }
  }
}

/** Connection setup (`prompt i`, `set timeout cli …`, `experimental-mode on`): never a change to HAProxy. */
export function isSetupCommand (text: string): boolean {
  return /^prompt(\s|$)/.test(text) || /^set timeout cli(\s|$)/.test(text) || /^experimental-mode on\s*$/.test(text)
}

/** A read: `show …` (management §9.3), which changes nothing. */
export function isReadCommand (text: string): boolean {
  return /^show(\s|$)/.test(text)
}

/** The commands that can change HAProxy: without connection setup and reads, in the same order. */
export function changingCommands<C extends { text: string }> (list: readonly C[]): C[] {
  return list.filter(c => !isSetupCommand(c.text) && !isReadCommand(c.text))
}
