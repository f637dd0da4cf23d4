import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

/*
 * A dummy HTTP upstream for HAProxy to route to, the Node twin of runtime-evidence/echo_server.py +
 * slow_server.py: every request gets `200 srv=<name> path=<path>\n`, `GET /sleep/<ms>` answers after
 * <ms> milliseconds (drain tests), `GET /health` is a plain 200 for health checks.
 * stop() + start() take it away and bring it back on the SAME port, so HAProxy sees the server go
 * DOWN and UP again.
 */

export interface Upstream {
  readonly name: string
  readonly port: number
  readonly address: '127.0.0.1'
  readonly url: string
  /** Requests answered so far (counted when the reply is sent). */
  readonly requests: number
  /** Closes the listener and destroys every open connection, including requests still sleeping. */
  stop(): Promise<void>
  /** Listens again on the same port (no-op when already listening). */
  start(): Promise<void>
}

export interface StartUpstreamOptions {
  /** 0 (default) picks a free port. */
  port?: number
}

const SLEEP_PATH = /^\/sleep\/(\d+)(?:[/?]|$)/

export async function startUpstream (name: string, opts: StartUpstreamOptions = {}): Promise<Upstream> {
  let port = opts.port ?? 0
  let requests = 0
  let server: Server | undefined
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()

  function answer (req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/'
    const body = `srv=${name} path=${path}\n`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
    requests++
  }

  function handle (req: IncomingMessage, res: ServerResponse): void {
    const sleep = SLEEP_PATH.exec(req.url ?? '')
    if (req.method === 'GET' && sleep) {
      const timer = setTimeout(() => {
        timers.delete(timer)
        if (!res.destroyed) answer(req, res)
      }, Number(sleep[1]))
      timers.add(timer)
      return
    }
    answer(req, res) // `/health` and everything else
  }

  async function start (): Promise<void> {
    if (server) return
    const s = createServer(handle)
    s.keepAliveTimeout = 30_000
    s.on('connection', (socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject)
        resolve()
      })
    })
    port = (s.address() as { port: number }).port
    server = s
  }

  async function stop (): Promise<void> {
    const s = server
    if (!s) return
    server = undefined
    for (const timer of timers) clearTimeout(timer)
    timers.clear()
    const closed = new Promise<void>((resolve) => s.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    await closed
  }

  await start()

  return {
    name,
    address: '127.0.0.1',
    get port () { return port },
    get url () { return `http://127.0.0.1:${port}` },
    get requests () { return requests },
    stop,
    start
  }
}
