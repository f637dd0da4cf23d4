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
const DURATION = /^([0-9]{1,7})(ms|s|m)?$/
const DURATION_FORMAT = 'a duration such as 500ms, 5s or 1m (no unit = milliseconds)'
const DURATION_RANGE = 'between 1ms and 5m'
const inDurationRange = (ms: number): boolean => ms >= 1 && ms <= 300_000

/** The milliseconds of a duration DURATION matches (NaN for any other text). */
export function durationMs (text: string): number {
  const m = DURATION.exec(text)
  return m === null ? NaN : Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'] as number)
}

/** The shortest text for `ms` (2000 → 2s). */
export function durationText (ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

/** A duration, as milliseconds. */
export const DurationSchema = z.string()
  .regex(DURATION, DURATION_FORMAT)
  .transform(durationMs)
  .refine(inDurationRange, DURATION_RANGE)

/** A duration kept as the text it was given (a document that is read back as it was written). */
export const DurationTextSchema = z.string()
  .regex(DURATION, DURATION_FORMAT)
  // Checks go on after a failed one: the range is judged only for text that is a duration.
  .refine(v => !DURATION.test(v) || inDurationRange(durationMs(v)), DURATION_RANGE)

/**
 * Problem responses of every route that talks to HAProxy: no or a wrong token (401), a token without
 * the route's scope (403), HAProxy's reply made no sense (502), HAProxy unreachable (503) or too slow (504).
 */
export const RUNTIME_PROBLEMS = { 401: ProblemSchema, 403: ProblemSchema, 502: ProblemSchema, 503: ProblemSchema, 504: ProblemSchema }

/** ...and of every route that changes something: invalid input (400), and a refusal of HAProxy's that fits no other status (422). */
export const WRITE_PROBLEMS = { 400: ProblemSchema, 422: ProblemSchema, ...RUNTIME_PROBLEMS }
