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

export const ConfigSchema = z.object({
  HAPROXY_RUNTIME_API: EndpointSchema.prefault('tcp://127.0.0.1:9999'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.string().regex(/^[0-9]{1,5}$/, 'must be a port number (0 to 65535)').transform(Number)
    .refine(p => p <= 65535, 'must be a port number (0 to 65535)').prefault('5555'),
  API_TOKEN: z.string().min(16, 'API_TOKEN must be at least 16 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HAPROXY_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  HAPROXY_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(9).default(4),
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
  HAPCTL_STATE_FILE: z.string().min(1).optional()
}).transform(env => ({
  runtimeApi: env.HAPROXY_RUNTIME_API,
  host: env.HOST,
  port: env.PORT,
  apiToken: env.API_TOKEN,
  logLevel: env.LOG_LEVEL,
  runtimeTimeoutMs: env.HAPROXY_TIMEOUT_MS,
  runtimeMaxConnections: env.HAPROXY_MAX_CONNECTIONS,
  store: env.HAPCTL_STORE.kind === 'sqlite' ? { ...env.HAPCTL_STORE, synchronous: env.HAPCTL_STORE_SYNC } : env.HAPCTL_STORE,
  reconcileIntervalMs: env.HAPCTL_RECONCILE_INTERVAL_MS,
  identityPollMs: env.HAPCTL_IDENTITY_POLL_MS,
  stateFile: env.HAPCTL_STATE_FILE
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
