/**
 * Fault injection over a real Runtime API client: the n-th command sent after arm() fails once, in one
 * of the ways HAProxy or the network can fail it, while every other command goes to HAProxy as usual.
 * What really reached HAProxy is what the fault says:
 * - refused: HAProxy refused it (RuntimeCommandError at its index); it was not applied;
 * - lost-reply: it was applied, and its reply never came (a timeout);
 * - cut-before: the connection broke before it was sent (a cut connection naming it: no verdict);
 * - unreachable: HAProxy could not be reached for the call it is in (nothing of that call was sent).
 * The commands before it in the same call are sent for real first (they ran, as on one connection).
 */
import type { ExecuteOptions, PayloadCommand, Runtime } from '../../src/runtime/client.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError, RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../src/runtime/errors.ts'

export const FAULTS = ['refused', 'lost-reply', 'cut-before', 'unreachable'] as const
export type Fault = typeof FAULTS[number]

export type FaultyRuntime = {
  runtime: Runtime
  /** The `n`-th command (1-based) sent from now on fails with `fault`. */
  arm: (n: number, fault: Fault) => void
  /** Stops injecting; the command that failed, if the fault fired. */
  disarm: () => { verb: string, text: string } | undefined
}

export function faultyRuntime (inner: Runtime): FaultyRuntime {
  let armed: { n: number, fault: Fault } | undefined
  let seen = 0
  let fired: { verb: string, text: string } | undefined

  /** Sends `commands`, failing the armed one if it is among them. */
  async function send<T> (commands: ReadonlyArray<Command<unknown>>, real: (cmds: ReadonlyArray<Command<unknown>>) => Promise<T>): Promise<T> {
    if (armed === undefined) return await real(commands)
    const i = armed.n - seen - 1
    seen += commands.length
    if (i < 0 || i >= commands.length) return await real(commands)
    const { fault } = armed
    armed = undefined
    const failing = commands[i] as Command<unknown>
    fired = { verb: failing.verb, text: failing.text }
    if (fault === 'unreachable') throw new RuntimeUnavailableError('fault injection', 'injected: connection refused')
    if (fault === 'lost-reply') {
      // Applied (or refused: either way the verdict is lost).
      await real(commands.slice(0, i + 1)).catch(() => {})
      throw new RuntimeTimeoutError(5000, failing.verb)
    }
    if (i > 0) await real(commands.slice(0, i))
    if (fault === 'refused') {
      const err = new RuntimeCommandError(failing.verb, 'rejected', 'injected refusal')
      err.index = i
      throw err
    }
    throw new RuntimeProtocolError(`connection to HAProxy failed during '${failing.verb}' (injected)`, { verb: failing.verb })
  }

  const runtime: Runtime = {
    execute: (async (commands: ReadonlyArray<Command<unknown>>, options?: ExecuteOptions) =>
      await send(commands, cmds => inner.execute(cmds, options))) as Runtime['execute'],
    close: async () => { await inner.close() }
  }
  const executePayload = inner.executePayload?.bind(inner)
  if (executePayload !== undefined) {
    runtime.executePayload = async <T>(command: PayloadCommand<T>, options?: ExecuteOptions): Promise<T> =>
      await send([command], async cmds => cmds.length === 0 ? undefined as T : await executePayload(command, options))
  }
  return {
    runtime,
    arm: (n, fault) => { armed = { n, fault }; seen = 0; fired = undefined },
    disarm: () => { armed = undefined; return fired }
  }
}
