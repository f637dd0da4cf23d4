import { Executor } from '../../src/engine/executor.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { expectEmpty } from '../../src/runtime/commands/index.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { fakeRuntime } from './fake-runtime.ts'

/** A command whose text is its name; the fake answers '' (success) unless told otherwise. */
export const command = (text: string): Command<void> => ({ text, verb: text, parse: expectEmpty(text) })

/**
 * An Executor on a fake runtime (answers by command text, '' by default) and an in-memory store;
 * `calls` has the commands of each execute(), i.e. what went out on each connection.
 */
export function executorOnFake (answers: Record<string, string | Error> = {}, lockTimeoutMs = 200) {
  const runtime = fakeRuntime(text => answers[text] ?? '')
  const calls: string[][] = []
  const execute = runtime.execute.bind(runtime)
  runtime.execute = (async (commands: readonly Command<unknown>[]) => {
    calls.push(commands.map(x => x.text))
    return execute(commands)
  }) as typeof runtime.execute
  const store = new MemoryStore()
  const executor = new Executor({ runtime, store, lockTimeoutMs })
  return { runtime, store, executor, calls }
}
