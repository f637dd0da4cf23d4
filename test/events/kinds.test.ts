import { describe, expect, it } from 'vitest'
import { changeEvent, healthEvent, reconcileEvent, MAX_EVENT_CHANGES, MAX_LISTED_FAILURES } from '../../src/events/kinds.ts'
import { matches } from '../../src/events/watcher.ts'

const meta = { at: '2026-01-01T00:00:00.000Z', actor: 'api', action: 'apply', requestId: 'r1' }

describe('event bodies', () => {
  it('a change is about its target and every object it changes', () => {
    const e = changeEvent({
      ...meta,
      revision: 7,
      target: { kind: 'state', id: 'document' },
      changes: [
        { op: 'backend.put', backend: { name: 'b1', from: 'd', mode: null, published: true } },
        { op: 'server.put', server: { backend: 'b2', name: 's1' } },
        { op: 'staticServer.delete', backend: 'webservers', name: 'web1' },
        { op: 'map.replace', name: 'virt@paths.map', entryCount: 3 }
      ]
    })
    expect(e.subjects).toEqual(['state:document', 'backend:b1', 'server:b2/s1', 'server:webservers/web1', 'map:virt@paths.map'])
    expect(e.backends).toEqual(['b1', 'b2', 'webservers'])
    expect(e.data).toMatchObject({ kind: 'change', revision: 7, requestId: 'r1', target: { kind: 'state', id: 'document' } })
    const all = new Set(['change', 'health', 'reconcile'] as const)
    expect(matches({ kinds: all, backend: 'b2' }, e)).toBe(true)
    expect(matches({ kinds: all, target: 'map:virt@paths.map' }, e)).toBe(true)
    expect(matches({ kinds: all, target: 'backend:b2' }, e)).toBe(false)
    expect(matches({ kinds: new Set(['health'] as const) }, e)).toBe(false)
  })

  it('a revision of thousands of changes (a whole state document) lists the first ones, counts the rest, and is still about all of them', () => {
    const changes = Array.from({ length: 5000 }, (_, i) => ({ op: 'server.put', server: { backend: `b${i}`, name: 's1' } }))
    const e = changeEvent({ ...meta, revision: 9, target: { kind: 'state', id: 'state' }, changes })
    const data = e.data as { changes: unknown[], changesOmitted?: number }
    expect(data.changes).toHaveLength(MAX_EVENT_CHANGES)
    expect(data.changesOmitted).toBe(5000 - MAX_EVENT_CHANGES)
    expect(JSON.stringify(e.data).length).toBeLessThan(20_000)
    expect(matches({ kinds: new Set(['change'] as const), backend: 'b4999' }, e)).toBe(true)
    // A small revision is listed whole, with no count.
    const small = changeEvent({ ...meta, revision: 10, target: { kind: 'backend', id: 'b1' }, changes: changes.slice(0, 3) })
    expect((small.data as { changes: unknown[] }).changes).toHaveLength(3)
    expect(small.data).not.toHaveProperty('changesOmitted')
  })

  it('health is about its server and its backend', () => {
    const e = healthEvent({ backend: 'b', server: 's', previous: { status: 'up', rawStatus: 'UP', checkStatus: 'L4OK' }, current: undefined }, new Date(0))
    expect(e.data).toEqual({ kind: 'health', at: '1970-01-01T00:00:00.000Z', backend: 'b', server: 's', previousStatus: 'up', status: null, previousRawStatus: 'UP', rawStatus: null, checkStatus: null })
    expect(e.subjects).toEqual(['server:b/s'])
    expect(e.backends).toEqual(['b'])
  })

  it('a finished pass gives counts, and lists at most the first failures', () => {
    const failed = Array.from({ length: 150 }, (_, i) => ({ object: `backend/b${i}`, error: 'x' }))
    const e = reconcileEvent({ phase: 'finished', report: { reason: 'interval', startedAt: 't', durationMs: 3, process: undefined, revision: 4, reapplied: ['a', 'b'], failed, drift: [], phasesMs: {} } })
    expect(e.data).toMatchObject({ phase: 'finished', reapplied: 2, drift: 0, failures: 150, process: null })
    expect((e.data.failed as unknown[]).length).toBe(MAX_LISTED_FAILURES)
    expect(matches({ kinds: new Set(['reconcile'] as const) }, e)).toBe(true)
    expect(matches({ kinds: new Set(['reconcile'] as const), backend: 'b1' }, e)).toBe(false)
  })
})
