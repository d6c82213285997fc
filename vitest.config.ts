import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/chaos/**', 'test/heavy/**', 'node_modules/**'],
    // Generous: CLI tests spawn processes through tsx, slow on a loaded 2-core machine. Assertions still fail fast.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Integration files share one Postgres server and one Redis; each uses its own database and queue prefix.
    maxWorkers: 2,
    globalSetup: ['test/global-setup.ts'],
  },
})
