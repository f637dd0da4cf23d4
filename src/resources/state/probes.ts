/**
 * What only HAProxy can say about a document, asked before anything of it is applied: whether each
 * defaults section (and mode) it creates backends from exists and allows dynamic servers, and whether
 * HAProxy takes each distinct set of server options (`ssl` with `verify required` and no CA file is
 * refused, for instance). HAProxy has no command that lists defaults sections or checks keywords, so
 * hapctl asks by doing: it creates an unpublished backend `hapctl-probe-<n>` from each defaults
 * section the document uses, adds one server per distinct option set to it (dynamic servers start in
 * maintenance: no traffic reaches them), and deletes both again (management §9.3 `add backend`,
 * `add server`, `del server`, `del backend`). A refusal there refuses the whole document, before any
 * of it is sent. These are the only commands a dry run sends; the apply sends the same ones first.
 */
import type { Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { ProxyMode } from '../../runtime/validation.ts'
import { rejectionOf } from '../../engine/outcomes.ts'
import type { PreviewCommand } from '../../engine/plan.ts'
import type { DesiredBackend, DesiredServer, ServerSpec } from '../../engine/store/types.ts'
import { PROBE_PREFIX } from '../../schemas/state.ts'
import { toAddOptions } from '../servers/view.ts'
import { deleteBackend } from '../backends/service.ts'
import type { PlanProblem } from './planner.ts'

type Group = {
  from: string
  mode: ProxyMode | null
  /** The backends created from it, and whether any has servers. */
  backends: string[]
  /** One server per distinct option set, with every server that has that set. */
  servers: Array<{ spec: ServerSpec, users: DesiredServer[] }>
}

/** Options a refusal can depend on: everything `add server` takes but the address, port and weight. */
function signature (spec: ServerSpec): string {
  const { address: _a, port: _p, weight: _w, maxconn: _m, ...rest } = spec
  return JSON.stringify(rest)
}

function groupsOf (created: readonly DesiredBackend[], servers: readonly DesiredServer[]): Group[] {
  const groups = new Map<string, Group>()
  const groupOf = new Map<string, Group>()
  for (const b of created) {
    const key = `${b.from} ${b.mode ?? ''}`
    const g = groups.get(key) ?? { from: b.from, mode: b.mode, backends: [], servers: [] }
    groups.set(key, g)
    g.backends.push(b.name)
    groupOf.set(b.name, g)
  }
  for (const s of servers) {
    const g = groupOf.get(s.backend)
    if (g === undefined) continue
    const sig = signature(s.spec)
    const known = g.servers.find(x => signature(x.spec) === sig)
    if (known !== undefined) known.users.push(s)
    else g.servers.push({ spec: s.spec, users: [s] })
  }
  return [...groups.values()]
}

/**
 * Asks HAProxy about the backends the document creates (`created`, with their `servers`); the problems
 * found and every command sent, in order. `taken`: names HAProxy already has.
 */
export async function probe (runtime: Runtime, created: readonly DesiredBackend[], servers: readonly DesiredServer[], taken: ReadonlySet<string>): Promise<{ problems: PlanProblem[], sent: PreviewCommand[] }> {
  const problems: PlanProblem[] = []
  const sent: PreviewCommand[] = []
  let n = 0
  const send = async <T>(c: cmd.Command<T>): Promise<T> => {
    sent.push({ text: c.text })
    const [result] = await runtime.execute([c])
    return result
  }
  for (const g of groupsOf(created, servers)) {
    let name = ''
    let added: cmd.AddBackendResult | undefined
    // A name taken meanwhile (another client, another hapctl sharing the store): the next one.
    for (let attempt = 0; added === undefined && attempt < 5; attempt++) {
      do name = `${PROBE_PREFIX}${++n}`; while (taken.has(name))
      try {
        added = await send(cmd.addBackend(name, g.from, g.mode ?? undefined))
      } catch (err) {
        const r = rejectionOf(err)
        if (r === undefined) throw err
        if (r.kind === 'exists' && attempt < 4) continue
        for (const b of g.backends) problems.push({ field: `body.backends.${b}.from`, message: `HAProxy refuses to create a backend from '${g.from}'${g.mode === null ? '' : ` in mode ${g.mode}`}: ${r.haproxyMessage}` })
        break
      }
    }
    if (added === undefined) continue
    const inServers: string[] = []
    try {
      if (!added.dynamicServers && g.servers.length > 0) {
        for (const s of g.servers.flatMap(x => x.users)) {
          problems.push({ field: `body.backends.${s.backend}.servers.${s.name}`, message: `backends created from '${g.from}' cannot take servers at runtime (${added.note ?? 'a static load-balancing algorithm'})` })
        }
      } else {
        for (const [i, s] of g.servers.entries()) {
          const server = `p${i + 1}`
          try {
            await send(cmd.addServer(name, server, { ...toAddOptions(s.spec), initState: 'down' }))
            inServers.push(server)
          } catch (err) {
            const r = rejectionOf(err)
            if (r === undefined) throw err
            for (const u of s.users) problems.push({ field: `body.backends.${u.backend}.servers.${u.name}`, message: `HAProxy refuses this server's options: ${r.haproxyMessage}` })
          }
        }
      }
    } finally {
      // Dynamic servers start in maintenance and the backend unpublished: nothing reached them.
      for (const server of inServers) await send(cmd.delServer(name, server))
      const wait = cmd.waitBackendRemovable(name, 1000)
      sent.push({ text: wait.text }, { text: cmd.delBackend(name).text })
      await deleteBackend(runtime, name, wait)
    }
  }
  return { problems, sent }
}
