/**
 * A small HTTP/1.1 client for calling hapctl over real loopback TCP with keep-alive connections
 * (node:http Agent), the way a service in front of it would. Bodies are built by the caller before
 * the clock starts; the response body is read in full, as a client would.
 */
import http from 'node:http'

export type HttpReply = { status: number, body: string }

export class HttpClient {
  readonly #agent: http.Agent
  readonly #host: string
  readonly #port: number

  constructor (host: string, port: number, maxSockets = 16) {
    this.#host = host
    this.#port = port
    this.#agent = new http.Agent({ keepAlive: true, maxSockets })
  }

  /** Sends one request; `body` is a ready string with its content type. */
  request (method: string, path: string, body?: { type: string, data: string }): Promise<HttpReply> {
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = {}
      if (body !== undefined) {
        headers['content-type'] = body.type
        headers['content-length'] = Buffer.byteLength(body.data)
      }
      const req = http.request({ host: this.#host, port: this.#port, method, path, agent: this.#agent, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
        res.once('error', reject)
      })
      req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${path}: no reply within 120 s`)))
      req.once('error', reject)
      req.end(body?.data)
    })
  }

  /** Like request(), but anything other than `expected` fails the bench with hapctl's answer. */
  async expect (expected: number, method: string, path: string, body?: { type: string, data: string }): Promise<string> {
    const r = await this.request(method, path, body)
    if (r.status !== expected) throw new Error(`${method} ${path} → ${r.status} (expected ${expected}): ${r.body.slice(0, 500)}`)
    return r.body
  }

  close (): void {
    this.#agent.destroy()
  }
}

export const json = (value: unknown): { type: string, data: string } => ({ type: 'application/json', data: JSON.stringify(value) })
export const text = (data: string): { type: string, data: string } => ({ type: 'text/plain', data })
