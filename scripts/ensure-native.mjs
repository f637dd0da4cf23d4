#!/usr/bin/env node
// Makes sure better-sqlite3's native addon loads in the Node.js running this script, and builds it
// from source when it does not. Run before everything that may open the SQLite store (test, demo,
// start, dev, bench); exits at once when the addon already loads.
//
// Why it is needed: the project's .npmrc sets ignore-scripts=true (no package's install script runs
// on `npm ci`), so better-sqlite3's install step never runs; and its usual way, prebuild-install,
// downloads a prebuilt binary from GitHub, which the machines of this project cannot reach. So the
// addon is compiled here with node-gyp (python3, make, a C++ compiler and Node's headers; about a
// minute on two cores). An addon built for another Node.js ABI (after switching Node versions) does
// not load either, and is rebuilt the same way.
//
//   node scripts/ensure-native.mjs           check, build when needed, check again
//   node scripts/ensure-native.mjs --check   check only: exit 1 when the addon does not load
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(join(root, 'package.json'))
const log = msg => process.stderr.write(`ensure-native: ${msg}\n`)
const node = `Node.js ${process.version} (ABI ${process.versions.modules})`

/** Why the addon does not work in this process, or undefined when it does. */
function problem () {
  try {
    const Database = require('better-sqlite3')
    const db = new Database(':memory:')
    db.prepare('SELECT 1').get()
    db.close()
    return undefined
  } catch (err) {
    return String(err?.message ?? err).split('\n')[0]
  }
}

const why = problem()
if (process.argv.includes('--check')) {
  if (why !== undefined) log(`better-sqlite3 does not load in ${node}: ${why}`)
  process.exit(why === undefined ? 0 : 1)
}
if (why === undefined) process.exit(0)

let pkg
try {
  pkg = dirname(require.resolve('better-sqlite3/package.json'))
} catch {
  log('better-sqlite3 is not installed: run `npm ci` first')
  process.exit(1)
}
log(`better-sqlite3 does not load in ${node}: ${why}`)
log(`building it from source in ${pkg} with node-gyp (needs python3, make and g++; about a minute)…`)

// `npm rebuild` runs the package's own install script, `prebuild-install || node-gyp rebuild
// --release`, with npm's bundled node-gyp. buildFromSource makes prebuild-install give up at once
// instead of trying GitHub: offline it fails fast here, but behind a firewall that drops packets it
// would hang until a timeout. Set through prebuild-install's own rc variable rather than
// npm_config_build_from_source, which npm warns is an unknown config of its own.
const env = { ...process.env, 'prebuild-install_buildFromSource': 'true' }
// Headers next to this node (Debian's nodejs + libnode-dev, the official images, nvm, tarballs)
// are the right ones for it by construction; without them node-gyp would download them.
const prefix = resolve(dirname(process.execPath), '..')
if (env.npm_config_nodedir === undefined && existsSync(join(prefix, 'include', 'node', 'node.h'))) {
  env.npm_config_nodedir = prefix
  log(`using the Node.js headers in ${join(prefix, 'include', 'node')}`)
}
// Under `npm run`, npm_execpath is the npm that runs us: use the same one.
const npm = process.env.npm_execpath?.endsWith('.js')
  ? [process.execPath, process.env.npm_execpath]
  : [process.platform === 'win32' ? 'npm.cmd' : 'npm']
const args = ['rebuild', 'better-sqlite3', '--ignore-scripts=false', '--no-audit', '--no-fund']
log(`$ ${[...npm.slice(npm.length - 1), ...args].join(' ')}`)
const started = Date.now()
const run = spawnSync(npm[0], [...npm.slice(1), ...args], { cwd: root, env, stdio: 'inherit' })
if (run.error !== undefined || run.status !== 0) {
  log(`the build failed (${run.error?.message ?? `exit code ${run.status}`}); npm's output above says why.`)
  log('it needs python3, make, g++ and the Node.js headers (npm config nodedir, or a download)')
  process.exit(1)
}

// Checked in a fresh process: this one has already failed to load the old addon.
const check = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--check'], { cwd: root, stdio: 'inherit' })
if (check.status !== 0) {
  log('built, but it still does not load')
  process.exit(1)
}
log(`built in ${Math.round((Date.now() - started) / 1000)} s; better-sqlite3 loads in ${node}`)
