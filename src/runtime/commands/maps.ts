/**
 * Map commands.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { Command } from './core.ts'
import { expectEmpty, line } from './core.ts'
import { checkMapName } from '../validation.ts'

// --- maps (the single-entry forms; the maps resource builds on these) -------------------------

/** `add map <map> <key> <value>` (management §9.3): answers an empty line; never de-duplicates. */
export function addMapEntry (map: string, key: string, value: string): Command<void> {
  const verb = 'add map'
  return { text: line(verb, checkMapName(map), key, value), verb, parse: expectEmpty(verb) }
}
