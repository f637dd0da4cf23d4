import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { LARGE_BODY_BYTES, Slots } from '../../src/plugins/large-bodies.ts'
import { buildTestApp } from '../helpers/build-test-app.ts'
import { fakeRuntime } from '../helpers/fake-runtime.ts'

/*
 * At most HAPCTL_MAX_LARGE_BODIES large bodies at once: a slot is taken before the body is read and
 * held until the answer is sent (or the client goes away); one more waits, then gets 503 with
 * Retry-After; small bodies and other routes never wait.
 */

describe('Slots', () => {
  it('hands out at most max, wakes waiters in order, and lets a waiter give up', async () => {
    const slots = new Slots(1)
    const first = await slots.acquire(1000)
    const order: string[] = []
    const second = slots.acquire(1000).then(r => { order.push('second'); return r })
    const third = slots.acquire(1000).then(r => { order.push('third'); return r })
    await expect(slots.acquire(20)).rejects.toThrow('no slot')
    first()
    first() // twice is once
    ;(await second)()
    ;(await third)()
    expect(order).toEqual(['second', 'third'])
    expect(slots.used).toBe(0)
  })
})

/** Sends headers announcing `length` bytes and part of the body, then waits; resolves with what came back once closed. */
function startUpload (port: number, path: string, length: number, contentType = 'text/plain'): { socket: Socket, answer: Promise<string> } {
  const socket = connect(port, '127.0.0.1')
  socket.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\n\r\n/a b\n`)
  let received = ''
  socket.on('data', b => { received += b.toString('utf8') })
  const answer = new Promise<string>(resolve => {
    socket.on('close', () => resolve(received))
    socket.on('error', () => {})
  })
  return { socket, answer }
}

describe('large bodies at once', () => {
  it('two uploads hold the slots; a third gets 503 with Retry-After before its body is read; small writes go on', async () => {
    const app = await buildTestApp(fakeRuntime(() => new Error('HAProxy is not part of this test')), { HAPCTL_MAX_LARGE_BODIES: '2', HAPCTL_LOCK_TIMEOUT_MS: '200' })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as { port: number }
    const path = '/maps/virt%40paths.map/entries'
    const a = startUpload(port, path, 8 * LARGE_BODY_BYTES)
    const b = startUpload(port, path, 8 * LARGE_BODY_BYTES)
    await new Promise(resolve => setTimeout(resolve, 100))
    const started = Date.now()
    const third = await app.inject({ method: 'PUT', url: path, headers: { 'content-type': 'text/plain', 'content-length': String(2 * LARGE_BODY_BYTES) }, payload: 'x'.repeat(2 * LARGE_BODY_BYTES) })
    expect(third.statusCode).toBe(503)
    expect(third.headers['retry-after']).toBe('1')
    expect(third.json()).toMatchObject({ code: 'HAPX_LARGE_BODIES_BUSY' })
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)
    // A small body on the same route does not need a slot (it goes on to HAProxy, absent here: 503).
    const small = await app.inject({ method: 'PUT', url: path, headers: { 'content-type': 'text/plain' }, payload: '/a b\n' })
    expect(small.json().code).not.toBe('HAPX_LARGE_BODIES_BUSY')
    // One upload goes away: its slot is free for the next large body.
    a.socket.destroy()
    await a.answer
    await new Promise(resolve => setTimeout(resolve, 50))
    const next = await app.inject({ method: 'PUT', url: path, headers: { 'content-type': 'text/plain' }, payload: '/a b\n'.repeat(300_000) })
    expect(next.json().code).not.toBe('HAPX_LARGE_BODIES_BUSY')
    b.socket.destroy()
    await b.answer
    // Slots are given back when an answer is sent over a real connection too: more large bodies than
    // slots, one after the other, never wait.
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: '/a b\n'.repeat(300_000) })
      expect(((await res.json()) as { code?: string }).code).not.toBe('HAPX_LARGE_BODIES_BUSY')
    }
  })
})
