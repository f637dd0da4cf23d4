/**
 * Group commit on its own: what is gathered into one group, the order results come back in, a failure
 * that stays with its own caller, and what waits for the group being written.
 */
import { describe, expect, it } from 'vitest'
import { GroupCommit } from '../../../src/engine/store/group-commit.ts'
import type { Settled } from '../../../src/engine/store/group-commit.ts'

const ok = <R>(value: R): Settled<R> => ({ ok: true, value })

describe('GroupCommit', () => {
  it('writes the commits asked for in one turn as one group, and gives each caller its own result, in order', async () => {
    const groups: string[][] = []
    const group = new GroupCommit<string, string>(items => { groups.push([...items]); return items.map(i => ok(`${i}!`)) })
    const resolved: string[] = []
    const all = ['a', 'b', 'c'].map(async i => { const r = await group.submit(i); resolved.push(r); return r })
    expect(await Promise.all(all)).toEqual(['a!', 'b!', 'c!'])
    expect(resolved).toEqual(['a!', 'b!', 'c!'])
    expect(groups).toEqual([['a', 'b', 'c']])
    // The next turn starts a new group.
    expect(await group.submit('d')).toBe('d!')
    expect(groups).toEqual([['a', 'b', 'c'], ['d']])
  })

  it('a commit that fails fails alone; the others of its group get their results', async () => {
    const group = new GroupCommit<number, number>(items => items.map(i => i === 2 ? { ok: false, error: new Error('no 2') } : ok(i * 10)))
    const results = await Promise.allSettled([1, 2, 3].map(async i => await group.submit(i)))
    expect(results).toEqual([
      { status: 'fulfilled', value: 10 },
      { status: 'rejected', reason: new Error('no 2') },
      { status: 'fulfilled', value: 30 }
    ])
  })

  it('commits asked for while a group is being written go together in the next one', async () => {
    const groups: number[][] = []
    let release!: () => void
    const first = new Promise<void>(resolve => { release = resolve })
    const group = new GroupCommit<number, number>(async items => {
      groups.push([...items])
      if (groups.length === 1) await first
      return items.map(ok)
    })
    const one = group.submit(1)
    await new Promise(resolve => setImmediate(resolve))
    expect(groups).toEqual([[1]])
    // The first group is still being written: these wait for it, then go as one group.
    const later = [2, 3, 4].map(async i => await group.submit(i))
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(groups).toEqual([[1]])
    release()
    expect(await one).toBe(1)
    expect(await Promise.all(later)).toEqual([2, 3, 4])
    expect(groups).toEqual([[1], [2, 3, 4]])
  })

  it('a write that throws fails its whole group, and the next group is written as usual', async () => {
    let calls = 0
    const group = new GroupCommit<number, number>(items => {
      if (++calls === 1) throw new Error('store closed')
      return items.map(ok)
    })
    const failed = await Promise.allSettled([1, 2].map(async i => await group.submit(i)))
    expect(failed.map(r => r.status)).toEqual(['rejected', 'rejected'])
    expect(await group.submit(3)).toBe(3)
  })

  it('a write that returns a result per commit missing fails the group rather than leave a caller waiting', async () => {
    const group = new GroupCommit<number, number>(items => items.slice(1).map(ok))
    const results = await Promise.allSettled([1, 2].map(async i => await group.submit(i)))
    expect(results.map(r => r.status)).toEqual(['rejected', 'rejected'])
  })

  it('drain writes what is queued at once, and waits for the group being written', async () => {
    const written: number[] = []
    let release!: () => void
    const slow = new Promise<void>(resolve => { release = resolve })
    const group = new GroupCommit<number, number>(async items => {
      if (items.includes(1)) await slow
      written.push(...items)
      return items.map(ok)
    })
    const one = group.submit(1)
    await new Promise(resolve => setImmediate(resolve))
    const two = group.submit(2)
    let drained = false
    const drain = group.drain().then(() => { drained = true })
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(drained).toBe(false)
    release()
    await drain
    expect(written).toEqual([1, 2])
    expect(await Promise.all([one, two])).toEqual([1, 2])
    // Nothing queued: drain returns at once.
    await group.drain()
  })
})
