import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { parse } from 'yaml'
import { ConfigError, loadConfig } from '../../src/config.ts'
import { freePort, httpGet, waitFor } from '../helpers/haproxy.ts'
import { nodeCommand } from '../helpers/node.ts'

/*
 * docker-compose.yml without a Docker engine: its services and their wiring are read from the file,
 * the HAProxy configuration it mounts is checked by HAProxy 3.4 itself (`haproxy -c`) with the
 * environment the haproxy service gives it, and the environment the hapctl service gets (on top of
 * the Dockerfile's ENV) is checked by hapctl's own configuration loader.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
// Where the official image reads its configuration (its CMD: haproxy -f <this>).
const IMAGE_CFG = '/usr/local/etc/haproxy/haproxy.cfg'

interface Service {
  image?: string
  build?: string | { context?: string, dockerfile?: string }
  network_mode?: string
  depends_on?: string[] | Record<string, unknown>
  environment?: Record<string, string | number | boolean | null> | string[]
  ports?: string[]
  volumes?: string[]
  command?: string[] | string
  stop_grace_period?: string
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service>, volumes?: Record<string, unknown> }
const services = compose.services

/** Compose's interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}`, with nothing set in the shell. */
function interpolate (value: string, shell: Record<string, string> = {}): string {
  return value.replace(/\$\{(\w+)(?:(:?-)([^}]*))?\}/g, (_m, name: string, op: string | undefined, fallback: string | undefined) => {
    const set = shell[name]
    if (op === ':-') return set === undefined || set === '' ? (fallback ?? '') : set
    if (op === '-') return set === undefined ? (fallback ?? '') : set
    return set ?? ''
  })
}

function environment (service: Service): Record<string, string> {
  const env = service.environment ?? {}
  const pairs = Array.isArray(env) ? env.map(e => e.split(/=(.*)/s, 2) as [string, string]) : Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)] as [string, string])
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v)]))
}

/** `host:container[:ro]` bind mounts of a service, host paths resolved against the repository. */
function mounts (service: Service): Array<{ host: string, container: string }> {
  return (service.volumes ?? []).filter(v => v.startsWith('./')).map(v => {
    const [host, container] = v.split(':') as [string, string]
    return { host: resolve(ROOT, host), container }
  })
}

/** Published ports as [host ip, host port, container port]. */
function published (service: Service): Array<[string, number, number]> {
  return (service.ports ?? []).map(p => {
    const parts = interpolate(p).split(':')
    expect(parts, p).toHaveLength(3)
    return [parts[0] as string, Number(parts[1]), Number(parts[2])]
  })
}

/** The ENV of the Dockerfile's last stage (KEY=value pairs). */
function dockerfileEnv (): Record<string, string> {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ')
  const lastStage = text.slice(text.lastIndexOf('\nFROM '))
  const env: Record<string, string> = {}
  for (const line of lastStage.split('\n').filter(l => l.startsWith('ENV '))) {
    for (const [, k, v] of line.slice(4).matchAll(/(\w+)=(\S+)/g)) env[k as string] = v as string
  }
  return env
}

/** HAProxy's `"${NAME-default}"` expansion (configuration manual, 2.3) for the settings the checks read. */
function expandHaproxy (text: string, env: Record<string, string>): string {
  return text.replace(/"([^"\n]*)"/g, (_m, inner: string) =>
    inner.replace(/\$\{(\w+)(?:-([^}]*))?\}/g, (_v, name: string, fallback: string | undefined) => env[name] ?? fallback ?? ''))
}

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function haproxyCheck (file: string, env: Record<string, string>): { status: number | null, output: string } {
  const res = spawnSync(inject('haproxyBin'), ['-c', '-f', file], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } })
  return { status: res.status, output: `${res.stdout}${res.stderr}` }
}

describe('docker-compose.yml', () => {
  const haproxy = services.haproxy as Service
  const hapctl = services.hapctl as Service
  const cfgMount = mounts(haproxy ?? {}).find(m => m.container === IMAGE_CFG)
  const haproxyEnv = environment(haproxy ?? {})

  it('runs the official HAProxy 3.4 image with the example configuration, hapctl built from the Dockerfile, and two upstreams', () => {
    expect(Object.keys(services).sort()).toEqual(['app1', 'hapctl', 'haproxy', 'web1'])
    expect(haproxy.image).toMatch(/^haproxy:3\.4(\.\d+)?$/)
    expect(cfgMount?.host).toBe(join(ROOT, 'examples/haproxy.cfg'))
    const context = typeof hapctl.build === 'string' ? hapctl.build : hapctl.build?.context
    const dockerfile = typeof hapctl.build === 'object' ? hapctl.build.dockerfile ?? 'Dockerfile' : 'Dockerfile'
    expect(resolve(ROOT, context ?? '.')).toBe(resolve(ROOT))
    expect(existsSync(join(ROOT, dockerfile))).toBe(true)
    // One network namespace: the README's 127.0.0.1 addresses hold inside as with `npm run demo`.
    for (const name of ['hapctl', 'web1', 'app1']) {
      expect(services[name]?.network_mode, name).toBe('service:haproxy')
      const deps = services[name]?.depends_on
      expect(Array.isArray(deps) ? deps : Object.keys(deps ?? {}), name).toContain('haproxy')
    }
  })

  it('the HAProxy configuration it mounts passes `haproxy -c` with the environment it gives', () => {
    const file = cfgMount?.host as string
    const withEnv = haproxyCheck(file, haproxyEnv)
    expect(withEnv.status, withEnv.output).toBe(0)
    // The expansion the checks below rely on is the one HAProxy makes: the expanded file passes too.
    const dir = mkdtempSync(join(tmpdir(), 'hapctl-compose-'))
    dirs.push(dir)
    const expanded = expandHaproxy(readFileSync(file, 'utf8'), haproxyEnv)
    expect(expanded).not.toContain('${')
    writeFileSync(join(dir, 'haproxy.cfg'), expanded)
    const plain = haproxyCheck(join(dir, 'haproxy.cfg'), {})
    expect(plain.status, plain.output).toBe(0)
  })

  it('wires the ports: published frontend and hapctl, the Runtime API hapctl uses, the upstreams HAProxy routes to', () => {
    const cfg = expandHaproxy(readFileSync(cfgMount?.host as string, 'utf8'), haproxyEnv)
    const bind = /^\s*bind\s+(\S+):(\d+)\s*$/m.exec(cfg)
    const socket = /^\s*stats socket ipv4@127\.0\.0\.1:(\d+) level admin\s*$/m.exec(cfg)
    const web1 = /^\s*server web1 127\.0\.0\.1:(\d+)\s*$/m.exec(cfg)
    expect([bind, socket, web1].every(m => m !== null), cfg).toBe(true)
    // Published ports reach the container's address, not its loopback: the frontend binds all.
    expect(bind?.[1]).toBe('0.0.0.0')

    const env = { ...dockerfileEnv(), ...environment(hapctl) }
    const ports = published(haproxy)
    // Only on the host's loopback: hapctl runs without a token unless API_TOKEN is given.
    expect(ports.map(p => p[0])).toEqual(['127.0.0.1', '127.0.0.1'])
    expect(ports.map(p => p[2]).sort()).toEqual([Number(bind?.[2]), Number(env.PORT)].sort())
    expect(ports.map(p => p[1]).sort()).toEqual([5555, 8080])

    expect(env.HAPROXY_RUNTIME_API).toBe(`tcp://127.0.0.1:${socket?.[1] as string}`)

    const upstreams = ['web1', 'app1'].map(name => {
      const service = services[name] as Service
      const command = service.command as string[]
      expect(Array.isArray(command), name).toBe(true)
      const [node, script, srv, port] = command
      expect(node).toBe('node')
      const mount = mounts(service).find(m => m.container === script)
      expect(mount?.host, `${name} mounts the script it runs`).toBe(join(ROOT, 'scripts/demo-upstream.mjs'))
      expect(srv).toBe(name)
      return Number(port)
    })
    expect(upstreams[0]).toBe(Number(web1?.[1]))
    const taken = [Number(bind?.[2]), Number(socket?.[1]), Number(env.PORT), ...upstreams]
    expect(new Set(taken).size, `every port of the shared namespace is distinct: ${taken.join(', ')}`).toBe(taken.length)
  })

  it('runs the upstream program as its containers do: it answers srv=<name> and stops on SIGTERM (PID 1 has no default handler)', async () => {
    const [, script, name] = (services.app1 as Service).command as string[]
    const mount = mounts(services.app1 as Service).find(m => m.container === script)
    const port = await freePort()
    const node = nodeCommand()
    const child = spawn(node.command, [...node.args, mount?.host as string, name as string, String(port)], { stdio: 'ignore' })
    const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
    try {
      const res = await waitFor(() => httpGet(`http://127.0.0.1:${port}/test`), r => r.status === 200, { timeoutMs: 10_000 })
      expect(res.body).toBe(`srv=${name as string} path=/test\n`)
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it("gives hapctl a configuration it starts with (the Dockerfile's HOST=0.0.0.0 needs a token or the explicit opt-out)", () => {
    const env = { ...dockerfileEnv(), ...environment(hapctl) }
    expect(env.HOST).toBe('0.0.0.0')
    const config = loadConfig(env)
    expect(config.port).toBe(Number(env.PORT))
    // An API_TOKEN in the shell turns authentication on.
    const withToken = loadConfig({ ...dockerfileEnv(), ...Object.fromEntries(Object.entries(hapctl.environment as Record<string, string>).map(([k, v]) => [k, interpolate(String(v), { API_TOKEN: 'a-token-of-at-least-16-chars' })])) })
    expect(withToken.apiToken).toBe('a-token-of-at-least-16-chars')
    // Without the opt-out and without a token, hapctl would refuse to start: the line is needed.
    const { HAPCTL_ALLOW_UNAUTHENTICATED: _optOut, ...withoutOptOut } = env
    expect(() => loadConfig(withoutOptOut)).toThrow(ConfigError)
    // Longer than hapctl's shutdown grace, so `docker compose stop` does not kill an operation half-way.
    expect(Number.parseInt(hapctl.stop_grace_period ?? '10s', 10)).toBeGreaterThan(config.shutdownGraceMs / 1000)
  })
})
