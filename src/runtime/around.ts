/**
 * A Runtime that sends every call of another through `around` (which runs `call` and may time it,
 * record what it sent, or run it in another context), for `execute` and, when the inner runtime
 * has it, `executePayload`. The decorators of the audit trail, the metrics and the request context
 * are each one `around`, so that none of them can forget a method or bind it wrongly.
 */
import type { ExecuteOptions, PayloadCommand, Runtime } from './client.ts'
import type { Command } from './commands/index.ts'

export type Around = <T>(commands: readonly Command<unknown>[], call: () => Promise<T>) => Promise<T>

/** `close` defaults to closing the inner runtime; a view that does not own it passes its own. */
export function aroundRuntime (inner: Runtime, around: Around, opts: { close?: () => Promise<void> } = {}): Runtime {
  const runtime: Runtime = {
    execute: async (commands, options?: ExecuteOptions) => await around(commands, async () => await inner.execute(commands, options)),
    close: opts.close ?? (async () => { await inner.close() })
  }
  const executePayload = inner.executePayload?.bind(inner)
  if (executePayload !== undefined) {
    runtime.executePayload = async <T>(command: PayloadCommand<T>, options?: ExecuteOptions): Promise<T> =>
      await around([command], async () => await executePayload(command, options))
  }
  return runtime
}
