/**
 * Command builders: the exact text each one sends, and how its parser judges HAProxy 3.4.7's exact
 * replies (docs/runtime-api.md#misleading-replies).
 */
import { describe, expect, it } from 'vitest'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeArgumentError, RuntimeCommandError, RuntimeProtocolError } from '../../src/runtime/errors.ts'
import type { RejectionKind } from '../../src/runtime/errors.ts'
import { MAX_LINE_BYTES } from '../../src/runtime/protocol.ts'

const DOWN_NOTICE = 'Server jb1/s1 is going DOWN for maintenance. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.'
const UNKNOWN_COMMAND = "Unknown command: 'add', but maybe one of the following ones is a better match:\n  echo <text>                             : print text to the output\n  show info [desc|json|typed|float]*      : report information about the running process\n  help [<command>]                        : list matching or all commands\n  prompt [help | n | i | p | timed ]*     : toggle interactive mode with prompt\n  quit                                    : disconnect"

/** The RuntimeCommandError that `parse(reply)` throws, or fails the test. */
function refusal (command: Command<unknown>, reply: string): RuntimeCommandError {
  try {
    command.parse(reply)
  } catch (err) {
    if (err instanceof RuntimeCommandError) return err
    throw err
  }
  throw new Error(`'${command.text}' accepted ${JSON.stringify(reply)}`)
}

function expectRefusal (command: Command<unknown>, reply: string, kind: RejectionKind, message = reply): void {
  const err = refusal(command, reply)
  expect(err.kind).toBe(kind)
  expect(err.verb).toBe(command.verb)
  expect(err.haproxyMessage).toBe(message)
  expect(err.code).toBe('RUNTIME_COMMAND_REJECTED')
}

describe('exact command text', () => {
  it.each<[string, Command<unknown>, string]>([
    ['show info', cmd.showInfo(), 'show info'],
    ['show stat', cmd.showStat(), 'show stat'],
    ['show stat <b>', cmd.showStat('webservers'), 'show stat webservers -1 -1'],
    ['show stat <b>, its servers', cmd.showStat('webservers', { serversOnly: true }), 'show stat webservers 4 -1'],
    ['show stat <b>, its BACKEND row', cmd.showStat('webservers', { backendOnly: true }), 'show stat webservers 2 -1'],
    ['show stat, backends and servers', cmd.showStat(undefined, { backendsAndServersOnly: true }), 'show stat -1 6 -1'],
    ['show servers state', cmd.showServersState(), 'show servers state'],
    ['show servers state <b>', cmd.showServersState('webservers'), 'show servers state webservers'],
    ['show backend', cmd.showBackend(), 'show backend'],
    ['add backend', cmd.addBackend('dyn1', 'mydefaults'), 'add backend dyn1 from mydefaults'],
    ['add backend mode', cmd.addBackend('dyn2', 'nomode', 'http'), 'add backend dyn2 from nomode mode http'],
    ['add backend mode tcp', cmd.addBackend('dyn3', 'nomode', 'tcp'), 'add backend dyn3 from nomode mode tcp'],
    ['publish backend', cmd.publishBackend('dyn1'), 'publish backend dyn1'],
    ['unpublish backend', cmd.unpublishBackend('dyn1'), 'unpublish backend dyn1'],
    ['del backend', cmd.delBackend('dyn1'), 'del backend dyn1'],
    ['wait be-removable', cmd.waitBackendRemovable('dyn1', 10_000), 'wait 10000ms be-removable dyn1'],
    ['wait be-removable, as a question', cmd.probeBackendRemovable('dyn1'), 'wait 1ms be-removable dyn1'],
    ['set server state ready', cmd.setServerState('webservers', 'web1', 'ready'), 'set server webservers/web1 state ready'],
    ['set server state drain', cmd.setServerState('b.1', 's:2', 'drain'), 'set server b.1/s:2 state drain'],
    ['set server state maint', cmd.setServerState('b-1', '_s', 'maint'), 'set server b-1/_s state maint'],
    ['shutdown sessions', cmd.shutdownSessions('webservers', 'web1'), 'shutdown sessions server webservers/web1'],
    ['disable agent', cmd.disableAgent('webservers', 'web1'), 'disable agent webservers/web1'],
    ['enable agent', cmd.enableAgent('webservers', 'web1'), 'enable agent webservers/web1'],
    ['wait srv-removable', cmd.waitServerRemovable('webservers', 'web1', 1), 'wait 1ms srv-removable webservers/web1'],
    ['del server', cmd.delServer('webservers', 'web1'), 'del server webservers/web1'],
    ['add map', cmd.addMapEntry('virt@paths.map', '/alpha', 'dyn1'), 'add map virt@paths.map /alpha dyn1'],
    ['add map by id', cmd.addMapEntry('#3', '/b', 'webservers'), 'add map #3 /b webservers'],
    ['experimental-mode on', cmd.experimentalModeOn(), 'experimental-mode on'],
    ['add server', cmd.addServer('dyn1', 'a1', { address: '127.0.0.1', port: 21082 }), 'add server dyn1/a1 127.0.0.1:21082'],
    ['add server v6 with keywords', cmd.addServer('dyn1', 'a2', { address: '::1', port: 443, check: true, interMs: 500, rise: 2, fall: 3, checkPort: 8080, checkAddr: '127.0.0.2', weight: 100, maxconn: 10, backup: true, ssl: true, sslVerify: 'none', sni: 'api.example.com' }),
      'add server dyn1/a2 [::1]:443 check inter 500ms rise 2 fall 3 port 8080 addr 127.0.0.2 init-state down weight 100 maxconn 10 backup ssl verify none sni str(api.example.com)'],
    ['set server weight', cmd.setServerWeight('st', 'nc1', 7), 'set server st/nc1 weight 7'],
    ['set server addr', cmd.setServerAddr('st', 'nc1', '127.0.0.2'), 'set server st/nc1 addr 127.0.0.2'],
    ['set server addr port', cmd.setServerAddr('st', 'nc1', '::1', 21083), 'set server st/nc1 addr ::1 port 21083'],
    ['enable health', cmd.enableHealth('st', 'h1'), 'enable health st/h1'],
    ['disable health', cmd.disableHealth('st', 'h1'), 'disable health st/h1'],
    ['show map', cmd.showMaps(), 'show map'],
    ['show map <m>', cmd.showMapEntries('virt@paths.map'), 'show map virt@paths.map'],
    ['show map @N <m>', cmd.showMapEntries('virt@paths.map', 3), 'show map @3 virt@paths.map'],
    ['count map', cmd.countMapEntries('virt@paths.map', 4), 'show map @4 virt@paths.map'],
    ['set map', cmd.setMapEntry('virt@paths.map', '/alpha', 'dyn2'), 'set map virt@paths.map /alpha dyn2'],
    ['del map', cmd.delMapEntry('virt@paths.map', '/alpha'), 'del map virt@paths.map /alpha'],
    ['prepare map', cmd.prepareMap('virt@paths.map'), 'prepare map virt@paths.map'],
    ['commit map', cmd.commitMap('virt@paths.map', 5), 'commit map @5 virt@paths.map'],
    ['clear map', cmd.clearMapVersion('virt@paths.map', 6), 'clear map @6 virt@paths.map'],
    ['add map payload', cmd.addMapPayload('virt@paths.map', 7, [{ key: '/a', value: 'b c' }]), 'add map @7 virt@paths.map <<']
  ])('%s', (_name, command, text) => {
    expect(command.text).toBe(text)
  })

  it('uses the verb, never the arguments, as verb', () => {
    expect(cmd.addBackend('secret1', 'mydefaults').verb).toBe('add backend')
    expect(cmd.setServerState('b', 's', 'ready').verb).toBe('set server state')
    expect(cmd.waitServerRemovable('b', 's', 5).verb).toBe('wait srv-removable')
    expect(cmd.waitBackendRemovable('b', 5).verb).toBe('wait be-removable')
    expect(cmd.addMapEntry('virt@m', 'k', 'v').verb).toBe('add map')
  })

  it('marks add/del backend experimental and nothing else', () => {
    expect(cmd.addBackend('a', 'd').experimental).toBe(true)
    expect(cmd.delBackend('a').experimental).toBe(true)
    for (const c of [cmd.publishBackend('a'), cmd.unpublishBackend('a'), cmd.showInfo(), cmd.setServerState('a', 'b', 'maint'), cmd.addMapEntry('virt@m', 'k', 'v')]) {
      expect(c.experimental ?? false, c.text).toBe(false)
    }
  })

  it('adds the wait delay to the deadline of wait commands only', () => {
    expect(cmd.waitBackendRemovable('a', 2500).extraTimeMs).toBe(2500)
    expect(cmd.waitServerRemovable('a', 'b', 7).extraTimeMs).toBe(7)
    expect(cmd.delServer('a', 'b').extraTimeMs).toBeUndefined()
  })
})

describe('arguments refused before any text is composed', () => {
  it.each<[string, () => unknown, string]>([
    ['a blank in a backend name', () => cmd.publishBackend('dyn 1'), 'backend'],
    ['a semicolon in a backend name', () => cmd.delBackend('a;b'), 'backend'],
    ['a slash in a backend name', () => cmd.showStat('a/b'), 'backend'],
    ['an empty name', () => cmd.unpublishBackend(''), 'backend'],
    ['a name starting with a dash', () => cmd.addBackend('-x', 'mydefaults'), 'backend'],
    ['a name of 129 characters', () => cmd.addBackend('a'.repeat(129), 'mydefaults'), 'backend'],
    ['a bad defaults name', () => cmd.addBackend('a', 'my defaults'), 'defaults'],
    ['an unknown mode', () => cmd.addBackend('a', 'mydefaults', 'spop' as 'http'), 'mode'],
    ['an unknown server state', () => cmd.setServerState('a', 'b', 'up' as 'ready'), 'state'],
    ['a slash in a server name', () => cmd.delServer('a', 'b/c'), 'server'],
    ['a wait of 0 ms', () => cmd.waitBackendRemovable('a', 0), 'timeout'],
    ['a wait over an hour', () => cmd.waitServerRemovable('a', 'b', 3_600_001), 'timeout'],
    ['a fractional wait', () => cmd.waitBackendRemovable('a', 1.5), 'timeout'],
    ['a map name with a blank', () => cmd.addMapEntry('virt@a map', 'k', 'v'), 'map'],
    ['a LF in a map key', () => cmd.addMapEntry('virt@m', 'k\ndisable server webservers/web1', 'v'), 'key'],
    ['a space in a map key', () => cmd.addMapEntry('virt@m', 'k x', 'v'), 'key'],
    ['a NUL in a map value', () => cmd.addMapEntry('virt@m', 'k', 'x\0disable server a/b'), 'value'],
    ['a backslash in a map value', () => cmd.addMapEntry('virt@m', 'k', 'x\\;y'), 'value'],
    ['an empty map value', () => cmd.addMapEntry('virt@m', 'k', ''), 'value'],
    ['a map key over 1024 bytes', () => cmd.addMapEntry('virt@m', 'k'.repeat(1025), 'v'), 'key'],
    ['a map name over 1024 characters', () => cmd.addMapEntry('/' + 'm'.repeat(MAX_LINE_BYTES), 'k', 'v'), 'map'],
    ['a host name as server address', () => cmd.addServer('b', 's', { address: 'localhost', port: 80 }), 'address'],
    ['port 0', () => cmd.addServer('b', 's', { address: '127.0.0.1', port: 0 }), 'port'],
    ['a server named BACKEND', () => cmd.addServer('b', 'BACKEND', { address: '127.0.0.1', port: 80 }), 'server'],
    ['a weight over 256', () => cmd.setServerWeight('b', 's', 257), 'weight'],
    ['a port over 65535', () => cmd.setServerAddr('b', 's', '::1', 65536), 'port']
  ])('%s', (_name, build, field) => {
    expect(build).toThrow(RuntimeArgumentError)
    expect(build).toThrow(expect.objectContaining({ field, code: 'RUNTIME_INVALID_ARGUMENT' }))
  })

  it('escapes the spaces inside a map value as `\\ `', () => {
    expect(cmd.addMapEntry('virt@m', '/k', 'two  words').text).toBe('add map virt@m /k two\\ \\ words')
  })
})

describe('show parsers', () => {
  it('show info accepts `show info` output', () => {
    expect(cmd.showInfo().parse('Name: HAProxy\nVersion: 3.4.7-1\nRelease_date: 2026/10/14\nPid: 42\nUptime_sec: 3\nStopping: 0\nStart_time_sec: 1795495485\nnode: lb')).toMatchObject({ pid: 42, version: '3.4.7-1' })
  })

  it('show info keeps the kind of a refusal', () => {
    expectRefusal(cmd.showInfo(), 'Permission denied', 'forbidden')
  })

  it('show servers state <unknown> is not_found', () => {
    expectRefusal(cmd.showServersState('nosuch'), "Can't find backend.", 'not_found')
  })

  it('show servers state of an empty backend is no rows', () => {
    expect(cmd.showServersState('static_empty').parse('1\n# be_id be_name srv_id srv_name srv_addr')).toEqual([])
  })

  it('show backend lists names', () => {
    expect(cmd.showBackend().parse('# name\nwebservers\ndyn1')).toEqual(['webservers', 'dyn1'])
  })

  it('show stat parses rows', () => {
    expect(cmd.showStat('webservers').parse('# pxname,svname,status,type,\nwebservers,BACKEND,UP,1,')).toEqual([
      { pxname: 'webservers', svname: 'BACKEND', status: 'UP', type: '1' }
    ])
  })

  it('an unknown command is unsupported, although its last line is a suggestion', () => {
    expectRefusal(cmd.showBackend(), UNKNOWN_COMMAND.replace("'add'", "'show'"), 'unsupported', UNKNOWN_COMMAND.replace("'add'", "'show'"))
  })

  it.each([
    ['show info', cmd.showInfo()],
    ['show stat', cmd.showStat()],
    ['show servers state', cmd.showServersState()],
    ['show backend', cmd.showBackend()]
  ])('%s: an unknown shape is a protocol error, not a result', (_name, command) => {
    expect(() => command.parse('')).toThrow(RuntimeProtocolError)
    expect(() => command.parse('garbage')).toThrow(RuntimeProtocolError)
    expect(() => command.parse('3.4.7-1')).toThrow(RuntimeProtocolError)
  })
})

describe('add backend', () => {
  const add = cmd.addBackend('dyn1', 'mydefaults')

  it('accepts `New backend registered.`', () => {
    expect(add.parse('New backend registered.')).toEqual({ dynamicServers: true, note: undefined })
  })

  it('accepts the static-algorithm variant, with dynamicServers false', () => {
    expect(add.parse("New backend registered (no support for dynamic servers: backend 'dynrr' uses a non dynamic load balancing method)."))
      .toEqual({ dynamicServers: false, note: "backend 'dynrr' uses a non dynamic load balancing method" })
  })

  it.each<[string, RejectionKind]>([
    ["Error during backend creation : name is already used by other proxy 'backend dyn1'.", 'exists'],
    ["Error during backend creation : name is already used by other proxy 'frontend myfrontend1'.", 'exists'],
    ["Error during backend creation : name is already used by other proxy 'defaults mydefaults'.", 'exists'],
    ['Error during backend creation : GUID insertion : duplicate entry with backend dyn7.', 'exists'],
    ["Cannot find default proxy 'nosuchdefaults'.", 'not_found'],
    ["Mode is required as 'nomode' default proxy does not explicitly defines it.", 'invalid'],
    ['Unknown proxy mode.', 'invalid'],
    ['Dynamic backends are compatible with only TCP or HTTP mode.', 'invalid'],
    ['Usage: add backend <name> from <defproxy>.', 'invalid'],
    ['Usage: add backend <name> from <defproxy> [mode <px_mode>] [guid <val>].', 'invalid'],
    ['Require backend name.', 'invalid'],
    ["Invalid character ' ' in backend name.", 'invalid'],
    ['Permission denied', 'forbidden'],
    [UNKNOWN_COMMAND, 'unsupported'],
    ['Something new in 3.5.', 'rejected']
  ])('%j → %s', (reply, kind) => {
    expectRefusal(add, reply, kind)
  })

  it('does not take an empty reply for success', () => {
    expectRefusal(add, '', 'rejected', '(empty reply)')
  })
})

describe('publish / unpublish backend', () => {
  it('accept their success messages, also with notices before them', () => {
    expect(cmd.publishBackend('dyn1').parse('Backend published.')).toBeUndefined()
    expect(cmd.unpublishBackend('dyn1').parse('Backend unpublished.')).toBeUndefined()
    expect(cmd.unpublishBackend('dyn1').parse(`${DOWN_NOTICE}\nBackend unpublished.`)).toBeUndefined()
  })

  it('do not take each other\'s message or an empty reply for success', () => {
    expectRefusal(cmd.publishBackend('dyn1'), 'Backend unpublished.', 'rejected')
    expectRefusal(cmd.unpublishBackend('dyn1'), 'Backend published.', 'rejected')
    expectRefusal(cmd.publishBackend('dyn1'), '', 'rejected', '(empty reply)')
  })

  it.each<[string, RejectionKind]>([
    ['No such backend.', 'not_found'],
    ['Permission denied', 'forbidden'],
    [UNKNOWN_COMMAND.replace("'add'", "'publish'"), 'unsupported']
  ])('%j → %s', (reply, kind) => {
    expectRefusal(cmd.publishBackend('nosuch'), reply, kind)
    expectRefusal(cmd.unpublishBackend('nosuch'), reply, kind)
  })
})

describe('del backend', () => {
  const del = cmd.delBackend('jb1')

  it('accepts `Backend deleted.`', () => {
    expect(del.parse('Backend deleted.')).toEqual({ confirmed: true })
  })

  it.each([
    ['server notices', `${DOWN_NOTICE}\nbackend 'jb1' has no server available!\nBackend deleted.`],
    ['notices about another backend', "backend 'bsrr' has no server available!\nBackend deleted."],
    ['notices and Server deleted.', `Server tmpb/s1 is UP/READY (leaving forced maintenance).\n${DOWN_NOTICE}\nbackend 'tmpb' has no server available!\nServer deleted.\nBackend deleted.`]
  ])('accepts `Backend deleted.` after %s', (_name, reply) => {
    expect(del.parse(reply)).toEqual({ confirmed: true })
  })

  // Replies of 3.4.7 captured after 5 drain/ready pairs of rb5/s and of rb10/s on one connection, then
  // `set server … state maint`, `del server`, `del backend`: the thread's 1024-byte notice buffer
  // (1014 bytes here) was full, and `Backend deleted.` (and for rb10 `Server deleted.`) did not fit.
  // Both backends were gone (`show backend`).
  const DRAIN = (b: string): string => `Server ${b}/s enters drain state. 0 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.`
  const NONE = (b: string): string => `backend '${b}' has no server available!`
  const flaps = (b: string, n: number): string[] => Array.from({ length: n }, () => [DRAIN(b), NONE(b), `Server ${b}/s is UP (leaving forced drain).`]).flat()
  const NOTICES_THEN_SERVER_DELETED = [...flaps('rb5', 5), NONE('rb5'), 'Server deleted.'].join('\n')
  const NOTICES_ONLY = [...flaps('rb10', 5), NONE('rb10')].join('\n')

  it('has the captured replies at the size HAProxy printed', () => {
    expect([NOTICES_THEN_SERVER_DELETED, NOTICES_ONLY].map(r => Buffer.byteLength(r))).toEqual([1014, 1014])
  })

  it.each([
    ['notices ending with `Server deleted.`', NOTICES_THEN_SERVER_DELETED],
    ['notices only', NOTICES_ONLY],
    ['one notice about another backend', "backend 'bsrr' has no server available!"],
    // A refusal no builder knows yet (it is printed alone): `show backend` then tells, and it still lists the backend.
    ['an unknown refusal', 'Cannot delete a listen section.']
  ])('answers "not confirmed" to %s, with the refusal to raise if the backend is still there', (_name, reply) => {
    const result = del.parse(reply)
    expect(result.confirmed).toBe(false)
    if (result.confirmed) return
    expect(result.refusal).toBeInstanceOf(RuntimeCommandError)
    expect(result.refusal).toMatchObject({ verb: 'del backend', kind: 'rejected' })
  })

  it.each<[string, RejectionKind]>([
    ['No such backend.', 'not_found'],
    ['Backend must be unpublished prior to its deletion.', 'conflict'],
    ['Only a backend without server can be deleted.', 'conflict'],
    ['This proxy cannot be removed at runtime due to other configuration elements pointing to it.', 'conflict'],
    ['Backend still has attached streams on it.', 'conflict'],
    ['Permission denied', 'forbidden'],
    [UNKNOWN_COMMAND.replace("'add'", "'del'"), 'unsupported']
  ])('%j → %s', (reply, kind) => {
    expectRefusal(del, reply, kind)
  })

  it('reports a refusal without the notices before it', () => {
    expectRefusal(del, `${DOWN_NOTICE}\nBackend must be unpublished prior to its deletion.`, 'conflict', 'Backend must be unpublished prior to its deletion.')
  })

  it('does not take a notice alone for success: not confirmed, the notice kept for the refusal', () => {
    const result = del.parse(DOWN_NOTICE)
    expect(result).toMatchObject({ confirmed: false, refusal: { kind: 'rejected', haproxyMessage: DOWN_NOTICE } })
  })
})

describe('wait be-removable / srv-removable', () => {
  const waitBe = cmd.waitBackendRemovable('dyn1', 2000)
  const waitSrv = cmd.waitServerRemovable('slow', 's1', 15_000)

  it('accept `Done.`', () => {
    expect(waitBe.parse('Done.')).toBeUndefined()
    expect(waitSrv.parse('Done.')).toBeUndefined()
  })

  it.each<[string, RejectionKind]>([
    ['Wait delay expired. Backend still has attached streams on it.', 'conflict'],
    ['Failed. Backend must be unpublished prior to its deletion.', 'conflict'],
    ['Failed. Only a backend without server can be deleted.', 'conflict'],
    ['Failed. This proxy cannot be removed at runtime due to other configuration elements pointing to it.', 'conflict'],
    ['Failed. No such backend.', 'not_found'],
    ['Missing backend name.', 'invalid'],
    ['Invalid duration.', 'invalid'],
    ['Permission denied', 'forbidden']
  ])('be-removable: %j → %s', (reply, kind) => {
    expectRefusal(waitBe, reply, kind)
  })

  it.each<[string, RejectionKind]>([
    ['Wait delay expired. Server still has connections attached to it, cannot remove it.', 'conflict'],
    ['Failed. Only servers in maintenance mode can be deleted.', 'conflict'],
    ['Failed. No such server.', 'not_found'],
    ['Permission denied', 'forbidden']
  ])('srv-removable: %j → %s', (reply, kind) => {
    expectRefusal(waitSrv, reply, kind)
  })

  it('do not take an empty reply for success', () => {
    expectRefusal(waitBe, '', 'rejected', '(empty reply)')
  })
})

describe('wait be-removable, as a question', () => {
  const probe = cmd.probeBackendRemovable('dyn1')

  it('answers removable, or not yet for what the removal itself clears, without ending the sequence', () => {
    expect(probe.verb).toBe('wait be-removable')
    expect(probe.extraTimeMs).toBe(1)
    expect(probe.parse('Done.')).toEqual({ removable: true })
    for (const reply of [
      'Failed. Backend must be unpublished prior to its deletion.',
      'Failed. Only a backend without server can be deleted.',
      'Wait delay expired. Backend still has attached streams on it.'
    ]) expect(probe.parse(reply)).toEqual({ removable: false, haproxyMessage: reply })
  })

  it.each<[string, RejectionKind]>([
    ['Failed. This proxy cannot be removed at runtime due to other configuration elements pointing to it.', 'conflict'],
    ['Failed. Cannot delete a listen section.', 'conflict'],
    ['Failed. No such backend.', 'not_found'],
    ['Permission denied', 'forbidden'],
    ['', 'rejected']
  ])('refuses what no removal step clears: %j → %s', (reply, kind) => {
    expectRefusal(probe, reply, kind, reply || '(empty reply)')
  })
})

describe('server commands answering an empty line', () => {
  const commands = [
    cmd.setServerState('st', 'nc1', 'drain'),
    cmd.shutdownSessions('st', 'nc1'),
    cmd.disableAgent('st', 'nc1'),
    cmd.enableAgent('st', 'nc1')
  ]

  it.each(commands.map(c => [c.text, c] as const))('%s accepts the empty reply', (_text, command) => {
    expect(command.parse('')).toBeUndefined()
  })

  it.each<[string, RejectionKind]>([
    ['No such backend.', 'not_found'],
    ['No such server.', 'not_found'],
    ["Require 'backend/server'.", 'invalid'],
    ['Permission denied', 'forbidden']
  ])('%j → %s for each of them', (reply, kind) => {
    for (const command of commands) expectRefusal(command, reply, kind)
  })

  it('set server state: the usage message is invalid', () => {
    expectRefusal(cmd.setServerState('st', 'nc1', 'ready'), "'set server <srv> state' expects 'ready', 'drain' and 'maint'.", 'invalid')
  })

  it('enable agent without an agent is refused', () => {
    expectRefusal(cmd.enableAgent('st', 'nc1'), 'Agent was not configured on this server, cannot enable.', 'rejected')
  })
})

describe('del server', () => {
  const del = cmd.delServer('static_unref', 's1')

  it('accepts `Server deleted.`, also after the empty replies of a `;` line', () => {
    expect(del.parse('Server deleted.')).toBeUndefined()
    expect(del.parse(`${DOWN_NOTICE}\nServer deleted.`)).toBeUndefined()
  })

  it.each<[string, RejectionKind]>([
    ['Only servers in maintenance mode can be deleted.', 'conflict'],
    ['Server still has connections attached to it, cannot remove it.', 'conflict'],
    ['No such server.', 'not_found'],
    ['No such backend.', 'not_found'],
    ["Require 'backend/server'.", 'invalid'],
    ['Permission denied', 'forbidden']
  ])('%j → %s', (reply, kind) => {
    expectRefusal(del, reply, kind)
  })
})

describe('add map', () => {
  const add = cmd.addMapEntry('virt@paths.map', '/alpha', 'dyn1')

  it('accepts only the empty reply', () => {
    expect(add.parse('')).toBeUndefined()
  })

  it.each<[string, RejectionKind]>([
    ['Unknown map identifier. Please use #<id> or <file>.', 'not_found'],
    ["'add map' expects three parameters (map identifier, key and value) or one parameter (map identifier) and a payload", 'invalid'],
    ['Permission denied', 'forbidden'],
    ['Out of memory error.', 'rejected']
  ])('%j → %s', (reply, kind) => {
    expectRefusal(add, reply, kind)
  })
})

describe('experimental-mode on', () => {
  it('accepts the empty reply and refuses `Permission denied`', () => {
    expect(cmd.experimentalModeOn().parse('')).toBeUndefined()
    expectRefusal(cmd.experimentalModeOn(), 'Permission denied', 'forbidden')
  })
})

describe('classifyRejection', () => {
  it.each<[string, RejectionKind]>([
    ['Key not found.', 'not_found'],
    ['entry not found.', 'not_found'],
    ['Already exists a server with the same name in backend.', 'exists'],
    ["character ',' is not permitted in server name 'a,b'.", 'invalid'],
    ["'foo' unknown keyword", 'invalid'],
    ["invalid port '99999'", 'invalid'],
    ['Invalid timeout value.', 'invalid'],
    ['agent checks are not enabled on this server.', 'rejected']
  ])('%j → %s', (message, kind) => {
    expect(cmd.classifyRejection(message)).toBe(kind)
  })
})

describe('serverRef', () => {
  it('joins checked names with a slash', () => {
    expect(cmd.serverRef('webservers', 'web1')).toBe('webservers/web1')
    expect(() => cmd.serverRef('web servers', 'web1')).toThrow(RuntimeArgumentError)
    expect(() => cmd.serverRef('webservers', '#1')).toThrow(RuntimeArgumentError)
  })
})
