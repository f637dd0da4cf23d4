/**
 * Headless Chromium for the tests that drive a page (Swagger UI at /docs), through `playwright-core`:
 * the library only, never a browser download (the registry is all CI can reach), so the browser is
 * the machine's own, Debian's `chromium` package (.ci/run installs it when it is missing).
 *
 *   const browser = chromiumPath()
 *   describe.skipIf(browser === undefined)(…, () => { … await launchChromium(browser) … })
 */
import { accessSync, constants } from 'node:fs'
import { chromium } from 'playwright-core'
import type { Browser } from 'playwright-core'

/** Where Debian's `chromium` package puts its launcher; HAPCTL_TEST_CHROMIUM names another browser. */
export const DEFAULT_CHROMIUM = '/usr/bin/chromium'

/** What a skipped browser test says, so that whoever reads the report knows how to run it. */
export function noBrowserMessage (): string {
  return `no Chromium at ${process.env.HAPCTL_TEST_CHROMIUM || DEFAULT_CHROMIUM}: install Debian's ` +
    '(`apt-get install -y chromium`; .ci/run does it) or set HAPCTL_TEST_CHROMIUM to a Chromium or Chrome executable'
}

/** The Chromium executable to drive, or undefined when none is installed. */
export function chromiumPath (): string | undefined {
  const path = process.env.HAPCTL_TEST_CHROMIUM || DEFAULT_CHROMIUM
  try {
    accessSync(path, constants.X_OK)
    return path
  } catch {
    return undefined
  }
}

/**
 * Launches the browser headless. `--no-sandbox`: CI runs as root, where Chromium refuses its sandbox;
 * the pages it opens are our own, on loopback. `--disable-dev-shm-usage`: /dev/shm is small in
 * containers, and Chromium crashes tabs that outgrow it.
 */
export async function launchChromium (executablePath: string): Promise<Browser> {
  return await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu']
  })
}
