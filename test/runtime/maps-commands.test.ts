import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { RuntimeClient } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError, RuntimeCommandError, RuntimeProtocolError } from '../../src/runtime/errors.ts'
import { mapKeyProblem, mapValueProblem } from '../../src/runtime/validation.ts'

describe('map command builders', () => {
  it('composes exact command lines, escaping spaces in values', () => {
    expect(cmd.addMapEntry('virt@paths.map', '/a', 'static_ref').text).toBe('add map virt@paths.map /a static_ref')
    expect(cmd.addMapEntry('virt@paths.map', '/a', 'a  b c').text).toBe('add map virt@paths.map /a a\\ \\ b\\ c')
    expect(cmd.setMapEntry('#5', '/ü', 'v w').text).toBe('set map #5 /ü v\\ w')
    expect(cmd.delMapEntry('virt@paths.map', '/a').text).toBe('del map virt@paths.map /a')
    expect(cmd.prepareMap('virt@paths.map').text).toBe('prepare map virt@paths.map')
    expect(cmd.commitMap('virt@paths.map', 3).text).toBe('commit map @3 virt@paths.map')
    expect(cmd.clearMapVersion('virt@paths.map', 3).text).toBe('clear map @3 virt@paths.map')
    expect(cmd.showMapEntries('virt@paths.map').text).toBe('show map virt@paths.map')
    expect(cmd.countMapEntries('/etc/haproxy/hosts.map', 2).text).toBe('show map @2 /etc/haproxy/hosts.map')
    const p = cmd.addMapPayload('virt@paths.map', 7, [{ key: '/a', value: 'x y' }, { key: '/b', value: 'z' }])
    expect(p.text).toBe('add map @7 virt@paths.map <<')
    expect(p.payload).toBe('/a x y\n/b z\n')
  })

  it('refuses what would not round-trip', () => {
    for (const [k, v] of [['/a b', 'v'], ['#0x1', 'v'], ['/a;b', 'v'], ['/a', 'x;y'], ['/a', 'x\\y'], ['/a', ' x'], ['/a', 'x '], ['/a', 'a\nb'], ['/a', '<<X'], ['', 'v'], ['/a', '']]) {
      expect(() => cmd.addMapEntry('virt@paths.map', k as string, v as string), `${k} ${v}`).toThrow(RuntimeArgumentError)
      expect(() => cmd.addMapPayload('virt@paths.map', 1, [{ key: k as string, value: v as string }]), `${k} ${v}`).toThrow(RuntimeArgumentError)
    }
    expect(() => cmd.addMapEntry('virt@a map', '/a', 'v')).toThrow(RuntimeArgumentError)
    expect(() => cmd.commitMap('virt@paths.map', -1)).toThrow(RuntimeArgumentError)
    expect(mapKeyProblem('/\uD800')).toMatch(/not allowed/)
    expect(mapValueProblem('é'.repeat(513))).toMatch(/1024 bytes/)
    expect(mapValueProblem('é'.repeat(512))).toBeUndefined()
  })

  it('parses HAProxy replies', () => {
    expect(cmd.addMapEntry('virt@paths.map', '/a', 'v').parse('')).toBeUndefined()
    expect(() => cmd.setMapEntry('virt@paths.map', '/a', 'v').parse('entry not found.')).toThrow(RuntimeCommandError)
    expect(cmd.delMapEntry('virt@paths.map', '/a').parse('')).toBe(true)
    expect(cmd.delMapEntry('virt@paths.map', '/a').parse('Key not found.')).toBe(false)
    expect(() => cmd.delMapEntry('virt@x.map', '/a').parse('Unknown map identifier. Please use #<id> or <file>.')).toThrow(RuntimeCommandError)
    expect(cmd.prepareMap('virt@paths.map').parse('New version created: 12')).toBe(12)
    expect(() => cmd.prepareMap('virt@paths.map').parse('Unknown map identifier. Please use #<id> or <file>.')).toThrow(RuntimeCommandError)
    try {
      cmd.commitMap('virt@paths.map', 1).parse('Version number out of range.')
      expect.unreachable()
    } catch (err) {
      expect((err as RuntimeCommandError).haproxyMessage).toBe('Version number out of range.')
    }
  })

  it('parses show map entries, splitting at the first two spaces', () => {
    const reply = '0x7f7ac047b000 /alpha dyn1\n0x7f7ac1c239a0 /b a b  c\n0x7f261d27c240  static_ref\n0x1 /nl a\nb'
    expect(cmd.showMapEntries('virt@paths.map').parse(reply)).toEqual([
      { key: '/alpha', value: 'dyn1' }, { key: '/b', value: 'a b  c' }, { key: '', value: 'static_ref' }, { key: '/nl', value: 'a\nb' }
    ])
    expect(cmd.showMapEntries('virt@paths.map').parse('')).toEqual([])
    expect(cmd.countMapEntries('virt@paths.map').parse(reply)).toBe(4)
    expect(() => cmd.showMapEntries('virt@x.map').parse('Unknown map identifier. Please use #<id> or <file>.')).toThrow(RuntimeCommandError)
    expect(() => cmd.showMapEntries('virt@x.map').parse('garbage')).toThrow(RuntimeProtocolError)
  })

  it('parses the map list', () => {
    const reply = "# id (file) description\n0 (virt@a.map) pattern loaded from file 'virt@a.map' used by map at file 'inst2.cfg' line 32. curr_ver=0 next_ver=1 entry_cnt=0\n" +
      "6 (runtime-evidence/missing.map) pattern loaded from file 'opt@runtime-evidence/missing.map' used by map at file 'inst2.cfg' line 31. curr_ver=2 next_ver=2 entry_cnt=0"
    expect(cmd.showMaps().parse(reply)).toMatchObject([
      { name: 'virt@a.map', id: 0, currentVersion: 0, nextVersion: 1 },
      { name: 'runtime-evidence/missing.map', id: 6, currentVersion: 2, nextVersion: 2 }
    ])
  })

  it('splits payloads into requests of at most 16000 bytes', () => {
    const entries = Array.from({ length: 20_000 }, (_, i) => ({ key: `/key/${i}/${'k'.repeat(i % 50)}`, value: `v${i} x${'é'.repeat(i % 40)}` }))
    const chunks = cmd.addMapPayloads('virt@paths.map', 3, entries)
    expect(chunks.length).toBeGreaterThan(10)
    const back: string[] = []
    for (const c of chunks) {
      expect(Buffer.byteLength(c.text + '\n' + c.payload + '\n')).toBeLessThanOrEqual(16_000)
      back.push(...c.payload.slice(0, -1).split('\n'))
    }
    expect(back).toEqual(entries.map(e => `${e.key} ${e.value}`))
    const big = Array.from({ length: 30 }, (_, i) => ({ key: `/${i}${'k'.repeat(1000)}`, value: 'v'.repeat(1024) }))
    for (const c of cmd.addMapPayloads('virt@paths.map', 3, big)) expect(Buffer.byteLength(c.text + '\n' + c.payload + '\n')).toBeLessThanOrEqual(16_000)
    expect(cmd.addMapPayloads('virt@paths.map', 3, [])).toEqual([])
  })
})

describe('RuntimeClient.executePayload', () => {
  it('sends command, payload and empty line on a fresh non-interactive connection, and reads until close', async () => {
    const received: string[] = []
    const server = net.createServer(socket => {
      let data = ''
      socket.on('data', chunk => {
        data += chunk.toString('utf8')
        if (data.endsWith('\n\n')) { received.push(data); socket.end('\n') }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as net.AddressInfo
    const client = new RuntimeClient({ endpoint: { kind: 'tcp', host: '127.0.0.1', port }, timeoutMs: 2000 })
    try {
      await client.executePayload(cmd.addMapPayload('virt@paths.map', 2, [{ key: '/a', value: 'x y' }]))
      expect(received).toEqual(['add map @2 virt@paths.map <<\n/a x y\n\n'])
      const bad = { ...cmd.addMapPayload('virt@paths.map', 2, [{ key: '/a', value: 'x' }]), payload: '/a x\n\n/b y\n' }
      await expect(client.executePayload(bad)).rejects.toThrow(RuntimeArgumentError)
      const big = { ...cmd.addMapPayload('virt@paths.map', 2, [{ key: '/a', value: 'x' }]), payload: '/a x\n'.repeat(4000) }
      await expect(client.executePayload(big)).rejects.toThrow(/over 16000/)
      expect(received.length).toBe(1)
    } finally {
      await client.close()
      server.close()
    }
  })
})

describe('get map as an exact-key test', () => {
  // Replies as HAProxy 3.4.7 prints them (docs/runtime-api.md#maps).
  const found = 'type=beg, case=sensitive, found=yes, idx=tree, key="/alpha", value="dyn1", type="str"'
  const notFound = 'type=beg, case=sensitive, found=no'

  it('composes `get map <map> <sample>` and parses one line per converter', () => {
    const c = cmd.getMapLookup('virt@paths.map', '/alpha/x')
    expect(c.text).toBe('get map virt@paths.map /alpha/x')
    expect(c.parse(found)).toEqual([{ match: 'beg', caseSensitive: true, found: true, key: '/alpha' }])
    expect(c.parse(`type=str, case=sensitive, found=no\n${found}`)).toHaveLength(2)
    expect(() => c.parse('Unknown map identifier. Please use #<id> or <file>.')).toThrow(RuntimeCommandError)
  })

  it('settles presence for case-sensitive beg/str maps and defers for the others', () => {
    const c = cmd.getMapLookup('virt@paths.map', '/x')
    expect(cmd.exactKeyFromLookup(c.parse(found), '/alpha')).toBe(true)
    // A shorter prefix matched: the exact key would have been the longest match, so it is absent.
    expect(cmd.exactKeyFromLookup(c.parse(found), '/alpha/x')).toBe(false)
    expect(cmd.exactKeyFromLookup(c.parse(notFound), '/alpha')).toBe(false)
    expect(cmd.exactKeyFromLookup(c.parse('type=reg, case=sensitive, found=no'), '/alpha')).toBeUndefined()
    expect(cmd.exactKeyFromLookup(c.parse('type=beg, case=insensitive, found=no'), '/alpha')).toBeUndefined()
    expect(cmd.exactKeyFromLookup(c.parse(`type=sub, case=sensitive, found=no\n${notFound}`), '/alpha')).toBeUndefined()
  })
})

describe('setMapEntryIfPresent (the upsert\'s set map)', () => {
  const c = cmd.setMapEntryIfPresent('virt@paths.map', '/a', 'two words')
  it('sends set map with the value escaped, and answers whether an entry was there', () => {
    expect(c.text).toBe('set map virt@paths.map /a two\\ words')
    expect(c.parse('')).toBe(true)
    expect(c.parse('entry not found.')).toBe(false)
  })
  it('refuses anything else as set map does', () => {
    expect(() => c.parse('Unknown map identifier. Please use #<id> or <file>.')).toThrow(RuntimeCommandError)
    expect(() => c.parse('key or pattern not found.')).toThrow(RuntimeCommandError)
  })
})
