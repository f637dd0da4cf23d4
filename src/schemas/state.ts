/**
 * The declarative state document (GET/PUT/PATCH /state): every object hapctl keeps, keyed by name so
 * that a JSON merge patch (RFC 7396) can add, change or remove one of them. Server options are those
 * of POST …/servers (SERVER_OPTIONS), with durations kept as text so that what GET answers can be
 * PUT back unchanged.
 */
import { z } from 'zod'
import { PROXY_MODES } from '../runtime/validation.ts'
import { SERVER_ADMIN_STATES, SERVER_LIMITS } from '../runtime/commands/servers.ts'
import { DurationSchema, DurationTextSchema, NameSchema } from './common.ts'
import { MapEntrySchema, MapNameSchema, MAX_REPLACE_ENTRIES } from './maps.ts'
import { SERVER_OPTIONS, ServerNameSchema, checkServerOptions } from './servers.ts'

export { DurationTextSchema, durationMs, durationText } from './common.ts'

/** At most this many backends, and servers in one backend, in a document. */
export const MAX_STATE_BACKENDS = 10_000
export const MAX_STATE_SERVERS = 1000
/** At most this many servers in a whole document. */
export const MAX_STATE_TOTAL_SERVERS = 100_000

/** Names hapctl uses for the probe backends that check a document before it is applied. */
export const PROBE_PREFIX = 'hapctl-probe-'

const BackendNameSchema = NameSchema.refine(v => !v.startsWith(PROBE_PREFIX), `names starting with '${PROBE_PREFIX}' are hapctl's own`)

export const StateServerSchema = z.object({
  ...SERVER_OPTIONS,
  inter: DurationTextSchema.optional().describe('Time between two checks, e.g. 2s or 200ms (needs check)'),
  state: z.enum(SERVER_ADMIN_STATES).default('ready').describe('ready: in service; drain: no new sessions except persistent ones; maint: out of service'),
  healthChecks: z.boolean().optional().describe('Whether its configured checks run (default: as `check` says)'),
  agentChecks: z.boolean().optional().describe('Whether its configured agent check runs (default: as HAProxy leaves it)')
}).strict().superRefine(checkServerOptions).meta({ id: 'StateServer' })

const serversOf = (what: string): z.ZodType => z.record(ServerNameSchema, StateServerSchema)
  .refine(r => Object.keys(r).length <= MAX_STATE_SERVERS, `at most ${MAX_STATE_SERVERS} servers per backend`)
  .default({})
  .describe(what)
  .meta({ maxProperties: MAX_STATE_SERVERS })

export const StateBackendSchema = z.object({
  from: NameSchema.describe('A named defaults section of the running configuration'),
  mode: z.enum(PROXY_MODES).optional().describe('Required when the defaults section sets no mode'),
  published: z.boolean().default(true).describe('Whether use_backend/default_backend rules may select it (default true in a state document)'),
  servers: serversOf('Its servers, by name')
}).strict().meta({ id: 'StateBackend' })

export const ServerSettingsSchema = z.object({
  state: z.enum(SERVER_ADMIN_STATES).optional(),
  weight: z.number().int().min(SERVER_LIMITS.weight.min).max(SERVER_LIMITS.weight.max).optional()
}).strict().refine(v => v.state !== undefined || v.weight !== undefined, 'give state, weight or both').meta({ id: 'ServerSettings' })

export const ConfigBackendSchema = z.object({
  servers: serversOf('Servers hapctl adds to this backend of the configuration, by name'),
  serverSettings: z.record(NameSchema, ServerSettingsSchema).default({})
    .describe("Settings kept for servers of HAProxy's configuration in this backend, by server name")
    .meta({ maxProperties: MAX_STATE_SERVERS })
}).strict().meta({ id: 'ConfigBackend' })

export const StateMapSchema = z.object({
  entries: z.array(MapEntrySchema).max(MAX_REPLACE_ENTRIES)
    .superRefine((entries, ctx) => {
      // As PUT /maps/{map}/entries: a second entry with a key could never be looked up.
      const seen = new Set<string>()
      for (const [i, e] of entries.entries()) {
        if (seen.has(e.key)) { ctx.addIssue({ code: 'custom', path: [i, 'key'], message: `duplicate key '${e.key}'` }); return }
        seen.add(e.key)
      }
    })
    .describe('The whole content, in order (the first match wins in lookups); each key once')
}).strict().meta({ id: 'StateMap' })

const stateShape = {
  backends: z.record(BackendNameSchema, StateBackendSchema).default({})
    .refine(r => Object.keys(r).length <= MAX_STATE_BACKENDS, `at most ${MAX_STATE_BACKENDS} backends`)
    .describe('Backends hapctl creates (`add backend … from <defaults>`), by name; a backend absent from a PUT is drained and deleted')
    .meta({ maxProperties: MAX_STATE_BACKENDS }),
  configBackends: z.record(NameSchema, ConfigBackendSchema).default({})
    .describe("Backends of HAProxy's configuration: the servers hapctl adds to them and the settings it keeps for theirs")
    .meta({ maxProperties: MAX_STATE_BACKENDS }),
  maps: z.record(MapNameSchema.refine(v => !v.startsWith('#'), 'a map by its name, not its #id'), StateMapSchema).default({})
    .describe('Maps whose whole content hapctl keeps; a map absent from a PUT keeps its content but is no longer kept')
    .meta({ maxProperties: 1000 })
}

export const StateDocumentSchema = z.object({
  revision: z.number().int().optional().describe('The desired-state revision this document is (GET); ignored in a PUT, use If-Match'),
  ...stateShape
}).strict().superRefine((doc, ctx) => {
  // Each server is a few steps of one plan held in memory while it runs: bounded as a whole, not
  // only per backend (10,000 backends of 1,000 servers would be ten million).
  let servers = 0
  for (const b of Object.values(doc.backends)) servers += Object.keys(b.servers as object).length
  for (const c of Object.values(doc.configBackends)) servers += Object.keys(c.servers as object).length
  if (servers > MAX_STATE_TOTAL_SERVERS) ctx.addIssue({ code: 'custom', path: ['backends'], message: `at most ${MAX_STATE_TOTAL_SERVERS} servers in a document; this one has ${servers}` })
}).meta({ id: 'StateDocument' })

export type StateDocument = z.output<typeof StateDocumentSchema>
export type StateServer = z.output<typeof StateServerSchema>

export const StateQuerySchema = z.object({
  dryRun: z.stringbool().prefault('false').describe('Change nothing: answer the diff and the commands applying it would send'),
  timeout: DurationSchema.prefault('5s')
    .describe('How long each removed server may take to lose its connections (500ms, 5s, 1m; default 5s)')
})

export const PreviewCommandSchema = z.object({
  text: z.string().describe('The command line exactly as sent'),
  payload: z.object({ lines: z.number().int(), bytes: z.number().int(), firstLine: z.string() }).optional()
    .describe('For `… <<` commands: the payload, summarised')
}).meta({ id: 'StateCommand' })

export const DiffItemSchema = z.object({
  object: z.string().describe('`backend/b1`, `server/b1/s1`, `server-settings/webservers/web1`, `map/virt@paths.map`'),
  change: z.enum(['add', 'change', 'remove']),
  desired: z.unknown().describe('What the document asks for (absent for a removal)'),
  actual: z.unknown().describe('What HAProxy holds now (absent for an addition)')
}).meta({ id: 'StateDiffItem' })

export const StepResultSchema = z.object({
  label: z.string(),
  commands: z.array(z.string()),
  outcome: z.enum(['applied', 'undone', 'left', 'unknown', 'failed', 'not run'])
}).meta({ id: 'StateStep' })

export const StatePlanSchema = z.object({
  dryRun: z.boolean(),
  revision: z.number().int().describe('Dry run: the current revision. Apply: the revision the document became'),
  diff: z.array(DiffItemSchema),
  commands: z.array(PreviewCommandSchema).describe('Every command that can change HAProxy, in the order applying sends them (reads are not listed)'),
  steps: z.array(StepResultSchema).optional().describe('Apply only: each step and how it went'),
  warnings: z.array(z.string()).optional()
}).meta({ id: 'StatePlan' })
