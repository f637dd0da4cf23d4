/**
 * What hapctl keeps but HAProxy does not have (yet): just after a restart or reload, before the
 * reconciler has put it back (or for good, when it cannot: GET /status says why). A 404 would tell the
 * client it is gone, and it would create it again; 503 RESTORING says to retry.
 */
import { OperationError } from '../engine/outcomes.ts'

/**
 * Runs `fn`; a not-found failure of something `kept` names (its description, or undefined when hapctl
 * does not keep it) becomes RESTORING.
 */
export async function orRestoring<T> (fn: () => Promise<T>, kept: (err: OperationError) => Promise<string | undefined>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (!(err instanceof OperationError) || (err.reason !== 'BACKEND_NOT_FOUND' && err.reason !== 'SERVER_NOT_FOUND')) throw err
    const what = await kept(err)
    if (what === undefined) throw err
    throw new OperationError('RESTORING', `hapctl keeps ${what} but HAProxy does not have it (yet): after a restart or reload it is put back within a second; retry (if this lasts, GET /status says why)`, { cause: err })
  }
}
