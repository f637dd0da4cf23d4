/**
 * The audit recorder: attribution of commands to the request that sent them (also when requests
 * interleave), group commit, retries after a failed append, entries of the reconciler, retention.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import type { AuditRecord } from '../../src/engine/store/types.ts'
import { AuditRecorder, unauthenticatedLimit } from '../../src/audit/recorder.ts'
import type { AuditContext } from '../../src/audit/recorder.ts'
import { recordingRuntime } from '../../src/audit/recording-runtime.ts'
import type { Runtime } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import { audit } from '../engine/store/contract.ts'

const DAY = 86_400_000

/** A runtime whose calls take `ms` each. */
const slow = (ms: number): Runtime => ({
  execute: (async (commands: readonly unknown[]) => { await sleep(ms); return commands.map(() => undefined) }) as Runtime['execute'],
  close: async () => {}
})

const context = (requestId: string): AuditContext => ({
  commands: [], omitted: 0, revision: null, open: true, actor: () => 'ops', requestId, method: 'PATCH', route: '/backends/:name', path: '/backends/b', client: '::1'
})

describe('AuditRecorder', () => {
  it('gives each request the commands sent in its own async context, however they interleave', async () => {
    const recorder = new AuditRecorder({ store: new MemoryStore(), retentionDays: 1, maxEntries: 1000 })
    const runtime = recordingRuntime(slow(5), recorder.requestSink('hapctl'))
    const one = context('one')
    const two = context('two')
    await Promise.all([
      recorder.context.run(one, async () => {
        await runtime.execute([cmd.setServerState('b', 's1', 'maint')])
        await sleep(7)
        await runtime.execute([cmd.delServer('b', 's1')])
      }),
      recorder.context.run(two, async () => {
        await sleep(3)
        await runtime.execute([cmd.setServerWeight('b', 's2', 5)])
        await runtime.execute([cmd.setServerState('b', 's2', 'ready')])
      })
    ])
    expect(one.commands.map(c => c.text)).toEqual(['set server b/s1 state maint', 'del server b/s1'])
    expect(two.commands.map(c => c.text)).toEqual(['set server b/s2 weight 5', 'set server b/s2 state ready'])
  })

  it('keeps 200 commands per request and counts the rest', async () => {
    const recorder = new AuditRecorder({ store: new MemoryStore(), retentionDays: 1, maxEntries: 1000 })
    const runtime = recordingRuntime(slow(0), recorder.requestSink('hapctl'))
    const ctx = context('big')
    await recorder.context.run(ctx, async () => {
      await runtime.execute(Array.from({ length: 250 }, (_, i) => cmd.setServerWeight('b', `s${i}`, 1)))
    })
    expect(ctx.commands).toHaveLength(200)
    expect(ctx.omitted).toBe(50)
    expect(ctx.commands.at(-1)?.text).toBe('set server b/s199 weight 1')
  })

  it('commands outside a request, or after its entry was written, get entries of their own, one per object', async () => {
    const store = new MemoryStore()
    const recorder = new AuditRecorder({ store, retentionDays: 1, maxEntries: 1000 })
    const api = recordingRuntime(slow(0), recorder.requestSink('hapctl'))
    const reconciler = recordingRuntime(slow(0), recorder.backgroundSink('reconciler'))
    const late = { ...context('late'), open: false }
    await recorder.context.run(late, async () => {
      await api.execute([cmd.setServerState('b', 's1', 'ready')])
      // A pass kicked from a request runs in timers created in its context: still the reconciler's.
      await reconciler.execute([cmd.showStat(), cmd.addBackend('n1', 'd'), cmd.publishBackend('n1'), cmd.addBackend('n2', 'd')])
    })
    await api.execute([cmd.delBackend('old')])
    await recorder.close()
    const { items } = await store.listAudit({ limit: 10 })
    expect(items.map(e => [e.actor, e.requestId, e.target?.id, e.commands.map(c => c.text), e.outcome]).reverse()).toEqual([
      ['ops', 'late', 'b/s1', ['set server b/s1 state ready'], 'applied'],
      ['reconciler', null, 'n1', ['add backend n1 from d', 'publish backend n1'], 'applied'],
      ['reconciler', null, 'n2', ['add backend n2 from d'], 'applied'],
      ['hapctl', null, 'old', ['del backend old'], 'applied']
    ])
    expect(late.commands).toEqual([])
  })

  it('the revision committed in a request belongs to it, not one the reconciler commits meanwhile', () => {
    const recorder = new AuditRecorder({ store: new MemoryStore(), retentionDays: 1, maxEntries: 1000 })
    const ctx = context('r')
    recorder.context.run(ctx, () => {
      recorder.committed({ revision: 7, actor: 'reconciler' })
      expect(ctx.revision).toBeNull()
      recorder.committed({ revision: 8, actor: 'api' })
    })
    recorder.committed({ revision: 9, actor: 'api' })
    expect(ctx.revision).toBe(8)
  })

  it('appends the entries that arrive together in one append (group commit), in order', async () => {
    const store = new MemoryStore()
    const appends: number[] = []
    const append = store.appendAudit.bind(store)
    store.appendAudit = async entries => { appends.push(entries.length); await sleep(10); await append(entries) }
    const recorder = new AuditRecorder({ store, retentionDays: 1, maxEntries: 1000 })
    const now = new Date().toISOString()
    const first = recorder.record(audit('a', { at: now }))
    // Until 'a' is being written (not a fixed sleep: on a busy machine a 1 ms timer can fire before
    // the append starts, and 'a' would then go with the others): the next ones wait and go together.
    while (appends.length === 0) await new Promise(resolve => setImmediate(resolve))
    await Promise.all(['b', 'c', 'd'].map(id => recorder.record(audit(id, { at: now }))))
    await first
    expect(appends).toEqual([1, 3])
    expect((await store.listAudit({ limit: 10 })).items.map(e => e.requestId)).toEqual(['d', 'c', 'b', 'a'])
  })

  it('a failed append resolves all the same, logs the entries, and they go with the next append', async () => {
    const store = new MemoryStore()
    const append = store.appendAudit.bind(store)
    let fail = true
    store.appendAudit = async entries => { if (fail) throw new Error('disk full'); await append(entries) }
    const logged: object[] = []
    const recorder = new AuditRecorder({ store, retentionDays: 1, maxEntries: 1000, logger: { info: () => {}, error: obj => { logged.push(obj) } } })
    const now = new Date().toISOString()
    await recorder.record(audit('a', { at: now }))
    expect(recorder.failures).toBe(1)
    expect(logged).toMatchObject([{ entries: [{ requestId: 'a' }] }])
    fail = false
    await recorder.record(audit('b', { at: now }))
    expect((await store.listAudit({ limit: 10 })).items.map(e => e.requestId)).toEqual(['b', 'a'])
  })

  it('prunes at start by age and by count, and again after many appends', async () => {
    const store = new MemoryStore()
    const old = (i: number): AuditRecord => audit(`old${i}`, { at: new Date(Date.now() - 3 * DAY - i * 1000).toISOString() })
    const recent = (i: number): AuditRecord => audit(`new${i}`, { at: new Date(Date.now() - DAY + i * 10).toISOString() })
    await store.appendAudit([old(2), old(1), ...Array.from({ length: 5 }, (_, i) => recent(i))])
    const recorder = new AuditRecorder({ store, retentionDays: 2, maxEntries: 3 })
    recorder.start()
    await recorder.close()
    expect((await store.listAudit({ limit: 10 })).items.map(e => e.requestId)).toEqual(['new4', 'new3', 'new2'])
    // 1,000 appends later, the count limit holds again without waiting for the hourly prune.
    const busy = new AuditRecorder({ store, retentionDays: 2, maxEntries: 3 })
    for (let i = 0; i < 1000; i++) busy.record(audit(`b${i}`, { at: new Date().toISOString() })).catch(() => {})
    await busy.close()
    expect((await store.listAudit({ limit: 10 })).items.map(e => e.requestId)).toEqual(['b999', 'b998', 'b997'])
  })

  it('a flood of unauthenticated refusals cannot push the entries of real writes out', async () => {
    const store = new MemoryStore()
    const recorder = new AuditRecorder({ store, retentionDays: 2, maxEntries: 1000 })
    const now = (): string => new Date().toISOString()
    await recorder.record(audit('write', { at: now(), status: 204, actor: 'deployer' }))
    for (let i = 0; i < 3000; i++) recorder.record(audit(`anon${i}`, { at: now(), status: 401 })).catch(() => {})
    await recorder.close()
    const kept = (await store.listAudit({ limit: 1000 })).items
    expect(kept.map(e => e.requestId)).toContain('write')
    expect(kept.filter(e => e.status === 401).length).toBeLessThanOrEqual(unauthenticatedLimit(1000))
  })
})
