/**
 * SharedRead: reads asked for together share one, and a caller never gets the result of a read
 * that started before it called.
 */
import { describe, expect, it } from 'vitest'
import { SharedRead } from '../../../src/resources/backends/shared-read.ts'

/** A read whose answers the test releases one by one; each answer is the state when the read started. */
function source () {
  let state = 0
  const pending: Array<() => void> = []
  let started = 0
  const read = new SharedRead(async () => {
    started++
    const seen = state
    await new Promise<void>(resolve => pending.push(resolve))
    return seen
  })
  return {
    read,
    set: (v: number) => { state = v },
    started: () => started,
    /** Lets the oldest read in flight answer, and the microtasks after it run. */
    release: async () => { pending.shift()?.(); await new Promise(resolve => setImmediate(resolve)) }
  }
}

describe('SharedRead', () => {
  it('callers that arrive while a read is in flight share the next one', async () => {
    const s = source()
    const first = s.read.get()
    const others = Array.from({ length: 7 }, () => s.read.get())
    expect(s.started()).toBe(1)
    await s.release()
    // The seven waited for the first read to end, then one read started for all of them.
    expect(s.started()).toBe(2)
    await s.release()
    expect(await first).toBe(0)
    expect(await Promise.all(others)).toEqual(Array(7).fill(0))
    expect(s.started()).toBe(2)
  })

  it('never answers a caller with a read that started before it called', async () => {
    const s = source()
    const before = s.read.get()
    // A write completes while that read is in flight; a read asked for now must see it.
    s.set(1)
    const after = s.read.get()
    await s.release()
    expect(await before).toBe(0)
    await s.release()
    expect(await after).toBe(1)
  })

  it('starts a fresh read once the last one has ended', async () => {
    const s = source()
    const a = s.read.get()
    await s.release()
    expect(await a).toBe(0)
    s.set(2)
    const b = s.read.get()
    expect(s.started()).toBe(2)
    await s.release()
    expect(await b).toBe(2)
  })

  it('gives a failure to those who shared the read, and reads again for the next callers', async () => {
    let calls = 0
    const read = new SharedRead(async () => {
      calls++
      if (calls === 2) throw new Error('HAProxy did not answer')
      return calls
    })
    const first = read.get()
    const shared = [read.get(), read.get()]
    expect(await first).toBe(1)
    await expect(Promise.all(shared)).rejects.toThrow('HAProxy did not answer')
    expect(await read.get()).toBe(3)
  })
})
