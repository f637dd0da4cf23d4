import { describe, expect, it } from 'vitest'
import { EVENT_ID_PATTERN, formatEventId, newBootId, parseEventId } from '../../src/events/ids.ts'

describe('event ids', () => {
  it('round-trip <revision>.<boot>.<seq>', () => {
    const boot = newBootId()
    expect(boot).toMatch(/^[0-9a-f]{8}$/)
    const p = { revision: 1234, boot, seq: 98 }
    expect(formatEventId(p)).toBe(`1234.${boot}.98`)
    expect(parseEventId(formatEventId(p))).toEqual(p)
    expect(parseEventId(`0.${boot}.0`)).toEqual({ revision: 0, boot, seq: 0 })
  })

  it('refuse anything else: no sign, no leading zero, no other boot form, no number past 15 digits', () => {
    for (const id of ['', '1.abcdef01', '1.abcdef01.2.3', '-1.abcdef01.2', '01.abcdef01.2', '1.ABCDEF01.2', '1.abcdef0.2', '1.abcdef01.1e3', `${'9'.repeat(16)}.abcdef01.1`, '1.abcdef01.2\n']) {
      expect(parseEventId(id), id).toBeUndefined()
      expect(EVENT_ID_PATTERN.test(id), id).toBe(false)
    }
  })
})
