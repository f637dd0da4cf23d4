/**
 * A Server-Sent Events client for tests of GET /events: node's http.get on a listening app (inject
 * does not stream), the stream parsed into events and comments as they arrive.
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
 */
import { get } from 'node:http'
import type { ClientRequest, IncomingMessage } from 'node:http'

export type SseEvent = { id: string | undefined, event: string, data: any }

export type SseStream = {
  readonly status: number
  readonly headers: IncomingMessage['headers']
  /** Every event received so far. */
  readonly events: SseEvent[]
  /** Comment lines received so far (without the leading `:`, trimmed). */
  readonly comments: string[]
  /** The body of a non-200 answer, parsed as JSON. */
  readonly problem: any
  /** True once the server ended or cut the stream. */
  readonly ended: boolean
  /** Resolves with the first event (already received or to come) that `predicate` accepts. */
  next: (predicate: (e: SseEvent) => boolean, timeoutMs?: number) => Promise<SseEvent>
  /** Resolves once the stream ends (server side). */
  end: (timeoutMs?: number) => Promise<void>
  /** The id of the last event received. */
  lastId: () => string | undefined
  /** Stops reading (the server's writes pile up in its buffer). */
  pause: () => void
  resume: () => void
  /** Closes the connection from the client side. */
  close: () => void
  readonly req: ClientRequest
}

export async function openSse (url: string, opts: { headers?: Record<string, string> } = {}): Promise<SseStream> {
  return await new Promise<SseStream>((resolve, reject) => {
    const req = get(url, { headers: { accept: 'text/event-stream', ...opts.headers } })
    req.once('error', reject)
    req.once('response', res => {
      const events: SseEvent[] = []
      const comments: string[] = []
      const waiters = new Set<() => void>()
      let buffer = ''
      let ended = false
      let problem: any
      const wake = (): void => { for (const w of [...waiters]) w() }
      res.setEncoding('utf8')
      if (res.statusCode !== 200) {
        let body = ''
        res.on('data', (c: string) => { body += c })
        res.once('end', () => {
          try { problem = JSON.parse(body) } catch { problem = body }
          ended = true
          resolve(stream)
        })
      } else {
        res.on('data', (chunk: string) => {
          buffer += chunk
          for (let i = buffer.indexOf('\n\n'); i !== -1; i = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, i)
            buffer = buffer.slice(i + 2)
            let id: string | undefined
            let event = 'message'
            const data: string[] = []
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments.push(line.slice(1).trim())
              else if (line.startsWith('id: ')) id = line.slice(4)
              else if (line.startsWith('event: ')) event = line.slice(7)
              else if (line.startsWith('data: ')) data.push(line.slice(6))
            }
            if (data.length > 0) events.push({ id, event, data: JSON.parse(data.join('\n')) })
          }
          wake()
        })
        const done = (): void => { ended = true; wake() }
        res.once('end', done)
        res.once('close', done)
        res.once('error', done)
        setImmediate(() => { resolve(stream) })
      }
      const stream: SseStream = {
        get status () { return res.statusCode ?? 0 },
        headers: res.headers,
        events,
        comments,
        get problem () { return problem },
        get ended () { return ended },
        req,
        next: async (predicate, timeoutMs = 5000) => await new Promise<SseEvent>((resolve, reject) => {
          let seen = 0
          const check = (): void => {
            for (; seen < events.length; seen++) {
              const e = events[seen] as SseEvent
              if (predicate(e)) { finish(); resolve(e); return }
            }
            if (ended) { finish(); reject(new Error(`the stream ended before the event came; got ${JSON.stringify(events.map(e => e.event))}`)) }
          }
          const timer = setTimeout(() => { finish(); reject(new Error(`no such event within ${timeoutMs} ms; got ${JSON.stringify(events.map(e => [e.event, e.data?.status ?? e.data?.revision]))}`)) }, timeoutMs)
          const finish = (): void => { clearTimeout(timer); waiters.delete(check) }
          waiters.add(check)
          check()
        }),
        end: async (timeoutMs = 5000) => await new Promise<void>((resolve, reject) => {
          const check = (): void => { if (ended) { finish(); resolve() } }
          const timer = setTimeout(() => { finish(); reject(new Error(`the stream did not end within ${timeoutMs} ms`)) }, timeoutMs)
          const finish = (): void => { clearTimeout(timer); waiters.delete(check) }
          waiters.add(check)
          check()
        }),
        lastId: () => [...events].reverse().find(e => e.id !== undefined)?.id,
        pause: () => { res.pause() },
        resume: () => { res.resume() },
        close: () => { req.destroy() }
      }
    })
  })
}
