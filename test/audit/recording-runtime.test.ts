/**
 * The Runtime decorator: which commands of a call it reports as sent, and how each ended, from how
 * the client says the call ended.
 */
import { describe, expect, it } from 'vitest'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeAbortedError, RuntimeArgumentError, RuntimeCommandError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'
import type { Runtime } from '../../src/runtime/client.ts'
import type { AuditCommand } from '../../src/engine/store/types.ts'
import { recordingRuntime } from '../../src/audit/recording-runtime.ts'

/** A runtime that fails every call with `err` (after nothing, or after resolving) and the decorator's reports. */
function setup (err?: Error) {
  const reports: AuditCommand[][] = []
  const inner: Runtime = {
    execute: (async (commands: readonly unknown[]) => {
      if (err !== undefined) throw err
      return commands.map(() => undefined)
    }) as Runtime['execute'],
    executePayload: (async () => { if (err !== undefined) throw err }) as Runtime['executePayload'],
    close: async () => {}
  }
  const runtime = recordingRuntime(inner, () => commands => { reports.push(commands) })
  return { runtime, reports }
}

const refusal = (index: number): RuntimeCommandError => {
  const e = new RuntimeCommandError('x', 'conflict', 'no')
  e.index = index
  return e
}

const texts = (r: AuditCommand[][]) => r.map(cs => cs.map(c => `${c.text}=${c.result}`))

describe('recordingRuntime', () => {
  const a = cmd.setServerState('b', 's1', 'maint')
  const b = cmd.setServerState('b', 's2', 'maint')
  const c = cmd.delServer('b', 's1')
  const read = cmd.showStat()

  it('a call that succeeds: every command but the reads, ok, in order', async () => {
    const { runtime, reports } = setup()
    await runtime.execute([read, a, b, c])
    expect(texts(reports)).toEqual([['set server b/s1 state maint=ok', 'set server b/s2 state maint=ok', 'del server b/s1=ok']])
  })

  it('a call of reads only reports nothing', async () => {
    const { runtime, reports } = setup()
    await runtime.execute([read, cmd.showInfo()])
    expect(reports).toEqual([])
  })

  it('a refusal: those before it ok, it refused, nothing after (never sent)', async () => {
    const { runtime, reports } = setup(refusal(2))
    await expect(runtime.execute([read, a, b, c])).rejects.toThrow(RuntimeCommandError)
    expect(texts(reports)).toEqual([['set server b/s1 state maint=ok', 'set server b/s2 state maint=refused']])
  })

  it('no verdict: from the first command with the verb in flight to its last, unknown; nothing after', async () => {
    const { runtime, reports } = setup(new RuntimeTimeoutError(5000, 'set server state'))
    await expect(runtime.execute([read, a, b, c])).rejects.toThrow(RuntimeTimeoutError)
    expect(texts(reports)).toEqual([['set server b/s1 state maint=unknown', 'set server b/s2 state maint=unknown']])
    const cut = setup(new RuntimeProtocolError('cut', { verb: 'del server' }))
    await expect(cut.runtime.execute([a, c])).rejects.toThrow(RuntimeProtocolError)
    expect(texts(cut.reports)).toEqual([['set server b/s1 state maint=ok', 'del server b/s1=unknown']])
  })

  it('an interrupted wait: those before it ok, the wait interrupted, nothing after (never sent)', async () => {
    const wait = cmd.waitServerRemovable('b', 's1', 60_000)
    const { runtime, reports } = setup(new RuntimeAbortedError('wait srv-removable', 2, new Error('stopping')))
    await expect(runtime.execute([a, b, wait, c])).rejects.toThrow(RuntimeAbortedError)
    expect(texts(reports)).toEqual([['set server b/s1 state maint=ok', 'set server b/s2 state maint=ok', 'wait 60000ms srv-removable b/s1=interrupted']])
  })

  it('no verdict, from a client that says where it stopped: exactly those sent (the one in flight unknown)', async () => {
    const timeout = new RuntimeTimeoutError(5000, 'set server state')
    timeout.position = { done: 0, inFlight: true }
    const first = setup(timeout)
    await expect(first.runtime.execute([a, b, c])).rejects.toThrow(RuntimeTimeoutError)
    expect(texts(first.reports)).toEqual([['set server b/s1 state maint=unknown']])
    const cut = new RuntimeProtocolError('cut', { verb: 'del server' })
    cut.position = { done: 2, inFlight: true }
    const later = setup(cut)
    await expect(later.runtime.execute([a, b, c])).rejects.toThrow(RuntimeProtocolError)
    expect(texts(later.reports)).toEqual([['set server b/s1 state maint=ok', 'set server b/s2 state maint=ok', 'del server b/s1=unknown']])
    const early = new RuntimeTimeoutError(5000)
    early.position = { done: 0, inFlight: false }
    const none = setup(early)
    await expect(none.runtime.execute([a, b])).rejects.toThrow(RuntimeTimeoutError)
    expect(none.reports).toEqual([])
  })

  it('failures before any command went out report nothing', async () => {
    for (const err of [new RuntimeUnavailableError('tcp://x:1', 'ECONNREFUSED'), new RuntimeTimeoutError(5000), new RuntimeArgumentError('x', 'bad')]) {
      const { runtime, reports } = setup(err)
      await expect(runtime.execute([a, b])).rejects.toThrow(err.constructor as new () => Error)
      expect(reports).toEqual([])
    }
  })

  it('a payload command: its line and a summary of the payload', async () => {
    const { runtime, reports } = setup()
    const p = cmd.addMapPayload('virt@m', 2, [{ key: '/a', value: 'b' }, { key: '/c', value: 'd' }])
    await runtime.executePayload?.(p)
    expect(reports).toEqual([[{ text: 'add map @2 virt@m <<', result: 'ok', payload: { lines: 2, bytes: 10, firstLine: '/a b' } }]])
    const failed = setup(refusal(0))
    await expect(failed.runtime.executePayload?.(p)).rejects.toThrow(RuntimeCommandError)
    expect(failed.reports[0]?.[0]?.result).toBe('refused')
  })

  it('a runtime without payload support stays without it', () => {
    const { runtime } = setup()
    const bare = recordingRuntime({ execute: runtime.execute, close: runtime.close }, () => () => {})
    expect(bare.executePayload).toBeUndefined()
  })
})
