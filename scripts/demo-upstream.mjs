#!/usr/bin/env node
// The demo's tiny HTTP upstream: every request, health checks included, gets
// `200 srv=<name> path=<path>`, so a curl through HAProxy shows which server answered.
// `npm run demo` runs two of them in its own process (web1 and app1); docker-compose.yml runs this
// file as a program, one container per upstream:
//   node scripts/demo-upstream.mjs <name> <port> [<host>]      (host: 127.0.0.1 by default)
import http from 'node:http'
import { pathToFileURL } from 'node:url'

/**
 * Starts one upstream and resolves with its server once it listens; rejects with the listen error
 * (EADDRINUSE when the port is taken).
 */
export function startUpstream (name, port, host = '127.0.0.1') {
  const server = http.createServer((req, res) => {
    const body = `srv=${name} path=${req.url}\n`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [name, port, host = '127.0.0.1'] = process.argv.slice(2)
  if (!name || !/^\d+$/.test(port ?? '') || Number(port) < 1 || Number(port) > 65535) {
    process.stderr.write('usage: node scripts/demo-upstream.mjs <name> <port 1-65535> [<host>]\n')
    process.exit(2)
  }
  const server = await startUpstream(name, Number(port), host).catch(err => {
    process.stderr.write(`upstream ${name}: cannot listen on ${host}:${port}: ${err.message}\n`)
    process.exit(1)
  })
  process.stderr.write(`upstream ${name} listening on ${host}:${port}\n`)
  // As PID 1 in a container, Node gets no default signal handling: stop on the signals
  // `docker stop` and Ctrl-C send.
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => {
      server.close(() => process.exit(0))
      server.closeAllConnections()
    })
  }
}
