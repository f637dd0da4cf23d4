/**
 * The audit entry of the i-th `PUT /maps/<map>/entries/k<i>`, for tests and benchmarks that write
 * audit entries straight to a store (what the recorder would have made of such a request).
 */
import type { AuditRecord } from '../../src/engine/store/types.ts'

export function mapPutAuditRecord (map: string, i: number, key: string, revision: number | null): AuditRecord {
  return {
    at: new Date().toISOString(),
    actor: null,
    client: '127.0.0.1',
    requestId: `r${i}`,
    method: 'PUT',
    route: '/maps/:map/entries/:key',
    path: `/maps/${encodeURIComponent(map)}/entries/${key}`,
    target: { kind: 'map', id: map },
    commands: [{ text: `set map ${map} ${key} v${i}`, result: 'ok' }],
    commandsOmitted: 0,
    outcome: 'applied',
    status: 200,
    code: null,
    revision,
    durationMs: 1
  }
}
