/**
 * Pure framing of the HAProxy Runtime API (the "stats socket" CLI): what goes on the wire and how
 * replies are cut out of the byte stream. No sockets here, so every rule is testable byte by byte.
 * @see https://docs.haproxy.org/3.4/management.html#9.3 (Unix Socket commands)
 */
import { StringDecoder } from 'node:string_decoder'

/**
 * The longest line HAProxy accepts is tune.bufsize (16384 by default) including the final `\n`;
 * a longer one is answered "The command line is too big…" and the connection is closed, losing
 * whatever was pipelined behind it (docs/runtime-api.md#framing). We stay well under it.
 */
export const MAX_LINE_BYTES = 16_000

/**
 * Sent first on every connection we keep open for several commands: interactive mode without a
 * prompt. Each reply then ends with one empty line and the connection stays open (docs/runtime-api.md#framing).
 * Never `prompt p`: the `> ` prompt would have to be stripped, and `+ ` appears inside payloads.
 */
export const INTERACTIVE_PREAMBLE = 'prompt i\n'

/**
 * Cuts replies out of an interactive-mode stream. Every command's output is followed by exactly one
 * empty line, so a reply ends at the first `\n\n` (or is a lone `\n` when the command printed
 * nothing). Chunks may split anywhere, including inside a multi-byte UTF-8 character.
 */
export class ReplyReader {
  readonly #decoder = new StringDecoder('utf8')
  /** Text received and not yet returned, as it arrived: joined only once a reply is complete. */
  #chunks: string[] = []
  /** Chunks already searched without finding the end of the current reply. */
  #scanned = 0
  /** Last character searched, `\n` at the start of a reply (so that a lone `\n` is an empty reply). */
  #last = '\n'

  push (chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk)
    if (text.length > 0) this.#chunks.push(text)
  }

  /**
   * The next complete reply (its text without the terminating empty line), or undefined. Each chunk
   * is searched once, so a multi-megabyte `show map` arriving in 16 KiB pieces costs linear time.
   */
  next (): string | undefined {
    for (let c = this.#scanned; c < this.#chunks.length; c++) {
      const chunk = this.#chunks[c] as string
      // Index in this chunk of the `\n` that completes the terminating `\n\n`.
      let end: number
      if (this.#last === '\n' && chunk.startsWith('\n')) end = 0
      else {
        const i = chunk.indexOf('\n\n')
        end = i === -1 ? -1 : i + 1
      }
      if (end === -1) {
        this.#last = chunk[chunk.length - 1] as string
        this.#scanned = c + 1
        continue
      }
      const text = this.#chunks.slice(0, c).join('') + chunk.slice(0, end + 1)
      const rest = chunk.slice(end + 1)
      this.#chunks = rest.length > 0 ? [rest, ...this.#chunks.slice(c + 1)] : this.#chunks.slice(c + 1)
      this.#scanned = 0
      this.#last = '\n'
      // `text` ends with the terminator; a reply of one `\n` is the empty reply.
      return text.length <= 1 ? '' : text.slice(0, -2)
    }
    return undefined
  }

  /**
   * For a reply consumed in pieces (Command.sink): the rest of the current reply when it is complete
   * (`done`), else as much of it as can be handed over now, or undefined when nothing can. A trailing
   * `\n` is held back, since it may be the first half of the terminating empty line.
   */
  nextPiece (): { text: string, done: boolean } | undefined {
    const reply = this.next()
    if (reply !== undefined) return { text: reply, done: true }
    if (this.#chunks.length === 0) return undefined
    const pending = this.#chunks.length === 1 ? this.#chunks[0] as string : this.#chunks.join('')
    const hold = pending.endsWith('\n') ? 1 : 0
    if (pending.length === hold) return undefined
    const text = pending.slice(0, pending.length - hold)
    this.#chunks = hold === 1 ? ['\n'] : []
    this.#scanned = 0
    // No longer at the start of a reply: a `\n` now first is a line end, not the empty reply.
    this.#last = text[text.length - 1] as string
    return { text, done: false }
  }

  /**
   * Text received that does not (yet) form a complete reply. Side-effect free: bytes of a character
   * still split across chunks stay in the decoder.
   */
  get pending (): string {
    return this.#chunks.join('')
  }
}

/**
 * HAProxy closes the connection right after a few fatal errors, ending them with a single `\n`
 * instead of an empty line ("The command line is too big…", "The payload is too big…",
 * docs/runtime-api.md#framing). When the socket closes on such a remainder, it is that command's reply.
 */
export function finalReplyOnClose (pending: string): string | undefined {
  if (pending.length === 0 || !pending.endsWith('\n')) return undefined
  return pending.replace(/\n+$/, '')
}

/**
 * The reply of a non-interactive connection (one line, then HAProxy closes): everything received,
 * without the empty line that ends it.
 */
export function nonInteractiveReply (received: string): string {
  return received.replace(/\n\n$/, '').replace(/^\n$/, '')
}

/** The last non-empty line: the one that carries a command's own verdict (docs/runtime-api.md#del-backend-notices). */
export function lastLine (reply: string): string {
  const lines = reply.split('\n').filter(l => l.length > 0)
  return lines.length === 0 ? '' : lines[lines.length - 1] as string
}

/** HAProxy's answer without the state-change notices it sometimes prepends (docs/runtime-api.md#del-backend-notices). */
export function withoutNotices (reply: string): string {
  return reply.split('\n')
    .filter(l => !/^Server \S+ is (going|UP|DOWN)\b/.test(l) && !/^backend '.*' has no server available!$/.test(l))
    .join('\n')
}
