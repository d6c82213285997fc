/**
 * Every request the provider may have seen is an issuance_attempts row, on real Postgres, Redis and
 * the sandbox: the row is written ('sent') before an issue request leaves and completed when its
 * answer is recorded; a worker that dies mid-call leaves its 'sent' row, and the worker that takes the
 * receipt over numbers its attempt next (attempt numbers stay consecutive).
 */
import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import type { Sandbox } from '../../sandbox/index.ts'
import { claimReceipts, fenceSend } from '../../src/db/ledger.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv
useSandboxEnv({ env: { RECOVERY_INTERVAL_MS: '0' } }, (s, e) => ((sandbox = s), (env = e)))

const db = () => env.app.db()
const attemptsOf = (receiptId: number) =>
  db()
    .selectFrom('issuance_attempts')
    .select(['id', 'attempt_no', 'operation', 'outcome', 'finished_at', 'latency_ms', 'worker_id'])
    .where('receipt_id', '=', receiptId)
    .orderBy('started_at')
    .orderBy('id')
    .execute()

describe('issuance attempts', () => {
  it('are written as sent before the issue request leaves, and completed by its answer', async () => {
    await importDay(env.app, { businessDate: '2026-10-05', count: 4, seed: 3, providers: ['portone-v2'], idPrefix: 'AS' })
    // Every request waits 1.5 s at the sandbox before it is handled: the answer is still out.
    sandbox.setFaults('portone-v2:latency=1500')
    const s = await settle(env.app, '2026-10-05')
    const worker = env.newApp().startWorker({ concurrency: 4 })
    const rows = await db().selectFrom('receipts').select(['id']).where('run_id', '=', s.runId!).where('state', '!=', 'skipped').orderBy('id').execute()
    expect(rows.length).toBeGreaterThan(0)
    const inFlight = await eventually(
      async () => {
        const a = await db()
          .selectFrom('issuance_attempts')
          .selectAll()
          .where(
            'receipt_id',
            'in',
            rows.map((r) => r.id),
          )
          .where('operation', '=', 'issue')
          .execute()
        return a.length ? a : undefined
      },
      20_000,
      20,
    )
    // The sandbox has not answered yet: the row is there, open.
    expect(sandbox.stats().providers['portone-v2']?.issued ?? 0).toBe(0)
    expect(inFlight[0]).toMatchObject({ outcome: 'sent', finished_at: null, latency_ms: null, attempt_no: 1 })

    const report = await waitForRun(env.app, s.runId!, 30_000)
    await worker.close()
    expect(report.totals.failed).toBe(0)
    for (const r of rows) {
      const a = await attemptsOf(r.id)
      // One row per request: the 'sent' row became the answer, none was added beside it.
      expect(a.filter((x) => x.operation === 'issue').map((x) => [x.attempt_no, x.outcome])).toEqual([[1, 'issued']])
      expect(a.every((x) => x.finished_at !== null && x.latency_ms !== null)).toBe(true)
    }
  }, 60_000)

  it('a worker killed mid-call leaves its sent row; the takeover numbers its attempt next and looks up first', async () => {
    await importDay(env.app, { businessDate: '2026-10-06', count: 4, seed: 4, providers: ['payssam'], idPrefix: 'AK' })
    const s = await settle(env.app, '2026-10-06')
    const [row] = await db().selectFrom('receipts').selectAll().where('run_id', '=', s.runId!).where('state', '=', 'pending').orderBy('id').limit(1).execute()
    expect(row).toBeDefined()
    // Worker "dead-1" claims the row and passes the fence for its issue request, then dies before any answer.
    const claimed = (await claimReceipts(db(), [row!.id], 'dead-1', 60_000)).get(row!.id)
    expect(claimed?.status).toBe('claimed')
    expect(await fenceSend(db(), row!.id, 'dead-1', 20_000, { operation: 'issue', attemptNo: 1, jobId: null })).not.toBeNull()
    await sql`UPDATE receipts SET locked_until = now() - interval '1 second' WHERE id = ${row!.id}`.execute(db())

    const worker = env.newApp().startWorker({ concurrency: 4 })
    await waitForRun(env.app, s.runId!, 30_000)
    await worker.close()
    const done = await db().selectFrom('receipts').select(['state', 'attempts']).where('id', '=', row!.id).executeTakeFirstOrThrow()
    expect(done).toEqual({ state: 'issued', attempts: 2 })
    const a = await attemptsOf(row!.id)
    // attempt 1: the killed worker's request, still 'sent'; attempt 2: the takeover's lookup, then its issue.
    expect(a.map((x) => [x.attempt_no, x.operation, x.outcome])).toEqual([
      [1, 'issue', 'sent'],
      [2, 'lookup', 'not_found'],
      [2, 'issue', 'issued'],
    ])
    expect(a[0]!.worker_id).toBe('dead-1')
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  }, 60_000)
})
