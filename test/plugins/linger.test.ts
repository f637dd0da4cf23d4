import { request } from 'node:http'
import { describe, expect, it } from 'vitest'
import { startHapctl } from '../helpers/hapctl-process.ts'

/*
 * An answer sent before the body was read (413 from Content-Length, 401 from onRequest) reaches a
 * client that is still sending, instead of being destroyed by the reset of a socket closed under its
 * incoming bytes (the client then saw EPIPE or ECONNRESET).
 */

type Answer = { status: number } | { error: string }

function upload (port: number, path: string, bytes: number, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise(resolve => {
    let answered = false
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(bytes), ...headers } }, res => {
      answered = true
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }))
      res.on('error', err => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }))
    })
    req.on('error', err => { if (!answered) resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    // Sent in pieces, as a real client does, so that the answer arrives while it is still sending; after
    // the first piece the client is busy for a while (as a loaded machine makes it), so that the answer,
    // and whatever the server does after it, are all waiting when it looks again.
    const chunk = Buffer.alloc(256 * 1024, 0x20)
    let sent = 0
    req.write(chunk.subarray(0, 1024))
    sent = 1024
    const busyUntil = Date.now() + 300
    while (Date.now() < busyUntil) { /* a client busy elsewhere */ }
    const more = (): void => {
      while (sent < bytes) {
        const piece = chunk.subarray(0, Math.min(chunk.length, bytes - sent))
        sent += piece.length
        if (!req.write(piece)) { req.once('drain', more); return }
      }
      req.end()
    }
    more()
  })
}

describe('answers sent before the body was read', () => {
  it('reach the client (413 on a body too large, 401 without a token), every time', async () => {
    // Its own process: the client below must be busy while the server is not.
    const { port } = await startHapctl({ env: { API_TOKEN: 'a-token-of-at-least-16', LOG_LEVEL: 'warn' } })
    const answers: Answer[] = []
    for (let i = 0; i < 5; i++) {
      answers.push(await upload(port, '/backends', 32 * 1024 * 1024, { authorization: 'Bearer a-token-of-at-least-16' }))
      answers.push(await upload(port, '/backends', 32 * 1024 * 1024))
    }
    expect(answers).toEqual(Array.from({ length: 5 }, () => [{ status: 413 }, { status: 401 }]).flat())
  }, 60_000)
})
