import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defaultConfig, httpGet, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Proves the integration harness itself against a real HAProxy 3.4: routing through both frontends,
 * the test's own Runtime API view (`cli`), restart semantics and upstreams going away and back, and in
 * master-worker mode reload / kill + start / stop, which the desired-state work relies on.
 */

/** Alive and not a zombie (a worker whose master was SIGKILLed is reaped by init, not by us). */
function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z'
  } catch {
    return false
  }
}

/** Processes whose command line mentions `text` (HAProxy's mention its temp dir: `-f <dir>/haproxy.cfg`). */
function processesMentioning (text: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(text))
}

/** One exchange on the unix admin socket, to show it follows the worker like the TCP one. */
function unixCli (url: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let reply = ''
    const socket = connect({ path: url.replace(/^unix:\/\//, '') })
    socket.setEncoding('utf8')
    socket.once('connect', () => socket.write(line + '\n'))
    socket.on('data', (chunk: string) => { reply += chunk })
    socket.once('end', () => resolve(reply))
    socket.once('error', reject)
  })
}

/** An interactive Runtime API connection kept open across a reload (`prompt`: every reply ends with `> `). */
async function openInteractiveCli (port: number) {
  const socket = connect({ host: '127.0.0.1', port })
  let buffer = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { buffer += chunk })
  socket.on('error', () => { /* the test reads what arrived; a reset shows up as a timeout there */ })
  const send = (line: string) => {
    buffer = ''
    socket.write(line + '\n')
    return waitFor(async () => buffer, (b) => b.endsWith('\n> '), { timeoutMs: 3_000, intervalMs: 10 })
  }
  // Plain `prompt`: 3.4's `prompt i` is interactive without the prompt, leaving no end-of-reply marker.
  await send('prompt')
  return { send, close: () => socket.destroy() }
}

const infoField = (reply: string, name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(reply)?.[1]
describe('integration harness', () => {
  let h: HaproxyInstance | undefined
  const haproxy = () => {
    if (!h) throw new Error('HAProxy did not start')
    return h
  }

  beforeAll(async () => { h = await startHaproxy() })
  afterAll(() => h?.stop())

  it('routes an unmapped path to the default backend', async () => {
    const res = await httpGet(haproxy().frontendUrl + '/x')
    expect(res).toEqual({ status: 200, body: 'srv=web1 path=/x\n' })
  })

  it('routes fe_ref /ref to static_ref', async () => {
    const res = await httpGet(haproxy().refFrontendUrl + '/ref/a')
    expect(res).toEqual({ status: 200, body: 'srv=r1 path=/ref/a\n' })
    expect((await httpGet(haproxy().refFrontendUrl + '/other')).body).toBe('srv=web1 path=/other\n')
  })

  it('talks to the Runtime API over TCP', async () => {
    const reply = await haproxy().cli('show version')
    expect(reply).toMatch(/^3\.4/)
    expect(reply.endsWith('\n\n')).toBe(true)
    expect(haproxy().runtimeApi).toBe(`tcp://127.0.0.1:${haproxy().ports.runtime}`)
    expect(haproxy().unixRuntimeApi).toBe(`unix://${haproxy().dir}/admin.sock`)
  })

  it('sees map changes at once and loses them on restart', async () => {
    const h = haproxy()
    expect(await h.cli('add map virt@paths.map /ref static_ref')).toBe('\n')
    expect((await httpGet(h.frontendUrl + '/ref/a')).body).toBe('srv=r1 path=/ref/a\n')

    const pid = h.pid
    await h.restart()
    expect(h.pid).not.toBe(pid)
    expect(await h.cli('show map virt@paths.map')).toBe('\n')
    expect(await httpGet(h.frontendUrl + '/ref/a')).toEqual({ status: 200, body: 'srv=web1 path=/ref/a\n' })
  })

  it('answers 503 while an upstream is stopped and 200 once it is back', async () => {
    const h = haproxy()
    const web1 = h.upstreams.web1!
    const port = web1.port
    await web1.stop()
    try {
      const down = await waitFor(() => httpGet(h.frontendUrl + '/down'), (r) => r.status === 503, { timeoutMs: 15_000 })
      expect(down.status).toBe(503)
    } finally {
      await web1.start()
    }
    expect(web1.port).toBe(port)
    const up = await waitFor(() => httpGet(h.frontendUrl + '/up'), (r) => r.status === 200, { timeoutMs: 10_000 })
    expect(up.body).toBe('srv=web1 path=/up\n')
  })

  it('gives status 0 for a mode tcp backend behind the HTTP frontend', async () => {
    const h = haproxy()
    expect(await h.cli('add backend tcpb from tcpdefaults')).toBe('New backend registered.\n\n')
    expect(await h.cli('publish backend tcpb')).toBe('Backend published.\n\n')
    expect(await h.cli('add map virt@paths.map /tcp tcpb')).toBe('\n')
    expect(await httpGet(h.frontendUrl + '/tcp')).toEqual({ status: 0, body: '' })
  })

  it('reports its identity and refuses master-only calls', async () => {
    const h = haproxy()
    const id = await h.identity()
    expect(id).toEqual({ pid: h.pid, startTimeSec: expect.any(Number), stopping: false })
    expect(Math.abs(id.startTimeSec - Date.now() / 1000)).toBeLessThan(300)
    expect(h.masterWorker).toBe(false)
    expect(h.masterPid).toBeUndefined()
    expect(h.masterSocket).toBeUndefined()
    await expect(h.reload()).rejects.toThrow('reload() needs a master-worker instance')
    await expect(h.masterCli('show proc')).rejects.toThrow('masterCli() needs a master-worker instance')
  })

  it('runs upstreams with a slow path, a health path and a request counter', async () => {
    const s1 = haproxy().upstreams.s1!
    const before = s1.requests
    expect(await httpGet(s1.url + '/health')).toEqual({ status: 200, body: 'srv=s1 path=/health\n' })
    const t0 = Date.now()
    expect((await httpGet(s1.url + '/sleep/200')).body).toBe('srv=s1 path=/sleep/200\n')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(s1.requests).toBe(before + 2)
  })
})

describe('integration harness, master-worker mode', () => {
  let h: HaproxyInstance | undefined
  const haproxy = () => {
    if (!h) throw new Error('HAProxy did not start')
    return h
  }

  beforeAll(async () => { h = await startHaproxy({ masterWorker: true }) })
  afterAll(() => h?.stop())

  it('serves traffic and both Runtime API sockets from the worker', async () => {
    const h = haproxy()
    expect(await httpGet(h.frontendUrl + '/x')).toEqual({ status: 200, body: 'srv=web1 path=/x\n' })
    expect(await h.cli('show version')).toMatch(/^3\.4/)
    expect(await h.identity()).toMatchObject({ pid: h.pid, stopping: false })
    expect(infoField(await unixCli(h.unixRuntimeApi, 'show info'), 'Pid')).toBe(String(h.pid))
    expect(h.masterPid).toEqual(expect.any(Number))
    expect(h.masterPid).not.toBe(h.pid)
    expect(h.masterSocket).toBe(join(h.dir, 'master.sock'))
    const proc = await h.masterCli('show proc')
    expect(proc).toMatch(new RegExp(`^${h.masterPid}\\s+master\\s`, 'm'))
    expect(proc).toMatch(new RegExp(`^${h.pid}\\s+worker\\s`, 'm'))
  })

  it('reload() starts a new worker that has lost the runtime changes', async () => {
    const h = haproxy()
    expect(await h.cli('add map virt@paths.map /ref static_ref')).toBe('\n')
    expect(await h.cli('set server webservers/web1 weight 7')).toBe('\n')
    expect((await httpGet(h.frontendUrl + '/ref/a')).body).toBe('srv=r1 path=/ref/a\n')
    const before = await h.identity()
    const masterPid = h.masterPid
    const held = await openInteractiveCli(h.ports.runtime)
    try {
      const t0 = Date.now()
      await h.reload()
      // ~0.2 s here: the master answers once the new worker has loaded.
      expect(Date.now() - t0).toBeLessThan(5_000)

      expect(h.pid).not.toBe(before.pid)
      expect(h.masterPid).toBe(masterPid)
      expect(await h.identity()).toMatchObject({ pid: h.pid, stopping: false })
      expect(await h.cli('show map virt@paths.map')).toBe('\n')
      expect(await h.cli('get weight webservers/web1')).toBe('1 (initial 1)\n\n')
      expect(await httpGet(h.frontendUrl + '/ref/a')).toEqual({ status: 200, body: 'srv=web1 path=/ref/a\n' })

      // A connection opened before the reload still talks to the old, stopping worker (docs/runtime-api.md#reload-and-restart),
      // which the master lists as an old worker until that connection goes.
      const old = await held.send('show info')
      expect(infoField(old, 'Pid')).toBe(String(before.pid))
      expect(infoField(old, 'Stopping')).toBe('1')
      const proc = await h.masterCli('show proc')
      expect(proc).toMatch(new RegExp(`# old workers\\n${before.pid}\\s+worker\\s`))
    } finally {
      held.close()
    }
  })

  it('reload({ config }) runs the new configuration', async () => {
    const h = haproxy()
    const original = h.config
    const toS1 = (ctx: Parameters<typeof defaultConfig>[0]) =>
      defaultConfig(ctx).replace(`server web1 127.0.0.1:${ctx.upstreams.web1!.port}`, `server web1 127.0.0.1:${ctx.upstreams.s1!.port}`)
    await h.reload({ config: toS1 })
    expect(await httpGet(h.frontendUrl + '/x')).toEqual({ status: 200, body: 'srv=s1 path=/x\n' })
    expect(h.config).not.toBe(original)
    expect(await readFile(join(h.dir, 'haproxy.cfg'), 'utf8')).toBe(h.config)

    await h.reload({ config: original })
    expect(h.config).toBe(original)
    expect((await httpGet(h.frontendUrl + '/x')).body).toBe('srv=web1 path=/x\n')
  })

  it('reload() rejects a broken configuration and keeps the running worker and file', async () => {
    const h = haproxy()
    const { pid, config } = h
    const reload = h.reload({ config: config + '\nbackend broken\n    bogus_keyword\n' })
    await expect(reload).rejects.toThrow(/answered "Success=0\\n--\\n[^]*unknown keyword 'bogus_keyword'[^]*still running the previous worker/)
    expect(h.pid).toBe(pid)
    expect(h.config).toBe(config)
    expect(await readFile(join(h.dir, 'haproxy.cfg'), 'utf8')).toBe(config)
    expect(await h.identity()).toMatchObject({ pid, stopping: false })
    expect((await httpGet(h.frontendUrl + '/x')).status).toBe(200)
    // The master is not left in a state where the next reload fails.
    await h.reload()
    expect(h.pid).not.toBe(pid)
  })

  it('kill() holds HAProxy down until start()', async () => {
    const h = haproxy()
    const { pid, masterPid } = h
    expect(await h.cli('add map virt@paths.map /ref static_ref')).toBe('\n')
    await h.kill()
    expect(isAlive(masterPid!)).toBe(false)
    expect(await waitFor(async () => isAlive(pid), (alive) => !alive, { timeoutMs: 2_000 })).toBe(false)
    // Nothing of this instance answers any more. (Not asserted as ECONNREFUSED: the ports it released
    // are free for the other test files running in parallel, which may bind one at once.)
    const front = await httpGet(h.frontendUrl + '/x').catch((err: NodeJS.ErrnoException) => ({ status: -1, body: err.code ?? '' }))
    expect(front.status).not.toBe(200)
    const identity = await h.identity().catch(() => undefined)
    expect([pid, masterPid]).not.toContain(identity?.pid)
    await expect(h.reload()).rejects.toThrow('not running')
    await h.kill() // no-op while down

    await h.start()
    expect(h.pid).not.toBe(pid)
    expect(h.masterPid).not.toBe(masterPid)
    expect(await h.identity()).toMatchObject({ pid: h.pid, stopping: false })
    expect(await h.cli('show map virt@paths.map')).toBe('\n')
    expect(await httpGet(h.frontendUrl + '/ref/a')).toEqual({ status: 200, body: 'srv=web1 path=/ref/a\n' })
    await expect(h.start()).rejects.toThrow('still running')
    // and a started-again instance reloads like the first one
    await h.reload()
  })

  it('stop() leaves no HAProxy process behind, old workers included', async () => {
    const own = await startHaproxy({ masterWorker: true })
    let held: Awaited<ReturnType<typeof openInteractiveCli>> | undefined
    try {
      const pids = [own.masterPid!, own.pid]
      held = await openInteractiveCli(own.ports.runtime) // keeps the first worker alive after the reload
      await own.reload()
      pids.push(own.pid)
      expect(pids.every(isAlive)).toBe(true)
      expect(processesMentioning(own.dir).length).toBeGreaterThanOrEqual(3)

      await own.stop()
      expect(pids.filter(isAlive)).toEqual([])
      expect(processesMentioning(own.dir)).toEqual([])
      expect(existsSync(own.dir)).toBe(false)
    } finally {
      held?.close()
      await own.stop()
    }
  })
})
