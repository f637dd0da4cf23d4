/**
 * aroundRuntime: every call of the inner runtime goes through `around`, payloads included, and
 * `close` closes the inner runtime unless the decorator is a view that says otherwise.
 */
import { describe, expect, it } from 'vitest'
import { aroundRuntime } from '../../src/runtime/around.ts'
import type { PayloadCommand, Runtime } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'

function inner (): Runtime & { closed: number } {
  const r = {
    closed: 0,
    execute: async (commands: readonly cmd.Command<unknown>[]) => commands.map(c => c.text) as never,
    executePayload: async () => 'payload' as never,
    close: async () => { r.closed++ }
  }
  return r
}

describe('aroundRuntime', () => {
  it('sends execute and executePayload through around, with the commands of each call', async () => {
    const seen: string[][] = []
    const base = inner()
    const rt = aroundRuntime(base, async (commands, call) => { seen.push(commands.map(c => c.verb)); return await call() })
    expect(await rt.execute([cmd.showInfo()])).toEqual(['show info'])
    const [payload] = cmd.addMapPayloads('virt@a.map', 1, [{ key: 'k', value: 'v' }])
    expect(await rt.executePayload?.(payload as PayloadCommand<void>)).toBe('payload')
    expect(seen).toEqual([['show info'], ['add map payload']])
    await rt.close()
    expect(base.closed).toBe(1)
  })

  it('has no executePayload when the inner runtime has none, and a view keeps the inner runtime open', async () => {
    const base = inner()
    const { executePayload: _, ...withoutPayloads } = base
    expect(aroundRuntime(withoutPayloads, async (_c, call) => await call()).executePayload).toBeUndefined()
    await aroundRuntime(base, async (_c, call) => await call(), { close: async () => {} }).close()
    expect(base.closed).toBe(0)
  })
})
