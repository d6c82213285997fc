/**
 * A worker process killed with SIGKILL in the middle of a provider call — after the provider
 * committed the receipt — leaves no duplicate, and the receipt ends issued: the next worker takes the
 * row over when the lease and the job lock expire, looks the key up first, and records what it finds.
 * Uses the NTS-style sandbox, which (like NTS) does not reject a second issue for the same reference.
 */
import { expect, it } from 'vitest'
import type { Sandbox } from '../../sandbox/index.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'
import { importDay, settle, spawnCli, stopChild, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv

useSandboxEnv(
  { env: { WORKER_LOCK_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000', WORKER_LEASE_MS: '2000', HTTP_READ_TIMEOUT_MS: '30000' }, reset: false },
  (s, e) => ((sandbox = s), (env = e)),
)

it('a SIGKILLed worker mid-call leaves no duplicate and the receipt ends issued', async () => {
  const app = env.app
  await importDay(app, { businessDate: '2026-09-01', count: 6, seed: 7, providers: ['nts'], idPrefix: 'KILL' })
  // The next NTS issue call commits at the sandbox and then never answers.
  const res = await fetch(`${sandbox.url}/_sandbox/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ provider: 'nts', next: ['timeout_after_commit'] }),
  })
  expect(res.ok).toBe(true)

  const summary = await settle(app, '2026-09-01')
  const toIssue = summary.created
  expect(toIssue).toBeGreaterThan(0)

  const first = spawnCli(['worker', '--concurrency', '1'], env.env())
  // Wait until the provider holds a receipt while our row is still `issuing`: the call is in flight.
  const inFlight = await eventually(async () => {
    if (sandbox.stats().providers.nts!.issued < 1) return undefined
    return app.db().selectFrom('receipts').select(['id', 'transaction_id']).where('state', '=', 'issuing').executeTakeFirst()
  }, 120_000)
  first.kill('SIGKILL')
  await stopChild(first, 'SIGKILL')

  const second = spawnCli(['worker', '--concurrency', '2'], env.env())
  try {
    const report = await waitForRun(app, summary.runId!, 180_000)
    expect(report.totals.issued).toBe(toIssue)
    expect(report.totals.failed).toBe(0)
  } finally {
    await stopChild(second)
  }

  const stats = sandbox.stats()
  expect(stats.providers.nts!.issued).toBe(toIssue) // no second receipt for the killed call
  expect(stats.max_live_receipts_per_key).toBe(1)
  const attempts = await app
    .db()
    .selectFrom('issuance_attempts')
    .select(['operation', 'outcome', 'attempt_no'])
    .where('receipt_id', '=', inFlight.id)
    .orderBy('started_at')
    .orderBy('id')
    .execute()
  // The killed worker's request is in the ledger ('sent', written before it left, never answered) ...
  expect(attempts[0]).toEqual({ operation: 'issue', outcome: 'sent', attempt_no: 1 })
  // ... and the taken-over attempt, numbered next, looked the key up and found the receipt it had created.
  expect(attempts).toContainEqual({ operation: 'lookup', outcome: 'issued', attempt_no: 2 })
  expect(attempts.filter((a) => a.operation === 'issue' && a.outcome === 'issued')).toHaveLength(0)
  expect(attempts.filter((a) => a.operation === 'issue')).toHaveLength(1)
})
