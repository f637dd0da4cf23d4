/**
 * RuntimeClient with a signal (ExecuteOptions.signal): it ends a `wait` and nothing else, so that the
 * commands before it are exactly what ran; against the scriptable fake stats socket, whose `wait`
 * never answers.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { RuntimeClient } from '../../src/runtime/client.ts'
import * as cmd from '../../src/runtime/commands/index.ts'
import { RuntimeAbortedError } from '../../src/runtime/errors.ts'
import { startFakeHaproxy } from '../helpers/fake-haproxy.ts'
import type { FakeHaproxy, Script } from '../helpers/fake-haproxy.ts'
import { waitFor } from '../helpers/haproxy.ts'

const fakes: FakeHaproxy[] = []
const clients: RuntimeClient[] = []

afterEach(async () => {
  await Promise.all(clients.splice(0).map(c => c.close()))
  await Promise.all(fakes.splice(0).map(f => f.close()))
})

/** `set server` answers after `setDelayMs`, a `wait` never, `del server` at once. */
function script (setDelayMs = 0): Script {
  return line => {
    if (line.startsWith('wait ')) return { stall: true }
    if (line.startsWith('set server')) return { reply: '\n', delayMs: setDelayMs }
    if (line.startsWith('del server')) return { reply: 'Server deleted.\n\n' }
    return { reply: '\n' }
  }
}

async function setup (s: Script): Promise<{ fake: FakeHaproxy, client: RuntimeClient }> {
  const fake = await startFakeHaproxy({ script: s })
  fakes.push(fake)
  const client = new RuntimeClient({ endpoint: fake.endpoint, timeoutMs: 5000 })
  clients.push(client)
  return { fake, client }
}

const removal = [cmd.setServerState('b1', 's1', 'maint'), cmd.waitServerRemovable('b1', 's1', 60_000), cmd.delServer('b1', 's1')] as const

describe('RuntimeClient with a signal', () => {
  it('ends a wait in flight by closing the connection; the commands after it are not sent', async () => {
    const { fake, client } = await setup(script())
    const controller = new AbortController()
    const call = client.execute(removal, { signal: controller.signal })
    call.catch(() => {})
    await waitFor(async () => fake.lines(), lines => lines.some(l => l.startsWith('wait ')), { timeoutMs: 2000, intervalMs: 10 })
    const reason = new Error('stopping')
    const t0 = Date.now()
    controller.abort(reason)
    const err = await call.catch(e => e)
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(err).toBeInstanceOf(RuntimeAbortedError)
    expect(err).toMatchObject({ code: 'RUNTIME_ABORTED', verb: 'wait srv-removable', index: 1, cause: reason })
    expect(err.message).toBe("'wait srv-removable' was interrupted by the caller (stopping)")
    expect(fake.lines().filter(l => l !== 'prompt i' && !l.startsWith('set timeout'))).toEqual(['set server b1/s1 state maint', 'wait 60000ms srv-removable b1/s1'])
    await waitFor(async () => fake.open, n => n === 0, { timeoutMs: 2000, intervalMs: 10 })
  })

  it('lets a command that changes something finish, and stops before the wait that follows it', async () => {
    const { fake, client } = await setup(script(300))
    const controller = new AbortController()
    const call = client.execute(removal, { signal: controller.signal })
    call.catch(() => {})
    await waitFor(async () => fake.lines(), lines => lines.some(l => l.startsWith('set server')), { timeoutMs: 2000, intervalMs: 10 })
    controller.abort(new Error('stopping'))
    const err = await call.catch(e => e)
    expect(err).toMatchObject({ verb: 'wait srv-removable', index: 1 })
    expect(fake.lines().some(l => l.startsWith('wait '))).toBe(false)
  })

  it('does not touch a sequence without a wait, even when aborted before the call', async () => {
    const { fake, client } = await setup(script())
    const controller = new AbortController()
    controller.abort(new Error('stopping'))
    await expect(client.execute([cmd.setServerState('b1', 's1', 'ready')], { signal: controller.signal })).resolves.toEqual([undefined])
    expect(fake.lines()).toContain('set server b1/s1 state ready')
  })
})
