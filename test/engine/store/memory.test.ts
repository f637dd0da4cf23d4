/**
 * The in-memory store against the store contract, plus what only it does.
 */
import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../../src/engine/store/memory.ts'
import { openStore } from '../../../src/engine/store/index.ts'
import { storeContract } from './contract.ts'

describe('MemoryStore', () => {
  storeContract(async () => new MemoryStore())

  it('describes itself as memory', () => {
    expect(new MemoryStore().description).toBe('memory')
  })

  it('is what openStore gives for HAPCTL_STORE=memory', async () => {
    const store = await openStore({ kind: 'memory' })
    expect(store).toBeInstanceOf(MemoryStore)
    await store.close()
  })
})
