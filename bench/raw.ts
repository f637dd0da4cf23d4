/**
 * The benchmark's own minimal Runtime API client, written to be as fast as the protocol allows and
 * independent of src/runtime (it is what hapctl is compared against, and the bench's way of checking
 * what HAProxy really holds). Framing follows the management guide (9.3): a non-interactive connection
 * runs one line and closes; on a `prompt i` connection every reply ends with its first empty line.
 * No validation, no timeouts per command beyond a safety deadline: the bench sends only its own
 * well-formed commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import net from 'node:net'

export type Target = { readonly host: string, readonly port: number }

/** A connection that gets nothing back within this time means HAProxy is wedged: fail the bench. */
const SAFETY_MS = 30_000
const LF = 0x0a

/**
 * (a) One request on a new non-interactive connection: write it, read until HAProxy closes.
 * `request` must end with `\n` (a command line, or a payload command + payload + empty line).
 */
export function oneShot (target: Target, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect(target.port, target.host)
    socket.setNoDelay(true)
    const timer = setTimeout(() => socket.destroy(new Error(`no close within ${SAFETY_MS} ms after ${JSON.stringify(request.slice(0, 60))}`)), SAFETY_MS)
    let settled = false
    // Done at HAProxy's FIN ('end'), without waiting for our side of the close: measurably faster.
    const done = (): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'))
    }
    socket.once('connect', () => socket.write(request))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', done)
    socket.once('close', done)
    socket.once('error', (err) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** A non-interactive reply without its terminating empty line (`'\n'` → `''`). */
export function body (reply: string): string {
  return reply.endsWith('\n\n') ? reply.slice(0, -1) : reply === '\n' ? '' : reply
}

/** The last non-empty line of a reply: what decides success (a reply may carry notices before it). */
export function lastLine (reply: string): string {
  const lines = reply.split('\n').filter(l => l !== '')
  return lines[lines.length - 1] ?? ''
}

type Waiter = { resolve: (reply: string) => void, reject: (err: Error) => void }

/**
 * (b)/(c) One persistent `prompt i` connection. `send` is request/response; `pipeline` writes many
 * commands at once and collects their replies in order. Replies are returned without the empty line
 * that ends them (`add map` → `''`, `add backend` → `'New backend registered.\n'`).
 */
export class Session {
  readonly #socket: net.Socket
  readonly #waiters: Waiter[] = []
  #buf: Buffer = Buffer.alloc(0)
  /** Where to resume looking for `\n\n` in #buf. */
  #scan = 0
  #failure: Error | undefined

  private constructor (socket: net.Socket) {
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (err) => this.#fail(err))
    socket.on('close', () => this.#fail(new Error('HAProxy closed the prompt i connection')))
  }

  static async open (target: Target): Promise<Session> {
    const socket = net.connect(target.port, target.host)
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    const session = new Session(socket)
    const preamble = await session.send('prompt i')
    if (preamble !== '') throw new Error(`prompt i answered ${JSON.stringify(preamble)}`)
    return session
  }

  /** Request/response: one command, wait for its reply. */
  send (command: string): Promise<string> {
    const reply = this.#expect()
    this.#socket.write(command + '\n')
    return reply
  }

  /** Writes `commands` in batches of `batch` (one write each) and waits for each batch's replies. */
  async pipeline (commands: readonly string[], batch = 1000): Promise<string[]> {
    const replies: string[] = []
    for (let i = 0; i < commands.length; i += batch) {
      const slice = commands.slice(i, i + batch)
      const pending = slice.map(() => this.#expect())
      this.#socket.write(slice.join('\n') + '\n')
      for (const r of await Promise.all(pending)) replies.push(r)
    }
    return replies
  }

  async close (): Promise<void> {
    if (this.#socket.destroyed) return
    await new Promise<void>((resolve) => {
      this.#socket.once('close', () => resolve())
      this.#socket.end('quit\n')
    })
  }

  #expect (): Promise<string> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    return new Promise((resolve, reject) => { this.#waiters.push({ resolve, reject }) })
  }

  #onData (chunk: Buffer): void {
    const buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    let start = 0
    for (;;) {
      if (start >= buf.length) break
      let end: number
      if (buf[start] === LF) {
        end = start + 1 // an empty reply: just the terminating empty line
      } else {
        const at = buf.indexOf('\n\n', Math.max(start, this.#scan))
        if (at === -1) { this.#scan = buf.length - 1; break }
        end = at + 2
      }
      const waiter = this.#waiters.shift()
      if (waiter === undefined) {
        this.#fail(new Error(`a reply nobody asked for: ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 80)))}`))
        return
      }
      waiter.resolve(buf.toString('utf8', start, end - 1))
      start = end
      this.#scan = start
    }
    this.#buf = start === 0 ? buf : buf.subarray(start)
    this.#scan = Math.max(0, this.#scan - start)
  }

  #fail (err: Error): void {
    if (this.#failure !== undefined) return
    this.#failure = err
    for (const w of this.#waiters.splice(0)) w.reject(err)
    this.#socket.destroy()
  }
}

/** `show map <map>` on a fresh connection, as [key, value] pairs (`<id> <key> <value>` per line). */
export async function mapEntries (target: Target, map: string): Promise<Array<[string, string]>> {
  return parseShowMap(body(await oneShot(target, `show map ${map}\n`)))
}

/** The lines of a `show map` reply (`<id> <key> <value>`) as [key, value] pairs. */
export function parseShowMap (text: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const l of text.split('\n')) {
    if (l === '') continue
    const a = l.indexOf(' ')
    const b = l.indexOf(' ', a + 1)
    out.push([l.slice(a + 1, b), l.slice(b + 1)])
  }
  return out
}

/**
 * Splits `k v` lines into `add map [@ver] <map> <<` requests of at most `maxBytes` each (command line
 * + payload + final empty line), so that no request reaches HAProxy's 16384-byte buffer boundary
 * (see *Maps* in the README's "Behaviour worth knowing").
 */
export function payloadRequests (header: string, lines: readonly string[], maxBytes = 16_000): string[] {
  const requests: string[] = []
  let parts: string[] = []
  let size = header.length + 2 // header's `\n` + the final empty line
  for (const l of lines) {
    if (size + l.length + 1 > maxBytes && parts.length > 0) {
      requests.push(header + '\n' + parts.join('') + '\n')
      parts = []
      size = header.length + 2
    }
    parts.push(l + '\n')
    size += l.length + 1
  }
  if (parts.length > 0) requests.push(header + '\n' + parts.join('') + '\n')
  return requests
}
