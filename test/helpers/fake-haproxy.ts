/**
 * A scriptable stand-in for HAProxy's stats socket, on TCP (127.0.0.1:0) or a unix socket in a temp
 * dir, for the client's fault tests: each received line gets whatever the script says (reply bytes,
 * a delay, a stall, a close). It records every line and flags a client that pipelines.
 */
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Endpoint } from '../../src/runtime/client.ts'

/** What the fake does with one received line. */
export type Step =
  /** `last`: this reply ends the conversation, so the connection stops counting as open once it is written. */
  | { reply: string | Buffer, delayMs?: number, last?: boolean }
  /** Never answer; keep the connection open. */
  | { stall: true }
  /** Write `reply` (if any), then close the connection. */
  | { close: true, reply?: string | Buffer, delayMs?: number }

export type Received = { conn: number, line: string }

/** Returns the step for a line (`prompt i` included); `undefined` means an empty reply (`\n`), HAProxy's answer to `prompt i`. */
export type Script = (line: string, info: { conn: number, index: number }) => Step | undefined

export type FakeHaproxy = {
  endpoint: Endpoint
  /** Every line received, in arrival order, with the connection it came on (1-based). */
  received: Received[]
  /** Lines that arrived while the previous line of the same connection had not been answered yet. */
  pipelined: Received[]
  /**
   * Connections open right now, and the most ever open at once. A connection stops counting when it
   * closes or when a `last` reply has been written to it, whichever comes first: a client may only open
   * its next connection after reading that reply, so the count does not depend on which of a close and
   * a new connection the event loop sees first.
   */
  readonly open: number
  readonly maxOpen: number
  readonly connections: number
  lines: (conn?: number) => string[]
  /** Closes connection `conn` (1-based) from the server's side, as HAProxy does on `shutdown session`. */
  drop: (conn: number) => void
  stop: () => Promise<void>
  start: () => Promise<void>
  close: () => Promise<void>
}

export function startFakeHaproxy (options: { transport?: 'tcp' | 'unix', script?: Script } = {}): Promise<FakeHaproxy> {
  const transport = options.transport ?? 'tcp'
  const script: Script = options.script ?? (() => undefined)
  const sockets = new Set<net.Socket>()
  const byConn = new Map<number, net.Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const received: Received[] = []
  const pipelined: Received[] = []
  let open = 0
  let maxOpen = 0
  let connections = 0
  let server: net.Server | undefined
  let dir: string | undefined
  let endpoint: Endpoint | undefined

  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => { timers.delete(t); fn() }, ms)
    timers.add(t)
  }

  const onConnection = (socket: net.Socket): void => {
    const conn = ++connections
    sockets.add(socket)
    byConn.set(conn, socket)
    open++
    maxOpen = Math.max(maxOpen, open)
    let buffer = ''
    let index = 0
    let awaiting = false
    let counted = true
    const uncount = (): void => { if (counted) { counted = false; open-- } }
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket); uncount() })
    socket.on('data', chunk => {
      buffer += chunk.toString('utf8')
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        const entry = { conn, line }
        received.push(entry)
        if (awaiting) pipelined.push(entry)
        awaiting = true
        const step: Step = script(line, { conn, index: index++ }) ?? { reply: '\n' }
        if ('stall' in step) continue
        const act = (): void => {
          if (socket.destroyed) return
          awaiting = false
          // Closing is the server's decision: like HAProxy, it no longer counts the session from then on.
          if ('close' in step) { uncount(); socket.end(step.reply ?? '') } else {
            if (step.last === true) uncount()
            socket.write(step.reply)
          }
        }
        if (step.delayMs === undefined) act()
        else later(step.delayMs, act)
      }
    })
  }

  const start = async (): Promise<void> => {
    server = net.createServer(onConnection)
    const s = server
    if (transport === 'unix') {
      dir ??= await fs.mkdtemp(path.join(os.tmpdir(), 'hapctl-fake-'))
      const socketPath = path.join(dir, 'admin.sock')
      await fs.rm(socketPath, { force: true })
      await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(socketPath, resolve) })
      endpoint = { kind: 'unix', path: socketPath }
    } else {
      const port = endpoint?.kind === 'tcp' ? endpoint.port : 0
      await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(port, '127.0.0.1', resolve) })
      endpoint = { kind: 'tcp', host: '127.0.0.1', port: (s.address() as net.AddressInfo).port }
    }
  }

  const stop = async (): Promise<void> => {
    for (const t of timers) clearTimeout(t)
    timers.clear()
    for (const s of sockets) s.destroy()
    const s = server
    server = undefined
    if (s !== undefined) await new Promise<void>(resolve => s.close(() => resolve()))
  }

  return start().then(() => ({
    get endpoint () { return endpoint as Endpoint },
    received,
    pipelined,
    get open () { return open },
    get maxOpen () { return maxOpen },
    get connections () { return connections },
    lines: (conn?: number) => received.filter(r => conn === undefined || r.conn === conn).map(r => r.line),
    drop: (conn: number) => { byConn.get(conn)?.destroy() },
    stop,
    start,
    close: async () => {
      await stop()
      if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true })
    }
  }))
}
