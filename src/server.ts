/**
 * The executable: reads the configuration, builds the app, listens, and closes gracefully on
 * SIGINT/SIGTERM. Nothing else starts the service. Start-up failures are one line on stderr and
 * exit code 1: an operator needs the reason, not a stack trace.
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'

function fail (err: unknown): never {
  process.stderr.write(`hapctl: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
}

let config
try {
  config = loadConfig(process.env)
} catch (err) {
  fail(err)
}

const app = await buildApp({ config }).catch(fail)
// On SIGTERM/SIGINT: stop taking requests, let running operations finish or put back what they
// changed (src/plugins/shutdown.ts), then exit 0. Past the grace, exit 1 anyway: what is left
// half-done, the reconciler of the next start brings back to the desired state.
closeWithGrace({
  delay: config.shutdownGraceMs,
  // With a tokens file, SIGHUP re-reads it (src/plugins/auth.ts) instead of shutting down.
  skip: config.tokensFile !== undefined ? ['SIGHUP'] : [],
  logger: { error: (err: unknown) => { app.log.error({ err }, 'the shutdown failed') } },
  onTimeout: (ms) => { app.log.error({ graceMs: ms }, 'operations still running when the shutdown grace ran out; exiting (the next start reconciles them)') },
  onSecondSignal: (signal) => { app.log.error({ signal }, 'second signal during the shutdown; exiting now (the next start reconciles what was running)') }
}, async function ({ signal, err }) {
  if (err !== undefined) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down')
  await app.close()
})
try {
  await app.listen({ host: config.host, port: config.port })
} catch (err) {
  await app.close().catch(() => {})
  fail(new Error(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`))
}
