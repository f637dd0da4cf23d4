/**
 * GET /audit: the audit trail of writes (src/audit/). Entries are written by hapctl, never by clients.
 */
import { z } from 'zod'
import { AUDIT_PAGE_MAX } from '../engine/store/audit.ts'
import { AUDIT_COMMAND_RESULTS, AUDIT_OUTCOMES } from '../engine/store/types.ts'

export const AUDIT_TARGET_PATTERN = /^(backend|server|map):(.+)$/

export const AuditQuerySchema = z.object({
  target: z.string().max(2100).regex(AUDIT_TARGET_PATTERN, '`backend:<name>`, `server:<backend>/<server>` or `map:<map>`').optional()
    .describe('Only entries about this object: `backend:web`, `server:web/s1`, `map:virt@paths.map` (exact; a backend\'s entries do not include its servers\')'),
  since: z.iso.datetime({ offset: true }).optional().describe('Only entries at or after this time (RFC 3339)'),
  until: z.iso.datetime({ offset: true }).optional().describe('Only entries before this time (RFC 3339)'),
  limit: z.coerce.number().int().min(1).max(AUDIT_PAGE_MAX).default(100).describe(`Entries per page (1-${AUDIT_PAGE_MAX}, default 100)`),
  cursor: z.string().max(200).optional().describe('`next` of the previous page')
})

const AuditCommandSchema = z.object({
  text: z.string().describe('The command line exactly as sent (past 1 KiB: its first 1 KiB, then its size)'),
  result: z.enum(AUDIT_COMMAND_RESULTS).describe('ok: HAProxy accepted it; refused: HAProxy refused it (nothing after it was sent); unknown: no verdict came (timeout, cut connection); interrupted: a `wait` hapctl cut short (on shutdown; nothing after it was sent)'),
  payload: z.object({
    lines: z.number().int(),
    bytes: z.number().int(),
    firstLine: z.string()
  }).optional().describe('For `… <<` commands: the size of the payload and its first line, not the payload itself')
}).meta({ id: 'AuditCommand' })

export const AuditEntrySchema = z.object({
  id: z.number().int().describe('Increases with every entry appended'),
  at: z.string().describe('When the outcome was known (ISO 8601, UTC)'),
  actor: z.string().nullable().describe('The name of the token used (never the token), `reconciler`, `hapctl`; null when no token authenticated the request (authentication off, or refused)'),
  client: z.string().nullable().describe("The client's address"),
  requestId: z.string().nullable().describe('The request id, as in the logs'),
  method: z.string().nullable(),
  route: z.string().nullable().describe('The route that matched (`/backends/:name`); null when none did'),
  path: z.string().nullable().describe('The URL path, without the query string'),
  target: z.object({ kind: z.string(), id: z.string() }).nullable().describe('What the write was about'),
  commands: z.array(AuditCommandSchema).describe('The Runtime API commands that could change HAProxy, in the order sent, undo commands included (`show`/`get` reads are not listed)'),
  commandsOmitted: z.number().int().describe('Commands sent past the 200 an entry lists'),
  outcome: z.enum(AUDIT_OUTCOMES)
    .describe('applied (2xx), the `outcome` of the problem for a failure that reached HAProxy, rejected when nothing was sent to HAProxy (authentication, validation, not found…)'),
  status: z.number().int().nullable().describe('HTTP status answered; null for entries of the reconciler'),
  code: z.string().nullable().describe('The problem `code` (HAPX_…) of a failure'),
  revision: z.number().int().nullable().describe('The desired-state revision the write committed'),
  durationMs: z.number().int().nullable()
}).meta({ id: 'AuditEntry' })

export const AuditPageSchema = z.object({
  items: z.array(AuditEntrySchema),
  next: z.string().optional().describe('Cursor of the next (older) page; absent on the last one')
}).meta({ id: 'AuditPage' })
