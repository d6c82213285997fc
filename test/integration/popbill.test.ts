/**
 * A day including Popbill, end to end on real Postgres, Redis and the sandbox over HTTP: every
 * Popbill receipt is answered at state 300 and recorded issued + provisional; reconcile leaves them
 * until the midnight NTS filing, then finalises the filed ones (304) and fails the refused ones (305)
 * with their ntsresultCode, which the report, the metrics and a re-drive by class then see; the
 * re-drive issues again under the same mgtKey; a partial cancel is a revocation receipt; the sandbox
 * never holds two live receipts for one mgtKey.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { requestCancellation } from '../../src/jobs/cancel-receipt.ts'
import { buildReport } from '../../src/report/report.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'
import { parseExposition } from '../helpers/prometheus-text.ts'

const TOKEN = 'popbill-test-token'
let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '3', DASHBOARD_TOKEN: TOKEN, METRICS_CACHE_MS: '0' } })
  env.app.startWorker({ concurrency: 8 })
})
afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const DAY = '2026-09-01'
const popbillRows = () =>
  env.app.db().selectFrom('receipts').selectAll().where('kind', '=', 'issue').where('provider', '=', 'popbill').where('trade_date', '=', DAY).orderBy('id').execute()

describe('a day including Popbill', () => {
  it('issues completely, provisionally; reconcile finalises the filed ones (304) and fails the refused ones (305)', async () => {
    const app = env.app
    const deps = { db: app.db(), providers: app.providers(), logger: app.logger }
    // The first two Popbill issues will be refused at the NTS filing.
    sandbox.popbill.failNext(['TS1', 'TS4'])
    const day = await importDay(app, { businessDate: DAY, count: 60, seed: 43, providers: ['popbill', 'payssam', 'nts'], idPrefix: 'PB' })
    expect(day.rows.filter((r) => r.provider === 'popbill').length).toBeGreaterThan(10)
    const summary = await settle(app, DAY)
    const report = await waitForRun(app, summary.runId!)
    expect(report.totals.pending).toBe(0)
    expect(report.totals.failed).toBe(0)
    expect(report.totals.issued + report.totals.skipped).toBe(60)
    expect(report.by_provider.popbill!.issued).toBeGreaterThan(10)

    const issued = (await popbillRows()).filter((r) => r.state === 'issued')
    expect(issued.length).toBe(report.by_provider.popbill!.issued)
    expect(issued.every((r) => r.provisional && /^\d{9}$/.test(r.approval_number ?? '') && r.provider_key.length <= 24)).toBe(true)

    const dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
    const gauge = async (name: string) => {
      const res = await fetch(`${dashboard.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      return (parseExposition(await res.text()).get(name)?.samples ?? []).filter((s) => s.labels.provider === 'popbill')
    }
    expect((await gauge('cash_receipts_provisional_receipts')).map((s) => s.value)).toEqual([issued.length])
    // Before the filing: nothing moves.
    const early = await reconcileDay(deps, DAY, '2026-09-02')
    expect(early.finalized).toEqual([])
    expect(early.rejected).toEqual([])
    expect(early.provisional).toBe(issued.length)
    expect(early.flagged).toEqual([])

    // Midnight filing: 304 for all but the two refused (305).
    sandbox.popbill.fileNow()
    const late = await reconcileDay(deps, '2026-09-02', '2026-09-03')
    expect(late.finalized.length).toBe(issued.length - 2)
    expect(late.rejected.map((r) => r.code).sort()).toEqual(['TS1', 'TS4'])
    expect(late.provisional).toBe(0)

    const after = await popbillRows()
    expect(after.filter((r) => r.provisional)).toEqual([])
    const failed = after.filter((r) => r.state === 'failed')
    expect(failed.map((r) => [r.error_class, r.error_code]).sort()).toEqual([
      ['tax_authority', 'TS1'],
      ['tax_authority', 'TS4'],
    ])
    const reported = await buildReport(app.db(), { runId: summary.runId! })
    expect(reported.totals.failed).toBe(2)
    expect(
      reported.failures
        .filter((f) => f.error_class === 'tax_authority')
        .map((f) => f.code)
        .sort(),
    ).toEqual(['TS1', 'TS4'])
    expect((await gauge('cash_receipts_tax_authority_refusals')).map((s) => [s.labels.code, s.value]).sort()).toEqual([
      ['TS1', 1],
      ['TS4', 1],
    ])
    expect(await gauge('cash_receipts_provisional_receipts')).toEqual([])
    await dashboard.close()

    // Re-drive by class: the refused receipts hold their mgtKeys; the adapter deletes them and issues again.
    const rd = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-09-03' }, { errorClass: 'tax_authority' })
    expect(rd.count).toBe(2)
    await waitForRun(app, rd.runId!)
    const redriven = (await popbillRows()).filter((r) => failed.some((f) => f.id === r.id))
    expect(redriven.every((r) => r.state === 'issued' && r.provisional)).toBe(true)
    sandbox.popbill.fileNow()
    const last = await reconcileDay(deps, '2026-09-03', '2026-09-04')
    expect(last.finalized.length).toBe(2)
    expect((await popbillRows()).filter((r) => r.state === 'issued' && !r.provisional).length).toBe(issued.length)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  }, 120_000)

  it('cancels a filed Popbill receipt in part (a revocation receipt), and the rest in full', async () => {
    const app = env.app
    const target = (await popbillRows()).find((r) => r.state === 'issued' && r.total_amount >= 2_000 && r.cancelled_amount === 0)!
    const part = await requestCancellation(
      { db: app.db(), queue: app.receiptsQueue(), providers: app.providers() },
      { transactionId: target.transaction_id, amount: 1_000, reason: 1 },
    )
    expect(part.partial).toBe(true)
    const cancelRow = await eventually(async () => {
      const r = await app.db().selectFrom('receipts').selectAll().where('id', '=', part.cancelReceiptId).executeTakeFirstOrThrow()
      return r.state === 'issued' ? r : undefined
    })
    expect(cancelRow.provider_receipt_id).toMatch(/-C1$/)
    const parent = await app.db().selectFrom('receipts').selectAll().where('id', '=', target.id).executeTakeFirstOrThrow()
    expect(parent.state).toBe('issued')
    expect(parent.cancelled_amount).toBe(1_000)
    expect(sandbox.receipts('popbill').find((r) => r.key === target.provider_key)!.amount).toBe(target.total_amount - 1_000)
  }, 60_000)
})
