import { describe, expect, it } from 'vitest'
import type { Plan, Step } from '../../src/engine/plan.ts'
import { commandStep } from '../../src/engine/plan.ts'
import type { DesiredChange } from '../../src/engine/store/types.ts'
import { command, executorOnFake } from '../helpers/executor.ts'
import { RuntimeTimeoutError } from '../../src/runtime/errors.ts'

/*
 * Executor edge cases: batches mixing function and command steps, a hook that throws in the middle of
 * a batch, steps in doubt, and several locks with a deadline.
 */
const c = command
const setup = executorOnFake

const target = { kind: 'backend', id: 'b1' }
const put: DesiredChange = { op: 'backend.put', backend: { name: 'b1', from: 'd', mode: null, published: true } }
const plan = (steps: Step[], changes?: DesiredChange[]): Plan => ({ target, action: 'test', steps, changes })

/** A function step that records what it does, and can be undone. */
function fnStep (label: string, log: string[], fail?: Error): Step {
  return {
    label,
    apply: async () => { log.push(label); if (fail !== undefined) throw fail },
    undo: async () => { log.push(`undo ${label}`) }
  }
}

describe('Executor: batches mixing function and command steps', () => {
  it('a command step after a function step goes out on its own connection; a refusal there undoes both kinds, in reverse', async () => {
    const log: string[] = []
    const { executor, runtime, calls } = setup({ d: 'No such server.' })
    const { outcome } = await executor.run({ target }, async () => plan([
      commandStep([c('a')], [c('undo a')]),
      fnStep('f', log),
      commandStep([c('b')], [c('undo b')]),
      commandStep([c('d')], [c('undo d')])
    ], [put]))
    expect(outcome).toMatchObject({ kind: 'undone', applied: ['a', 'f', 'b'], undone: ['b', 'f', 'a'] })
    expect(calls).toEqual([['a'], ['b', 'd'], ['undo b'], ['undo a']])
    expect(runtime.sent).toEqual(['a', 'b', 'd', 'undo b', 'undo a'])
    expect(log).toEqual(['f', 'undo f'])
  })

  it('a failing function step undoes the command steps before it', async () => {
    const log: string[] = []
    const { executor, runtime, store } = setup()
    const { outcome } = await executor.run({ target }, async () => plan([commandStep([c('a')], [c('undo a')]), commandStep([c('b')], [c('undo b')]), fnStep('f', log, new Error('boom'))], [put]))
    expect(outcome).toMatchObject({ kind: 'undone', undone: ['b', 'a'] })
    expect(runtime.sent).toEqual(['a', 'b', 'undo b', 'undo a'])
    expect(await store.revision()).toBe(0)
  })
})

describe('Executor: onApplied', () => {
  it('runs with each step\'s own results, in order', async () => {
    const { executor } = setup()
    const seen: unknown[] = []
    const s = (name: string, n: number): Step => ({ label: name, commands: Array.from({ length: n }, (_, i) => c(`${name}${i}`)), undoCommands: [], onApplied: r => { seen.push([name, r.length]) } })
    const { outcome } = await executor.run({ target }, async () => plan([s('x', 2), s('y', 1), s('z', 3)]))
    expect(outcome.kind).toBe('applied')
    expect(seen).toEqual([['x', 2], ['y', 1], ['z', 3]])
  })

  it('a throw in the middle of a batch puts back the whole batch (the rest of it went out too), and commits nothing', async () => {
    const { executor, runtime, store } = setup()
    const hooks: string[] = []
    const { outcome } = await executor.run({ target }, async () => plan([
      { ...commandStep([c('a')], [c('undo a')]), onApplied: () => { hooks.push('a') } },
      { ...commandStep([c('b')], [c('undo b')]), onApplied: () => { throw new Error('store down') } },
      { ...commandStep([c('c')], [c('undo c')]), onApplied: () => { hooks.push('c') } }
    ], [put]))
    expect(outcome).toMatchObject({ kind: 'undone', undone: ['c', 'b', 'a'] })
    if (outcome.kind === 'applied') throw new Error('unreachable')
    expect(outcome.error.message).toMatch(/store down/)
    expect(runtime.sent).toEqual(['a', 'b', 'c', 'undo c', 'undo b', 'undo a'])
    expect(hooks).toEqual(['a'])
    expect(await store.revision()).toBe(0)
  })
})

describe('Executor: steps in doubt', () => {
  it('calls onInDoubt of every step of the batch that got no verdict, never of the steps before it', async () => {
    const { executor, store } = setup({ c: new RuntimeTimeoutError(100, 'c') })
    const noted: string[] = []
    const s = (name: string): Step => ({ ...commandStep([c(name)], [c(`undo ${name}`)]), onInDoubt: async () => { noted.push(name) } })
    const { outcome } = await executor.run({ target }, async () => plan([s('a'), fnStep('f', []), s('b'), s('c')], [put]))
    expect(outcome).toMatchObject({ kind: 'unknown', revision: 1 })
    expect(noted).toEqual(['b', 'c'])
    expect(await store.getBackend('b1')).toBeDefined()
  })

  it('a throwing onInDoubt does not change the outcome', async () => {
    const { executor } = setup({ a: new RuntimeTimeoutError(100, 'a') })
    const { outcome } = await executor.run({ target }, async () => plan([{ ...commandStep([c('a')], []), onInDoubt: async () => { throw new Error('nope') } }], [put]))
    expect(outcome.kind).toBe('unknown')
  })
})

describe('Executor: several locks', () => {
  it('takes them in sorted order, and a holder of an overlapping set waits instead of deadlocking', async () => {
    const { executor } = setup({}, 1000)
    const order: string[] = []
    const first = executor.locked({ target, lock: ['backend:c', 'backend:a'] }, async () => { order.push('1 in'); await new Promise(resolve => setTimeout(resolve, 30)); order.push('1 out') })
    const second = executor.locked({ target, lock: ['backend:a', 'backend:b', 'backend:c'] }, async () => { order.push('2') })
    await Promise.all([first, second])
    expect(order).toEqual(['1 in', '1 out', '2'])
    expect(executor.locks.size).toBe(0)
  })

  it('BUSY when one of them is not free in time: the ones already taken are released at once', async () => {
    const { executor, runtime } = setup({}, 100)
    let release!: () => void
    const holding = executor.locked({ target, lock: 'backend:m' }, () => new Promise<void>(resolve => { release = resolve }))
    const group = executor.perform({ target, lock: ['backend:a', 'backend:m', 'backend:z'] }, async () => plan([commandStep([c('x')])])).catch((e: unknown) => e)
    // While the group waits for m, it holds a.
    await new Promise(resolve => setTimeout(resolve, 20))
    const started = Date.now()
    let gotA = 0
    const other = executor.locked({ target, lock: 'backend:a', lockTimeoutMs: 1000 }, async () => { gotA = Date.now() - started })
    expect(await group).toMatchObject({ reason: 'BUSY', outcome: 'refused' })
    await other
    // a was released when the group gave up (about 80 ms later), not when m was.
    expect(gotA).toBeGreaterThan(0)
    release()
    await holding
    // z was never taken, and nothing was sent.
    expect(runtime.sent).toEqual([])
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(executor.locks.size).toBe(0)
  })
})
