/**
 * Configuration from the environment: defaults, HAPROXY_RUNTIME_API parsing, and one ConfigError that
 * lists every problem at once.
 */
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, parseEndpoint } from '../src/config.ts'

function configError (env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected a ConfigError')
}

describe('loadConfig', () => {
  it('has defaults for everything', () => {
    expect(loadConfig({})).toEqual({
      runtimeApi: { kind: 'tcp', host: '127.0.0.1', port: 9999 },
      host: '127.0.0.1',
      port: 5555,
      apiToken: undefined,
      logLevel: 'info',
      runtimeTimeoutMs: 5000,
      runtimeMaxConnections: 4,
      runtimeKeepConnections: true,
      store: { kind: 'sqlite', path: 'data/hapctl.db', synchronous: 'full' },
      reconcileIntervalMs: 10_000,
      identityPollMs: 500,
      stateFile: undefined,
      tokensFile: undefined,
      allowUnauthenticated: false,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 120_000,
      keepAliveTimeoutMs: 5000,
      lockTimeoutMs: 15_000,
      maxLargeBodies: 2,
      shutdownGraceMs: 30_000,
      audit: { retentionDays: 90, maxEntries: 1_000_000 },
      events: { history: 10_000, healthPollMs: 500, healthLingerMs: 5000, keepAliveMs: 15_000, maxWatchers: 1000, maxBufferBytes: 1_048_576 }
    })
  })

  it('reads every variable', () => {
    expect(loadConfig({
      HAPROXY_RUNTIME_API: 'unix:///run/haproxy/admin.sock',
      HOST: '0.0.0.0',
      PORT: '8080',
      API_TOKEN: 'a-token-of-16-ch',
      LOG_LEVEL: 'debug',
      HAPROXY_TIMEOUT_MS: '2500',
      HAPROXY_MAX_CONNECTIONS: '5',
      HAPROXY_KEEP_CONNECTIONS: 'false',
      HAPCTL_STORE: '/var/lib/hapctl/state.db',
      HAPCTL_STORE_SYNC: 'normal',
      HAPCTL_RECONCILE_INTERVAL_MS: '60000',
      HAPCTL_IDENTITY_POLL_MS: '250',
      HAPCTL_STATE_FILE: '/app/state/state.json',
      HAPCTL_TOKENS_FILE: '/etc/hapctl/tokens.json',
      HAPCTL_ALLOW_UNAUTHENTICATED: 'false',
      HAPCTL_HEADERS_TIMEOUT_MS: '5000',
      HAPCTL_REQUEST_TIMEOUT_MS: '60000',
      HAPCTL_KEEPALIVE_TIMEOUT_MS: '1000',
      HAPCTL_LOCK_TIMEOUT_MS: '2000',
      HAPCTL_MAX_LARGE_BODIES: '3',
      HAPCTL_SHUTDOWN_GRACE_MS: '20000',
      HAPCTL_AUDIT_RETENTION_DAYS: '7',
      HAPCTL_AUDIT_MAX_ENTRIES: '5000'
    })).toEqual({
      runtimeApi: { kind: 'unix', path: '/run/haproxy/admin.sock' },
      host: '0.0.0.0',
      port: 8080,
      apiToken: 'a-token-of-16-ch',
      logLevel: 'debug',
      runtimeTimeoutMs: 2500,
      runtimeMaxConnections: 5,
      runtimeKeepConnections: false,
      store: { kind: 'sqlite', path: '/var/lib/hapctl/state.db', synchronous: 'normal' },
      reconcileIntervalMs: 60_000,
      identityPollMs: 250,
      stateFile: '/app/state/state.json',
      tokensFile: '/etc/hapctl/tokens.json',
      allowUnauthenticated: false,
      headersTimeoutMs: 5000,
      requestTimeoutMs: 60_000,
      keepAliveTimeoutMs: 1000,
      lockTimeoutMs: 2000,
      maxLargeBodies: 3,
      shutdownGraceMs: 20_000,
      audit: { retentionDays: 7, maxEntries: 5000 },
      events: { history: 10_000, healthPollMs: 500, healthLingerMs: 5000, keepAliveMs: 15_000, maxWatchers: 1000, maxBufferBytes: 1_048_576 }
    })
  })

  it('reads the watch stream\'s settings, and refuses a keep-alive that the request timeout would cut', () => {
    expect(loadConfig({
      HAPCTL_EVENTS_HISTORY: '500',
      HAPCTL_HEALTH_POLL_MS: '250',
      HAPCTL_HEALTH_POLL_LINGER_MS: '0',
      HAPCTL_EVENTS_KEEPALIVE_MS: '5000',
      HAPCTL_MAX_WATCHERS: '10',
      HAPCTL_EVENTS_BUFFER_BYTES: '65536'
    }).events).toEqual({ history: 500, healthPollMs: 250, healthLingerMs: 0, keepAliveMs: 5000, maxWatchers: 10, maxBufferBytes: 65_536 })
    expect(configError({ HAPCTL_EVENTS_KEEPALIVE_MS: '10000', HAPCTL_REQUEST_TIMEOUT_MS: '10000' }).issues)
      .toEqual([expect.stringMatching(/^HAPCTL_EVENTS_KEEPALIVE_MS: 10000 ms is not shorter than HAPCTL_REQUEST_TIMEOUT_MS \(10000 ms\)/)])
    expect(loadConfig({ HAPCTL_EVENTS_KEEPALIVE_MS: '9999', HAPCTL_REQUEST_TIMEOUT_MS: '10000' }).events.keepAliveMs).toBe(9999)
    // Unset, it follows a shorter request timeout rather than refuse it.
    expect(loadConfig({ HAPCTL_REQUEST_TIMEOUT_MS: '10000' }).events.keepAliveMs).toBe(5000)
  })

  it('refuses a headers timeout longer than the request timeout', () => {
    expect(configError({ HAPCTL_HEADERS_TIMEOUT_MS: '20000', HAPCTL_REQUEST_TIMEOUT_MS: '10000' }).issues)
      .toEqual(['HAPCTL_HEADERS_TIMEOUT_MS: 20000 ms is longer than HAPCTL_REQUEST_TIMEOUT_MS (10000 ms), which includes the headers'])
    expect(loadConfig({ HAPCTL_HEADERS_TIMEOUT_MS: '10000', HAPCTL_REQUEST_TIMEOUT_MS: '10000' }).requestTimeoutMs).toBe(10_000)
  })

  it('refuses a non-loopback address without authentication, unless told to allow it', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'hapctl.example']) {
      const err = configError({ HOST: host })
      expect(err.issues).toHaveLength(1)
      expect(err.issues[0]).toMatch(/^HOST: listening on .* needs authentication: set API_TOKEN or HAPCTL_TOKENS_FILE/)
      expect(loadConfig({ HOST: host, API_TOKEN: 'x'.repeat(16) }).host).toBe(host)
      expect(loadConfig({ HOST: host, HAPCTL_TOKENS_FILE: '/etc/hapctl/tokens.json' }).host).toBe(host)
      expect(loadConfig({ HOST: host, HAPCTL_ALLOW_UNAUTHENTICATED: 'true' }).allowUnauthenticated).toBe(true)
    }
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
      expect(loadConfig({ HOST: host }).host).toBe(host)
    }
    expect(configError({ HAPCTL_ALLOW_UNAUTHENTICATED: 'maybe' }).issues[0]).toMatch(/^HAPCTL_ALLOW_UNAUTHENTICATED: /)
  })

  it('selects the in-memory store with HAPCTL_STORE=memory, and takes relative paths as they are', () => {
    expect(loadConfig({ HAPCTL_STORE: 'memory' }).store).toEqual({ kind: 'memory' })
    expect(loadConfig({ HAPCTL_STORE: 'state/x.db' }).store).toEqual({ kind: 'sqlite', path: 'state/x.db', synchronous: 'full' })
    expect(loadConfig({ HAPCTL_STORE: '' }).store).toEqual({ kind: 'sqlite', path: 'data/hapctl.db', synchronous: 'full' })
    expect(loadConfig({ HAPCTL_STORE_SYNC: 'normal' }).store).toEqual({ kind: 'sqlite', path: 'data/hapctl.db', synchronous: 'normal' })
    expect(() => loadConfig({ HAPCTL_STORE_SYNC: 'off' })).toThrow(/HAPCTL_STORE_SYNC/)
  })

  it('takes the bounds of the reconcile interval and the identity poll', () => {
    expect(loadConfig({ HAPCTL_RECONCILE_INTERVAL_MS: '500', HAPCTL_IDENTITY_POLL_MS: '100' }))
      .toMatchObject({ reconcileIntervalMs: 500, identityPollMs: 100 })
    expect(loadConfig({ HAPCTL_RECONCILE_INTERVAL_MS: '3600000', HAPCTL_IDENTITY_POLL_MS: '60000' }))
      .toMatchObject({ reconcileIntervalMs: 3_600_000, identityPollMs: 60_000 })
  })

  it('returns a frozen object', () => {
    expect(Object.isFrozen(loadConfig({}))).toBe(true)
  })

  it('treats empty strings as unset', () => {
    expect(loadConfig({ API_TOKEN: '', PORT: '', HAPROXY_RUNTIME_API: '', LOG_LEVEL: '', HOST: '' })).toEqual(loadConfig({}))
  })

  it('ignores unrelated variables', () => {
    expect(loadConfig({ PATH: '/usr/bin', NODE_ENV: 'production' })).toEqual(loadConfig({}))
  })

  it('wants an API_TOKEN of at least 16 characters', () => {
    expect(configError({ API_TOKEN: 'x'.repeat(15) }).issues).toEqual(['API_TOKEN: API_TOKEN must be at least 16 characters'])
    expect(loadConfig({ API_TOKEN: 'x'.repeat(16) }).apiToken).toBe('x'.repeat(16))
  })

  it('refuses an API_TOKEN no client could send (blanks, a trailing newline, beyond ASCII), without echoing it', () => {
    for (const token of ['a-token-of-16-chars\n', 'a token of 16 chars', '\ta-token-of-16-chars', 'a-tökén-of-16-chars']) {
      const { issues } = configError({ API_TOKEN: token })
      expect(issues, JSON.stringify(token)).toEqual([expect.stringMatching(/^API_TOKEN: API_TOKEN must be printable ASCII without blanks/)])
      expect(issues.join(' ')).not.toContain('16-ch')
    }
    expect(loadConfig({ API_TOKEN: 'hapctl_Ab-_~+/.=0123456789' }).apiToken).toBe('hapctl_Ab-_~+/.=0123456789')
  })

  it('lists every problem in one ConfigError', () => {
    const err = configError({
      HAPROXY_RUNTIME_API: 'http://127.0.0.1:9999',
      PORT: '70000',
      LOG_LEVEL: 'loud',
      HAPROXY_TIMEOUT_MS: '50',
      HAPROXY_MAX_CONNECTIONS: '10',
      API_TOKEN: 'short'
    })
    const fields = err.issues.map(i => i.split(':')[0])
    expect(fields.sort()).toEqual(['API_TOKEN', 'HAPROXY_MAX_CONNECTIONS', 'HAPROXY_RUNTIME_API', 'HAPROXY_TIMEOUT_MS', 'LOG_LEVEL', 'PORT'])
    expect(err.name).toBe('ConfigError')
    for (const issue of err.issues) expect(err.message).toContain(issue)
    expect(err.issues.find(i => i.startsWith('HAPROXY_RUNTIME_API'))).toContain('must start with tcp:// or unix://')
  })

  it.each([
    ['PORT', 'abc'],
    ['PORT', '-1'],
    ['PORT', '1.5'],
    ['HAPROXY_TIMEOUT_MS', '600001'],
    ['HAPROXY_MAX_CONNECTIONS', '0'],
    ['HAPROXY_MAX_CONNECTIONS', '6'],
    ['HAPROXY_MAX_CONNECTIONS', 'many'],
    ['HAPCTL_RECONCILE_INTERVAL_MS', '499'],
    ['HAPCTL_RECONCILE_INTERVAL_MS', '3600001'],
    ['HAPCTL_RECONCILE_INTERVAL_MS', '1.5'],
    ['HAPCTL_IDENTITY_POLL_MS', '99'],
    ['HAPCTL_IDENTITY_POLL_MS', '60001'],
    ['HAPCTL_IDENTITY_POLL_MS', 'fast'],
    ['HAPCTL_STORE', ':memory:'],
    ['HAPROXY_RUNTIME_API', 'tcp://127.0.0.1'],
    ['HAPROXY_RUNTIME_API', 'unix://relative.sock']
  ])('refuses %s=%s', (name, value) => {
    const err = configError({ [name]: value })
    expect(err.issues).toHaveLength(1)
    expect(err.issues[0]).toMatch(new RegExp(`^${name}: `))
  })
})

describe('parseEndpoint', () => {
  it.each([
    ['tcp://127.0.0.1:9999', { kind: 'tcp', host: '127.0.0.1', port: 9999 }],
    ['tcp://haproxy:1', { kind: 'tcp', host: 'haproxy', port: 1 }],
    ['tcp://[::1]:65535', { kind: 'tcp', host: '::1', port: 65535 }],
    ['tcp://127.0.0.1:9999/', { kind: 'tcp', host: '127.0.0.1', port: 9999 }],
    ['unix:///run/haproxy/admin.sock', { kind: 'unix', path: '/run/haproxy/admin.sock' }],
    ['unix:///tmp/dir with space/x.sock', { kind: 'unix', path: '/tmp/dir with space/x.sock' }]
  ])('%s', (value, endpoint) => {
    expect(parseEndpoint(value)).toEqual(endpoint)
  })

  it.each([
    'tcp://127.0.0.1',
    'tcp://127.0.0.1:0',
    'tcp://127.0.0.1:65536',
    'tcp://:9999',
    'tcp://127.0.0.1:9999/path',
    'tcp://not a host:1',
    'unix://',
    'unix://run/admin.sock',
    '127.0.0.1:9999',
    '/run/haproxy/admin.sock',
    'http://127.0.0.1:9999'
  ])('refuses %s', value => {
    expect(() => parseEndpoint(value)).toThrow(Error)
  })
})

describe('values that used to slip through', () => {
  it.each([
    ['PORT', ' '], ['PORT', '0x10'], ['PORT', '1e3'], ['PORT', '65536'],
    ['HAPROXY_RUNTIME_API', 'tcp://u:p@127.0.0.1:9999'], ['HAPROXY_RUNTIME_API', 'tcp://127.0.0.1:9999?x=1'],
    ['HAPROXY_RUNTIME_API', 'tcp://127.0.0.1:9999#frag'], ['HAPROXY_RUNTIME_API', 'unix:///'], ['HAPROXY_RUNTIME_API', 'unix:///run/']
  ])('%s=%j is refused', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError)
  })

  it('still takes an ordinary port', () => {
    expect(loadConfig({ PORT: '8080' }).port).toBe(8080)
    expect(loadConfig({}).port).toBe(5555)
  })
})

describe('loadConfig: the shutdown grace', () => {
  it('refuses a grace too short to put back an operation interrupted by a stop, with the minimum', () => {
    expect(configError({ HAPROXY_TIMEOUT_MS: '5000', HAPCTL_SHUTDOWN_GRACE_MS: '15000' }).issues).toEqual([
      'HAPCTL_SHUTDOWN_GRACE_MS: 15000 ms is too short to put back an operation interrupted by a stop: that may take two Runtime API calls, ' +
        'the second after a wait for a connection, three waits of up to HAPROXY_TIMEOUT_MS (5000 ms) each, plus 1000 ms; give at least 16000 ms'
    ])
    expect(loadConfig({ HAPROXY_TIMEOUT_MS: '5000', HAPCTL_SHUTDOWN_GRACE_MS: '16000' }).shutdownGraceMs).toBe(16_000)
    // Not given: long enough for the timeout.
    expect(loadConfig({ HAPROXY_TIMEOUT_MS: '5000' }).shutdownGraceMs).toBe(30_000)
    expect(loadConfig({ HAPROXY_TIMEOUT_MS: '60000' }).shutdownGraceMs).toBe(181_000)
  })
})
