import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TestProject } from 'vitest/node'

/*
 * Global setup of the `integration` project: makes sure HAProxy 3.4 is installed (scripts/install-haproxy.sh
 * is idempotent and caches it in .haproxy/) before any test file starts, then hands the binary's path
 * to the test workers (`inject('haproxyBin')`, and HAPCTL_HAPROXY_BIN for code that runs outside vitest).
 */

declare module 'vitest' {
  export interface ProvidedContext {
    haproxyBin: string
  }
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

function installHaproxy (): Promise<string> {
  return new Promise((resolve, reject) => {
    // stderr is inherited so the download progress / apt errors show up in the vitest output.
    const child = spawn('bash', ['scripts/install-haproxy.sh'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => { stdout += chunk })
    child.once('error', (err) => reject(new Error(`hapctl integration tests: cannot run scripts/install-haproxy.sh: ${err.message}`)))
    child.once('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(
          `hapctl integration tests: scripts/install-haproxy.sh failed (${signal ?? `exit code ${code}`}); ` +
          'its stderr is above. The integration suite needs HAProxy 3.4 (run `npm run haproxy:install`).'
        ))
        return
      }
      const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean)
      const bin = lines.at(-1)
      if (!bin) {
        reject(new Error('hapctl integration tests: scripts/install-haproxy.sh printed no binary path'))
        return
      }
      resolve(bin)
    })
  })
}

export async function setup ({ provide }: TestProject): Promise<void> {
  const bin = await installHaproxy()
  try {
    accessSync(bin, constants.X_OK)
  } catch {
    throw new Error(`hapctl integration tests: scripts/install-haproxy.sh printed ${JSON.stringify(bin)}, which is not an executable file`)
  }
  provide('haproxyBin', bin)
  process.env.HAPCTL_HAPROXY_BIN = bin
}
