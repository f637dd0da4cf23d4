/**
 * Servers of a backend: what GET returns, and what POST/PATCH accept. Bounds come from the command
 * builders (src/runtime/commands/servers.ts), which check them again before anything is sent.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { RESERVED_SERVER_NAMES } from '../runtime/validation.ts'
import { SERVER_ADMIN_STATES, SERVER_LIMITS, SNI_PATTERN, SSL_VERIFY_MODES } from '../runtime/commands/servers.ts'
import { DurationSchema, NameSchema } from './common.ts'

const int = (b: { min: number, max: number }) => z.number().int().min(b.min).max(b.max)

export const IpAddressSchema = z.string()
  .refine(v => isIP(v) !== 0 && !v.includes('%'), 'an IPv4 or IPv6 address; host names are refused because HAProxy would never resolve them')
  .meta({ example: '127.0.0.1' })

export const ServerNameSchema = NameSchema
  .refine(v => !(RESERVED_SERVER_NAMES as readonly string[]).includes(v), `${RESERVED_SERVER_NAMES.join(' and ')} are reserved (show stat uses them for its summary rows)`)

export const OPERATIONAL_STATUSES = ['up', 'down', 'maint', 'drain', 'nolb', 'unknown'] as const

export const ServerSchema = z.object({
  name: z.string(),
  backend: z.string(),
  id: z.number().int().describe("HAProxy's server id inside the backend"),
  address: z.string().nullable().describe('IP address; null for FQDN or unix-socket servers'),
  fqdn: z.string().nullable().describe('Host name of an FQDN server (never resolved for dynamic servers)'),
  port: z.number().int().describe('0 = the port the client connected to'),
  weight: z.object({ current: z.number().int(), initial: z.number().int() }),
  adminState: z.enum(SERVER_ADMIN_STATES).describe('What the operator (or an agent) asked for: maint wins over drain'),
  status: z.enum(OPERATIONAL_STATUSES).describe('`rawStatus` normalized: `no check` is up, `UP 1/2` (going down) is up, `DOWN 1/2` (going up) is down'),
  rawStatus: z.string().describe("HAProxy's `show stat` status: UP, DOWN, 'UP 1/2', MAINT, DRAIN, NOLB, 'no check', 'DRAIN (agent)', …"),
  healthCheck: z.object({
    configured: z.boolean().describe('Added with `check`'),
    enabled: z.boolean().describe('Running (`enable health`); a configured check runs only once enabled'),
    paused: z.boolean().describe('Suspended while the server is in maintenance'),
    status: z.string().nullable().describe("HAProxy's check status word (L4OK, L4CON, INI, …), null when there is none"),
    description: z.string().nullable().describe('What the status word means (management §9.1 `check_status`)'),
    inProgress: z.boolean().describe('A check is running right now'),
    port: z.number().int().nullable().describe('Port checks go to, when it differs from the server port'),
    address: z.string().nullable().describe('Address checks go to, when it differs from the server address')
  }),
  agentCheck: z.object({ configured: z.boolean(), enabled: z.boolean() }),
  sessions: z.number().int().describe('Current sessions (`scur`)'),
  maxconn: z.number().int().nullable().describe('Session limit (`slim`); null = none'),
  backup: z.boolean(),
  ssl: z.boolean()
}).meta({ id: 'Server' })

export const ServerListSchema = z.object({ items: z.array(ServerSchema) }).meta({ id: 'ServerList' })

/** What `add server` takes besides the name: shared by POST …/servers and the state document. */
export const SERVER_OPTIONS = {
  address: IpAddressSchema,
  port: int(SERVER_LIMITS.port).describe("Required: HAProxy's default (no port) means 'the port the client connected to', which surprises everyone"),
  check: z.boolean().default(false).describe('Health checks (TCP connect unless the backend says otherwise). The server then starts DOWN and takes traffic once its checks pass'),
  checkPort: int(SERVER_LIMITS.port).optional().describe('Port for health checks (needs check)'),
  checkAddr: IpAddressSchema.optional().describe('Address for health checks (needs check)'),
  inter: DurationSchema.optional().describe('Time between two checks, e.g. 2s or 200ms (needs check)'),
  rise: int(SERVER_LIMITS.rise).optional().describe('Consecutive successes for DOWN → UP (needs check)'),
  fall: int(SERVER_LIMITS.fall).optional().describe('Consecutive failures for UP → DOWN (needs check)'),
  weight: int(SERVER_LIMITS.weight).optional().describe('0-256; HAProxy default 1'),
  maxconn: int(SERVER_LIMITS.maxconn).optional().describe('Concurrent connections; 0 = no limit'),
  backup: z.boolean().optional().describe('Only used when no non-backup server is available'),
  ssl: z.boolean().optional().describe('TLS to the server; HAProxy verifies certificates by default and, without a CA file, refuses `ssl` unless sslVerify is none'),
  sslVerify: z.enum(SSL_VERIFY_MODES).optional().describe('Certificate verification (needs ssl)'),
  sni: z.string().regex(SNI_PATTERN, 'a host name').optional().describe('TLS SNI host name (needs ssl)')
}

/** Check options need `check`, TLS options need `ssl`: HAProxy would ignore or refuse them otherwise. */
export function checkServerOptions (v: { check: boolean, ssl?: boolean | undefined } & Record<string, unknown>, ctx: z.RefinementCtx): void {
  if (!v.check) {
    for (const k of ['checkPort', 'checkAddr', 'inter', 'rise', 'fall'] as const) {
      if (v[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'needs "check": true' })
    }
  }
  if (v.ssl !== true) {
    for (const k of ['sslVerify', 'sni'] as const) {
      if (v[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'needs "ssl": true' })
    }
  }
}

export const CreateServerSchema = z.object({
  name: ServerNameSchema,
  ...SERVER_OPTIONS,
  enabled: z.boolean().default(true).describe('Put it in service at once (false: it stays in maintenance)')
}).strict().superRefine(checkServerOptions).meta({ id: 'CreateServer', example: { name: 'app1', address: '127.0.0.1', port: 8082, check: true, inter: '1s' } })

export type CreateServerInput = z.output<typeof CreateServerSchema>

export const PatchServerSchema = z.object({
  state: z.enum(SERVER_ADMIN_STATES).optional().describe('ready: in service; drain: no new sessions except persistent ones; maint: out of service'),
  weight: int(SERVER_LIMITS.weight).optional(),
  address: IpAddressSchema.optional(),
  port: int(SERVER_LIMITS.port).optional(),
  healthChecks: z.boolean().optional().describe('Enable or disable its configured health checks'),
  agentChecks: z.boolean().optional().describe('Enable or disable its configured agent check')
}).strict().refine(v => Object.values(v).some(x => x !== undefined), 'give at least one field').meta({ id: 'PatchServer', example: { state: 'drain' } })

export type PatchServerInput = z.output<typeof PatchServerSchema>

/** `waitTimeout` when `wait=up` comes without one, and its bound (an HTTP client or proxy in between rarely waits longer). */
export const WAIT_UP_DEFAULT_MS = 10_000
export const WAIT_UP_MAX_MS = 60_000

/**
 * `?wait=up`: answer once traffic really reaches the server (or a server of the backend), as `show stat`
 * says UP. Shared by POST …/servers and PATCH /backends/:name.
 */
export const WaitUpQuerySchema = z.object({
  wait: z.enum(['up']).optional()
    .describe('up: answer only once it is UP in `show stat` (health checks passed; a server without checks is UP once in service). At the deadline: 504 `HAPX_NOT_UP`, the change applied and kept'),
  waitTimeout: DurationSchema.refine(ms => ms <= WAIT_UP_MAX_MS, 'at most 60s').optional()
    .describe('How long wait=up waits (500ms, 10s, 1m; default 10s, at most 60s)')
}).refine(q => q.waitTimeout === undefined || q.wait !== undefined, { path: ['waitTimeout'], message: 'goes with wait=up' })

export type WaitUpQuery = z.output<typeof WaitUpQuerySchema>

export const BackendServersParamsSchema = z.object({ backend: NameSchema })
export const ServerParamsSchema = z.object({ backend: NameSchema, server: NameSchema })

export const DeleteServerQuerySchema = z.object({
  timeout: DurationSchema.prefault('5s').describe('How long to wait for its connections to finish (500ms, 5s, 1m; default 5s)'),
  force: z.stringbool().prefault('false').describe('Also close its sessions (`shutdown sessions server`) instead of waiting for them')
})
