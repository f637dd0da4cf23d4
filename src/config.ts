/**
 * The one place that reads the environment. Parsed once at start-up with zod; on failure the service
 * prints every problem and exits, rather than starting half-configured.
 */
import { z } from 'zod'
import type { Endpoint } from './runtime/client.ts'

/** `tcp://host:port` or `unix:///absolute/path` → a transport the runtime client understands. */
export function parseEndpoint (value: string): Endpoint {
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length)
    if (!path.startsWith('/') || path === '/' || path.endsWith('/')) throw new Error(`'${value}': a unix socket needs an absolute path (unix:///run/haproxy/admin.sock)`)
    return { kind: 'unix', path }
  }
  if (value.startsWith('tcp://')) {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw new Error(`'${value}' is not a valid tcp://host:port address`)
    }
    const port = Number(url.port)
    if (url.hostname === '' || !Number.isInteger(port) || port < 1 || port > 65535 || url.pathname.replace(/^\/$/, '') !== '' ||
      url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      throw new Error(`'${value}' must be tcp://host:port with a port from 1 to 65535`)
    }
    return { kind: 'tcp', host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port }
  }
  throw new Error(`'${value}' must start with tcp:// or unix://`)
}

const EndpointSchema = z.string().transform((value, ctx) => {
  try {
    return parseEndpoint(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

/** 127.0.0.0/8, ::1, localhost (and their IPv4-mapped form): reachable from this machine only. */
export function isLoopback (host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/** What a shutdown needs beyond its Runtime API calls: answering, closing the store. */
const SHUTDOWN_MARGIN_MS = 1000
/** GET /events' keep-alive when none is given, unless HAPCTL_REQUEST_TIMEOUT_MS needs a shorter one. */
const DEFAULT_EVENTS_KEEPALIVE_MS = 15_000
/** The shutdown grace when none is given, unless HAPROXY_TIMEOUT_MS needs a longer one (see the check below). */
const DEFAULT_SHUTDOWN_GRACE_MS = 30_000
/**
 * The shortest grace that lets an operation interrupted by a stop be put back: a Runtime API call to
 * end the step in flight, then one to put back what it changed after a wait for a connection, three
 * waits of up to HAPROXY_TIMEOUT_MS (src/runtime/client.ts, Deadline), and the margin.
 */
const minShutdownGraceMs = (runtimeTimeoutMs: number): number => 3 * runtimeTimeoutMs + SHUTDOWN_MARGIN_MS

export const ConfigSchema = z.object({
  HAPROXY_RUNTIME_API: EndpointSchema.prefault('tcp://127.0.0.1:9999'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.string().regex(/^[0-9]{1,5}$/, 'must be a port number (0 to 65535)').transform(Number)
    .refine(p => p <= 65535, 'must be a port number (0 to 65535)').prefault('5555'),
  // A client sends it in an Authorization header: a blank (a secret file's trailing newline) or a
  // character beyond printable ASCII could never arrive as written, and every request would get 401.
  API_TOKEN: z.string().min(16, 'API_TOKEN must be at least 16 characters')
    .regex(/^[\x21-\x7e]+$/, 'API_TOKEN must be printable ASCII without blanks (a trailing newline from a secret file?): no client could send it').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HAPROXY_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  // The reconciler opens as many of its own, and HAProxy serves 10 connections per stats socket
  // (`stats maxconn`): the 11th connects and hangs. So 2 × this must stay within 10.
  HAPROXY_MAX_CONNECTIONS: z.coerce.number().int().min(1)
    .max(5, 'at most 5: the reconciler opens as many of its own, and HAProxy serves 10 connections per stats socket (the 11th hangs)').default(4),
  /**
   * Keep Runtime API connections open between the API's calls (a pool, checked against HAProxy's
   * process identity); false opens a new connection per call, as a `socat` script does.
   */
  HAPROXY_KEEP_CONNECTIONS: z.stringbool().default(true),
  /**
   * Where the desired state is kept: a SQLite file (created with its folder when missing; a relative
   * path is relative to the working directory), or `memory`, which loses everything when hapctl
   * stops: after a restart of hapctl it no longer restores anything into HAProxy.
   */
  HAPCTL_STORE: z.string().refine(v => v !== ':memory:', "use HAPCTL_STORE=memory for a store in memory (':memory:' is not a file)")
    .transform(v => v === 'memory' ? { kind: 'memory' as const } : { kind: 'sqlite' as const, path: v })
    .prefault('data/hapctl.db'),
  /** full: every accepted change is fsynced before the reply; normal: survives a crash of hapctl, not of the OS. */
  HAPCTL_STORE_SYNC: z.enum(['full', 'normal']).default('full'),
  /** How often the reconciler compares HAProxy with the desired state even when nothing happened. */
  HAPCTL_RECONCILE_INTERVAL_MS: z.coerce.number().int().min(500).max(3_600_000).default(10_000),
  /** How often HAProxy's process identity (pid, start time) is polled to notice a restart or reload. */
  HAPCTL_IDENTITY_POLL_MS: z.coerce.number().int().min(100).max(60_000).default(500),
  /** The state file of hapctl before the store: read once to import its backends, then ignored. */
  HAPCTL_STATE_FILE: z.string().min(1).optional(),
  /** Scoped tokens (names, hashes, scopes), re-read when it changes or on SIGHUP. */
  HAPCTL_TOKENS_FILE: z.string().min(1).optional(),
  /** Listening on a non-loopback address with no token at all is refused unless this says so. */
  HAPCTL_ALLOW_UNAUTHENTICATED: z.stringbool().default(false),
  /** How long a client has to send its request headers. */
  HAPCTL_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(10_000),
  /**
   * How long a client has to send a whole request, body included (a 64 MiB map file on a slow link);
   * also how long it may take no byte of an answer before its connection ends.
   */
  HAPCTL_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).max(3_600_000).default(120_000),
  /** How long an idle keep-alive connection stays open. */
  HAPCTL_KEEPALIVE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  /** Large bodies (over 1 MiB: whole-map replaces) received and handled at once; more wait, then 503. */
  HAPCTL_MAX_LARGE_BODIES: z.coerce.number().int().min(1).max(64).default(2),
  /** How long a write waits for another one on the same object before answering 503 (BUSY). */
  HAPCTL_LOCK_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),
  /**
   * On SIGTERM/SIGINT: how long running operations get to finish or put back what they changed; by
   * default 30 s, or two HAPROXY_TIMEOUT_MS and 1 s when that is longer.
   */
  HAPCTL_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(1000).max(3_600_000).optional(),
  /** Audit entries older than this many days are deleted. */
  HAPCTL_AUDIT_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  /** At most this many audit entries are kept (the oldest go first). */
  HAPCTL_AUDIT_MAX_ENTRIES: z.coerce.number().int().min(1000).max(100_000_000).default(1_000_000),
  /** GET /events: health and reconcile events kept in memory for watchers that reconnect (`Last-Event-ID`). */
  HAPCTL_EVENTS_HISTORY: z.coerce.number().int().min(100).max(1_000_000).default(10_000),
  /** GET /events: how often `show stat` is polled for health transitions while someone watches them (one poll for all watchers). */
  HAPCTL_HEALTH_POLL_MS: z.coerce.number().int().min(100).max(60_000).default(500),
  /** GET /events: how long the health poll goes on after the last watcher left, so that a watcher reconnecting meanwhile loses nothing. */
  HAPCTL_HEALTH_POLL_LINGER_MS: z.coerce.number().int().min(0).max(600_000).default(5000),
  /**
   * GET /events: a `: keep-alive` comment this often, so that proxies and HAPCTL_REQUEST_TIMEOUT_MS
   * never cut an idle stream; by default 15 s, or half HAPCTL_REQUEST_TIMEOUT_MS when that is shorter.
   */
  HAPCTL_EVENTS_KEEPALIVE_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  /** GET /events: watchers connected at once; more get 503. */
  HAPCTL_MAX_WATCHERS: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** GET /events: bytes a watcher may leave unread before it is disconnected (a slow reader never grows memory). */
  HAPCTL_EVENTS_BUFFER_BYTES: z.coerce.number().int().min(16_384).max(268_435_456).default(1_048_576)
}).superRefine((env, ctx) => {
  // A control plane that can delete every backend must not be open to the network by accident.
  if (!isLoopback(env.HOST) && env.API_TOKEN === undefined && env.HAPCTL_TOKENS_FILE === undefined && !env.HAPCTL_ALLOW_UNAUTHENTICATED) {
    ctx.addIssue({
      code: 'custom',
      path: ['HOST'],
      message: `listening on ${env.HOST} (not a loopback address) needs authentication: set API_TOKEN or HAPCTL_TOKENS_FILE, ` +
        'or HAPCTL_ALLOW_UNAUTHENTICATED=true to accept that anyone who reaches the port can change HAProxy'
    })
  }
  // Node refuses a headers timeout longer than the whole-request timeout (it could never fire).
  if (env.HAPCTL_HEADERS_TIMEOUT_MS > env.HAPCTL_REQUEST_TIMEOUT_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['HAPCTL_HEADERS_TIMEOUT_MS'],
      message: `${env.HAPCTL_HEADERS_TIMEOUT_MS} ms is longer than HAPCTL_REQUEST_TIMEOUT_MS (${env.HAPCTL_REQUEST_TIMEOUT_MS} ms), which includes the headers`
    })
  }
  // A stream answer the client takes no byte of for HAPCTL_REQUEST_TIMEOUT_MS is cut: an idle watcher
  // must be written to more often than that.
  if (env.HAPCTL_EVENTS_KEEPALIVE_MS !== undefined && env.HAPCTL_EVENTS_KEEPALIVE_MS >= env.HAPCTL_REQUEST_TIMEOUT_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['HAPCTL_EVENTS_KEEPALIVE_MS'],
      message: `${env.HAPCTL_EVENTS_KEEPALIVE_MS} ms is not shorter than HAPCTL_REQUEST_TIMEOUT_MS (${env.HAPCTL_REQUEST_TIMEOUT_MS} ms): ` +
        'an idle GET /events stream would be cut as a client that reads nothing; give a shorter keep-alive'
    })
  }
  // A stop interrupts running operations (src/plugins/shutdown.ts), which then need time to be put back.
  const needed = minShutdownGraceMs(env.HAPROXY_TIMEOUT_MS)
  if (env.HAPCTL_SHUTDOWN_GRACE_MS !== undefined && env.HAPCTL_SHUTDOWN_GRACE_MS < needed) {
    ctx.addIssue({
      code: 'custom',
      path: ['HAPCTL_SHUTDOWN_GRACE_MS'],
      message: `${env.HAPCTL_SHUTDOWN_GRACE_MS} ms is too short to put back an operation interrupted by a stop: that may take two Runtime API calls, ` +
        `the second after a wait for a connection, three waits of up to HAPROXY_TIMEOUT_MS (${env.HAPROXY_TIMEOUT_MS} ms) each, plus ${SHUTDOWN_MARGIN_MS} ms; give at least ${needed} ms`
    })
  }
}).transform(env => ({
  runtimeApi: env.HAPROXY_RUNTIME_API,
  host: env.HOST,
  port: env.PORT,
  apiToken: env.API_TOKEN,
  logLevel: env.LOG_LEVEL,
  runtimeTimeoutMs: env.HAPROXY_TIMEOUT_MS,
  runtimeMaxConnections: env.HAPROXY_MAX_CONNECTIONS,
  runtimeKeepConnections: env.HAPROXY_KEEP_CONNECTIONS,
  store: env.HAPCTL_STORE.kind === 'sqlite' ? { ...env.HAPCTL_STORE, synchronous: env.HAPCTL_STORE_SYNC } : env.HAPCTL_STORE,
  reconcileIntervalMs: env.HAPCTL_RECONCILE_INTERVAL_MS,
  identityPollMs: env.HAPCTL_IDENTITY_POLL_MS,
  stateFile: env.HAPCTL_STATE_FILE,
  tokensFile: env.HAPCTL_TOKENS_FILE,
  allowUnauthenticated: env.HAPCTL_ALLOW_UNAUTHENTICATED,
  headersTimeoutMs: env.HAPCTL_HEADERS_TIMEOUT_MS,
  requestTimeoutMs: env.HAPCTL_REQUEST_TIMEOUT_MS,
  keepAliveTimeoutMs: env.HAPCTL_KEEPALIVE_TIMEOUT_MS,
  lockTimeoutMs: env.HAPCTL_LOCK_TIMEOUT_MS,
  maxLargeBodies: env.HAPCTL_MAX_LARGE_BODIES,
  shutdownGraceMs: env.HAPCTL_SHUTDOWN_GRACE_MS ?? Math.max(DEFAULT_SHUTDOWN_GRACE_MS, minShutdownGraceMs(env.HAPROXY_TIMEOUT_MS)),
  audit: { retentionDays: env.HAPCTL_AUDIT_RETENTION_DAYS, maxEntries: env.HAPCTL_AUDIT_MAX_ENTRIES },
  events: {
    history: env.HAPCTL_EVENTS_HISTORY,
    healthPollMs: env.HAPCTL_HEALTH_POLL_MS,
    healthLingerMs: env.HAPCTL_HEALTH_POLL_LINGER_MS,
    keepAliveMs: env.HAPCTL_EVENTS_KEEPALIVE_MS ?? Math.min(DEFAULT_EVENTS_KEEPALIVE_MS, Math.floor(env.HAPCTL_REQUEST_TIMEOUT_MS / 2)),
    maxWatchers: env.HAPCTL_MAX_WATCHERS,
    maxBufferBytes: env.HAPCTL_EVENTS_BUFFER_BYTES
  }
}))

export type Config = Readonly<z.output<typeof ConfigSchema>>

export class ConfigError extends Error {
  readonly issues: string[]
  constructor (issues: string[]) {
    super(`invalid configuration:\n${issues.map(i => `  - ${i}`).join('\n')}`)
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** Empty strings count as unset, so `API_TOKEN=` in a compose file does not mean a blank token. */
export function loadConfig (env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  const result = ConfigSchema.safeParse(cleaned)
  if (!result.success) {
    throw new ConfigError(result.error.issues.map(i => `${i.path.join('.') || 'environment'}: ${i.message}`))
  }
  return Object.freeze(result.data)
}
