import { connect } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { defaultConfig, startHaproxy, waitFor } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * What HAProxy 3.4's Runtime API does on the wire, as docs/runtime-api.md says, checked on raw sockets
 * against a real HAProxy (no hapctl code involved): framing, escaping, the payload boundary loss, the
 * connection limit, replies that look like the opposite of what happened, and versioned map loads.
 * Each describe names the section of docs/runtime-api.md it proves.
 */

let h: HaproxyInstance

beforeAll(async () => {
  // The default instance, plus a unix socket at level operator for the privilege checks.
  h = await startHaproxy({
    config: ctx => defaultConfig(ctx).replace(/^(\s*)stats timeout/m, `$1stats socket ${ctx.dir}/operator.sock mode 600 level operator\n$1stats timeout`)
  })
  expect(h.config).toMatch(/operator\.sock mode 600 level operator/)
})
afterAll(() => h?.stop())
// Every test starts from an empty live map, whatever the one before it left.
beforeEach(async () => { expect(await h.cli('clear map virt@paths.map')).toBe('\n') })

interface Exchange { reply: string, closed: boolean }

/**
 * Writes `bytes` on a new TCP connection to the Runtime API and collects the reply until HAProxy closes
 * the connection or nothing more arrives for `quietMs` (then `closed` is false: the connection stayed open).
 * `end: true` half-closes after the write (EOF without a final newline).
 */
function exchange (bytes: string, opts: { quietMs?: number, end?: boolean, path?: string } = {}): Promise<Exchange> {
  // Generous: an exchange HAProxy closes ends at the close; only one left open waits this long.
  const quietMs = opts.quietMs ?? 2_000
  return new Promise((resolve, reject) => {
    let reply = ''
    let timer: NodeJS.Timeout | undefined
    const socket = opts.path === undefined ? connect({ host: '127.0.0.1', port: h.ports.runtime }) : connect({ path: opts.path })
    const quiet = () => {
      clearTimeout(timer)
      timer = setTimeout(() => { socket.destroy(); resolve({ reply, closed: false }) }, quietMs)
    }
    socket.setEncoding('utf8')
    socket.once('connect', () => {
      if (opts.end) socket.end(bytes)
      else socket.write(bytes)
      quiet()
    })
    socket.on('data', (chunk: string) => { reply += chunk; quiet() })
    socket.once('close', () => { clearTimeout(timer); resolve({ reply, closed: true }) })
    socket.once('error', reject)
  })
}

/** Entries of `show map [@ver] virt@paths.map`: `<ptr> <key> <value>` lines. */
async function mapLines (version?: number): Promise<string[]> {
  const at = version === undefined ? '' : `@${version} `
  return (await h.cli(`show map ${at}virt@paths.map`)).split('\n').filter(l => l !== '')
}

describe('framing (docs/runtime-api.md#framing)', () => {
  it('non-interactive: the first line runs, its reply ends with an empty line, HAProxy closes and drops the rest', async () => {
    const { reply, closed } = await exchange('show version\nadd map virt@paths.map /second x\n')
    expect(reply).toMatch(/^3\.4[^\n]*\n\n$/)
    expect(closed).toBe(true)
    expect(await mapLines()).toEqual([])
  })

  it('a line that never gets its newline is not run, even when the client closes', async () => {
    expect(await exchange('add map virt@paths.map /nonl x', { end: true })).toEqual({ reply: '', closed: true })
    expect(await mapLines()).toEqual([])
  })

  it('`prompt i`: answered by an empty line, then one reply per line, each ending with an empty line, and the connection stays open', async () => {
    const version = (await h.cli('show version')).replace(/\n+$/, '')
    const { reply, closed } = await exchange('prompt i\nshow version\nadd map virt@paths.map /i x\nshow version\n', { quietMs: 1_000 })
    expect(reply).toBe(`\n${version}\n\n\n${version}\n\n`)
    expect(closed).toBe(false)
  })

  it('a line of 16384 bytes with its newline runs; one byte more is refused with a single newline and a close', async () => {
    const line = (bytes: number) => 'echo ' + 'x'.repeat(bytes - 'echo \n'.length) + '\n'
    expect((await exchange(line(16_384))).reply).toBe('x'.repeat(16_384 - 'echo \n'.length) + '\n\n')
    expect(await exchange('prompt i\n' + line(16_385) + 'show version\n')).toEqual({
      reply: "\nThe command line is too big for the buffer size. Please change 'tune.bufsize' in the configuration to use a bigger command.\n",
      closed: true
    })
  })

  it('`;` puts several commands on one line, each reply with its own empty line', async () => {
    const version = (await h.cli('show version')).replace(/\n+$/, '')
    expect((await exchange('show version; show version\n')).reply).toBe(`${version}\n\n${version}\n\n`)
  })
})

describe('escaping and injection (docs/runtime-api.md#escaping-and-injection)', () => {
  it.each([
    ['echo a\\;b', 'a;b\n\n'],
    ['echo a\\ b', 'a b\n\n'],
    ['echo a\\\\b', 'a\\b\n\n'],
    ['echo "a b"', '"a b"\n\n'],
    ['echo a    b', 'a b\n\n']
  ])('%s prints %j: `\\` escapes the next byte, quotes are plain characters', async (line, printed) => {
    expect(await h.cli(line)).toBe(printed)
  })

  it('a bare `;` inside a value starts a second command', async () => {
    expect(await h.cli('echo a;b')).toMatch(/^a\n\nUnknown command: 'b'/)
  })

  it('a value takes one argument: the words after it are dropped without a word', async () => {
    expect(await h.cli('add map virt@paths.map /words one two three')).toBe('\n')
    expect(await mapLines()).toEqual([expect.stringMatching(/^0x[0-9a-f]+ \/words one$/)])
  })

  it('inside a `<<` payload, `\\` and `;` are plain characters and the value is the rest of the line', async () => {
    expect(await exchange('add map virt@paths.map <<\n/esc a\\;b c;d\n\n')).toEqual({ reply: '\n', closed: true })
    expect(await mapLines()).toEqual([expect.stringMatching(/^0x[0-9a-f]+ \/esc a\\;b c;d$/)])
  })
})

describe('the payload boundary (docs/runtime-api.md#payload-boundary)', () => {
  /**
   * `add map virt@paths.map <<` then filler entries, then a line whose last content byte is byte
   * `contentEnd - 1` of the connection's input (its newline at offset `contentEnd`), then `/after v`.
   */
  function payload (contentEnd: number): { text: string, entries: number } {
    let text = 'add map virt@paths.map <<\n'
    let entries = 0
    while (contentEnd - text.length > 40) {
      text += `/f${String(entries).padStart(5, '0')} vvv\n`
      entries++
    }
    text += '/last ' + 'x'.repeat(contentEnd - text.length - 6) + '\n'
    expect(text.length).toBe(contentEnd + 1)
    return { text: text + '/after v\n\n', entries: entries + 2 }
  }

  it('a line ending at byte 16384 ends the payload: success is answered and the rest is lost', async () => {
    const { text, entries } = payload(16_384)
    expect(await exchange(text)).toEqual({ reply: '\n', closed: true })
    const stored = await mapLines()
    expect(stored.length).toBe(entries - 1)
    expect(stored.some(l => l.endsWith(' /after v'))).toBe(false)
  })

  it('one byte further, every entry is stored (control)', async () => {
    const { text, entries } = payload(16_385)
    expect(await exchange(text)).toEqual({ reply: '\n', closed: true })
    const stored = await mapLines()
    expect(stored.length).toBe(entries)
    expect(stored.at(-1)).toMatch(/ \/after v$/)
  })

  it('a request of at most 16000 bytes on a fresh connection is stored whole', async () => {
    let text = 'add map virt@paths.map <<\n'
    let entries = 0
    while (text.length + 13 <= 15_999) text += `/g${String(entries++).padStart(5, '0')} vvvv\n`
    expect(await exchange(text + '\n')).toEqual({ reply: '\n', closed: true })
    expect((await mapLines()).length).toBe(entries)
  })
})

describe('the connection limit (docs/runtime-api.md#connection-limit)', () => {
  it('serves 10 connections per socket; the 11th connects but is answered only once another closes', async () => {
    const held = Array.from({ length: 10 }, () => connect({ host: '127.0.0.1', port: h.ports.runtime }))
    const received = held.map(() => '')
    held.forEach((s, i) => {
      s.setEncoding('utf8')
      s.on('data', (c: string) => { received[i] += c })
      s.on('error', () => { /* closed by the test */ })
      s.write('prompt i\n')
    })
    try {
      await waitFor(async () => received, r => r.every(x => x === '\n'), { timeoutMs: 5_000, intervalMs: 10 })
      const eleventh = exchange('show version\n', { quietMs: 5_000 })
      // Nothing comes back while the 10 are open.
      await new Promise(resolve => setTimeout(resolve, 500))
      let settled = false
      const watched = eleventh.then(() => { settled = true })
      await new Promise(resolve => setImmediate(resolve))
      expect(settled).toBe(false)
      held[0]!.destroy()
      await watched
      const answer = await eleventh
      expect(answer.reply).toMatch(/^3\.4[^\n]*\n\n$/)
      expect(answer.closed).toBe(true)
    } finally {
      for (const s of held) s.destroy()
    }
  })
})

describe('replies that mislead (docs/runtime-api.md#misleading-replies)', () => {
  it('`disable health` on a server without checks answers success; `enable health` refuses', async () => {
    expect(await h.cli('disable health webservers/web1')).toBe('\n')
    expect(await h.cli('enable health webservers/web1')).toBe('Health check was not configured on this server, cannot enable.\n\n')
  })

  it('`publish backend` gives the same answer whether it changed anything or not', async () => {
    expect(await h.cli('publish backend webservers')).toBe('Backend published.\n\n')
    expect(await h.cli('publish backend webservers')).toBe('Backend published.\n\n')
  })

  it('`wait 0ms` is refused; 1 ms is the shortest delay', async () => {
    expect(await h.cli('wait 0ms srv-removable webservers/web1')).toBe('Invalid duration.\n\n')
    expect(await h.cli('wait 1ms srv-removable webservers/web1')).toBe('Failed. Only servers in maintenance mode can be deleted.\n\n')
  })

  it('an unknown command prints suggestions after its verdict', async () => {
    expect(await h.cli('SHOW VERSION')).toMatch(/^Unknown command: 'SHOW', but maybe one of the following ones is a better match:\n/)
  })
})

describe('versioned map loads (docs/runtime-api.md#versioned-map-loads)', () => {
  it('prepare, add @N, commit; a second commit of N and a version never prepared are refused', async () => {
    const prepared = /^New version created: (\d+)\n\n$/.exec(await h.cli('prepare map virt@paths.map'))
    expect(prepared).not.toBeNull()
    const n = Number(prepared![1])
    expect(await h.cli(`add map @${n} virt@paths.map /v1 static_ref`)).toBe('\n')
    expect(await mapLines()).toEqual([])
    expect(await h.cli(`add map @${n + 5} virt@paths.map /v2 x`)).toBe("Version number in the future, please use 'prepare map' before.\n\n")
    expect(await h.cli(`commit map @${n} virt@paths.map`)).toBe('\n')
    expect(await mapLines()).toEqual([expect.stringMatching(/ \/v1 static_ref$/)])
    expect(await h.cli(`commit map @${n} virt@paths.map`)).toBe('Version number out of range.\n\n')
  })

  it('versions are shared by every client: committing a newer one discards an older one prepared by someone else', async () => {
    const mine = Number(/(\d+)/.exec(await h.cli('prepare map virt@paths.map'))![1])
    expect(await h.cli(`add map @${mine} virt@paths.map /mine x`)).toBe('\n')
    const theirs = Number(/(\d+)/.exec(await h.cli('prepare map virt@paths.map'))![1])
    expect(theirs).toBeGreaterThan(mine)
    expect(await h.cli(`commit map @${theirs} virt@paths.map`)).toBe('\n')
    expect(await h.cli(`commit map @${mine} virt@paths.map`)).toBe('Version number out of range.\n\n')
    expect(await mapLines()).toEqual([])
  })

  it('while the live map holds entries, `clear map @N` of a pending version answers success and keeps them', async () => {
    expect(await h.cli('add map virt@paths.map /live y')).toBe('\n')
    const n = Number(/(\d+)/.exec(await h.cli('prepare map virt@paths.map'))![1])
    expect(await h.cli(`add map @${n} virt@paths.map /p1 x`)).toBe('\n')
    expect(await h.cli(`clear map @${n} virt@paths.map`)).toBe('\n')
    expect(await mapLines(n)).toEqual([expect.stringMatching(/ \/p1 x$/)])
  })

  it('`clear map @N` of the version that is live empties the live map', async () => {
    expect(await h.cli('add map virt@paths.map /live x')).toBe('\n')
    const live = Number(/curr_ver=(\d+)/.exec((await h.cli('show map')).split('\n').find(l => l.includes('virt@paths.map'))!)![1])
    expect(await mapLines()).not.toEqual([])
    expect(await h.cli(`clear map @${live} virt@paths.map`)).toBe('\n')
    expect(await mapLines()).toEqual([])
  })
})

describe('the privilege level (docs/runtime-api.md#privilege-level)', () => {
  it.each([
    'show map',
    'add map virt@paths.map /op x',
    'set server webservers/web1 state drain',
    'publish backend webservers',
    'add backend opb from mydefaults',
    'wait 1ms srv-removable webservers/web1'
  ])('`%s` needs level admin', async (line) => {
    expect(await exchange(line + '\n', { path: `${h.dir}/operator.sock` })).toEqual({ reply: 'Permission denied\n\n', closed: true })
  })

  it('`show servers state` and `show stat` work at level operator (control)', async () => {
    const state = await exchange('show servers state webservers\n', { path: `${h.dir}/operator.sock` })
    expect(state.reply).toMatch(/^1\n# be_id be_name /)
    expect(await h.cli('show servers state webservers')).toMatch(/ web1 127\.0\.0\.1 2 0 /)
  })
})
