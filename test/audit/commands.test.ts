/**
 * How the audit trail writes commands down: reads dropped, payloads summarised, long texts clipped,
 * and the object each builder's command acts on.
 */
import { describe, expect, it } from 'vitest'
import * as cmd from '../../src/runtime/commands/index.ts'
import { MAX_TEXT_CHARS, auditCommand, isRead, targetOfCommand } from '../../src/audit/commands.ts'

describe('isRead', () => {
  it('is true for show and get commands, false for every command that can change HAProxy', () => {
    for (const c of [cmd.showInfo(), cmd.showStat(), cmd.showServersState(), cmd.showMaps(), cmd.getMapLookup('virt@m', '/a')]) expect(isRead(c.verb)).toBe(true)
    for (const c of [cmd.addBackend('b', 'd'), cmd.publishBackend('b'), cmd.delBackend('b'), cmd.waitBackendRemovable('b', 1000), cmd.setServerState('b', 's', 'ready'),
      cmd.delServer('b', 's'), cmd.addMapEntry('virt@m', '/a', 'x'), cmd.prepareMap('virt@m'), cmd.commitMap('virt@m', 2)]) {
      expect(isRead(c.verb)).toBe(false)
    }
  })
})

describe('auditCommand', () => {
  it('keeps a text exactly, and clips one past 1 KiB with its size', () => {
    expect(auditCommand('set map virt@m /a b\\ c', 'ok')).toEqual({ text: 'set map virt@m /a b\\ c', result: 'ok' })
    const long = 'set map virt@m /a ' + 'x'.repeat(5000)
    const kept = auditCommand(long, 'refused')
    expect(kept.text.startsWith(long.slice(0, MAX_TEXT_CHARS))).toBe(true)
    expect(kept.text).toContain(`(${long.length} bytes)`)
    expect(kept.text.length).toBeLessThan(MAX_TEXT_CHARS + 40)
  })

  it('summarises a payload: lines, bytes and the first line only', () => {
    const c = cmd.addMapPayload('virt@m', 3, [{ key: '/a', value: 'b1' }, { key: '/é', value: 'b2 with spaces' }])
    expect(auditCommand(c.text, 'ok', c.payload)).toEqual({
      text: 'add map @3 virt@m <<',
      result: 'ok',
      payload: { lines: 2, bytes: Buffer.byteLength(c.payload), firstLine: '/a b1' }
    })
  })
})

describe('targetOfCommand', () => {
  it.each([
    [cmd.addBackend('b1', 'mydefaults', 'http'), 'backend', 'b1'],
    [cmd.publishBackend('b1'), 'backend', 'b1'],
    [cmd.delBackend('b1'), 'backend', 'b1'],
    [cmd.waitBackendRemovable('b1', 5000), 'backend', 'b1'],
    [cmd.addServer('b1', 's1', { address: '127.0.0.1', port: 80 } as Parameters<typeof cmd.addServer>[2]), 'server', 'b1/s1'],
    [cmd.setServerState('b1', 's1', 'drain'), 'server', 'b1/s1'],
    [cmd.setServerWeight('b1', 's1', 3), 'server', 'b1/s1'],
    [cmd.enableHealth('b1', 's1'), 'server', 'b1/s1'],
    [cmd.disableAgent('b1', 's1'), 'server', 'b1/s1'],
    [cmd.shutdownSessions('b1', 's1'), 'server', 'b1/s1'],
    [cmd.waitServerRemovable('b1', 's1', 5000), 'server', 'b1/s1'],
    [cmd.delServer('b1', 's1'), 'server', 'b1/s1'],
    [cmd.addMapEntry('virt@paths.map', '/a', 'b'), 'map', 'virt@paths.map'],
    [cmd.setMapEntry('virt@paths.map', '/a', 'b'), 'map', 'virt@paths.map'],
    [cmd.delMapEntry('virt@paths.map', '/a'), 'map', 'virt@paths.map'],
    [cmd.prepareMap('virt@paths.map'), 'map', 'virt@paths.map'],
    [cmd.commitMap('virt@paths.map', 4), 'map', 'virt@paths.map'],
    [cmd.clearMapVersion('virt@paths.map', 4), 'map', 'virt@paths.map'],
    [cmd.addMapPayload('virt@paths.map', 4, [{ key: '/a', value: 'b' }]), 'map', 'virt@paths.map']
  ])('%# %s', (c, kind, id) => {
    expect(targetOfCommand(c.text)).toEqual({ kind, id })
  })

  it('is null for commands about no one object', () => {
    expect(targetOfCommand('experimental-mode on')).toBeNull()
    expect(targetOfCommand('set timeout cli 20')).toBeNull()
    expect(targetOfCommand('')).toBeNull()
  })
})
