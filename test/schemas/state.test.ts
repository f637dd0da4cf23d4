/**
 * The state document's own bounds, beyond each field's: the number of servers in the whole document.
 */
import { describe, expect, it } from 'vitest'
import { MAX_STATE_SERVERS, MAX_STATE_TOTAL_SERVERS, StateDocumentSchema } from '../../src/schemas/state.ts'

function documentWith (backends: number, serversEach: number): unknown {
  const servers = Object.fromEntries(Array.from({ length: serversEach }, (_, i) => [`s${i}`, { address: '10.0.0.1', port: 1 + i }]))
  return { backends: Object.fromEntries(Array.from({ length: backends }, (_, i) => [`b${i}`, { from: 'mydefaults', servers }])) }
}

describe('state document bounds', () => {
  it(`takes ${MAX_STATE_TOTAL_SERVERS} servers in all, and refuses one more, naming the count`, () => {
    const perBackend = MAX_STATE_SERVERS
    const backends = MAX_STATE_TOTAL_SERVERS / perBackend
    expect(StateDocumentSchema.safeParse(documentWith(backends, perBackend)).success).toBe(true)
    const over = documentWith(backends, perBackend) as { configBackends?: unknown }
    over.configBackends = { webservers: { servers: { extra: { address: '10.0.0.2', port: 80 } } } }
    const result = StateDocumentSchema.safeParse(over)
    expect(result.success).toBe(false)
    expect(result.error?.issues.map(i => i.message)).toContain(`at most ${MAX_STATE_TOTAL_SERVERS} servers in a document; this one has ${MAX_STATE_TOTAL_SERVERS + 1}`)
  }, 60_000)

  it('refuses a check interval that is no duration with 400 words, not an exception (a range check ran on it)', () => {
    for (const inter of ['abc', '5x', '', '99999999']) {
      const doc = { backends: { b: { from: 'mydefaults', servers: { s: { address: '10.0.0.1', port: 80, check: true, inter } } } } }
      const result = StateDocumentSchema.safeParse(doc)
      expect(result.success, inter).toBe(false)
      expect(result.error?.issues.map(i => i.message), inter).toEqual(['a duration such as 500ms, 5s or 1m (no unit = milliseconds)'])
    }
    expect(StateDocumentSchema.safeParse({ backends: { b: { from: 'mydefaults', servers: { s: { address: '10.0.0.1', port: 80, check: true, inter: '6m' } } } } }).error?.issues[0]?.message).toBe('between 1ms and 5m')
  })
})
