/**
 * What a backend looks like through the API, from its `show stat` BACKEND row and server rows
 * (management §9.1), plus what only hapctl knows: whether it created the backend, and from which
 * defaults section (HAProxy exposes neither).
 */
import type { Row } from '../../runtime/parsers.ts'
import { StatType } from '../../runtime/parsers.ts'
import type { ProxyMode } from '../../runtime/validation.ts'
import { PROXY_MODES } from '../../runtime/validation.ts'

export type Backend = {
  name: string
  mode: ProxyMode | null
  published: boolean
  status: string
  dynamic: boolean
  from: string | null
  balance: string | null
  acceptsDynamicServers: boolean | null
  servers: number
  warnings: string[]
}

const UNPUB_SUFFIX = ' (UNPUB)'

/** What a backend's view needs from `show stat`: its BACKEND row and its server rows. */
export const BACKEND_STAT = { columns: ['pxname', 'svname', 'type', 'status', 'mode', 'algo'], backendsAndServersOnly: true } as const

/** Its BACKEND row alone (type mask 2), when its servers come from elsewhere: it then counts no server. */
export const BACKEND_ROW_STAT = { columns: BACKEND_STAT.columns, backendOnly: true } as const

export const TCP_MODE_WARNING = 'mode tcp: an HTTP frontend that routes to this backend gives its clients an empty reply; use mode http for backends behind HTTP frontends'

/** Balance algorithms HAProxy accepts dynamic servers with; hash-based ones depend on hash-type. */
const DYNAMIC_ALGOS = new Set(['roundrobin', 'leastconn', 'first', 'random', 'unknown'])

/** What hapctl knows of a backend it created in the HAProxy process answering now. */
export type CreatedBackend = { from: string, noDynamicServers: string | undefined }

const MODES: ReadonlySet<string> = new Set(PROXY_MODES)

export function backendsFromStat (rows: readonly Row[], created: (name: string) => CreatedBackend | undefined): Backend[] {
  const serverCount = new Map<string, number>()
  const backendRows: Row[] = []
  for (const r of rows) {
    if (r.type === StatType.SERVER) serverCount.set(r.pxname as string, (serverCount.get(r.pxname as string) ?? 0) + 1)
    else if (r.type === StatType.BACKEND) backendRows.push(r)
  }
  return backendRows.map(r => {
    const name = r.pxname as string
    const rawStatus = r.status ?? ''
    const meta = created(name)
    const mode = MODES.has(r.mode ?? '') ? r.mode as ProxyMode : null
    const balance = r.algo === undefined || r.algo === '' ? null : r.algo
    let accepts: boolean | null
    if (meta?.noDynamicServers !== undefined) accepts = false
    else if (balance === null) accepts = null
    else if (DYNAMIC_ALGOS.has(balance)) accepts = true
    else if (balance === 'static-rr') accepts = false
    else accepts = null
    const warnings: string[] = []
    if (meta?.noDynamicServers !== undefined) warnings.push(`no dynamic servers: HAProxy will refuse every 'add server' on it (${meta.noDynamicServers})`)
    if (mode === 'tcp') warnings.push(TCP_MODE_WARNING)
    const unpublished = rawStatus.endsWith(UNPUB_SUFFIX)
    return {
      name,
      mode,
      published: !unpublished,
      status: unpublished ? rawStatus.slice(0, -UNPUB_SUFFIX.length) : rawStatus,
      dynamic: meta !== undefined,
      from: meta?.from ?? null,
      balance,
      acceptsDynamicServers: accepts,
      servers: serverCount.get(name) ?? 0,
      warnings
    }
  })
}
