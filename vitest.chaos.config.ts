import { defineConfig } from 'vitest/config'

// The quick chaos run spawns worker processes, a sandbox and its own Redis: it runs alone, after
// the rest of the suite, so it neither slows other files down nor is slowed by them.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    globalSetup: ['test/global-setup.ts'],
  },
})
