/**
 * What a server looks like through the API: one `show servers state` row joined with its `show stat`
 * row (management §9.3 `show servers state`, §9.1 `show stat`).
 */
import type * as cmd from '../../runtime/commands/index.ts'
import type { Row } from '../../runtime/parsers.ts'
import { AdminStateBits, CheckStateBits, StatType } from '../../runtime/parsers.ts'
import type { OPERATIONAL_STATUSES } from '../../schemas/servers.ts'
import type { ServerSpec } from '../../engine/store/types.ts'

export type OperationalStatus = typeof OPERATIONAL_STATUSES[number]

export type Server = {
  name: string
  backend: string
  id: number
  address: string | null
  fqdn: string | null
  port: number
  weight: { current: number, initial: number }
  adminState: cmd.ServerAdminState
  status: OperationalStatus
  rawStatus: string
  healthCheck: {
    configured: boolean
    enabled: boolean
    paused: boolean
    status: string | null
    description: string | null
    inProgress: boolean
    port: number | null
    address: string | null
  }
  agentCheck: { configured: boolean, enabled: boolean }
  sessions: number
  maxconn: number | null
  backup: boolean
  ssl: boolean
}

const { INPROGRESS: CHECK_INPROGRESS, CONFIGURED: CHECK_CONFIGURED, ENABLED: CHECK_ENABLED, PAUSED: CHECK_PAUSED } = CheckStateBits

/** `check_status` words and their meaning, from the management guide §9.1 (field 36). */
const CHECK_STATUS_DESCRIPTIONS: Readonly<Record<string, string>> = {
  UNK: 'Unknown',
  INI: 'Initializing',
  SOCKERR: 'Socket error',
  L4OK: 'Check passed on layer 4, no upper layers testing enabled',
  L4TOUT: 'Layer 1-4 timeout',
  L4CON: 'Layer 1-4 connection problem, e.g. "Connection refused" (tcp rst) or "No route to host" (icmp)',
  L6OK: 'Check passed on layer 6',
  L6TOUT: 'Layer 6 (SSL) timeout',
  L6RSP: 'Layer 6 invalid response - protocol error',
  L7OK: 'Check passed on layer 7',
  L7OKC: 'Check conditionally passed on layer 7, e.g. 404 with disable-on-404',
  L7TOUT: 'Layer 7 (HTTP/SMTP) timeout',
  L7RSP: 'Layer 7 invalid response - protocol error',
  L7STS: 'Layer 7 response error, e.g. HTTP 5xx',
  CHECKED: 'Agent check: checked',
  HANA: 'Health analyze: too many errors observed on live traffic',
  PROCERR: 'External check: process error',
  PROCTOUT: 'External check: process timeout',
  PROCOK: 'External check passed'
}

export function normalizeStatus (raw: string): OperationalStatus {
  if (raw.startsWith('MAINT')) return 'maint'
  if (raw.startsWith('DRAIN')) return 'drain'
  if (raw.startsWith('NOLB')) return 'nolb'
  if (raw === 'no check' || raw.startsWith('UP')) return 'up'
  if (raw.startsWith('DOWN')) return 'down'
  return 'unknown'
}

export function adminStateOf (adminBits: number): cmd.ServerAdminState {
  if ((adminBits & AdminStateBits.ANY_MAINT) !== 0) return 'maint'
  if ((adminBits & AdminStateBits.ANY_DRAIN) !== 0) return 'drain'
  return 'ready'
}

/**
 * The admin state the CLI set on a server (`set server … state`: the forced maintenance and drain
 * bits of `show servers state`'s srv_admin_state), which is what hapctl compares with what it keeps;
 * states inherited from a tracked server or set by an agent are not the CLI's to change.
 */
export function cliAdminStateOf (row: Row): cmd.ServerAdminState {
  return adminStateOf(Number(row.srv_admin_state) & (AdminStateBits.FMAINT | AdminStateBits.FDRAIN))
}

/** A health or agent check's state field of `show servers state`: whether it was configured, and runs. */
export function checkStateOf (field: unknown): { configured: boolean, enabled: boolean } {
  const v = Number(field)
  return { configured: (v & CheckStateBits.CONFIGURED) !== 0, enabled: (v & CheckStateBits.ENABLED) !== 0 }
}

/** `show stat` check_status: `* ` in front while a check runs (docs/runtime-api.md#show-stat). */
export function parseCheckStatus (field: string | undefined): { status: string | null, inProgress: boolean } {
  const raw = field ?? ''
  const inProgress = raw.startsWith('* ')
  const status = inProgress ? raw.slice(2) : raw
  return { status: status === '' ? null : status, inProgress }
}

const num = (v: string | undefined): number => {
  const n = Number(v)
  return Number.isFinite(n) ? n : 0
}
const orNull = (v: string | undefined): string | null => v === undefined || v === '' ? null : v

/** One server from its `show servers state` row and its `show stat` row (absent in a race: zeros). */
function toServer (backend: string, st: Row, stat: Row | undefined): Server {
  const checkState = num(st.srv_check_state)
  const agentState = num(st.srv_agent_state)
  const check = parseCheckStatus(stat?.check_status)
  const rawStatus = stat?.status ?? ''
  const checkPort = num(st.srv_check_port)
  return {
    name: st.srv_name as string,
    backend,
    id: num(st.srv_id),
    address: orNull(st.srv_addr),
    fqdn: orNull(st.srv_fqdn),
    port: num(st.srv_port),
    weight: { current: num(st.srv_uweight), initial: num(st.srv_iweight) },
    adminState: adminStateOf(num(st.srv_admin_state)),
    status: normalizeStatus(rawStatus),
    rawStatus,
    healthCheck: {
      configured: (checkState & CHECK_CONFIGURED) !== 0,
      enabled: (checkState & CHECK_ENABLED) !== 0,
      paused: (checkState & CHECK_PAUSED) !== 0,
      status: check.status,
      description: check.status === null ? null : CHECK_STATUS_DESCRIPTIONS[check.status] ?? null,
      inProgress: check.inProgress || (checkState & CHECK_INPROGRESS) !== 0,
      port: checkPort === 0 ? null : checkPort,
      address: orNull(st.srv_check_addr)
    },
    agentCheck: { configured: (agentState & CHECK_CONFIGURED) !== 0, enabled: (agentState & CHECK_ENABLED) !== 0 },
    sessions: num(stat?.scur),
    maxconn: stat === undefined || stat.slim === '' || stat.slim === undefined ? null : num(stat.slim),
    backup: stat?.bck === '1',
    ssl: st.srv_use_ssl === '1'
  }
}

/**
 * What a server's view needs from `show stat`: its server row (type mask 4), and of it only the
 * columns read below. The rest of its 213 fields (3.4.7) is skipped without being cut out.
 */
export const SERVER_STAT = { columns: ['pxname', 'svname', 'type', 'status', 'check_status', 'scur', 'slim', 'bck'], serversOnly: true } as const

/** Joins the two views by server name; servers-state order (newest dynamic server first, management §9.3 `show servers state`). */
export function joinServers (backend: string, state: Row[], stat: Row[]): Server[] {
  const byName = new Map<string, Row>()
  for (const r of stat) {
    if (r.type === StatType.SERVER && r.pxname === backend) byName.set(r.svname as string, r)
  }
  return state.filter(r => r.be_name === backend).map(r => toServer(backend, r, byName.get(r.srv_name as string)))
}

export function toAddOptions (input: ServerSpec): cmd.AddServerOptions {
  return {
    address: input.address,
    port: input.port,
    check: input.check,
    checkPort: input.checkPort,
    checkAddr: input.checkAddr,
    interMs: input.inter,
    rise: input.rise,
    fall: input.fall,
    weight: input.weight,
    maxconn: input.maxconn,
    backup: input.backup,
    ssl: input.ssl,
    sslVerify: input.sslVerify,
    sni: input.sni
  }
}
