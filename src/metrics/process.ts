/**
 * The Node process's own metrics (CPU, memory, file descriptors, event loop delay, GC: prom-client's
 * default set, `process_*` and `nodejs_*`), in one registry per process, created at the first scrape:
 * they describe the process, not an app, and each set starts an event-loop monitor and a GC observer
 * that nothing stops (tests build many apps in one process).
 * @see https://github.com/siimon/prom-client#default-metrics
 */
import { Registry, collectDefaultMetrics } from 'prom-client'

let registry: Registry | undefined

export function processMetrics (): Registry {
  if (registry === undefined) {
    registry = new Registry()
    collectDefaultMetrics({ register: registry })
  }
  return registry
}
