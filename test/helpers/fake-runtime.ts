/**
 * A Runtime for route and service tests: each command's text is answered by `respond` with the
 * exact reply HAProxy would give, and the command's own parser judges it, as the real client does.
 * Returning an Error simulates a transport failure (unreachable, timeout…).
 */
import type { Runtime } from '../../src/runtime/client.ts'
import type { Command } from '../../src/runtime/commands/index.ts'
import { RuntimeCommandError } from '../../src/runtime/errors.ts'

export type FakeRuntime = Runtime & { sent: string[] }

export function fakeRuntime (respond: (text: string) => string | Error): FakeRuntime {
  const sent: string[] = []
  const runtime = {
    sent,
    async execute (commands: readonly Command<unknown>[]) {
      const results: unknown[] = []
      for (const c of commands) {
        sent.push(c.text)
        const reply = respond(c.text)
        if (reply instanceof Error) throw reply
        try {
          results.push(c.parse(reply))
        } catch (err) {
          if (err instanceof RuntimeCommandError) err.index = results.length
          throw err
        }
      }
      return results
    },
    async close () {}
  }
  return runtime as unknown as FakeRuntime
}

/** A `show stat` reply with the given BACKEND rows (pxname, status, mode, algo) and server rows. */
export function statReply (rows: Array<{ px: string, sv?: string, status: string, mode?: string, algo?: string }>): string {
  const header = '# pxname,svname,status,type,mode,algo,'
  const lines = rows.map(r => `${r.px},${r.sv ?? 'BACKEND'},${r.status},${r.sv === undefined ? 1 : 2},${r.mode ?? 'http'},${r.algo ?? 'unknown'},`)
  return [header, ...lines].join('\n')
}

export const INFO_REPLY = 'Name: HAProxy\nVersion: 3.4.7-1\nRelease_date: 2026/10/14\nPid: 4242\nUptime_sec: 12\nStart_time_sec: 1795495485\nStopping: 0\nnode: test'
