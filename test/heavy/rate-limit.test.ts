/**
 * Two worker processes share one bottleneck limiter per (provider, credential) through Redis, so
 * together they stay under a provider's rate limit — measured at the sandbox, which answers 429
 * past the limit and counts it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, spawnCli, stopChild, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0, rateLimits: 'payssam=20' })
  // 1000 ms / 60 ms ≈ 16.7 calls/s per credential across all processes, under the sandbox's 20/s.
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { PAYSSAM_MIN_TIME_MS: '60', PAYSSAM_MAX_CONCURRENT: '4' } })
})

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

it('two worker processes together never exceed the provider rate limit', async () => {
  const app = env.app
  await importDay(app, { businessDate: '2026-08-01', count: 90, seed: 9, providers: ['payssam'], idPrefix: 'RL' })
  const summary = await settle(app, '2026-08-01')
  const workers = [spawnCli(['worker', '--concurrency', '8'], env.env()), spawnCli(['worker', '--concurrency', '8'], env.env())]
  try {
    const report = await waitForRun(app, summary.runId!, 180_000)
    expect(report.totals.failed).toBe(0)
    expect(report.totals.issued).toBe(summary.created)
  } finally {
    await Promise.all(workers.map((w) => stopChild(w)))
  }
  const stats = sandbox.stats().providers.payssam!
  expect(stats.requests).toBeGreaterThanOrEqual(summary.created)
  expect(stats.rate_limited).toBe(0)
  // Both processes did work (the limit held across processes, not inside one).
  const byWorker = await app.db().selectFrom('issuance_attempts').select(['worker_id']).distinct().execute()
  expect(byWorker.length).toBe(2)
})
