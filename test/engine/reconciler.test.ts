import { describe, expect, it } from 'vitest'
import { Executor } from '../../src/engine/executor.ts'
import { ProcessIdentity } from '../../src/engine/identity.ts'
import { Reconciler } from '../../src/engine/reconciler.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import type { DesiredChange } from '../../src/engine/store/types.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'

const SERVERS_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

/**
 * A fresh HAProxy (only `webservers`) that remembers the backends added; `add backend` takes `delayMs`;
 * `del backend` deletes and prints `delReply`.
 */
function haproxy (delayMs = 0, delReply = 'Backend deleted.') {
  const backends = new Set<string>()
  const runtime = fakeRuntime(text => {
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return statReply([{ px: 'webservers', status: 'UP' }, ...[...backends].map(px => ({ px, status: 'UP' }))])
    if (text.startsWith('show servers state')) return SERVERS_HEADER
    if (text === 'show backend') return ['# name', 'webservers', ...backends].join('\n')
    if (/^wait \d+ms be-removable /.test(text)) return 'Done.'
    if (text === 'show map') return '# id (file) description\n'
    if (text === 'experimental-mode on') return ''
    const add = /^add backend (\S+) from (\S+)/.exec(text)
    if (add !== null) {
      if (add[2] !== 'd') return `Cannot find default proxy '${add[2]}'.`
      backends.add(add[1] as string)
      return 'New backend registered.'
    }
    if (text.startsWith('publish backend')) return 'Backend published.'
    if (text.startsWith('unpublish backend')) return 'Backend unpublished.'
    const del = /^del backend (\S+)$/.exec(text)
    if (del !== null) { backends.delete(del[1] as string); return delReply }
    return `Unknown command: '${text}'`
  })
  const execute = runtime.execute.bind(runtime)
  runtime.execute = (async (commands: readonly Command<unknown>[]) => {
    if (commands.some(c => c.verb === 'add backend')) await new Promise(resolve => setTimeout(resolve, delayMs))
    return execute(commands)
  }) as typeof runtime.execute
  return { runtime, backends }
}

async function setup (n: number, delayMs: number, from: (i: number) => string = () => 'd', delReply?: string) {
  const { runtime, backends } = haproxy(delayMs, delReply)
  const store = new MemoryStore()
  const changes: DesiredChange[] = Array.from({ length: n }, (_, i) => ({ op: 'backend.put', backend: { name: `b${i}`, from: from(i), mode: null, published: true } }))
  await store.commit(changes, { actor: 'test', action: 'seed', target: { kind: 'test', id: 'seed' } })
  const executor = new Executor({ runtime, store, lockTimeoutMs: 1000 })
  const reconciler = new Reconciler({ runtime, executor, identity: new ProcessIdentity(), created: new Map(), intervalMs: 60_000, identityPollMs: 60_000, concurrency: 1 })
  return { reconciler, backends, store, runtime, executor }
}

describe('Reconciler', () => {
  it('creates what the store keeps and HAProxy lacks, published last, and records where it created it', async () => {
    const { reconciler, backends, store, runtime } = await setup(3, 0)
    const report = await reconciler.reconcileNow('test')
    expect(report).toMatchObject({ failed: [], drift: [], reapplied: ['backend/b0: created, published', 'backend/b1: created, published', 'backend/b2: created, published'] })
    expect([...backends]).toEqual(['b0', 'b1', 'b2'])
    expect(runtime.sent.filter(t => /^(add|publish)/.test(t)).slice(0, 2)).toEqual(['add backend b0 from d', 'publish backend b0'])
    expect([...(await store.createdIn()).values()]).toEqual(['4242@1795495485', '4242@1795495485', '4242@1795495485'])
    // A second pass finds nothing to do.
    expect((await reconciler.reconcileNow('again'))?.reapplied).toEqual([])
  })

  it('creates many backends in groups on one connection, and one by one when a group fails', async () => {
    // The store lists b0, b1, b10…b19, b2, b20…b29, b3, b4 (the first group of 25), then b5…b9.
    const { reconciler, backends, runtime } = await setup(30, 0, i => i === 1 ? 'gone' : 'd')
    const report = await reconciler.reconcileNow('test')
    expect(report?.reapplied).toHaveLength(29)
    expect(report?.failed).toEqual([{ object: 'backend/b1', error: expect.stringMatching(/no defaults section named 'gone'/) }])
    expect(backends.size).toBe(29)
    expect(backends.has('b1')).toBe(false)
    // The first group was tried together, put back when b1 was refused, then created one by one.
    expect(runtime.sent).toContain('del backend b0')
    expect(runtime.sent.filter(t => t === 'add backend b0 from d')).toHaveLength(2)
    // The second group went through together: one `show info` for its five backends.
    const second = runtime.sent.slice(runtime.sent.lastIndexOf('add backend b4 from d') + 1)
    expect(second.filter(t => t === 'show info')).toHaveLength(1)
    expect(second.filter(t => t.startsWith('add backend'))).toEqual(['add backend b5 from d', 'add backend b6 from d', 'add backend b7 from d', 'add backend b8 from d', 'add backend b9 from d'])
  })

  it('removes a backend it created and no longer wants, also when `del backend` prints notices but no verdict', async () => {
    // HAProxy 3.4.7 can drop `Backend deleted.` from a full notice buffer (src/runtime/commands/backends.ts delBackend).
    const notices = "Server old/s1 is UP (leaving forced drain).\nbackend 'old' has no server available!\nServer deleted."
    const { reconciler, backends, store, runtime } = await setup(0, 0, undefined, notices)
    backends.add('old')
    await store.setCreatedIn('old', '4242@1795495485')
    const report = await reconciler.reconcileNow('test')
    expect(report).toMatchObject({ failed: [], reapplied: ['backend/old: removed (no longer desired)'] })
    expect(backends.has('old')).toBe(false)
    expect(runtime.sent.slice(runtime.sent.indexOf('del backend old'))).toEqual(['del backend old', 'show backend'])
  })

  it('stops a long pass when hapctl shuts down: what is in progress finishes, the rest waits for the next start', async () => {
    // 75 backends: three groups of 25 (one plan each), each taking 30 ms.
    const { reconciler, backends } = await setup(75, 30)
    reconciler.start()
    await new Promise(resolve => setTimeout(resolve, 10))
    await reconciler.stop()
    expect(backends.size).toBeGreaterThan(0)
    expect(backends.size).toBeLessThan(75)
    // Started again, it finishes the work.
    reconciler.start()
    await reconciler.reconcileNow('again')
    await reconciler.stop()
    expect(backends.size).toBe(75)
  })

  it('does not hold a group\'s locks long while another operation holds one of them: the group goes one by one', async () => {
    const { reconciler, backends, executor } = await setup(3, 0)
    const events: string[] = []
    // Another operation holds b1 for 400 ms.
    const busy = executor.locks.run('backend:b1', async () => {
      await new Promise(resolve => setTimeout(resolve, 400))
      events.push('b1 released')
    })
    const pass = reconciler.reconcileNow('test')
    await new Promise(resolve => setTimeout(resolve, 30))
    // A write to b0, which the group took first (locks go in sorted order).
    const write = executor.locked({ target: { kind: 'backend', id: 'b0' } }, async () => { events.push('write to b0') })
    await Promise.all([busy, pass, write])
    expect(events).toEqual(['write to b0', 'b1 released'])
    expect(backends.size).toBe(3)
  })
})
