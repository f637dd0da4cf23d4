/**
 * KeyedLock: exclusive and shared holders of one key, in arrival order, with deadlines and aborts.
 */
import { describe, expect, it } from 'vitest'
import { KeyedLock, LockTimeoutError } from '../../src/engine/locks.ts'

/** A holder that keeps the key until `release()`; `entered` resolves when it got it. */
function holder (lock: KeyedLock, key: string, log: string[], name: string, opts: { shared?: boolean, timeoutMs?: number, signal?: AbortSignal } = {}) {
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  let entered!: () => void
  const inside = new Promise<void>(resolve => { entered = resolve })
  const done = lock.run(key, async () => {
    log.push(`${name} in`)
    entered()
    await held
    log.push(`${name} out`)
  }, opts)
  return { release, inside, done }
}

const tick = (): Promise<void> => new Promise(resolve => setTimeout(resolve, 5))

describe('KeyedLock', () => {
  it('runs exclusive holders of one key one after another, in arrival order, and other keys in parallel', async () => {
    const lock = new KeyedLock()
    const log: string[] = []
    const a = holder(lock, 'k', log, 'a')
    const b = holder(lock, 'k', log, 'b')
    const other = holder(lock, 'other', log, 'o')
    await a.inside
    await other.inside
    await tick()
    expect(log).toEqual(['a in', 'o in'])
    a.release(); await b.inside
    b.release(); other.release()
    await Promise.all([a.done, b.done, other.done])
    expect(log).toEqual(['a in', 'o in', 'a out', 'b in', 'b out', 'o out'])
    expect(lock.size).toBe(0)
  })

  it('lets shared holders in together, and an exclusive one only after all of them', async () => {
    const lock = new KeyedLock()
    const log: string[] = []
    const s1 = holder(lock, 'map', log, 's1', { shared: true })
    const s2 = holder(lock, 'map', log, 's2', { shared: true })
    await Promise.all([s1.inside, s2.inside])
    const x = holder(lock, 'map', log, 'x')
    await tick()
    expect(log).toEqual(['s1 in', 's2 in'])
    s1.release(); await tick()
    expect(log).not.toContain('x in')
    s2.release(); await x.inside
    x.release()
    await Promise.all([s1.done, s2.done, x.done])
    expect(log).toEqual(['s1 in', 's2 in', 's1 out', 's2 out', 'x in', 'x out'])
  })

  it('keeps a shared holder that comes after a waiting exclusive one behind it (no starvation)', async () => {
    const lock = new KeyedLock()
    const log: string[] = []
    const s1 = holder(lock, 'map', log, 's1', { shared: true })
    await s1.inside
    const x = holder(lock, 'map', log, 'x')
    const s2 = holder(lock, 'map', log, 's2', { shared: true })
    await tick()
    expect(log).toEqual(['s1 in'])
    s1.release(); await x.inside
    await tick()
    expect(log).not.toContain('s2 in')
    x.release(); await s2.inside
    s2.release()
    await Promise.all([s1.done, x.done, s2.done])
    expect(log).toEqual(['s1 in', 's1 out', 'x in', 'x out', 's2 in', 's2 out'])
  })

  it('lets the shared holders behind an exclusive waiter in when it gives up at its deadline', async () => {
    const lock = new KeyedLock()
    const log: string[] = []
    const s1 = holder(lock, 'map', log, 's1', { shared: true })
    await s1.inside
    const x = holder(lock, 'map', log, 'x', { timeoutMs: 50 })
    const s2 = holder(lock, 'map', log, 's2', { shared: true })
    await expect(x.done).rejects.toBeInstanceOf(LockTimeoutError)
    await s2.inside
    expect(log).toEqual(['s1 in', 's2 in'])
    s1.release(); s2.release()
    await Promise.all([s1.done, s2.done])
    expect(lock.size).toBe(0)
  })

  it('gives up waiting with the signal\'s reason, and never runs the holder', async () => {
    const lock = new KeyedLock()
    const log: string[] = []
    const a = holder(lock, 'k', log, 'a')
    await a.inside
    const controller = new AbortController()
    const b = holder(lock, 'k', log, 'b', { signal: controller.signal })
    const c = holder(lock, 'k', log, 'c')
    controller.abort(new Error('stopping'))
    await expect(b.done).rejects.toThrow('stopping')
    a.release(); await c.inside
    c.release()
    await Promise.all([a.done, c.done])
    expect(log).toEqual(['a in', 'a out', 'c in', 'c out'])
    expect(lock.size).toBe(0)
  })

  it('releases the key when the holder throws', async () => {
    const lock = new KeyedLock()
    await expect(lock.run('k', async () => { throw new Error('boom') })).rejects.toThrow('boom')
    await expect(lock.run('k', async () => 'next', { timeoutMs: 100 })).resolves.toBe('next')
    expect(lock.size).toBe(0)
  })
})
