import { describe, expect, it } from 'vitest'
import { CALL_OUTCOMES, callOutcome, haproxyAnswered, measuredRuntime } from '../../src/metrics/runtime.ts'
import type { CallObservation } from '../../src/metrics/runtime.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import {
  RuntimeAbortedError, RuntimeArgumentError, RuntimeBusyError, RuntimeCommandError, RuntimeProtocolError, RuntimeStaleProcessError,
  RuntimeTimeoutError, RuntimeUnavailableError
} from '../../src/runtime/errors.ts'
import { INFO_REPLY, fakeRuntime } from '../helpers/fake-runtime.ts'
import { faultyRuntime } from '../helpers/faulty-runtime.ts'

const refusal = (): RuntimeCommandError => new RuntimeCommandError('add backend', 'exists', 'name is already used')

describe('callOutcome', () => {
  it('names each way a call can end', () => {
    expect(callOutcome()).toBe('ok')
    expect(callOutcome(refusal())).toBe('refused')
    expect(callOutcome(new RuntimeStaleProcessError(refusal()))).toBe('stale')
    expect(callOutcome(new RuntimeTimeoutError(5000, 'show stat'))).toBe('timeout')
    expect(callOutcome(new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED'))).toBe('unavailable')
    expect(callOutcome(new RuntimeProtocolError('cut', { verb: 'show stat' }))).toBe('protocol')
    expect(callOutcome(new RuntimeBusyError(5000, 4))).toBe('busy')
    expect(callOutcome(new RuntimeAbortedError('wait', 0, undefined))).toBe('interrupted')
    expect(callOutcome(new RuntimeArgumentError('add map', 'too long'))).toBe('invalid')
    expect(callOutcome(new Error('other'))).toBe('error')
  })

  it('says HAProxy answered for a verdict, not for a failure to reach it, and nothing for hapctl\'s own limits', () => {
    expect(CALL_OUTCOMES.filter(o => haproxyAnswered(o) === true)).toEqual(['ok', 'refused', 'stale'])
    expect(CALL_OUTCOMES.filter(o => haproxyAnswered(o) === false)).toEqual(['timeout', 'unavailable', 'protocol'])
  })
})

describe('measuredRuntime', () => {
  function measured (respond: (text: string) => string | Error) {
    const seen: CallObservation[] = []
    const faulty = faultyRuntime(fakeRuntime(respond))
    return { runtime: measuredRuntime(faulty.runtime, o => { seen.push(o) }), seen, faulty }
  }

  it('reports a call under its first verb, with every command it sent, and passes results and errors through', async () => {
    const { runtime, seen } = measured(text => text === 'show info' ? INFO_REPLY : text.startsWith('add backend') ? 'Error: name is already used.' : 'Done.')
    const [info] = await runtime.execute([cmd.showInfo()])
    expect(info.version).toMatch(/^3\./)
    await expect(runtime.execute([cmd.showInfo(), cmd.addBackend('b1', 'mydefaults')])).rejects.toBeInstanceOf(RuntimeCommandError)
    expect(seen.map(o => [o.verb, o.outcome, o.commands])).toEqual([
      ['show info', 'ok', [{ verb: 'show info', result: 'ok' }]],
      ['show info', 'refused', [{ verb: 'show info', result: 'ok' }, { verb: 'add backend', result: 'refused' }]]
    ])
    for (const o of seen) expect(o.seconds).toBeGreaterThanOrEqual(0)
  })

  it('counts a command whose reply was lost as unknown, and nothing of a call that reached no HAProxy', async () => {
    const { runtime, seen, faulty } = measured(() => INFO_REPLY)
    faulty.arm(1, 'lost-reply')
    await expect(runtime.execute([cmd.showInfo()])).rejects.toBeInstanceOf(RuntimeTimeoutError)
    faulty.arm(1, 'unreachable')
    await expect(runtime.execute([cmd.showInfo()])).rejects.toBeInstanceOf(RuntimeUnavailableError)
    expect(seen.map(o => [o.outcome, o.commands])).toEqual([
      ['timeout', [{ verb: 'show info', result: 'unknown' }]],
      ['unavailable', []]
    ])
  })
})
