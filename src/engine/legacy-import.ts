/**
 * One-time import of HAPCTL_STATE_FILE, the file in which hapctl kept its backends before the store.
 * Those backends still exist only while the HAProxy process they were created in runs, so they are
 * imported (as desired backends, with the mode and published flag HAProxy reports now) only when
 * that process still answers; otherwise they are gone and there is nothing to keep. The file is then
 * renamed to `<file>.imported` so that it is read exactly once, and the log says what happened.
 */
import { renameSync } from 'node:fs'
import type { Runtime } from '../runtime/client.ts'
import * as cmd from '../runtime/commands/index.ts'
import { BACKEND_STAT, backendsFromStat } from '../resources/backends/view.ts'
import { processIdOf } from './identity.ts'
import { readLegacyStateFile } from './store/legacy-state-file.ts'
import type { DesiredChange, DesiredStateStore } from './store/types.ts'
import type { Logger } from '../logger.ts'

export async function importLegacyStateFile (file: string, deps: { runtime: Runtime, store: DesiredStateStore, logger: Logger<'info' | 'warn'> }): Promise<void> {
  const legacy = readLegacyStateFile(file)
  if (legacy === undefined) return
  const { runtime, store, logger } = deps
  let info, stat
  try {
    [info, stat] = await runtime.execute([cmd.showInfo(), cmd.showStat(undefined, BACKEND_STAT)])
  } catch (err) {
    // Without HAProxy nothing can be told; try again at the next start rather than lose the file.
    logger.warn({ file, err: (err as Error).message }, 'HAPCTL_STATE_FILE not imported yet: HAProxy did not answer; it will be tried again at the next start')
    return
  }
  const here = processIdOf(info)
  const changes: DesiredChange[] = []
  const imported: string[] = []
  if (legacy.process === here) {
    const live = new Map(backendsFromStat(stat, () => undefined).map(b => [b.name, b]))
    for (const b of legacy.backends) {
      const now = live.get(b.name)
      if (now === undefined || await store.getBackend(b.name) !== undefined) continue
      changes.push({ op: 'backend.put', backend: { name: b.name, from: b.from, mode: now.mode, published: now.published } })
      imported.push(b.name)
    }
  }
  if (changes.length > 0) {
    await store.commit(changes, { actor: 'import', action: 'import', target: { kind: 'state-file', id: file } })
    for (const name of imported) await store.setCreatedIn(name, here)
  }
  try {
    renameSync(file, `${file}.imported`)
  } catch (err) {
    logger.warn({ file, err: (err as Error).message }, 'HAPCTL_STATE_FILE imported but could not be renamed; it will be read again at the next start (harmless)')
  }
  logger.info({ file, imported, skipped: legacy.backends.length - imported.length, sameProcess: legacy.process === here },
    `HAPCTL_STATE_FILE imported into the desired-state store (${imported.length} backend(s)) and renamed to ${file}.imported; it is no longer read. ` +
    'Servers of those backends are not in the file and were not imported: re-add them through the API for hapctl to keep them')
}
