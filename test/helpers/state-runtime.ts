/**
 * A small HAProxy for /state unit and route tests: backends (published or not), their servers as
 * `show servers state` reports them (addresses, weights, admin and check bits) and versioned maps,
 * changed by the commands a state apply sends and answered with 3.4.7's exact strings (the command's
 * own parser judges each reply, as with the real client). What real HAProxy does with these commands
 * is the business of test/integration/state*.test.ts; here the point is what hapctl sends, in what
 * order, and what it does when one command is refused or gets no answer.
 *
 * `refuse` answers chosen command texts (exact text, or a RegExp) with a refusal string or an Error
 * instead of running them; `sent` lists every command text, `changing()` those that are not reads.
 */
import type { PayloadCommand } from '../../src/runtime/client.ts'
import { AdminStateBits, CheckStateBits } from '../../src/runtime/parsers.ts'
import { INFO_REPLY, fakeRuntime, statReply } from './fake-runtime.ts'
import type { FakeRuntime } from './fake-runtime.ts'

export const SERVERS_HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

/** The process INFO_REPLY describes (pid@start_time). */
export const HERE = '4242@1795495485'

export type ModelServer = { addr: string, port: number, admin: number, weight: number, checkState: number, agentState: number }
export type ModelBackend = { published: boolean, servers: Map<string, ModelServer> }
export type ModelMap = { id: number, entries: Array<{ key: string, value: string }>, current: number, next: number, pending: Map<number, Array<{ key: string, value: string }>> }

export type StateHaproxy = {
  runtime: FakeRuntime
  backends: Map<string, ModelBackend>
  maps: Map<string, ModelMap>
  refuse: Array<{ match: string | RegExp, answer: string | Error }>
  /** Commands sent that are not reads (`show …`), in order; payload commands as their line. */
  changing: () => string[]
}

/** A server as a configuration line would give it: ready, weight 1, no checks (or checks configured and enabled). */
export function server (addr: string, port: number, o: Partial<Omit<ModelServer, 'addr' | 'port'>> = {}): ModelServer {
  return { addr, port, admin: 0, weight: 1, checkState: 0, agentState: 0, ...o }
}

export const CHECK_ON = CheckStateBits.CONFIGURED | CheckStateBits.ENABLED
export const CHECK_OFF = CheckStateBits.CONFIGURED

/** Splits a CLI line the way HAProxy does for the commands used here (`\ ` is a space inside a word). */
const words = (text: string): string[] => text.split(/(?<!\\) /).map(w => w.replaceAll('\\ ', ' '))

/**
 * HAProxy with the configuration's backend `webservers` (servers web1, web2), the defaults sections
 * `mydefaults` and `nomode` (which needs a mode), and the map `virt@paths.map`, plus what `init` adds.
 */
export function stateHaproxy (init: { backends?: Record<string, { published?: boolean, servers?: Record<string, ModelServer> }>, maps?: Record<string, Array<[string, string]>> } = {}): StateHaproxy {
  const backends = new Map<string, ModelBackend>()
  const addBackend = (name: string, b: { published?: boolean, servers?: Record<string, ModelServer> }): void => {
    backends.set(name, { published: b.published ?? true, servers: new Map(Object.entries(b.servers ?? {})) })
  }
  addBackend('webservers', { servers: { web1: server('127.0.0.1', 8081), web2: server('127.0.0.1', 8082) } })
  for (const [name, b] of Object.entries(init.backends ?? {})) addBackend(name, b)
  const maps = new Map<string, ModelMap>()
  let id = 5
  const initial: Record<string, Array<[string, string]>> = { 'virt@paths.map': [], ...init.maps }
  for (const [name, entries] of Object.entries(initial)) {
    maps.set(name, { id: id++, entries: entries.map(([key, value]) => ({ key, value })), current: 0, next: 0, pending: new Map() })
  }
  const refuse: StateHaproxy['refuse'] = []

  const serversState = (): string => {
    const lines = [SERVERS_HEADER]
    let beId = 0
    for (const [bName, b] of backends) {
      beId++
      let srvId = 0
      for (const [sName, s] of b.servers) {
        srvId++
        const op = (s.admin & AdminStateBits.ANY_MAINT) !== 0 ? 0 : 2
        lines.push([beId, bName, srvId, sName, s.addr, op, s.admin, s.weight, s.weight, 0, 0, 0, 0, s.checkState, s.agentState, 0, 0, '-', s.port, '-', 0, 0, '-', '-', 0].join(' '))
      }
    }
    return lines.join('\n')
  }
  const dump = (es: ReadonlyArray<{ key: string, value: string }>): string => es.map((e, i) => `0x${(0x1000 + i).toString(16)} ${e.key} ${e.value}`).join('\n')
  const serverOf = (ref: string | undefined): ModelServer | undefined => {
    const [b, s] = (ref ?? '').split('/')
    return backends.get(b as string)?.servers.get(s as string)
  }

  const real = (text: string): string => {
    const w = words(text)
    const [verb, noun] = w
    if (text === 'show info') return INFO_REPLY
    if (text.startsWith('show stat')) return statReply([...backends].map(([px, b]) => ({ px, status: b.published ? 'UP' : 'UP (UNPUB)' })))
    if (text === 'show servers state') return serversState()
    if (text === 'show backend') return ['# name', ...backends.keys()].join('\n')
    if (text === 'show map') {
      return ['# id (file) description', ...[...maps].map(([name, m]) =>
        `${m.id} (${name}) pattern loaded from file '${name}' used by map at file 'h.cfg' line 35. curr_ver=${m.current} next_ver=${m.next} entry_cnt=${m.entries.length}`)].join('\n')
    }
    if (text === 'experimental-mode on') return ''
    if (noun === 'map') {
      const versioned = w[2]?.startsWith('@') === true
      const version = versioned ? Number((w[2] as string).slice(1)) : undefined
      const name = versioned ? w[3] : w[2]
      const m = maps.get(name as string)
      if (m === undefined) return 'Unknown map identifier. Please use #<id> or <file>.'
      switch (verb) {
        case 'show': return dump(version === undefined ? m.entries : m.pending.get(version) ?? [])
        case 'prepare': m.pending.set(++m.next, []); return `New version created: ${m.next}`
        case 'commit': {
          const v = version === undefined ? undefined : m.pending.get(version)
          if (v === undefined || version === undefined || version <= m.current) return 'Version number out of range.'
          m.entries = v
          m.current = version
          for (const k of [...m.pending.keys()]) if (k <= version) m.pending.delete(k)
          return ''
        }
        case 'clear':
          if (version === undefined) m.entries = []
          else m.pending.set(version, [])
          return ''
      }
      return `Unknown command: '${text}'`
    }
    if (verb === 'add' && noun === 'backend') {
      const [, , name, , from] = w
      if (backends.has(name as string)) return `Error during backend creation : name is already used by other proxy 'backend ${name}'.`
      if (from === 'nomode' && !w.includes('mode')) return "Mode is required as 'nomode' default proxy does not explicitly defines it."
      if (from !== 'mydefaults' && from !== 'nomode') return `Cannot find default proxy '${from}'.`
      backends.set(name as string, { published: false, servers: new Map() })
      return 'New backend registered.'
    }
    if (verb === 'publish' || verb === 'unpublish') {
      const b = backends.get(w[2] as string)
      if (b === undefined) return 'No such backend.'
      b.published = verb === 'publish'
      return verb === 'publish' ? 'Backend published.' : 'Backend unpublished.'
    }
    if (verb === 'wait') return 'Done.'
    if (verb === 'del' && noun === 'backend') {
      if (!backends.delete(w[2] as string)) return 'No such backend.'
      return 'Backend deleted.'
    }
    if (verb === 'add' && noun === 'server') {
      const [b, s] = (w[2] as string).split('/')
      const backend = backends.get(b as string)
      if (backend === undefined) return 'No such backend.'
      if (backend.servers.has(s as string)) return `Already exists a server with the same name in backend '${b}'.`
      const [addr, port] = (w[3] as string).split(/:(?=\d+$)/)
      const weightAt = w.indexOf('weight')
      backend.servers.set(s as string, {
        addr: addr as string,
        port: Number(port),
        admin: AdminStateBits.FMAINT,
        weight: weightAt === -1 ? 1 : Number(w[weightAt + 1]),
        checkState: w.includes('check') ? CHECK_OFF : 0,
        agentState: 0
      })
      return 'New server registered.'
    }
    if (verb === 'del' && noun === 'server') {
      const [b, s] = (w[2] as string).split('/')
      if (backends.get(b as string)?.servers.delete(s as string) !== true) return 'No such server.'
      return 'Server deleted.'
    }
    const s = serverOf(noun === 'server' ? w[2] : w[2])
    if (s === undefined) return 'No such server.'
    if (verb === 'set' && noun === 'server') {
      const [, , , what, value] = w
      if (what === 'weight') { s.weight = Number(value); return '' }
      if (what === 'state') {
        s.admin = value === 'maint' ? AdminStateBits.FMAINT : value === 'drain' ? AdminStateBits.FDRAIN : 0
        return ''
      }
      if (what === 'addr') {
        const before = `IP changed from '${s.addr}' to '${value as string}', port changed from '${s.port}' to '${w[6] as string}' by 'stats socket command'`
        s.addr = value as string
        s.port = Number(w[6])
        return before
      }
    }
    if ((verb === 'enable' || verb === 'disable') && (noun === 'health' || noun === 'agent')) {
      const field = noun === 'health' ? 'checkState' : 'agentState'
      if ((s[field] & CheckStateBits.CONFIGURED) === 0) return noun === 'health' ? 'Health check was not configured on this server, cannot enable.' : 'Agent was not configured on this server, cannot enable.'
      s[field] = verb === 'enable' ? s[field] | CheckStateBits.ENABLED : s[field] & ~CheckStateBits.ENABLED
      return ''
    }
    return `Unknown command: '${text}'`
  }

  const answer = (text: string): string | Error => {
    const r = refuse.find(x => typeof x.match === 'string' ? x.match === text : x.match.test(text))
    return r === undefined ? real(text) : r.answer
  }
  const runtime = fakeRuntime(answer)
  runtime.executePayload = async <T>(command: PayloadCommand<T>): Promise<T> => {
    runtime.sent.push(command.text)
    const r = refuse.find(x => typeof x.match === 'string' ? x.match === command.text : x.match.test(command.text))
    if (r !== undefined) {
      if (r.answer instanceof Error) throw r.answer
      return command.parse(r.answer)
    }
    const w = words(command.text)
    const m = maps.get(w[3] as string)
    const v = m?.pending.get(Number((w[2] as string).slice(1)))
    if (v === undefined) return command.parse("Version number in the future, please use 'prepare map' before.")
    for (const l of command.payload.slice(0, -1).split('\n')) {
      const i = l.indexOf(' ')
      v.push({ key: l.slice(0, i), value: l.slice(i + 1) })
    }
    return command.parse('')
  }
  return { runtime, backends, maps, refuse, changing: () => runtime.sent.filter(t => !t.startsWith('show ')) }
}
