import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { z } from 'zod'
import { MAX_REPLACE_ENTRIES, MapEntrySchema, isValidReplaceArray } from '../../src/schemas/maps.ts'

describe('isValidReplaceArray', () => {
  const schema = z.array(MapEntrySchema).max(MAX_REPLACE_ENTRIES)

  it('accepts exactly the parsed JSON bodies the replace schema accepts, and nothing it refuses', () => {
    const str = fc.constantFrom('/a', 'v', 'a b', ' v', '#k', '', 'a;b', 'é', 'x<<y', 'k\n')
    const member = fc.oneof(str, fc.integer(), fc.constant(null), fc.constant(undefined), fc.constant([]), fc.constant({}))
    const element = fc.oneof(
      fc.record({ key: str, value: str }),
      fc.record({ key: member, value: member }, { requiredKeys: [] }),
      fc.record({ key: str, value: str, extra: member }),
      fc.dictionary(fc.constantFrom('key', 'value', 'other', '__proto__'), member),
      member
    )
    fc.assert(fc.property(fc.oneof(fc.array(element, { maxLength: 5 }), member), data => {
      // What passes here skips zod: it must be something zod accepts.
      if (isValidReplaceArray(data)) expect(schema.safeParse(data).success).toBe(true)
      // And a body as JSON.parse gives it passes whenever zod would accept it (else nothing is saved).
      const parsed: unknown = data === undefined ? null : JSON.parse(JSON.stringify(data))
      expect(isValidReplaceArray(parsed)).toBe(schema.safeParse(parsed).success)
    }), { numRuns: 5000 })
  })

  it('leaves to zod what JSON.parse does not give: no prototype, inherited members', () => {
    const bare = Object.assign(Object.create(null) as object, { key: '/a', value: 'v' })
    const inherited = Object.assign(Object.create({ extra: 1 }) as object, { key: '/a', value: 'v' })
    expect(isValidReplaceArray([bare])).toBe(false)
    expect(isValidReplaceArray([inherited])).toBe(false)
    expect(isValidReplaceArray([{ key: '/a', value: 'v' }, { value: 'w', key: '/b' }])).toBe(true)
    expect(isValidReplaceArray(new Array(MAX_REPLACE_ENTRIES + 1).fill({ key: '/a', value: 'v' }))).toBe(false)
  })
})
