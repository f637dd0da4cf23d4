/**
 * The executor's `state` lock (STATE_LOCK): every operation shares it, a whole-state apply holds it
 * alone, so that no other write commits in the middle of one (and none starts while it waits).
 */
import { describe, expect, it } from 'vitest'
import { Executor, STATE_LOCK } from '../../src/engine/executor.ts'
import { ProcessIdentity } from '../../src/engine/identity.ts'
import type { Plan } from '../../src/engine/plan.ts'
import { StateService } from '../../src/resources/state/service.ts'
import { StateDocumentSchema } from '../../src/schemas/state.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { executorOnFake } from '../helpers/executor.ts'
import { stateHaproxy } from '../helpers/state-runtime.ts'

const tick = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 10)) }

/** An operation that holds its locks until `release()`; `inside` resolves once it got them. */
function hold (executor: Executor, name: string, log: string[], lock: string | string[], lockTimeoutMs?: number) {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let entered!: () => void
  const inside = new Promise<void>(resolve => { entered = resolve })
  const done = executor.run({ target: { kind: 'test', id: name }, lock, lockTimeoutMs }, async (): Promise<Plan> => {
    log.push(`${name} in`)
    entered()
    await gate
    log.push(`${name} out`)
    return { target: { kind: 'test', id: name }, action: 'test', steps: [] }
  })
  return { release, inside, done }
}

describe('STATE_LOCK', () => {
  it('is shared by ordinary operations: two writes to different objects run at once', async () => {
    const { executor } = executorOnFake()
    const log: string[] = []
    const a = hold(executor, 'a', log, 'backend:a')
    const b = hold(executor, 'b', log, 'backend:b')
    await Promise.all([a.inside, b.inside])
    expect(log).toEqual(['a in', 'b in'])
    a.release(); b.release()
    await Promise.all([a.done, b.done])
  })

  it('held alone waits for the operations running, and keeps out those that come after it', async () => {
    const { executor } = executorOnFake({}, 2000)
    const log: string[] = []
    const a = hold(executor, 'a', log, 'backend:a')
    await a.inside
    const s = hold(executor, 'state', log, [STATE_LOCK, 'backend:x'])
    await tick()
    expect(log).toEqual(['a in'])
    // Another ordinary write, to an object the state apply does not name, arrives while the apply waits:
    // it goes after the apply (no starvation of the apply by a stream of small writes).
    const b = hold(executor, 'b', log, 'backend:b')
    await tick()
    expect(log).toEqual(['a in'])
    a.release()
    await s.inside
    await tick()
    expect(log).toEqual(['a in', 'a out', 'state in'])
    s.release()
    await b.inside
    b.release()
    await Promise.all([a.done, s.done, b.done])
    expect(log).toEqual(['a in', 'a out', 'state in', 'state out', 'b in', 'b out'])
  })

  it('held alone makes a write waiting for it give up with BUSY at its lock deadline', async () => {
    const { executor } = executorOnFake({}, 2000)
    const log: string[] = []
    const s = hold(executor, 'state', log, [STATE_LOCK])
    await s.inside
    const b = hold(executor, 'b', log, 'backend:b', 50)
    await expect(b.done).rejects.toMatchObject({ reason: 'BUSY' })
    // A read under a lock (executor.locked: the reconciler's) waits too.
    await expect(executor.locked({ target: { kind: 'test', id: 'read' }, lock: 'backend:c', lockTimeoutMs: 50 }, async () => 'read')).rejects.toMatchObject({ reason: 'BUSY' })
    expect(log).toEqual(['state in'])
    s.release()
    await s.done
    expect(await executor.locked({ target: { kind: 'test', id: 'read' }, lock: 'backend:c' }, async () => 'read')).toBe('read')
  })

  it('two state applies run one after the other', async () => {
    const { executor } = executorOnFake({}, 2000)
    const log: string[] = []
    const s1 = hold(executor, 's1', log, [STATE_LOCK])
    const s2 = hold(executor, 's2', log, [STATE_LOCK])
    await s1.inside
    await tick()
    expect(log).toEqual(['s1 in'])
    s1.release()
    await s2.inside
    s2.release()
    await Promise.all([s1.done, s2.done])
    expect(log).toEqual(['s1 in', 's1 out', 's2 in', 's2 out'])
  })

  it('is what PUT /state holds alone: a write started during an apply waits for it to finish', async () => {
    const h = stateHaproxy()
    // HAProxy answers the apply's first read only when told to.
    let answer!: () => void
    const answered = new Promise<void>(resolve => { answer = resolve })
    const execute = h.runtime.execute.bind(h.runtime)
    const log: string[] = []
    h.runtime.execute = (async (commands: readonly Command<unknown>[]) => {
      if (commands.some(c => c.text === 'show servers state')) await answered
      for (const c of commands) if (!c.text.startsWith('show ')) log.push(c.text)
      return execute(commands)
    }) as typeof h.runtime.execute
    const executor = new Executor({ runtime: h.runtime, store: new MemoryStore(), lockTimeoutMs: 2000 })
    const state = new StateService({ runtime: h.runtime, executor, identity: new ProcessIdentity(), created: new Map() })
    const apply = state.apply(StateDocumentSchema.parse({ configBackends: { webservers: { serverSettings: { web1: { weight: 3 } } } } }), { dryRun: false, drainMs: 1000 })
    await tick()
    const other = hold(executor, 'other', log, 'backend:unrelated')
    await tick()
    expect(log).toEqual([])
    answer()
    await other.inside
    other.release()
    await Promise.all([apply, other.done])
    expect(log).toEqual(['set server webservers/web1 weight 3', 'other in', 'other out'])
    expect((await apply).revision).toBe(1)
  })
})
