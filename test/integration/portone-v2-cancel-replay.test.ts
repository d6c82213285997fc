/**
 * PortOne V2 keeps a completed request's answer for its Idempotency-Key, a PG failure's 502 included.
 * Through the worker, on real Postgres, Redis and the sandbox: a cancel whose first request met a PG
 * failure is not failed after its attempts (every retry under the key would get the same 502) but
 * completes once, under the key derived from the next attempt's number (docs/providers.md §2).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox | undefined
let env: TestEnv | undefined

afterEach(async () => {
  await env?.close()
  await sandbox?.close()
  env = undefined
  sandbox = undefined
})

describe('PortOne V2 cancel through the worker', () => {
  it('a cancel answered 502 PG_PROVIDER (replayed for its key) completes once on the next attempt', async () => {
    sandbox = await startSandbox({ port: 0 })
    env = await createTestEnv({ sandboxUrl: sandbox.url, env: { RECOVERY_INTERVAL_MS: '0', WORKER_BACKOFF_MS: '50' } })
    const app = env.app
    await importDay(app, { businessDate: '2026-07-02', count: 4, seed: 7, providers: ['portone-v2'], idPrefix: 'V2CX' })
    const s = await settle(app, '2026-07-02')
    app.startWorker({ concurrency: 2 })
    const report = await waitForRun(app, s.runId!)
    expect(report.totals.issued).toBeGreaterThan(0)
    const issue = await app
      .db()
      .selectFrom('receipts')
      .selectAll()
      .where('run_id', '=', s.runId!)
      .where('kind', '=', 'issue')
      .where('state', '=', 'issued')
      .orderBy('id')
      .executeTakeFirstOrThrow()

    // The PG fails the cancel; the adapter's read of the receipt right after meets a server error on
    // each of its three tries (p-retry: 2 retries), so the first attempt ends with the 502 unresolved.
    sandbox.forceNext('portone-v2', ['5xx', '5xx', '5xx', '5xx'])
    const req = await app.cancel({ transactionId: issue.transaction_id, reason: 1 })
    const cancelRow = await eventually(
      async () => {
        const r = await app.db().selectFrom('receipts').selectAll().where('id', '=', req.cancelReceiptId).executeTakeFirstOrThrow()
        return r.state === 'issued' || r.state === 'failed' ? r : undefined
      },
      30_000,
      100,
    )
    expect(cancelRow.state).toBe('issued')
    expect(cancelRow.attempts).toBe(2)
    const parent = await app.db().selectFrom('receipts').select(['state']).where('id', '=', issue.id).executeTakeFirstOrThrow()
    expect(parent.state).toBe('cancelled')
    expect(sandbox.stats().providers['portone-v2']!.cancelled).toBe(1)
    const held = sandbox.receipts('portone-v2').filter((r) => r.key === issue.provider_key)
    expect(held.map((r) => r.status)).toEqual(['cancelled'])

    // Attempt 1: the 502, the failed reads, the read-back (issued); attempt 2: lookup, the replayed 502,
    // the read (issued), the cancel under the derived key.
    const calls = await app
      .db()
      .selectFrom('issuance_attempts')
      .select(['operation', 'attempt_no', 'http_status'])
      .where('receipt_id', '=', req.cancelReceiptId)
      .orderBy('id')
      .execute()
    expect(calls.filter((c) => c.operation === 'cancel').map((c) => [c.attempt_no, c.http_status])).toEqual([
      [1, 502],
      [2, 502],
      [2, 200],
    ])
  })
})
