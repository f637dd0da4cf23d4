import { describe, expect, it } from 'vitest'
import { OperationError, isVerdictless } from '../../../src/engine/outcomes.ts'
import { RuntimeProtocolError, RuntimeTimeoutError, RuntimeUnavailableError } from '../../../src/runtime/errors.ts'
import { loadContent, loadContentStep, readContent } from '../../../src/resources/pattern-refs/versioned-load.ts'
import { fakeRuntime } from '../../helpers/fake-runtime.ts'
import { MAP, fakeMaps } from '../../helpers/fake-maps.ts'

const entries = (n: number, value = 'v') => Array.from({ length: n }, (_, i) => ({ key: `/k${i}`, value: `${value} ${i}` }))

/** The OperationError `p` rejects with. */
async function failure (p: Promise<unknown>): Promise<OperationError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(OperationError)
  return err as OperationError
}

const down = () => new RuntimeUnavailableError('tcp://127.0.0.1:1', 'ECONNREFUSED')

describe('versioned load (maps)', () => {
  it('prepares, sends payloads of at most 16000 bytes each on their own connection, counts, then commits', async () => {
    const f = fakeMaps([['/old', 'x']])
    const content = entries(5000)
    await loadContent(f.runtime, MAP, content)
    expect(f.live()).toEqual(content.map(e => `${e.key} ${e.value}`))
    expect(f.runtime.sent[0]).toBe(`prepare map ${MAP}`)
    expect(f.runtime.sent.slice(1, -2).every(t => t === `add map @1 ${MAP} << [payload]`)).toBe(true)
    expect(f.runtime.sent.slice(-2)).toEqual([`show map @1 ${MAP}`, `commit map @1 ${MAP}`])
    expect(f.payloads.length).toBeGreaterThan(3)
    for (const p of f.payloads) expect(Buffer.byteLength(`add map @1 ${MAP} <<\n${p}\n`)).toBeLessThanOrEqual(16000)
  })

  it('empties a map with no payload at all: prepare, count, commit', async () => {
    const f = fakeMaps([['/old', 'x']])
    await loadContent(f.runtime, MAP, [])
    expect(f.live()).toEqual([])
    expect(f.runtime.sent).toEqual([`prepare map ${MAP}`, `show map @1 ${MAP}`, `commit map @1 ${MAP}`])
  })

  it('clears and counts the prepared version when HAProxy holds fewer entries than sent', async () => {
    const f = fakeMaps([['/old', 'x']], { payload: '' }) // answers success, stores nothing
    const err = await failure(loadContent(f.runtime, MAP, entries(2)))
    expect(err.reason).toBe('MAP_LOAD_INCOMPLETE')
    expect(err.message).toMatch(/holds 0 entries .* instead of 2/)
    expect(err.state).toEqual({ map: MAP, version: 1, committed: false, pendingVersionCleared: true })
    expect(f.runtime.sent.slice(-2)).toEqual([`clear map @1 ${MAP}`, `show map @1 ${MAP}`])
    expect(f.live()).toEqual(['/old x'])
  })

  it('says so when clear map @N keeps the entries (3.4.7, once the map has had a commit)', async () => {
    const f = fakeMaps([['/old', 'x']], { [`commit map @1 ${MAP}`]: 'Version number out of range.', [`clear map @1 ${MAP}`]: '' })
    const err = await failure(loadContent(f.runtime, MAP, entries(1)))
    expect(err.reason).toBe('MAP_VERSION_CONFLICT')
    expect(err.haproxyMessage).toBe('Version number out of range.')
    expect(err.state).toMatchObject({ committed: false, pendingVersionCleared: false, note: expect.stringMatching(/next successful replace/) })
    expect(f.live()).toEqual(['/old x'])
  })

  it('answers MAP_NOT_FOUND for a map the configuration does not have, before sending any payload', async () => {
    const f = fakeMaps()
    const err = await failure(loadContent(f.runtime, 'virt@nosuch.map', entries(1)))
    expect(err.reason).toBe('MAP_NOT_FOUND')
    expect(f.runtime.sent).toEqual(['prepare map virt@nosuch.map'])
    expect((await failure(readContent(f.runtime, 'virt@nosuch.map'))).reason).toBe('MAP_NOT_FOUND')
  })

  it('refuses a runtime that cannot send payloads', async () => {
    const err = await failure(loadContent(fakeRuntime(() => ''), MAP, entries(1)))
    expect(err.reason).toBe('NOT_IMPLEMENTED')
  })

  it('a payload that timed out was never committed: the version is cleared and the failure has a verdict', async () => {
    const f = fakeMaps([['/old', 'x']], { payload: new RuntimeTimeoutError(5000, 'add map payload') })
    const err = await failure(loadContent(f.runtime, MAP, entries(1)))
    expect(err.reason).toBe('RUNTIME_TIMEOUT')
    expect(isVerdictless(err)).toBe(false)
    expect(err.state).toMatchObject({ committed: false, pendingVersionCleared: true })
    expect(f.live()).toEqual(['/old x'])
  })

  describe('a commit whose answer is lost', () => {
    const lost = () => new RuntimeTimeoutError(5000, 'commit map')

    it('went through (curr_ver reached N): success, and the version is never cleared', async () => {
      const f = fakeMaps([['/old', 'x']], { [`commit map @1 ${MAP}`]: real => { real(); return lost() } })
      await loadContent(f.runtime, MAP, entries(1))
      expect(f.versions().current).toBe(1)
      expect(f.live()).toEqual(['/k0 v 0'])
      expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
    })

    it('did not go through (curr_ver below N): the version is cleared and the failure has a verdict', async () => {
      const f = fakeMaps([['/old', 'x']], { [`commit map @1 ${MAP}`]: lost() })
      const err = await failure(loadContent(f.runtime, MAP, entries(1)))
      expect(err.reason).toBe('RUNTIME_TIMEOUT')
      expect(isVerdictless(err)).toBe(false)
      expect(err.state).toMatchObject({ committed: false, pendingVersionCleared: true })
      expect(f.runtime.sent).toContain(`clear map @1 ${MAP}`)
      expect(f.live()).toEqual(['/old x'])
    })

    it('cannot be told (curr_ver unreadable): a verdictless failure, committed unknown, nothing cleared', async () => {
      for (const cut of [lost(), new RuntimeProtocolError('connection closed before the reply ended', { verb: 'commit map' })]) {
        const f = fakeMaps([['/old', 'x']], { [`commit map @1 ${MAP}`]: cut, 'show map': down() })
        const err = await failure(loadContent(f.runtime, MAP, entries(1)))
        expect(isVerdictless(err)).toBe(true)
        expect(err.cause).toBe(cut)
        expect(err.state).toEqual({ map: MAP, version: 1, committed: 'unknown' })
        expect(f.runtime.sent.some(t => t.startsWith('clear map'))).toBe(false)
      }
    })
  })

  it('a commit HAProxy could not be reached for was not sent: cleared, with a verdict', async () => {
    const f = fakeMaps([['/old', 'x']], { [`commit map @1 ${MAP}`]: down() })
    const err = await failure(loadContent(f.runtime, MAP, entries(1)))
    expect(err.reason).toBe('RUNTIME_UNAVAILABLE')
    expect(err.state).toMatchObject({ committed: false, pendingVersionCleared: true })
    expect(f.runtime.sent.filter(t => t === 'show map')).toEqual([])
  })

  it('works through #<id> too, for the curr_ver check', async () => {
    const f = fakeMaps([['/old', 'x']], { 'commit map @1 #5': real => { real(); return new RuntimeTimeoutError(5000, 'commit map') } })
    await loadContent(f.runtime, '#5', entries(1))
    expect(f.live()).toEqual(['/k0 v 0'])
  })

  it('as a step: apply loads the content, undo loads back the previous one', async () => {
    const f = fakeMaps([['/old', 'x']])
    const step = loadContentStep(MAP, entries(2), [{ key: '/old', value: 'x' }])
    await step.apply?.({ runtime: f.runtime })
    expect(f.live()).toEqual(['/k0 v 0', '/k1 v 1'])
    await step.undo?.({ runtime: f.runtime })
    expect(f.live()).toEqual(['/old x'])
    expect(loadContentStep(MAP, []).undo).toBeUndefined()
  })

  it('reads the current content in order', async () => {
    const f = fakeMaps([['/a', 'one two'], ['/b', 'x']])
    expect(await readContent(f.runtime, MAP)).toEqual([{ key: '/a', value: 'one two' }, { key: '/b', value: 'x' }])
  })
})
