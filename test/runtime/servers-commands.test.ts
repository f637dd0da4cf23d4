import { describe, expect, it } from 'vitest'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError, RuntimeCommandError } from '../../src/runtime/errors.ts'
import { adminStateOf, joinServers, normalizeStatus, parseCheckStatus } from '../../src/resources/servers/view.ts'
import { parseServersState, parseShowStat } from '../../src/runtime/parsers.ts'

const refusal = (c: cmd.Command<unknown>, reply: string) => {
  try { c.parse(reply) } catch (err) { return err as RuntimeCommandError }
  throw new Error(`'${reply}' was accepted`)
}

describe('addServer', () => {
  it('composes the address and keywords in a fixed order, with init-state down when checks are on', () => {
    expect(cmd.addServer('b', 's', { address: '127.0.0.1', port: 8080 }).text).toBe('add server b/s 127.0.0.1:8080')
    expect(cmd.addServer('b', 's', {
      address: '::1',
      port: 443,
      check: true,
      interMs: 200,
      rise: 2,
      fall: 3,
      checkPort: 9000,
      checkAddr: '10.0.0.1',
      weight: 0,
      maxconn: 10,
      backup: true,
      ssl: true,
      sslVerify: 'none',
      sni: 'api.example.com'
    }).text).toBe('add server b/s [::1]:443 check inter 200ms rise 2 fall 3 port 9000 addr 10.0.0.1 init-state down weight 0 maxconn 10 backup ssl verify none sni str(api.example.com)')
  })

  // Counterexample that once failed commands.property.test.ts (checkAddr, argument 3): 'a::' is a
  // valid IPv6 address, so the builder brackets it, as 3.4.7 needs; the property expected it bare.
  it('brackets an IPv6 check address, also a short one such as a::', () => {
    const text = cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, check: true, checkAddr: 'a::' }).text
    expect(text).toBe('add server b/s 127.0.0.1:80 check addr [a::] init-state down')
  })

  it('accepts only HAProxy’s success line', () => {
    const c = cmd.addServer('b', 's', { address: '127.0.0.1', port: 1 })
    expect(c.parse('New server registered.\n')).toBeUndefined()
    expect(refusal(c, 'Already exists a server with the same name in backend.\n').kind).toBe('exists')
    expect(refusal(c, 'No such backend.\n').kind).toBe('not_found')
    expect(refusal(c, "unknown keyword 'foo'; did you mean 'tfo' maybe ?\n").kind).toBe('invalid')
    expect(refusal(c, '\n').haproxyMessage).toBe('(empty reply)')
  })

  it('refuses host names, bad ports, reserved names and options without their switch', () => {
    const bad: Array<[string, () => unknown]> = [
      ['address', () => cmd.addServer('b', 's', { address: 'localhost', port: 80 })],
      ['address', () => cmd.addServer('b', 's', { address: '300.1.1.1', port: 80 })],
      ['address', () => cmd.addServer('b', 's', { address: 'fe80::1%eth0', port: 80 })],
      ['port', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 0 })],
      ['port', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 65536 })],
      ['weight', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, weight: 257 })],
      ['weight', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, weight: 1.5 })],
      ['server', () => cmd.addServer('b', 'BACKEND', { address: '127.0.0.1', port: 80 })],
      ['check', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, rise: 2 })],
      ['ssl', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, sni: 'x.example' })],
      ['sni', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, ssl: true, sni: 'a b' })],
      ['rise', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 80, check: true, rise: 0 })]
    ]
    for (const [field, f] of bad) {
      expect(f).toThrow(RuntimeArgumentError)
      try { f() } catch (err) { expect((err as RuntimeArgumentError).field).toBe(field) }
    }
  })
})

describe('setServerAddr', () => {
  it('composes addr/port and accepts the non-empty success replies', () => {
    const c = cmd.setServerAddr('b', 's', '::1', 8080)
    expect(c.text).toBe('set server b/s addr ::1 port 8080')
    expect(cmd.setServerAddr('b', 's', '10.0.0.2').text).toBe('set server b/s addr 10.0.0.2')
    for (const ok of [
      "IP changed from '127.0.0.1' to '127.0.0.2' by 'stats socket command'\n",
      "port changed from '21082' to '21083' by 'stats socket command'\n",
      "IP changed from '::1' to '127.0.0.1', port changed from '21083' to '0' by 'stats socket command'\n",
      'nothing changed\n'
    ]) expect(c.parse(ok)).toBeUndefined()
    expect(refusal(c, "Invalid addr 'localhost'\n").kind).toBe('invalid')
    expect(refusal(c, 'Update for the current server address family is only supported through configuration file.\n').kind).toBe('rejected')
    expect(refusal(c, '\n').kind).toBe('rejected')
  })

  it('range-checks the port HAProxy would wrap modulo 65536', () => {
    expect(() => cmd.setServerAddr('b', 's', '127.0.0.1', 99999)).toThrow(RuntimeArgumentError)
  })
})

describe('weight, health and agent', () => {
  it('composes and treats only an empty reply as success', () => {
    expect(cmd.setServerWeight('b', 's', 256).text).toBe('set server b/s weight 256')
    expect(() => cmd.setServerWeight('b', 's', -1)).toThrow(RuntimeArgumentError)
    expect(cmd.enableHealth('b', 's').text).toBe('enable health b/s')
    expect(cmd.disableHealth('b', 's').text).toBe('disable health b/s')
    const c = cmd.enableHealth('b', 's')
    expect(c.parse('')).toBeUndefined()
    expect(refusal(c, 'Health check was not configured on this server, cannot enable.\n').kind).toBe('rejected')
    expect(refusal(cmd.setServerWeight('b', 's', 5), "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n").haproxyMessage)
      .toMatch(/static LB/)
  })

  it('keeps the existing removal builders', () => {
    expect(cmd.setServerState('b', 's', 'drain').text).toBe('set server b/s state drain')
    expect(cmd.waitServerRemovable('b', 's', 500).text).toBe('wait 500ms srv-removable b/s')
    expect(cmd.delServer('b', 's').text).toBe('del server b/s')
    expect(cmd.shutdownSessions('b', 's').text).toBe('shutdown sessions server b/s')
  })
})

describe('server views', () => {
  it('maps admin bits, status strings and check words', () => {
    expect([0, 1, 2, 4, 8, 0x10, 0x20, 0x40, 9].map(adminStateOf)).toEqual(['ready', 'maint', 'maint', 'maint', 'drain', 'drain', 'maint', 'maint', 'maint'])
    expect(['UP', 'UP 1/2', 'no check', 'DOWN', 'DOWN 1/2', 'MAINT', 'MAINT(via)', 'DRAIN', 'DRAIN (agent)', 'NOLB', '', 'what']
      .map(normalizeStatus)).toEqual(['up', 'up', 'up', 'down', 'down', 'maint', 'maint', 'drain', 'drain', 'nolb', 'unknown', 'unknown'])
    expect(parseCheckStatus('* L4CON')).toEqual({ status: 'L4CON', inProgress: true })
    expect(parseCheckStatus('L4OK')).toEqual({ status: 'L4OK', inProgress: false })
    expect(parseCheckStatus('')).toEqual({ status: null, inProgress: false })
  })

  it('joins show servers state and show stat by name, using the type column', () => {
    const state = parseServersState('1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n' +
      '8 dyn 2 BACKEND 127.0.0.1 2 8 3 1 0 6 3 1 6 0 0 0 - 8080 - 1 9000 10.0.0.1 - 0\n' +
      '8 dyn 1 x ::1 0 1 1 1 0 1 0 0 0 0 0 0 - 21082 - 0 0 - - 0\n')
    const stat = parseShowStat('# pxname,svname,scur,slim,status,bck,type,check_status,\n' +
      'dyn,BACKEND,4,,DRAIN,0,2,* L4OK,\n' +
      'dyn,x,0,10,MAINT,1,2,,\n' +
      'dyn,BACKEND,9,,UP,0,1,,\n')
    const [a, b] = joinServers('dyn', state, stat)
    expect(a).toMatchObject({
      name: 'BACKEND',
      id: 2,
      address: '127.0.0.1',
      port: 8080,
      weight: { current: 3, initial: 1 },
      adminState: 'drain',
      status: 'drain',
      sessions: 4,
      maxconn: null,
      ssl: true,
      backup: false,
      healthCheck: { configured: true, enabled: true, paused: false, status: 'L4OK', inProgress: true, port: 9000, address: '10.0.0.1', description: expect.stringMatching(/layer 4/) }
    })
    expect(b).toMatchObject({ name: 'x', address: '::1', adminState: 'maint', status: 'maint', maxconn: 10, backup: true, sessions: 0, healthCheck: { configured: false, status: null, description: null } })
  })
})
