/**
 * What the kernel says about TCP connections towards a port on 127.0.0.1 (/proc/net/tcp), for tests
 * that count Runtime API connections from outside the code under test: how many a process holds now,
 * and the most it held while something ran (sampled on a worker thread, so that a busy test process
 * does not thin out the samples).
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

/**
 * Source of the counting, shared by openClientSockets() and the sampling worker: client-side sockets
 * towards 127.0.0.1:port that a process still holds open: ESTABLISHED (01, also a connection waiting
 * in the server's backlog beyond its `maxconn`), SYN_SENT (02) and CLOSE_WAIT (08: closed by the
 * server, not yet by the client). A socket the client closed (FIN_WAIT, LAST_ACK, TIME_WAIT) is not.
 * With `pid`, only the sockets among that process's file descriptors (`socket:[<inode>]`).
 */
const COUNT_SOURCE = `
function openClientSockets (fs, port, pid) {
  const remote = '0100007F:' + port.toString(16).toUpperCase().padStart(4, '0')
  const sockets = []
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\\n')) {
    const f = line.trim().split(/\\s+/)
    if (f[2] === remote && (f[3] === '01' || f[3] === '02' || f[3] === '08')) sockets.push({ port: parseInt(f[1].split(':')[1], 16), inode: f[9] })
  }
  if (pid === undefined || sockets.length === 0) return sockets.map(s => s.port)
  const held = new Set()
  let fds = []
  try { fds = fs.readdirSync('/proc/' + pid + '/fd') } catch { return [] }
  for (const fd of fds) {
    try { held.add(fs.readlinkSync('/proc/' + pid + '/fd/' + fd)) } catch {}
  }
  return sockets.filter(s => held.has('socket:[' + s.inode + ']')).map(s => s.port)
}
`

// eslint-disable-next-line no-new-func -- the same source runs here and on the sampling worker
const count = new Function(`${COUNT_SOURCE}; return openClientSockets`)() as (fs: unknown, port: number, pid: number | undefined) => number[]

/** Local ports of the client-side sockets towards 127.0.0.1:`port` open now (of process `pid` only, when given). */
export function openClientSockets (port: number, pid?: number): number[] {
  return count({ readFileSync, readdirSync, readlinkSync }, port, pid)
}

/**
 * Samples openClientSockets(port, pid) about every millisecond on a worker thread, from when it
 * resolves (the first sample is taken) until stop(), which resolves with the most seen at once and
 * how many samples were taken.
 */
export async function sampleClientSockets (port: number, pid?: number): Promise<{ stop: () => Promise<{ max: number, samples: number }> }> {
  const shared = new SharedArrayBuffer(12)
  const flags = new Int32Array(shared)
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads')
    const fs = require('node:fs')
    ${COUNT_SOURCE}
    const flags = new Int32Array(workerData.shared)
    while (Atomics.load(flags, 0) === 0) {
      const n = openClientSockets(fs, workerData.port, workerData.pid).length
      if (n > Atomics.load(flags, 1)) Atomics.store(flags, 1, n)
      if (Atomics.add(flags, 2, 1) === 0) parentPort.postMessage('sampling')
      Atomics.wait(flags, 0, 0, 1)
    }
  `, { eval: true, workerData: { shared, port, pid } })
  const exited = new Promise<void>((resolve, reject) => {
    worker.once('exit', () => resolve())
    worker.once('error', reject)
  })
  await Promise.race([new Promise(resolve => worker.once('message', resolve)), exited])
  return {
    stop: async () => {
      Atomics.store(flags, 0, 1)
      Atomics.notify(flags, 0)
      await exited
      return { max: Atomics.load(flags, 1), samples: Atomics.load(flags, 2) }
    }
  }
}
