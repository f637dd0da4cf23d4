import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { listensOn, startHapctl } from './hapctl-process.ts'

describe('startHapctl', () => {
  it('knows whose listening socket a port is', async () => {
    const p = await startHapctl({ env: { LOG_LEVEL: 'warn' } })
    expect(listensOn(p.pid, p.port)).toBe(true)
    const other = createServer()
    await new Promise<void>(resolve => other.listen(0, '127.0.0.1', resolve))
    const { port } = other.address() as { port: number }
    expect(listensOn(p.pid, port)).toBe(false)
    expect(listensOn(process.pid, port)).toBe(true)
    other.close()
  })
})
