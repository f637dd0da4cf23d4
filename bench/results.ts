/**
 * The result file of a run: bench/results/<UTC date and time>-<git short sha>.json, with the table's
 * rows and what is needed to compare two runs (machine, load, versions, settings, the commit and
 * whether the work tree had changes).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rowJson } from './measure.ts'
import type { Row } from './measure.ts'
import type { TargetResult } from './targets.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const RESULTS_DIR = join(ROOT, 'bench', 'results')

function git (args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return undefined
  }
}

export type GitState = { commit: string | null, short: string, uncommitted: string[] }

/**
 * The commit and the files of src/, bench/ and package.json not committed, taken when the run starts
 * (when hapctl loads its code): others may commit while it runs.
 */
export function gitState (): GitState {
  const uncommitted = (git(['status', '--porcelain', '--', 'src', 'bench', 'package.json']) ?? '').split('\n')
    .filter(l => l !== '' && !l.includes('bench/results/')).map(l => l.trim())
  return { commit: git(['rev-parse', 'HEAD']) ?? null, short: git(['rev-parse', '--short', 'HEAD']) ?? 'nogit', uncommitted }
}

export type Machine = {
  node: string
  platform: string
  kernel: string
  cpus: { count: number, model: string }
  memoryMiB: number
  loadAverage: { start: number[], end?: number[] }
}

export function machine (): Machine {
  const cpus = os.cpus()
  return {
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    cpus: { count: cpus.length, model: cpus[0]?.model.trim() ?? 'unknown' },
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage: { start: os.loadavg().map(l => Number(l.toFixed(2))) }
  }
}

export type RunInfo = {
  startedAt: Date
  git: GitState
  seconds: number
  machine: Machine
  haproxy: string
  /** How hapctl ran: its own process or in the bench's, and the settings it was given. */
  hapctl: Record<string, unknown>
  phases: string[]
  notes: Record<string, unknown>
  targets: TargetResult[]
}

/** Writes the run's JSON file and returns its path. */
export function writeResults (info: RunInfo, rows: readonly Row[]): string {
  const sha = info.git.short
  const stamp = info.startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${stamp}-${sha}.json`)
  const doc = {
    startedAt: info.startedAt.toISOString(),
    seconds: Number(info.seconds.toFixed(1)),
    // Changes in src/ or bench/ that were not committed make the numbers those of no commit: say so.
    git: info.git,
    machine: { ...info.machine, loadAverage: { ...info.machine.loadAverage, end: os.loadavg().map(l => Number(l.toFixed(2))) } },
    haproxy: info.haproxy,
    hapctl: info.hapctl,
    phases: info.phases,
    notes: info.notes,
    rows: rows.map(rowJson),
    targets: info.targets
  }
  writeFileSync(file, JSON.stringify(doc, null, 2) + '\n')
  return file
}
