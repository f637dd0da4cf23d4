/**
 * Shared zod schemas. Ids given with `.meta({ id })` become `components.schemas` entries in the
 * generated OpenAPI document.
 */
import { z } from 'zod'
import { NAME_PATTERN } from '../runtime/validation.ts'
import { PROBLEM_OUTCOMES } from '../engine/outcomes.ts'

export const ProblemSchema = z.object({
  type: z.string().describe('A URI naming the kind of problem'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().describe('What happened, for a human'),
  instance: z.string().optional(),
  code: z.string().describe('Stable machine-readable code, e.g. HAPX_NOT_FOUND: the document\'s description lists every one with what it means'),
  haproxyMessage: z.string().optional().describe("HAProxy's own reply, verbatim, when HAProxy refused the command"),
  command: z.string().optional().describe('The Runtime API command that failed (keywords only)'),
  errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  outcome: z.enum(PROBLEM_OUTCOMES).optional()
    .describe('What HAProxy was left like: refused (nothing changed), undone (changes put back), left (some could not be put back: `state.left`; hapctl brings what it keeps back to the desired state), unknown (no answer: the change was recorded as desired state and hapctl makes HAProxy match it), applied (the change was made and recorded, `state.revision`; only reading the result back failed)'),
  state: z.record(z.string(), z.unknown()).optional().describe('What the resource was left like when a request stopped half-way'),
  warnings: z.array(z.string()).optional(),
  requiredScope: z.string().optional().describe('The scope the token lacks (403), e.g. `servers:write` or `maps:write:virt@paths.map`')
}).meta({ id: 'Problem', description: 'RFC 9457 problem details' })

export const NameSchema = z.string()
  .regex(NAME_PATTERN, "letters, digits, '_', '.', ':' and '-', starting with a letter, digit or '_', at most 128 characters")
  .meta({ id: 'Name', example: 'mybackend1' })

/** Durations as HAProxy writes them: a number with an optional ms/s/m unit (default ms). */
export const DurationSchema = z.string()
  .regex(/^[0-9]{1,7}(ms|s|m)?$/, 'a duration such as 500ms, 5s or 1m (no unit = milliseconds)')
  .transform(v => {
    const m = /^([0-9]+)(ms|s|m)?$/.exec(v) as RegExpExecArray
    return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'] as number)
  })
  .refine(ms => ms >= 1 && ms <= 300_000, 'between 1ms and 5m')

/**
 * Problem responses of every route that talks to HAProxy: no or a wrong token (401), a token without
 * the route's scope (403), HAProxy's reply made no sense (502), HAProxy unreachable (503) or too slow (504).
 */
export const RUNTIME_PROBLEMS = { 401: ProblemSchema, 403: ProblemSchema, 502: ProblemSchema, 503: ProblemSchema, 504: ProblemSchema }

/** ...and of every route that changes something: invalid input (400), and a refusal of HAProxy's that fits no other status (422). */
export const WRITE_PROBLEMS = { 400: ProblemSchema, 422: ProblemSchema, ...RUNTIME_PROBLEMS }
