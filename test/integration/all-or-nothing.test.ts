import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { parseEndpoint } from '../../src/config.ts'
import { MemoryStore } from '../../src/engine/store/memory.ts'
import { RuntimeClient } from '../../src/runtime/client.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { FAULTS, faultyRuntime } from '../helpers/faulty-runtime.ts'
import type { Fault, FaultyRuntime } from '../helpers/faulty-runtime.ts'
import { httpGet, startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * All or nothing, on a real HAProxy 3.4: every multi-step write is run again and again with its n-th
 * Runtime API command failing (refused, reply lost, connection cut, HAProxy unreachable), for every n
 * until the write no longer reaches the fault. After each failure HAProxy and the desired state are as
 * before (outcome refused or undone), or HAProxy becomes as asked (outcome applied; or unknown: the
 * change was recorded and the reconciler makes HAProxy match it), or it is left half-done and the
 * reconciler puts it back as before (outcome left, only past a deletion that cannot be undone) — and the
 * problem body says which. Each state is checked with the test's own view of HAProxy (its CLI and
 * real traffic through the frontend), not hapctl's.
 */

let h: HaproxyInstance
let app: FastifyInstance
let faulty: FaultyRuntime
let store: MemoryStore

beforeAll(async () => {
  h = await startHaproxy({ upstreams: ['web1', 's1', 'r1', 'alpha', 'beta'] })
  faulty = faultyRuntime(new RuntimeClient({ endpoint: parseEndpoint(h.runtimeApi), timeoutMs: 5000 }))
  store = new MemoryStore()
  app = await buildApp({ config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi }), runtime: faulty.runtime, store, logger: false, reconcile: false })
  expect(await h.cli('add map virt@paths.map /aon/ aon')).toBe('\n')
})

afterAll(async () => {
  await app?.close()
  await h?.stop()
})

const port = (name: string): number => h.upstreams[name]!.port
const SERVERS = () => [
  { name: 'a1', address: '127.0.0.1', port: port('alpha') },
  { name: 'a2', address: '127.0.0.1', port: port('beta'), check: true, inter: '200ms', rise: 1 }
]

async function call (method: string, url: string, payload?: unknown): Promise<{ status: number, body: any }> {
  const res = await app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as object }) })
  return { status: res.statusCode, body: res.body === '' ? undefined : res.json() }
}

/** What HAProxy has of backend `aon`: absent, or published or not with each server's admin state and weight. */
type Seen = { exists: false } | { exists: true, published: boolean, servers: Record<string, { admin: number, weight: number }> }

async function seen (): Promise<Seen> {
  const backends = (await h.cli('show backend')).split('\n').slice(1)
  if (!backends.includes('aon')) return { exists: false }
  const lines = (await h.cli('show stat aon -1 -1')).split('\n').filter(l => l !== '')
  const header = (lines[0] ?? '').replace(/^# /, '').split(',')
  const rows = lines.slice(1).map(l => Object.fromEntries(l.split(',').map((v, i) => [header[i], v])))
  const be = rows.find(r => r.svname === 'BACKEND')
  const state = (await h.cli('show servers state aon')).split('\n').filter(l => l !== '' && !l.startsWith('#')).slice(1)
  const servers = Object.fromEntries(state.map(l => {
    const f = l.split(' ')
    // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight …
    return [f[3] as string, { admin: Number(f[6]), weight: Number(f[7]) }]
  }))
  return { exists: true, published: !(be?.status ?? '').endsWith('(UNPUB)'), servers }
}

/** Real traffic for /aon/: which upstream answers (web1 when `aon` is absent or unpublished). */
async function answeredBy (): Promise<string> {
  const res = await httpGet(h.frontendUrl + '/aon/x')
  return /^srv=(\w+)/.exec(res.body)?.[1] ?? `status ${res.status}`
}

async function mapContent (): Promise<string[]> {
  return (await h.cli('show map virt@paths.map')).split('\n').filter(l => l !== '').map(l => l.split(' ').slice(1).join(' ')).sort()
}

/** Removes `aon` from HAProxy and from the desired state, whatever is left of it. */
async function removeAon (): Promise<void> {
  let res = await call('DELETE', '/backends/aon?force=true')
  // Seen once in ~10 full runs: `del backend aon` answered only stray notices of the servers just deleted
  // ("Server deleted." ×3) without its own last line, so the cleanup answered 409 `left` (what becomes of
  // the backend then is the reconciler's). The cleanup is not what this file tests: one more try.
  if (res.status === 409) res = await call('DELETE', '/backends/aon?force=true')
  if (res.status === 204 || res.status === 404) return
  throw new Error(`cleanup: DELETE /backends/aon answered ${res.status} ${JSON.stringify(res.body)}`)
}

async function createAon (servers: unknown[]): Promise<void> {
  const res = await call('POST', '/backends', { name: 'aon', from: 'mydefaults', published: true, servers })
  expect(res.status, JSON.stringify(res.body)).toBe(201)
}

type Operation = {
  /** Puts HAProxy and the desired state in the state before the write (nothing armed). */
  setup: () => Promise<void>
  write: () => Promise<{ status: number, body: any }>
  /** Asserts HAProxy and the store are as before the write / as it asked. */
  asBefore: () => Promise<void>
  asAsked: () => Promise<void>
  cleanup: () => Promise<void>
}

/**
 * Runs `op.write` with its n-th command failing with `fault`, for n = 1, 2, … until the write sends
 * fewer than n commands; checks what each failure left. Returns the outcomes seen, by command.
 */
async function sweep (op: Operation, fault: Fault): Promise<string[]> {
  const seenOutcomes: string[] = []
  let fired: ReturnType<FaultyRuntime['disarm']>
  for (let n = 1; n < 100; n++) {
    await op.setup()
    faulty.arm(n, fault)
    const res = await op.write().finally(() => { fired = faulty.disarm() })
    if (fired === undefined) {
      expect(res.status, `no fault at n=${n}: ${JSON.stringify(res.body)}`).toBeLessThan(300)
      await op.asAsked()
      await op.cleanup()
      expect(seenOutcomes.length).toBeGreaterThan(0)
      return seenOutcomes
    }
    const where = `${fault} at command ${n} ('${fired.text}'): ${res.status} ${JSON.stringify(res.body)}`
    seenOutcomes.push(`${fired.verb}: ${res.status < 300 ? 'recovered' : res.body?.outcome}`)
    if (res.status < 300) {
      // The write made sure of what the failed command did (a map commit checked against `curr_ver`).
      await op.asAsked()
      await op.cleanup()
      continue
    }
    expect(res.status, where).toBeGreaterThanOrEqual(400)
    expect(res.body, where).toMatchObject({ status: res.status, code: expect.stringMatching(/^HAPX_/) })
    const outcome = res.body.outcome
    expect(['refused', 'undone', 'unknown', 'applied', 'left'], where).toContain(outcome)
    expect(res.body.state, where).toMatchObject({ outcome })
    try {
      if (outcome === 'refused' || outcome === 'undone') {
        await op.asBefore()
        // The desired state agrees: a pass of the reconciler changes nothing back.
        await app.reconciler.reconcileNow()
        await op.asBefore()
      } else if (outcome === 'left') {
        expect(res.body.state.left.length, where).toBeGreaterThan(0)
        await app.reconciler.reconcileNow()
        await op.asBefore()
      } else {
        if (outcome === 'applied') await op.asAsked()
        await app.reconciler.reconcileNow()
        await op.asAsked()
      }
    } catch (err) {
      throw new Error(`${where}\n${(err as Error).message}`)
    }
    await op.cleanup()
  }
  throw new Error('the write never stopped reaching the fault')
}

const TIMEOUT = 180_000

describe('POST /backends with servers, with a fault at each command', () => {
  const op: Operation = {
    setup: async () => { expect(await seen()).toEqual({ exists: false }); await call('GET', '/backends') },
    write: () => call('POST', '/backends', { name: 'aon', from: 'mydefaults', published: true, servers: SERVERS() }),
    asBefore: async () => {
      expect(await seen()).toEqual({ exists: false })
      expect(await store.getBackend('aon')).toBeUndefined()
      expect(await store.getServers('aon')).toEqual([])
      expect(await answeredBy()).toBe('web1')
    },
    asAsked: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 0, weight: 1 }, a2: { admin: 0, weight: 1 } } })
      expect(await store.getBackend('aon')).toMatchObject({ name: 'aon', published: true })
      expect(['alpha', 'beta']).toContain(await answeredBy())
    },
    cleanup: removeAon
  }
  for (const fault of FAULTS) {
    it(`${fault}: as before, or as asked, and says which`, async () => {
      const outcomes = await sweep(op, fault)
      if (fault === 'refused') expect(outcomes.every(o => /: (refused|undone|applied)$/.test(o)), outcomes.join('\n')).toBe(true)
    }, TIMEOUT)
  }
})

describe('DELETE /backends/:name, with a fault at each command', () => {
  const op: Operation = {
    setup: async () => { await createAon(SERVERS().map(({ check: _c, inter: _i, rise: _r, ...s }) => s)) },
    write: () => call('DELETE', '/backends/aon'),
    asBefore: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 0, weight: 1 }, a2: { admin: 0, weight: 1 } } })
      expect(await store.getBackend('aon')).toMatchObject({ name: 'aon' })
      expect(['alpha', 'beta']).toContain(await answeredBy())
    },
    asAsked: async () => {
      expect(await seen()).toEqual({ exists: false })
      expect(await store.getBackend('aon')).toBeUndefined()
      expect(await answeredBy()).toBe('web1')
    },
    cleanup: removeAon
  }
  for (const fault of FAULTS) {
    it(`${fault}: as before, or as asked, and says which`, async () => { await sweep(op, fault) }, TIMEOUT)
  }
})

describe('servers, with a fault at each command', () => {
  const setup = async (): Promise<void> => { await removeAon(); await createAon([{ name: 'a1', address: '127.0.0.1', port: port('alpha') }]) }
  const add: Operation = {
    setup,
    write: () => call('POST', '/backends/aon/servers', { name: 'a3', address: '127.0.0.1', port: port('beta'), weight: 7 }),
    asBefore: async () => {
      expect(await seen()).toMatchObject({ servers: { a1: { admin: 0 } } })
      expect(Object.keys((await seen() as { servers: object }).servers)).toEqual(['a1'])
      expect(await store.getServer('aon', 'a3')).toBeUndefined()
    },
    asAsked: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 0, weight: 1 }, a3: { admin: 0, weight: 7 } } })
      expect(await store.getServer('aon', 'a3')).toMatchObject({ name: 'a3' })
    },
    cleanup: removeAon
  }
  const patch: Operation = {
    setup,
    write: () => call('PATCH', '/backends/aon/servers/a1', { weight: 50, state: 'drain' }),
    asBefore: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 0, weight: 1 } } })
      expect(await store.getServer('aon', 'a1')).toMatchObject({ adminState: 'ready', weight: null })
    },
    asAsked: async () => {
      // Drain: admin state bit 0x08 (FDRAIN).
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 8, weight: 50 } } })
      expect(await store.getServer('aon', 'a1')).toMatchObject({ adminState: 'drain', weight: 50 })
    },
    cleanup: removeAon
  }
  const del: Operation = {
    setup,
    write: () => call('DELETE', '/backends/aon/servers/a1'),
    asBefore: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: { a1: { admin: 0, weight: 1 } } })
      expect(await store.getServer('aon', 'a1')).toBeDefined()
      expect(await answeredBy()).toBe('alpha')
    },
    asAsked: async () => {
      expect(await seen()).toEqual({ exists: true, published: true, servers: {} })
      expect(await store.getServer('aon', 'a1')).toBeUndefined()
    },
    cleanup: removeAon
  }
  for (const [name, op] of [['POST', add], ['PATCH', patch], ['DELETE', del]] as const) {
    for (const fault of FAULTS) {
      it(`${name} server, ${fault}: as before, or as asked, and says which`, async () => { await sweep(op, fault) }, TIMEOUT)
    }
  }
})

describe('PUT /maps/:map/entries (replace), with a fault at each command', () => {
  const before = [{ key: '/aon/', value: 'aon' }, { key: '/one/', value: 'webservers' }]
  const asked = [{ key: '/aon/', value: 'aon' }, { key: '/two/', value: 'static_unref' }, { key: '/three/', value: 'webservers' }]
  const op: Operation = {
    setup: async () => {
      const res = await call('PUT', '/maps/virt@paths.map/entries', before)
      expect(res.status, JSON.stringify(res.body)).toBe(200)
    },
    write: () => call('PUT', '/maps/virt@paths.map/entries', asked),
    asBefore: async () => { expect(await mapContent()).toEqual(before.map(e => `${e.key} ${e.value}`).sort()) },
    asAsked: async () => { expect(await mapContent()).toEqual(asked.map(e => `${e.key} ${e.value}`).sort()) },
    cleanup: async () => {}
  }
  for (const fault of FAULTS) {
    it(`${fault}: as before, or as asked, and says which`, async () => { await sweep(op, fault) }, TIMEOUT)
  }
})
