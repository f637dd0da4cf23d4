import { describe, expect, it } from 'vitest'
import { KeyedLock } from '../../src/engine/locks.ts'
import { OperationError } from '../../src/engine/outcomes.ts'
import type { Plan, Step } from '../../src/engine/plan.ts'
import { commandStep } from '../../src/engine/plan.ts'
import type { DesiredChange } from '../../src/engine/store/types.ts'
import { command, executorOnFake } from '../helpers/executor.ts'
import { RuntimeCommandError, RuntimeStaleProcessError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'

const c = command
const setup = executorOnFake

const target = { kind: 'backend', id: 'b1' }
const put: DesiredChange = { op: 'backend.put', backend: { name: 'b1', from: 'd', mode: null, published: true } }
const plan = (steps: Step[], changes?: DesiredChange[]): Plan => ({ target, action: 'test', steps, changes })

describe('Executor', () => {
  it('names at most ten steps in a failure\'s message, and every one in its state (a whole state document is thousands)', async () => {
    const { executor } = setup({ last: 'No such backend.' })
    const steps = Array.from({ length: 30 }, (_, i) => commandStep([c(`s${i}`)], [c(`undo s${i}`)]))
    const { outcome } = await executor.run({ target }, async () => plan([...steps, commandStep([c('last')], [])]))
    expect(outcome.kind).toBe('undone')
    if (outcome.kind === 'applied') return
    expect(outcome.undone).toHaveLength(30)
    expect(outcome.error.state?.undone).toHaveLength(30)
    expect(outcome.error.message).toContain('(s29, s28, s27, s26, s25, s24, s23, s22, s21, s20, and 20 more) was put back')
  })

  it('sends consecutive command steps on one connection, then commits the change with a new revision', async () => {
    const { executor, store, calls } = setup()
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b'), c('c')], [])], [put]))
    expect(outcome).toMatchObject({ kind: 'applied', applied: ['a', 'b + c'], revision: 1 })
    expect(calls).toEqual([['a', 'b', 'c']])
    expect(await store.getBackend('b1')).toMatchObject({ name: 'b1' })
  })

  it('starts an operation again, planning it anew and undoing nothing, when a kept connection reached an old worker', async () => {
    const { executor, store, runtime } = setup()
    const execute = runtime.execute.bind(runtime)
    let stale = true
    runtime.execute = (async (commands: Parameters<typeof execute>[0]) => {
      if (stale && commands.some(x => x.text === 'b')) {
        stale = false
        throw new RuntimeStaleProcessError(new RuntimeCommandError('b', 'rejected', 'Proxy is disabled.'))
      }
      return execute(commands)
    }) as typeof runtime.execute
    let plans = 0
    const { outcome } = await executor.run({ target }, async () => {
      plans++
      return plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [c('undo b')])], [put])
    })
    expect(outcome).toMatchObject({ kind: 'applied', applied: ['a', 'b'], revision: 1 })
    expect(plans).toBe(2)
    // The first batch (a + b) went to the old worker, lost with it: nothing undone, all of it sent again.
    expect(runtime.sent).toEqual(['a', 'b'])
    expect(await store.revision()).toBe(1)
  })

  it('answers 503 HAPROXY_STOPPING when the second attempt meets a stopping process too', async () => {
    const { executor, runtime } = setup()
    runtime.execute = (async () => { throw new RuntimeStaleProcessError(new RuntimeCommandError('a', 'rejected', 'Proxy is disabled.')) }) as typeof runtime.execute
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')])], [put]))
    if (outcome.kind === 'applied') throw new Error('expected a failure')
    expect([outcome.kind, outcome.error.reason]).toEqual(['refused', 'HAPROXY_STOPPING'])
  })

  it('undoes the applied steps in reverse when HAProxy refuses one, and commits nothing', async () => {
    const { executor, store, runtime } = setup({ c: 'No such server.' })
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [c('undo b')]), commandStep([c('c')], [c('undo c')])], [put]))
    expect(outcome.kind).toBe('undone')
    expect(runtime.sent).toEqual(['a', 'b', 'c', 'undo b', 'undo a'])
    expect(outcome).toMatchObject({ applied: ['a', 'b'], undone: ['b', 'a'], left: [] })
    expect(await store.revision()).toBe(0)
  })

  it('says "refused" when the first step is refused, and explains it with the step\'s own reason', async () => {
    const { executor } = setup({ a: 'Already exists a server with the same name in backend.' })
    const step = commandStep([c('a')], [], { explain: err => new OperationError('SERVER_EXISTS', `taken (${err.haproxyMessage})`, { haproxyMessage: err.haproxyMessage }) })
    const { outcome } = await executor.run({ target }, async () => plan([step], [put]))
    expect(outcome.kind).toBe('refused')
    if (outcome.kind === 'applied') throw new Error('unreachable')
    expect(outcome.error).toMatchObject({ reason: 'SERVER_EXISTS', outcome: 'refused' })
    expect(outcome.error.message).toMatch(/^taken .*nothing was changed$/)
  })

  it('stops putting back at a step that cannot be undone: what came before it stays, and says so', async () => {
    const { executor, runtime } = setup({ c: 'Wait delay expired.' })
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')]), commandStep([c('c')], [c('undo c')])], [put]))
    expect(outcome).toMatchObject({ kind: 'left', left: ['b', 'a'], undone: [] })
    expect(runtime.sent).toEqual(['a', 'b', 'c'])
  })

  it('reports "left" with the undo error when putting back fails', async () => {
    const { executor } = setup({ b: 'No such backend.', 'undo a': 'boom' })
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [])]))
    expect(outcome.kind).toBe('left')
    if (outcome.kind === 'applied') throw new Error('unreachable')
    expect(outcome.error.message).toMatch(/a could not be put back \(a: HAProxy rejected 'undo a': boom\)/)
  })

  it('records the change as desired when a step gets no verdict, without undoing (HAProxy may still run it)', async () => {
    const { executor, store, runtime } = setup({ b: new RuntimeTimeoutError(100, 'b') })
    const commits: string[] = []
    executor.onCommit(e => commits.push(`${e.outcome}@${e.revision}`))
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [c('undo b')])], [put]))
    expect(outcome).toMatchObject({ kind: 'unknown', revision: 1 })
    expect(runtime.sent).toEqual(['a', 'b'])
    expect(await store.getBackend('b1')).toBeDefined()
    expect(commits).toEqual(['unknown@1'])
  })

  it('puts back steps in doubt too when there is no desired change to record', async () => {
    const { executor, runtime } = setup({ b: new RuntimeTimeoutError(100, 'b') })
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [c('undo b')])]))
    expect(outcome.kind).toBe('undone')
    expect(runtime.sent).toEqual(['a', 'b', 'undo b', 'undo a'])
  })

  it('treats an unreachable HAProxy as a verdict: nothing recorded', async () => {
    const { executor, store } = setup({ a: new RuntimeUnavailableError('tcp://x', 'ECONNREFUSED') })
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [])], [put]))
    expect(outcome.kind).toBe('refused')
    expect(await store.revision()).toBe(0)
  })

  it('puts HAProxy back when the store cannot record the change', async () => {
    const { executor, store, runtime } = setup()
    store.commit = async () => { throw new Error('disk full') }
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')])], [put]))
    expect(outcome.kind).toBe('undone')
    if (outcome.kind === 'applied') throw new Error('unreachable')
    expect(outcome.error.reason).toBe('STORE_UNAVAILABLE')
    expect(runtime.sent).toEqual(['a', 'undo a'])
  })

  it('answers BUSY when the lock is not free in time, and never runs the plan', async () => {
    const { executor, runtime } = setup()
    let release!: () => void
    const holding = executor.locked({ target }, () => new Promise<void>(resolve => { release = resolve }))
    const err = await executor.perform({ target, lockTimeoutMs: 50 }, async () => plan([commandStep([c('a')])])).catch((e: unknown) => e)
    expect(err).toMatchObject({ reason: 'BUSY', outcome: 'refused' })
    release()
    await holding
    expect(runtime.sent).toEqual([])
  })

  it('a change applied and recorded whose read-back fails says so (outcome applied, revision), not a bare failure', async () => {
    // Seen on HAProxy killed right after a POST /backends went through: 502 "closed during prompt i",
    // and the client took as failed a backend that hapctl then kept putting back.
    const { executor, store } = setup()
    const err = await executor.perform({ target }, async () => plan([commandStep([c('a')], [c('undo a')])], [put]), async () => {
      throw new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')
    }).catch((e: unknown) => e)
    expect(err).toMatchObject({ reason: 'RUNTIME_UNAVAILABLE', outcome: 'applied', state: { outcome: 'applied', revision: 1 } })
    expect((err as Error).message).toMatch(/applied and recorded \(revision 1\)/)
    expect(await store.getBackend('b1')).toMatchObject({ name: 'b1' })
  })

  it('throws a planner\'s own refusal as is, with nothing sent', async () => {
    const { executor, runtime } = setup()
    const err = await executor.perform({ target }, async () => { throw new OperationError('BACKEND_STATIC', 'no') }).catch((e: unknown) => e)
    expect(err).toMatchObject({ reason: 'BACKEND_STATIC' })
    expect(runtime.sent).toEqual([])
  })
})

describe('KeyedLock', () => {
  it('runs holders of one key in order, other keys in parallel, and a timed-out waiter never runs', async () => {
    const lock = new KeyedLock()
    const order: string[] = []
    let release!: () => void
    const first = lock.run('k', async () => { order.push('1 start'); await new Promise<void>(resolve => { release = resolve }); order.push('1 end') })
    const timedOut = lock.run('k', async () => { order.push('never') }, { timeoutMs: 20 }).catch((e: Error) => order.push(`timeout: ${e.message}`))
    const third = lock.run('k', async () => { order.push('3') })
    await lock.run('other', async () => { order.push('other') })
    await timedOut
    release()
    await Promise.all([first, third])
    expect(order).toEqual(['1 start', 'other', 'timeout: another operation on k did not finish within 20 ms', '1 end', '3'])
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(lock.size).toBe(0)
  })
})
