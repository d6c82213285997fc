import { defineConfig } from 'vitest/config'

// Heavy tests (the quick chaos run with its worker processes and own Redis; the 200 MB import) run
// one at a time after the rest of the suite, so they neither slow other files down nor are slowed.
export default defineConfig({
  test: {
    include: ['test/heavy/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    globalSetup: ['test/global-setup.ts'],
  },
})
