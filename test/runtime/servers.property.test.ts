import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { isIP } from 'node:net'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError } from '../../src/runtime/errors.ts'
import { SERVER_LIMITS } from '../../src/runtime/commands/servers.ts'

const intIn = (b: { min: number, max: number }) => fc.integer(b)
const ip = fc.oneof(fc.ipV4(), fc.ipV6())
const host = fc.domain().filter(d => d.length <= 253)

const validOptions = fc.record({
  address: ip,
  port: intIn(SERVER_LIMITS.port),
  check: fc.boolean(),
  weight: fc.option(intIn(SERVER_LIMITS.weight), { nil: undefined }),
  maxconn: fc.option(intIn(SERVER_LIMITS.maxconn), { nil: undefined }),
  backup: fc.option(fc.boolean(), { nil: undefined }),
  ssl: fc.boolean()
}).chain(base => fc.record({
  checkPort: base.check ? fc.option(intIn(SERVER_LIMITS.port), { nil: undefined }) : fc.constant(undefined),
  checkAddr: base.check ? fc.option(ip, { nil: undefined }) : fc.constant(undefined),
  interMs: base.check ? fc.option(intIn(SERVER_LIMITS.interMs), { nil: undefined }) : fc.constant(undefined),
  rise: base.check ? fc.option(intIn(SERVER_LIMITS.rise), { nil: undefined }) : fc.constant(undefined),
  fall: base.check ? fc.option(intIn(SERVER_LIMITS.fall), { nil: undefined }) : fc.constant(undefined),
  sslVerify: base.ssl ? fc.option(fc.constantFrom('none' as const, 'required' as const), { nil: undefined }) : fc.constant(undefined),
  sni: base.ssl ? fc.option(host, { nil: undefined }) : fc.constant(undefined)
}).map(extra => ({ ...base, ...extra })))

describe('addServer arguments (property)', () => {
  it('every valid option set gives one safe line whose tokens say exactly what was asked', () => {
    fc.assert(fc.property(validOptions, o => {
      const text = cmd.addServer('be', 'srv', o).text
      expect(text).not.toMatch(/[;\\\n\r\0]/)
      const tokens = text.split(' ')
      expect(tokens.slice(0, 3)).toEqual(['add', 'server', 'be/srv'])
      const addr = tokens[3] as string
      const m = /^\[?(.*?)\]?:(\d+)$/.exec(addr) as RegExpExecArray
      expect(isIP(m[1] as string)).not.toBe(0)
      expect(Number(m[2])).toBe(o.port)
      const kw = tokens.slice(4)
      const value = (k: string) => { const i = kw.indexOf(k); return i < 0 ? undefined : kw[i + 1] }
      expect(kw.includes('check')).toBe(o.check)
      expect(kw.includes('init-state')).toBe(o.check)
      expect(value('weight')).toBe(o.weight === undefined ? undefined : String(o.weight))
      expect(value('maxconn')).toBe(o.maxconn === undefined ? undefined : String(o.maxconn))
      expect(value('rise')).toBe(o.rise === undefined ? undefined : String(o.rise))
      expect(value('inter')).toBe(o.interMs === undefined ? undefined : `${o.interMs}ms`)
      expect(value('port')).toBe(o.checkPort === undefined ? undefined : String(o.checkPort))
      expect(value('addr')).toBe(o.checkAddr === undefined || !o.checkAddr.includes(':') ? o.checkAddr : `[${o.checkAddr}]`)
      expect(kw.includes('ssl')).toBe(o.ssl)
      expect(value('sni')).toBe(o.sni === undefined ? undefined : `str(${o.sni})`)
      expect(kw.includes('backup')).toBe(o.backup === true)
    }))
  })

  it('any out-of-range number is refused before a line is composed', () => {
    const field = fc.constantFrom('port', 'weight', 'maxconn', 'rise', 'fall', 'interMs', 'checkPort')
    const bad = fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 3_600_001 }), fc.double({ noInteger: true }), fc.constant(Number.NaN))
    fc.assert(fc.property(field, bad, (f, v) => {
      const o: cmd.AddServerOptions = { address: '127.0.0.1', port: 80, check: true, [f]: v }
      expect(() => cmd.addServer('be', 'srv', o)).toThrow(RuntimeArgumentError)
    }))
  })

  it('any string that is not an IP literal is refused as an address, check address or new address', () => {
    fc.assert(fc.property(fc.string(), s => {
      fc.pre(isIP(s) === 0)
      expect(() => cmd.addServer('be', 'srv', { address: s, port: 80 })).toThrow(RuntimeArgumentError)
      expect(() => cmd.addServer('be', 'srv', { address: '127.0.0.1', port: 80, check: true, checkAddr: s })).toThrow(RuntimeArgumentError)
      expect(() => cmd.setServerAddr('be', 'srv', s, 80)).toThrow(RuntimeArgumentError)
    }))
  })

  it('weights are accepted exactly on 0..256', () => {
    fc.assert(fc.property(fc.integer({ min: -1000, max: 1000 }), w => {
      const ok = w >= 0 && w <= 256
      if (ok) expect(cmd.setServerWeight('be', 'srv', w).text).toBe(`set server be/srv weight ${w}`)
      else expect(() => cmd.setServerWeight('be', 'srv', w)).toThrow(RuntimeArgumentError)
    }))
  })
})
