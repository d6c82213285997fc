/**
 * A day including Toss Payments, end to end on real Postgres, Redis and the sandbox over HTTP: every
 * Toss receipt is answered provisionally (IN_PROGRESS) and recorded issued + provisional; reconcile
 * leaves them until the tax authority has answered, then finalises them — or fails the ones it
 * refused with their [TSx] code, which the report and a re-drive by class then see; a partial cancel
 * keeps both receipt keys; the sandbox never holds two live receipts for one order.
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

const TOKEN = 'toss-test-token'
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
const tossRows = () =>
  env.app.db().selectFrom('receipts').selectAll().where('kind', '=', 'issue').where('provider', '=', 'toss').where('trade_date', '=', DAY).orderBy('id').execute()

describe('a day including Toss', () => {
  it('issues completely, provisionally; reconcile finalises the accepted ones and fails the refused ones', async () => {
    const app = env.app
    const deps = { db: app.db(), providers: app.providers(), logger: app.logger }
    // The first two Toss issues will be refused by the tax authority once its answer is in.
    sandbox.toss.failNext(['TS1', 'TS4'])
    const day = await importDay(app, { businessDate: DAY, count: 60, seed: 41, providers: ['toss', 'payssam', 'nts'], idPrefix: 'TOSS' })
    expect(day.rows.filter((r) => r.provider === 'toss').length).toBeGreaterThan(10)
    const summary = await settle(app, DAY)
    const report = await waitForRun(app, summary.runId!)
    expect(report.totals.pending).toBe(0)
    expect(report.totals.failed).toBe(0)
    expect(report.totals.issued + report.totals.skipped).toBe(60)
    expect(report.by_provider.toss!.issued).toBeGreaterThan(10)

    const issued = (await tossRows()).filter((r) => r.state === 'issued')
    expect(issued.length).toBe(report.by_provider.toss!.issued)
    expect(issued.every((r) => r.provisional && r.provider_receipt_id && /^\d{9}$/.test(r.approval_number ?? ''))).toBe(true)

    // D+1 before the tax authority has answered: nothing moves.
    const dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
    const gauge = async (name: string) => {
      const res = await fetch(`${dashboard.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      return (parseExposition(await res.text()).get(name)?.samples ?? []).filter((s) => s.labels.provider === 'toss')
    }
    expect((await gauge('cash_receipts_provisional_receipts')).map((s) => s.value)).toEqual([issued.length])
    const early = await reconcileDay(deps, DAY, '2026-09-02')
    expect(early.finalized).toEqual([])
    expect(early.rejected).toEqual([])
    expect(early.provisional).toBe(issued.length)
    expect(early.flagged).toEqual([])

    // Two days on, reconcile of the NEXT date revisits the provisional receipts of this one.
    sandbox.toss.advance(2 * 86_400_000)
    const late = await reconcileDay(deps, '2026-09-02', '2026-09-03')
    expect(late.finalized.length).toBe(issued.length - 2)
    expect(late.rejected.map((r) => r.code).sort()).toEqual(['TS1', 'TS4'])
    expect(late.rejected.every((r) => r.message.startsWith(`[${r.code}]`))).toBe(true)
    expect(late.provisional).toBe(0)

    const after = await tossRows()
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

    // Re-drive by class issues them again (the refused receipts are not live at Toss), provisionally.
    const rd = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-09-03' }, { errorClass: 'tax_authority' })
    expect(rd.count).toBe(2)
    await waitForRun(app, rd.runId!)
    const redriven = (await tossRows()).filter((r) => failed.some((f) => f.id === r.id))
    expect(redriven.every((r) => r.state === 'issued' && r.provisional)).toBe(true)
    sandbox.toss.advance(2 * 86_400_000)
    const last = await reconcileDay(deps, '2026-09-03', '2026-09-04')
    expect(last.finalized.length).toBe(2)
    expect((await tossRows()).filter((r) => r.state === 'issued' && !r.provisional).length).toBe(issued.length)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  }, 120_000)

  it('cancels a Toss receipt in part, keeping the original and the c_ receipt key', async () => {
    const app = env.app
    const target = (await tossRows()).find((r) => r.state === 'issued' && r.total_amount >= 2_000)!
    const req = await requestCancellation(
      { db: app.db(), queue: app.receiptsQueue(), providers: app.providers() },
      { transactionId: target.transaction_id, amount: 1_000, reason: 1 },
    )
    expect(req.partial).toBe(true)
    const cancelRow = await eventually(async () => {
      const r = await app.db().selectFrom('receipts').selectAll().where('id', '=', req.cancelReceiptId).executeTakeFirstOrThrow()
      return r.state === 'issued' ? r : undefined
    })
    expect(cancelRow.provider_receipt_id).toBe(`c_${target.provider_receipt_id}`)
    const parent = await app.db().selectFrom('receipts').selectAll().where('id', '=', target.id).executeTakeFirstOrThrow()
    expect(parent.state).toBe('issued')
    expect(parent.cancelled_amount).toBe(1_000)
    expect(parent.provider_receipt_id).toBe(target.provider_receipt_id)
    const held = sandbox.receipts('toss').find((r) => r.key === target.provider_key)!
    expect(held.amount).toBe(target.total_amount - 1_000)
  }, 60_000)
})
