import { defineConfig } from 'vitest/config'

/*
 * Two projects: `unit` needs nothing but Node; `integration` installs (once, cached in .haproxy/) and
 * runs real HAProxy 3.4 processes, so its global setup fetches the binary before any test starts.
 * The JSON report is what .ci/run turns into its `N passed, N failed` line.
 */
export default defineConfig({
  test: {
    reporters: ['default', ['json', { outputFile: '.tmp/vitest-report.json' }]],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/integration/**'],
          environment: 'node',
          sequence: { groupOrder: 0 }
        }
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/helpers/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
          // Each file starts its own HAProxy on free ports; two cores, so keep the fan-out small.
          maxWorkers: 2,
          // Runs after the unit project (vitest needs distinct groups for different maxWorkers).
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
