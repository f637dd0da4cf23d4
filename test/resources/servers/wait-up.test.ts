import { describe, expect, it } from 'vitest'
import { describeSeen, upWaitOf, waitUntilUp } from '../../../src/resources/servers/wait-up.ts'
import { fakeRuntime } from '../../helpers/fake-runtime.ts'

/** A backend `b` whose `show stat b 4 -1` answers the next entry of `replies` (the last one repeats). */
function stat (replies: Array<Array<[string, string, string?]>>) {
  let i = 0
  return fakeRuntime(text => {
    if (text !== 'show stat b 4 -1') return `Unknown command: '${text}'`
    const rows = replies[Math.min(i++, replies.length - 1)] as Array<[string, string, string?]>
    return ['# pxname,svname,type,status,check_status,', ...rows.map(([sv, status, check]) => `b,${sv},2,${status},${check ?? ''},`)].join('\n') + '\n'
  })
}

describe('waitUntilUp', () => {
  it('counts UP, UP going down and no check as up; DOWN, DOWN going up, DRAIN, NOLB and MAINT not', async () => {
    for (const status of ['UP', 'UP 1/2', 'no check']) {
      expect((await waitUntilUp(stat([[['s', status]]]), 'b', 's', { timeoutMs: 0 })).up, status).toBe(true)
    }
    for (const status of ['DOWN', 'DOWN 1/2', 'DRAIN', 'NOLB', 'MAINT', 'MAINT (resolution)']) {
      expect(await waitUntilUp(stat([[['s', status, 'L4CON']]]), 'b', 's', { timeoutMs: 0 }), status)
        .toEqual({ up: false, ended: 'deadline', servers: [{ name: 's', status, checkStatus: 'L4CON' }] })
    }
  })

  it('looks at the server named, or at any server of the backend without a name', async () => {
    const rows: Array<[string, string, string?]> = [['other', 'UP'], ['s', 'DOWN', '* L4CON']]
    expect(await waitUntilUp(stat([rows]), 'b', 's', { timeoutMs: 0 })).toEqual({ up: false, ended: 'deadline', servers: [{ name: 's', status: 'DOWN', checkStatus: 'L4CON' }] })
    expect((await waitUntilUp(stat([rows]), 'b', undefined, { timeoutMs: 0 })).up).toBe(true)
  })

  it('polls until UP, then stops asking', async () => {
    const rt = stat([[['s', 'DOWN']], [['s', 'DOWN']], [['s', 'UP']], [['s', 'UP']]])
    expect((await waitUntilUp(rt, 'b', 's', { timeoutMs: 5000 })).up).toBe(true)
    expect(rt.sent).toHaveLength(3)
  })

  it('ends when hapctl stops or the client goes away, and throws the reason of an interruption', async () => {
    expect((await waitUntilUp(stat([[['s', 'DOWN']]]), 'b', 's', { timeoutMs: 5000, stopping: () => true })).ended).toBe('stopping')
    const gone = new AbortController()
    setTimeout(() => gone.abort(), 150)
    const started = Date.now()
    expect((await waitUntilUp(stat([[['s', 'DOWN']]]), 'b', 's', { timeoutMs: 5000, gone: gone.signal })).ended).toBe('gone')
    expect(Date.now() - started).toBeLessThan(2000)
    const interrupted = new AbortController()
    setTimeout(() => interrupted.abort(new Error('stopping')), 150)
    await expect(waitUntilUp(stat([[['s', 'DOWN']]]), 'b', 's', { timeoutMs: 5000, signal: interrupted.signal })).rejects.toThrow('stopping')
  })

  it('passes a runtime failure on', async () => {
    await expect(waitUntilUp(fakeRuntime(() => 'No such proxy.'), 'b', 's', { timeoutMs: 1000 })).rejects.toMatchObject({ kind: 'not_found' })
  })
})

describe('upWaitOf and describeSeen', () => {
  it('waits only with wait=up, 10 s unless told', () => {
    expect(upWaitOf({})).toBeUndefined()
    expect(upWaitOf({ wait: 'up' })).toMatchObject({ timeoutMs: 10_000 })
    expect(upWaitOf({ wait: 'up', waitTimeout: 2500 })).toMatchObject({ timeoutMs: 2500 })
  })

  it('says what was seen', () => {
    expect(describeSeen([])).toBe('no server')
    expect(describeSeen([{ name: 'a', status: 'DOWN', checkStatus: 'L4CON' }, { name: 'b', status: 'MAINT', checkStatus: null }])).toBe('a DOWN (L4CON), b MAINT')
  })
})
