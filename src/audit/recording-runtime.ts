/**
 * A Runtime decorator that tells the audit trail which commands went out and how each ended, without
 * the services, planners or the executor knowing about it: they send through it as through the
 * client. What was sent is read from how the call ended, as the client reports it:
 * - success: every command, `ok`;
 * - a refusal (RuntimeCommandError, with the index of the refused command): those before it `ok`, it
 *   `refused`; the client sent nothing after it;
 * - an interrupted `wait` (RuntimeAbortedError, with its index): those before it `ok`, it `interrupted`;
 * - no verdict after a command went out (a timeout or a cut connection): the client says where it
 *   stopped (`position`): those with a reply `ok`, the one in flight `unknown`, none after it (the
 *   client sends one at a time); from a runtime that does not say, every command from the first to
 *   the last with the verb in flight is `unknown`;
 * - failures before any command went out (unreachable, a timeout waiting for a connection, an
 *   argument refused by a builder): nothing.
 * Reads are dropped (see ./commands.ts).
 */
import type { Runtime, PayloadCommand } from '../runtime/client.ts'
import { aroundRuntime } from '../runtime/around.ts'
import type { Around } from '../runtime/around.ts'
import type { Command } from '../runtime/commands/index.ts'
import { RuntimeAbortedError, RuntimeCommandError, RuntimeProtocolError, RuntimeTimeoutError } from '../runtime/errors.ts'
import type { AuditCommand } from '../engine/store/types.ts'
import { auditCommand, isRead } from './commands.ts'

/**
 * Called when a call starts, in the caller's async context; the function it returns gets the
 * commands sent once the call has ended. Both run synchronously and must not throw.
 */
export type CommandSink = () => (commands: AuditCommand[]) => void

type Sent = { command: Command<unknown>, result: AuditCommand['result'] }

/** Which commands of a call went out, and how each ended (see the header). */
export function sentCommands (commands: readonly Command<unknown>[], err?: unknown): Sent[] {
  if (err === undefined) return commands.map(command => ({ command, result: 'ok' }))
  if (err instanceof RuntimeCommandError) {
    const index = err.index ?? 0
    return commands.slice(0, index + 1).map((command, i) => ({ command, result: i < index ? 'ok' : 'refused' }))
  }
  if (err instanceof RuntimeAbortedError) {
    // Only a `wait` is ever interrupted (src/runtime/client.ts): those before it ran, nothing after it went out.
    return commands.slice(0, err.index + 1).map((command, i) => ({ command, result: i < err.index ? 'ok' : 'interrupted' }))
  }
  if ((err instanceof RuntimeTimeoutError || err instanceof RuntimeProtocolError) && err.position !== undefined) {
    // The client says how far it got: those with a reply ran, the one in flight may have.
    const { done, inFlight } = err.position
    return commands.slice(0, done + (inFlight ? 1 : 0)).map((command, i) => ({ command, result: i < done ? 'ok' : 'unknown' }))
  }
  // From a runtime that does not say where it stopped: every command with the verb in flight may have gone out.
  if ((err instanceof RuntimeTimeoutError || err instanceof RuntimeProtocolError) && err.verb !== undefined) {
    const first = commands.findIndex(c => c.verb === err.verb)
    if (first === -1) return []
    const last = commands.findLastIndex(c => c.verb === err.verb)
    return commands.slice(0, last + 1).map((command, i) => ({ command, result: i < first ? 'ok' : 'unknown' }))
  }
  return []
}

export function recordingRuntime (inner: Runtime, sink: CommandSink): Runtime {
  /** Runs one call of the inner runtime and reports what it sent, however it ended. */
  const tracked: Around = async (commands, call) => {
    const done = sink()
    const report = (sent: Sent[]): void => {
      const kept = sent.filter(s => !isRead(s.command.verb))
      if (kept.length > 0) done(kept.map(s => auditCommand(s.command.text, s.result, (s.command as Partial<PayloadCommand<unknown>>).payload)))
    }
    try {
      const result = await call()
      report(sentCommands(commands))
      return result
    } catch (err) {
      report(sentCommands(commands, err))
      throw err
    }
  }
  return aroundRuntime(inner, tracked)
}
