import { defineConfig } from 'vitest/config'

// Two projects. `unit`: pure functions and source checks, no server (`npx vitest run --project unit`
// takes a second). `stack`: everything that talks to real servers, with the test stack (or the compose
// environment) brought up once per run by the global setup and stopped at the end.
const UNIT = ['src/**/*.unit.test.ts', 'loadtest/**/*.unit.test.ts', 'test/unit/**/*.test.ts']

export default defineConfig({
  test: {
    // Separate processes, one file at a time: some tests stop and start Redis or the replica of the
    // one shared stack, which would break any test running beside them.
    pool: 'forks',
    fileParallelism: false,
    hookTimeout: 60_000,
    testTimeout: 30_000,
    teardownTimeout: 60_000,
    // In CI a JSON report as well, from which .ci/run prints the plain "N passed, N failed" line.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.stack/test-results.json' },
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      {
        extends: true,
        test: {
          name: 'stack',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'loadtest/**/*.test.ts'],
          exclude: UNIT,
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
})
