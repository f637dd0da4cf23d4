/**
 * The desired-state store: picks the implementation HAPCTL_STORE asks for.
 */
import type { Config } from '../../config.ts'
import type { DesiredStateStore } from './types.ts'
import { MemoryStore } from './memory.ts'

export type StoreConfig = Config['store']

export async function openStore (store: StoreConfig): Promise<DesiredStateStore> {
  if (store.kind === 'memory') return new MemoryStore()
  // Loaded only here, so that HAPCTL_STORE=memory and the tests that use memory do not need the
  // native addon to be built.
  const { SqliteStore } = await import('./sqlite.ts')
  return await SqliteStore.open(store.path, { synchronous: store.synchronous })
}
