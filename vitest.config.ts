import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'loadtest/**/*.test.ts'],
    // Brings up the test stack (or the compose environment) once per run and stops it at the end.
    globalSetup: ['test/global-setup.ts'],
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
  },
})
