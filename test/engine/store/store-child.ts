/**
 * A SqliteStore in a process of its own, for what a test cannot see from inside its own process:
 * which fsyncs a write costs (run under strace), and what survives a kill right after an answer.
 * Each line it writes to stdout is written synchronously, once the operation it names has resolved.
 *
 * node --import tsx test/engine/store/store-child.ts <file> writes <n>    n × (commit, then its audit entry)
 * node --import tsx test/engine/store/store-child.ts <file> burst <k>     k commits asked for at once
 * node --import tsx test/engine/store/store-child.ts <file> audit         one audit entry, then idle 1 s
 * node --import tsx test/engine/store/store-child.ts <file> forever <k>   k writers committing until killed
 */
import { writeSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { SqliteStore } from '../../../src/engine/store/sqlite.ts'
import type { AuditRecord } from '../../../src/engine/store/types.ts'
import { mapPutAuditRecord } from '../../helpers/audit-record.ts'

const [file, mode, count] = process.argv.slice(2) as [string, string, string | undefined]
const say = (line: string): void => { writeSync(1, `${line}\n`) }
const meta = (i: number) => ({ actor: 'api', action: 'update', target: { kind: 'map', id: 'virt@m' }, requestId: `r${i}` })
const entry = (i: number, revision: number | null): AuditRecord => mapPutAuditRecord('virt@m', i, `k${i}`, revision)

const store = await SqliteStore.open(file)
await store.commit([{ op: 'map.replace', name: 'virt@m', entries: [] }], meta(0))
say('ready')
if (mode === 'writes') {
  for (let i = 1; i <= Number(count); i++) {
    const revision = await store.commit([{ op: 'map.set', name: 'virt@m', key: `k${i}`, value: `v${i}` }], meta(i))
    say(`committed ${i} ${revision}`)
    await store.appendAudit([entry(i, revision)])
    say(`audited ${i}`)
  }
  say('done')
  await store.close()
} else if (mode === 'burst') {
  await Promise.all(Array.from({ length: Number(count) }, async (_, j) => {
    const i = j + 1
    await store.commit([{ op: 'map.set', name: 'virt@m', key: `k${i}`, value: `v${i}` }], meta(i))
  }))
  say('done')
  await store.close()
} else if (mode === 'audit') {
  await store.appendAudit([entry(1, null)])
  say('audited 1')
  await sleep(1000)
  say('idle')
  await store.close()
} else if (mode === 'forever') {
  let next = 1
  const writer = async (): Promise<never> => {
    for (;;) {
      const i = next++
      const revision = await store.commit([{ op: 'map.set', name: 'virt@m', key: `k${i}`, value: `v${i}` }], meta(i))
      say(`ack ${i} ${revision}`)
    }
  }
  await Promise.all(Array.from({ length: Number(count) }, writer))
}
