import { describe, expect, it } from 'vitest'
import { addServerSteps } from '../../../src/resources/servers/service.ts'
import type { DesiredServer } from '../../../src/engine/store/types.ts'

const server = (extra: Partial<DesiredServer> = {}): DesiredServer => ({
  backend: 'b',
  name: 's',
  spec: { address: '10.0.0.1', port: 80, check: true, inter: 500 },
  adminState: 'ready',
  weight: null,
  healthChecks: null,
  agentChecks: null,
  ...extra
})

const texts = (s: DesiredServer, opts?: { restore?: boolean }): string[] => addServerSteps(s, opts).flatMap(step => (step.commands ?? []).map(c => c.text))

describe('addServerSteps', () => {
  it('adds a new checked server out of traffic until its first check passes, then enables checks and puts it in service', () => {
    expect(texts(server())).toEqual(['add server b/s 10.0.0.1:80 check inter 500ms init-state down', 'enable health b/s', 'set server b/s state ready'])
  })

  it('restores a server HAProxy forgot in traffic at once (as a reload brings back the configuration\'s servers)', () => {
    expect(texts(server(), { restore: true })[0]).toBe('add server b/s 10.0.0.1:80 check inter 500ms init-state up')
  })

  it('replays what was changed after the add: weight, health and agent switches, admin state', () => {
    expect(texts(server({ weight: 7, healthChecks: false, agentChecks: true, adminState: 'drain' }))).toEqual([
      'add server b/s 10.0.0.1:80 check inter 500ms init-state down', 'set server b/s weight 7', 'enable agent b/s', 'set server b/s state drain'
    ])
    // In maintenance: added and left there (dynamic servers start in maintenance).
    expect(texts(server({ adminState: 'maint', spec: { address: '10.0.0.1', port: 80, check: false } }))).toEqual(['add server b/s 10.0.0.1:80'])
  })

  it('undoes the add by draining and deleting the server, which undoes the steps after it too', () => {
    const [add, ...rest] = addServerSteps(server())
    expect(add?.undoCommands?.map(c => c.text)).toEqual(['set server b/s state maint', 'wait 2000ms srv-removable b/s', 'del server b/s'])
    for (const s of rest) expect(s.undoCommands).toEqual([])
  })
})
