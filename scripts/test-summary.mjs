#!/usr/bin/env node
// Prints the `N passed, N failed[, N skipped]` line CI reads, from vitest's own JSON report
// (written by the json reporter configured in vitest.config.ts). A test file that failed to load
// has no test results of its own, so it counts as one failure.
import { readFileSync } from 'node:fs'

const file = process.argv[2] ?? '.tmp/vitest-report.json'
let report
try {
  report = JSON.parse(readFileSync(file, 'utf8'))
} catch (err) {
  console.error(`no vitest report at ${file} (${err.code ?? err.message}): the test run did not finish`)
  console.log('0 passed, 1 failed')
  process.exit(1)
}
const brokenFiles = (report.testResults ?? []).filter(r => r.status === 'failed' && (r.assertionResults ?? []).length === 0).length
const passed = report.numPassedTests ?? 0
let failed = (report.numFailedTests ?? 0) + brokenFiles
// An error outside any test (a broken config, an unhandled rejection) fails the run without failing a test.
if (report.success === false && failed === 0) failed = 1
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
