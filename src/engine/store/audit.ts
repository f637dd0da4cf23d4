/**
 * What the stores share for the audit trail: the cursor (opaque to clients, the position of the last
 * entry of a page: its time and id), and the checks made on queries, so that both stores answer the
 * same pages.
 */
import type { AuditEntry, AuditPruneLimits, AuditQuery, AuditRecord } from './types.ts'

export const AUDIT_PAGE_MAX = 1000

/** Where a page ends: entries after it (older) come next. */
export type AuditPosition = { readonly at: string, readonly id: number }

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

function encodeAuditCursor (entry: AuditPosition): string {
  return Buffer.from(JSON.stringify([entry.at, entry.id])).toString('base64url')
}

/** The position a cursor names, or undefined when it is not one a store handed out. */
export function decodeAuditCursor (cursor: string): AuditPosition | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (!Array.isArray(value) || value.length !== 2) return undefined
    const [at, id] = value as [unknown, unknown]
    if (typeof at !== 'string' || !ISO.test(at) || !Number.isSafeInteger(id) || (id as number) < 1) return undefined
    return { at, id: id as number }
  } catch {
    return undefined
  }
}

/** A query a store cannot answer: a caller's mistake (the route checks all this first). */
export class AuditQueryError extends RangeError {
  constructor (message: string) {
    super(message)
    this.name = 'AuditQueryError'
  }
}

/** The query with its cursor decoded and times as the stores compare them (ISO strings). */
export type CheckedAuditQuery = {
  readonly target: { readonly kind: string, readonly id: string } | undefined
  readonly since: string | undefined
  readonly until: string | undefined
  readonly limit: number
  readonly after: AuditPosition | undefined
}

export function checkAuditQuery (query: AuditQuery): CheckedAuditQuery {
  if (!Number.isSafeInteger(query.limit) || query.limit < 1 || query.limit > AUDIT_PAGE_MAX) {
    throw new AuditQueryError(`listAudit: limit must be an integer from 1 to ${AUDIT_PAGE_MAX}, got ${query.limit}`)
  }
  const time = (name: string, d: Date | undefined): string | undefined => {
    if (d === undefined) return undefined
    if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new AuditQueryError(`listAudit: ${name} is not a valid time`)
    return d.toISOString()
  }
  let after: AuditPosition | undefined
  if (query.cursor !== undefined) {
    after = decodeAuditCursor(query.cursor)
    if (after === undefined) throw new AuditQueryError('listAudit: the cursor is not one this store handed out')
  }
  return { target: query.target, since: time('since', query.since), until: time('until', query.until), limit: query.limit, after }
}

export function checkAuditRecords (entries: readonly AuditRecord[]): void {
  for (const e of entries) {
    if (typeof e?.at !== 'string' || !ISO.test(e.at)) throw new AuditQueryError(`appendAudit: at must be an ISO 8601 UTC time as Date.toISOString writes it, got ${JSON.stringify(e?.at)}`)
  }
}

export function checkPruneLimits (limits: AuditPruneLimits): void {
  if (!(limits.olderThan instanceof Date) || Number.isNaN(limits.olderThan.getTime())) throw new AuditQueryError('pruneAudit: olderThan is not a valid time')
  for (const key of ['maxEntries', 'maxUnauthenticated'] as const) {
    const v = limits[key]
    if (v === undefined && key === 'maxUnauthenticated') continue
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw new AuditQueryError(`pruneAudit: ${key} must be an integer >= 0, got ${String(v)}`)
  }
}

/** Newest first: by time, then by id (entries appended in one batch share a millisecond). */
export function newestFirst (a: AuditPosition, b: AuditPosition): number {
  return a.at < b.at ? 1 : a.at > b.at ? -1 : b.id - a.id
}

/** A page from up to limit + 1 entries (newest first, filtered, after the cursor): the extra one says there is more. */
export function pageOf (matching: readonly AuditEntry[], limit: number): { items: AuditEntry[], next?: string } {
  const items = matching.slice(0, limit)
  const last = items.at(-1)
  return matching.length > limit && last !== undefined ? { items, next: encodeAuditCursor(last) } : { items }
}
