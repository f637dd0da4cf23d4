import { describe, expect, it } from 'vitest'
import { Executor } from '../../src/engine/executor.ts'
import { ProcessIdentity } from '../../src/engine/identity.ts'
import { commandStep } from '../../src/engine/plan.ts'
import { Reconciler } from '../../src/engine/reconciler.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import type { DesiredChange } from '../../src/engine/store/types.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { INFO_REPLY, fakeRuntime, statReply } from '../helpers/fake-runtime.ts'

const SERVERS_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

/** A fresh HAProxy that remembers backends and whether they are published; `add backend` waits for `gate` when given. */
function haproxy () {
  const backends = new Map<string, boolean>()
  let gate: Promise<void> | undefined
  const runtime = fakeRuntime(text => {
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return statReply([{ px: 'webservers', status: 'UP' }, ...[...backends].map(([px, pub]) => ({ px, status: pub ? 'UP' : 'UP (UNPUB)' }))])
    if (text.startsWith('show servers state')) return SERVERS_HEADER
    if (text === 'show map') return '# id (file) description\n'
    const add = /^add backend (\S+) from (\S+)/.exec(text)
    if (add !== null) { backends.set(add[1] as string, false); return 'New backend registered.' }
    const pub = /^(un)?publish backend (\S+)$/.exec(text)
    if (pub !== null) {
      if (!backends.has(pub[2] as string)) return 'No such backend.'
      backends.set(pub[2] as string, pub[1] === undefined)
      return pub[1] === undefined ? 'Backend published.' : 'Backend unpublished.'
    }
    return `Unknown command: '${text}'`
  })
  const execute = runtime.execute.bind(runtime)
  runtime.execute = (async (commands: readonly Command<unknown>[]) => {
    if (gate !== undefined && commands.some(c => c.verb === 'add backend')) await gate
    return execute(commands)
  }) as typeof runtime.execute
  return { runtime, backends, hold: (p: Promise<void> | undefined) => { gate = p } }
}

async function setup (names: string[], lockTimeoutMs = 5000) {
  const fake = haproxy()
  const store = new MemoryStore()
  const changes: DesiredChange[] = names.map(name => ({ op: 'backend.put', backend: { name, from: 'd', mode: null, published: true } }))
  await store.commit(changes, { actor: 'test', action: 'seed', target: { kind: 'test', id: 'seed' } })
  const executor = new Executor({ runtime: fake.runtime, store, lockTimeoutMs })
  const reconciler = new Reconciler({ runtime: fake.runtime, executor, identity: new ProcessIdentity(), created: new Map(), intervalMs: 60_000, identityPollMs: 60_000, concurrency: 1 })
  return { ...fake, store, executor, reconciler }
}

/** What PATCH /backends/:name { published } runs. */
function setPublished (executor: Executor, name: string, published: boolean) {
  const target = { kind: 'backend', id: name }
  return executor.perform({ target }, async () => {
    const kept = await executor.store.getBackend(name)
    return {
      target,
      action: 'update',
      steps: [commandStep([published ? cmd.publishBackend(name) : cmd.unpublishBackend(name)], [published ? cmd.unpublishBackend(name) : cmd.publishBackend(name)])],
      changes: kept === undefined ? [] : [{ op: 'backend.put', backend: { ...kept, published } }]
    }
  })
}

describe('Reconciler: grouped creation and API writes', () => {
  it('a write to a backend of a group that is being created waits, then applies on top of it and is kept', async () => {
    const { reconciler, executor, backends, store, hold } = await setup(['b0', 'b1', 'b2', 'b3'])
    let open!: () => void
    hold(new Promise<void>(resolve => { open = resolve }))
    const pass = reconciler.reconcileNow('test')
    await new Promise(resolve => setTimeout(resolve, 20))
    const write = setPublished(executor, 'b2', false)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(backends.size).toBe(0)
    hold(undefined)
    open()
    await write
    await pass
    expect(backends.get('b2')).toBe(false)
    expect((await store.getBackend('b2'))?.published).toBe(false)
    const again = await reconciler.reconcileNow('again')
    expect(again?.reapplied).toEqual([])
    expect(backends.get('b2')).toBe(false)
  })
})
