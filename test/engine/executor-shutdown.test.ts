import { describe, expect, it } from 'vitest'
import { Executor } from '../../src/engine/executor.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import type { Plan, Step } from '../../src/engine/plan.ts'
import { commandStep } from '../../src/engine/plan.ts'
import type { DesiredChange } from '../../src/engine/store/types.ts'
import type { ExecuteOptions, Runtime } from '../../src/runtime/client.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeAbortedError, RuntimeTimeoutError } from '../../src/runtime/errors.ts'
import { command as c } from '../helpers/executor.ts'

/*
 * The executor on shutdown: nothing new starts, lock waits end at once, a running operation's waits are
 * cut short and what it changed is put back (never cut itself), an operation past its point of no
 * return is finished, and idle() says when the last one is done. The fake runtime behaves as the real
 * client does with a signal: a command named `wait…` waits until the signal ends it
 * (RuntimeAbortedError at its index), any other command answers at once.
 */

const target = { kind: 'backend', id: 'b1' }
const put: DesiredChange = { op: 'backend.put', backend: { name: 'b1', from: 'd', mode: null, published: true } }
const plan = (steps: Step[], changes: DesiredChange[] = [put]): Plan => ({ target, action: 'test', steps, changes })

/** One execute(): the commands that went out, one at a time, and whether it carried a signal. */
type Call = { commands: string[], signalled: boolean }

function setup (lockTimeoutMs = 10_000) {
  const calls: Call[] = []
  let waiting: () => void = () => {}
  const waitStarted = new Promise<void>(resolve => { waiting = resolve })
  const runtime: Runtime = {
    execute: (async (commands: readonly Command<unknown>[], options?: ExecuteOptions) => {
      const call: Call = { commands: [], signalled: options?.signal !== undefined }
      calls.push(call)
      const results: unknown[] = []
      for (const [i, cmd] of commands.entries()) {
        call.commands.push(cmd.text)
        if (cmd.text.startsWith('wait')) {
          const signal = options?.signal
          waiting()
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, 30_000)
            signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new RuntimeAbortedError(cmd.verb, i, signal.reason)) }, { once: true })
          })
        }
        results.push(undefined)
      }
      return results
    }) as Runtime['execute'],
    close: async () => {}
  }
  const store = new MemoryStore()
  const executor = new Executor({ runtime, store, lockTimeoutMs })
  const sent = (): string[] => calls.flatMap(x => x.commands)
  return { executor, store, calls, sent, waitStarted }
}

describe('Executor.shutdown()', () => {
  it('refuses new operations with SHUTTING_DOWN (outcome refused) and sends nothing', async () => {
    const { executor, sent } = setup()
    executor.shutdown()
    let built = false
    const err = await executor.run({ target }, async () => { built = true; return plan([commandStep([c('a')], [c('undo a')])]) }).catch(e => e)
    expect(err).toMatchObject({ reason: 'SHUTTING_DOWN', outcome: 'refused', state: { target, outcome: 'refused', applied: [] } })
    expect(built).toBe(false)
    expect(sent()).toEqual([])
  })

  it('interrupts a wait, puts back the steps before it, never sends what came after, and answers undone', async () => {
    const { executor, store, sent, calls, waitStarted } = setup()
    // The shape of a server's removal: maintenance (undoable), the drain, then the deletion on one connection.
    const running = executor.run({ target }, async () => plan([
      commandStep([c('maint')], [c('ready')]),
      commandStep([c('wait removable')], []),
      commandStep([c('del server')])
    ], [{ op: 'backend.delete', name: 'b1' }]))
    await waitStarted
    let idle = false
    const settled = executor.idle().then(() => { idle = true })
    executor.shutdown()
    const { outcome } = await running
    await settled
    expect(idle).toBe(true)
    expect(outcome).toMatchObject({ kind: 'undone', applied: ['maint'], undone: ['maint'], left: [] })
    if (outcome.kind === 'applied') throw new Error('unreachable')
    expect(outcome.error).toMatchObject({ reason: 'SHUTTING_DOWN', outcome: 'undone', command: 'wait removable' })
    expect(outcome.error.message).toMatch(/^hapctl is stopping: 'wait removable' was interrupted; what had been applied \(maint\) was put back$/)
    expect(sent()).toEqual(['maint', 'wait removable', 'ready'])
    // The undo went out without the signal: putting back is never cut short.
    expect(calls.at(-1)).toEqual({ commands: ['ready'], signalled: false })
    expect(await store.revision()).toBe(0)
  })

  it('interrupts a step that waits on its own (a health-check poll) through ctx.signal', async () => {
    const { executor, sent } = setup()
    let started!: () => void
    const polling = new Promise<void>(resolve => { started = resolve })
    const running = executor.run({ target }, async () => plan([
      commandStep([c('add')], [c('del')]),
      {
        label: 'wait for UP',
        apply: async ({ signal }) => {
          started()
          await new Promise((_resolve, reject) => { signal?.addEventListener('abort', () => reject(signal.reason), { once: true }) })
        },
        undo: async () => {}
      },
      commandStep([c('publish')], [c('unpublish')])
    ]))
    await polling
    executor.shutdown()
    const { outcome } = await running
    expect(outcome).toMatchObject({ kind: 'undone', applied: ['add'], undone: ['add'] })
    expect(sent()).toEqual(['add', 'del'])
  })

  it('ends lock waits at once instead of at the lock deadline', async () => {
    const { executor, waitStarted } = setup(10_000)
    const holder = executor.run({ target }, async () => plan([commandStep([c('maint')], [c('ready')]), commandStep([c('wait removable')], [])]))
    await waitStarted
    let built = false
    const queued = executor.run({ target }, async () => { built = true; return plan([commandStep([c('b')], [])]) }).catch(e => e)
    const t0 = Date.now()
    executor.shutdown()
    const err = await queued
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(err).toMatchObject({ reason: 'SHUTTING_DOWN', outcome: 'refused' })
    expect(built).toBe(false)
    expect((await holder).outcome.kind).toBe('undone')
  })

  it('finishes an operation past its point of no return: its later waits are not cut', async () => {
    const { executor, sent } = setup()
    let deleted!: () => void
    const pastNoReturn = new Promise<void>(resolve => { deleted = resolve })
    let signalAtWait: boolean | undefined
    const running = executor.run({ target }, async () => plan([
      commandStep([c('unpublish')], [c('publish')]),
      { ...commandStep([c('del server')]), onApplied: () => { deleted() } },
      {
        label: 'wait be-removable + del backend',
        apply: async ({ runtime, signal }) => {
          await new Promise(resolve => setTimeout(resolve, 50))
          signalAtWait = signal?.aborted
          await runtime.execute([c('del backend')])
        }
      }
    ], [{ op: 'backend.delete', name: 'b1' }]))
    await pastNoReturn
    executor.shutdown()
    const { outcome } = await running
    expect(outcome).toMatchObject({ kind: 'applied', revision: 1 })
    expect(signalAtWait).toBe(false)
    expect(sent()).toEqual(['unpublish', 'del server', 'del backend'])
  })

  it('lets any number of operations wait at once without a listener-leak warning', async () => {
    const { executor } = setup()
    const warnings: string[] = []
    const onWarning = (w: Error): void => { warnings.push(w.name) }
    process.on('warning', onWarning)
    try {
      let release: () => void = () => {}
      const gate = new Promise<void>(resolve => { release = resolve })
      const first = executor.locked({ target }, async () => { await gate })
      const queued = Array.from({ length: 30 }, () => executor.locked({ target }, async () => {}))
      await new Promise(resolve => setTimeout(resolve, 20))
      release()
      await Promise.all([first, ...queued])
      await new Promise(resolve => setImmediate(resolve))
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).toEqual([])
  })

  it('idle() resolves at once when nothing runs', async () => {
    const { executor } = setup()
    await executor.idle()
    executor.shutdown()
    await executor.idle()
    expect(executor.closing).toBe(true)
  })
})

describe('Executor: every failure says what HAProxy was left like', () => {
  it('a failure while planning (a read) answers outcome refused', async () => {
    const { executor } = setup()
    const err = await executor.run({ target }, async () => { throw new RuntimeTimeoutError(1000, 'show stat') }).catch(e => e)
    expect(err).toMatchObject({ reason: 'RUNTIME_TIMEOUT', outcome: 'refused', state: { target, outcome: 'refused', applied: [], undone: [], left: [] } })
  })

  it('a step that only reads and times out undoes what came before instead of leaving the change in doubt', async () => {
    const { executor, store, sent } = setup()
    const { outcome } = await executor.run({ target }, async () => plan([
      commandStep([c('add backend')], [c('del backend')]),
      { label: 'wait for UP', apply: async () => { throw new RuntimeTimeoutError(1000, 'show stat') }, undo: async () => {}, changesNothing: true },
      commandStep([c('publish')], [c('unpublish')])
    ]))
    expect(outcome).toMatchObject({ kind: 'undone', applied: ['add backend'], undone: ['add backend'] })
    expect(sent()).toEqual(['add backend', 'del backend'])
    expect(await store.revision()).toBe(0)
  })
})
