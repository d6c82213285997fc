/**
 * Settlement meets transactions the receipts table refuses (written directly, by hand or by an older
 * version, past the importer's checks): a payment_ref two transactions share, at two merchants of the
 * same provider, and one too long for the provider-key index. Real Postgres, real settle, the sandbox
 * and a worker: the rest of the day settles and issues, the refused ones are failures of the run with
 * their reason, and neither a re-run nor the next nights' carry-over aborts or records them again.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { insertIssueReceiptsIsolating } from '../../src/db/ledger.ts'
import { buildReceipt } from '../../src/jobs/settle.ts'
import { buildReport, type RunReport } from '../../src/report/report.ts'
import { buildReportDetails } from '../../src/report/report-details.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { createMetrics } from '../../src/http/metrics.ts'
import { parseExposition } from '../helpers/prometheus-text.ts'

let sandbox: Sandbox
let env: TestEnv
let app: App

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  app = env.app
  app.startWorker({ concurrency: 4 })
})
afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const DAY = '2026-08-03'
const NEXT = '2026-08-04'
/** Random hex does not compress: 6,000 characters stay far above the btree row limit (2,704 bytes). */
const LONG_REF = `pay-${randomBytes(3_000).toString('hex')}`

/** A completed transaction written straight into the table, as an older version or an operator might. */
async function insertDirect(t: { id: string; merchant: string; paymentRef: string; date: string }) {
  await app
    .db()
    .insertInto('cash_transactions')
    .values({
      transaction_id: t.id,
      merchant_id: t.merchant,
      provider: 'portone-v2',
      payment_ref: t.paymentRef,
      order_id: null,
      order_name: null,
      method: 'bank_transfer',
      amount: 33_000,
      paid_at: new Date(`${t.date}T03:00:00Z`),
      business_date: t.date,
      identifier_type: null,
      identifier_masked: null,
      pii_enc: null,
      data_key_id: null,
      content_hash: `direct-${t.id}`,
    })
    .execute()
}

async function issueReceiptCount(): Promise<number> {
  const r = await app
    .db()
    .selectFrom('receipts')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('kind', '=', 'issue')
    .executeTakeFirstOrThrow()
  return Number(r.n)
}

const settleFailures = (r: RunReport) => r.failures.filter((f) => f.error_class === 'settle')

/** The settle-rejection series of one /metrics scrape: total and open, by code. */
async function rejectionMetrics(): Promise<{ total: Record<string, number>; open: Record<string, number> }> {
  const metrics = createMetrics({ db: app.db(), redis: app.redis(), queues: [], prefix: app.config.queuePrefix, logger: app.logger, cacheMs: 0 })
  const families = parseExposition(await metrics.render())
  const byCode = (name: string) => Object.fromEntries((families.get(name)?.samples ?? []).map((s) => [s.labels.code, s.value]))
  return { total: byCode('cash_receipts_settle_rejections_total'), open: byCode('cash_receipts_settle_rejections_open') }
}

describe('settle with transactions the receipts table refuses', () => {
  it('settles the rest of the day, reports the refused ones with their reason, and stays idempotent over re-runs and carry-over', async () => {
    const day = await importDay(app, { businessDate: DAY, count: 60, seed: 31, providers: ['portone-v2', 'payssam', 'nts'] })
    expect(new Set(day.rows.map((r) => r.merchant_id)).size).toBeGreaterThan(1)
    // Two merchants, one provider, one payment_ref: the first transaction (in settle's order) keeps it.
    await insertDirect({ id: 'zz-direct-a', merchant: 'm-clinic', paymentRef: 'pay-shared-by-two', date: DAY })
    await insertDirect({ id: 'zz-direct-b', merchant: 'm-academy', paymentRef: 'pay-shared-by-two', date: DAY })
    await insertDirect({ id: 'zz-direct-long', merchant: 'm-academy', paymentRef: LONG_REF, date: DAY })

    // The command an operator runs: exits 0, and says what it refused.
    const cli = await runCli(['settle', '--date', DAY, '--json'], env.env())
    expect(cli.code, cli.stderr).toBe(0)
    const summary = JSON.parse(cli.stdout) as { run_id: number; selected: number; rejected: number; reject_reasons: Record<string, number> }
    expect(summary.rejected).toBe(2)
    expect(summary.reject_reasons).toEqual({ KEY_CONFLICT: 1, KEY_INVALID: 1 })
    expect(summary.selected).toBe(day.rows.length + 1)

    // Every good transaction of every merchant has its issue receipt, and so does the first of the pair.
    const missing = await app
      .db()
      .selectFrom('cash_transactions as t')
      .leftJoin('receipts as r', (j) => j.onRef('r.transaction_id', '=', 't.transaction_id').on('r.kind', '=', 'issue'))
      .select('t.transaction_id')
      .where('r.id', 'is', null)
      .orderBy('t.transaction_id')
      .execute()
    expect(missing.map((m) => m.transaction_id)).toEqual(['zz-direct-b', 'zz-direct-long'])
    const receipts = await issueReceiptCount()
    expect(receipts).toBe(day.rows.length + 1)

    const report = await waitForRun(app, summary.run_id)
    expect(report.totals.pending).toBe(0)
    expect(report.totals.eligible).toBe(day.rows.length + 3)
    expect(report.totals.failed).toBe(2)
    expect(report.totals.issued + report.totals.skipped).toBe(day.rows.length + 1)
    expect(report.failures).toHaveLength(2)
    const [conflict, tooLong] = settleFailures(report)
    expect(conflict).toMatchObject({ transaction_id: 'zz-direct-b', provider: 'portone-v2', error_class: 'settle', code: 'KEY_CONFLICT' })
    expect(conflict!.message).toContain('zz-direct-a')
    expect(conflict!.message).toContain('payment_ref')
    expect(tooLong).toMatchObject({ transaction_id: 'zz-direct-long', provider: 'portone-v2', error_class: 'settle', code: 'KEY_INVALID' })
    expect(tooLong!.message).toContain(`${LONG_REF.length} characters`)
    for (const f of report.failures) {
      expect(f.message).not.toContain('pay-shared-by-two')
      expect(f.message).not.toContain(LONG_REF.slice(0, 40))
    }

    // The HTML and table reports' details count them per merchant and by reason.
    const details = await buildReportDetails(app.db(), { runId: summary.run_id }, DAY)
    expect(details.failure_reasons.filter((f) => f.error_class === 'settle').map((f) => [f.provider, f.code, f.count])).toEqual([
      ['portone-v2', 'KEY_CONFLICT', 1],
      ['portone-v2', 'KEY_INVALID', 1],
    ])
    const failedOf = (id: string) => details.by_merchant.find((m) => m.merchant_id === id)?.failed
    expect([failedOf('m-clinic'), failedOf('m-academy')]).toEqual([0, 2])

    // `report --json` of the day shows them.
    const printed = await runCli(['report', '--date', DAY, '--json'], env.env())
    expect(printed.code, printed.stderr).toBe(0)
    const json = JSON.parse(printed.stdout) as RunReport
    expect(json.totals.failed).toBe(2)
    expect(settleFailures(json).map((f) => [f.transaction_id, f.code])).toEqual([
      ['zz-direct-b', 'KEY_CONFLICT'],
      ['zz-direct-long', 'KEY_INVALID'],
    ])

    // Re-running the day (small chunks this time): nothing new, the same two refused, one record each.
    const again = await settle(app, DAY)
    expect(again.runId).toBe(summary.run_id)
    expect(again.created).toBe(0)
    expect(again.rejected).toBe(2)
    expect(await issueReceiptCount()).toBe(receipts)
    const records = () => app.db().selectFrom('settle_rejections').selectAll().orderBy('transaction_id').execute()
    expect((await records()).map((r) => [r.transaction_id, r.code, Number(r.run_id), Number(r.last_run_id), r.seen_count])).toEqual([
      ['zz-direct-b', 'KEY_CONFLICT', summary.run_id, summary.run_id, 1],
      ['zz-direct-long', 'KEY_INVALID', summary.run_id, summary.run_id, 1],
    ])

    // /metrics counts them by code (the alert SettleRejections fires on them).
    expect(await rejectionMetrics()).toEqual({ total: { KEY_CONFLICT: 1, KEY_INVALID: 1 }, open: { KEY_CONFLICT: 1, KEY_INVALID: 1 } })

    // The next night carries them over (still unreceipted, inside the window): it does not abort, and
    // it refreshes the two records instead of adding failures to its own run.
    const nextDay = await importDay(app, { businessDate: NEXT, count: 10, seed: 32, providers: ['portone-v2', 'nts'], idPrefix: 'n' })
    const next = await settle(app, NEXT)
    expect(next.created + next.skipped).toBe(nextDay.rows.length)
    expect(next.rejected).toBe(2)
    const nextReport = await waitForRun(app, next.runId!)
    expect(nextReport.totals.failed).toBe(0)
    expect(nextReport.failures).toEqual([])
    expect((await records()).map((r) => [r.transaction_id, Number(r.run_id), Number(r.last_run_id), r.seen_count])).toEqual([
      ['zz-direct-b', summary.run_id, next.runId, 2],
      ['zz-direct-long', summary.run_id, next.runId, 2],
    ])
    expect(settleFailures(await buildReport(app.db(), { date: DAY }))).toHaveLength(2)
    expect(await issueReceiptCount()).toBe(receipts + nextDay.rows.length)

    // Once the data is corrected, the next carry-over issues it and the day's report drops the failure.
    await app.db().updateTable('cash_transactions').set({ payment_ref: 'pay-corrected-long' }).where('transaction_id', '=', 'zz-direct-long').execute()
    const later = await settle(app, '2026-08-05')
    expect(later.rejected).toBe(1)
    expect(later.created).toBe(1)
    await waitForRun(app, later.runId!)
    const dayAfterFix = await buildReport(app.db(), { date: DAY })
    expect(settleFailures(dayAfterFix).map((f) => f.transaction_id)).toEqual(['zz-direct-b'])
    expect(dayAfterFix.totals.failed).toBe(1)
    // The corrected one stays counted in the total but is no longer open.
    expect(await rejectionMetrics()).toEqual({ total: { KEY_CONFLICT: 1, KEY_INVALID: 1 }, open: { KEY_CONFLICT: 1, KEY_INVALID: 0 } })
  })
})

describe('insertIssueReceiptsIsolating', () => {
  const DATE = '2026-07-01'
  const receiptFor = async (id: string) => {
    const tx = await app.db().selectFrom('cash_transactions').selectAll().where('transaction_id', '=', id).executeTakeFirstOrThrow()
    return buildReceipt(tx, true, null)
  }

  it('inserts the rows it can in one pass and returns each refused row with its reason; the first of a shared key keeps it', async () => {
    for (const [id, ref] of [
      ['iso-1', 'pay-iso-1'],
      ['iso-2', 'pay-iso-shared'],
      ['iso-3', 'pay-iso-3'],
      ['iso-4', 'pay-iso-shared'],
      ['iso-5', 'pay-iso-5'],
    ] as const) {
      await insertDirect({ id, merchant: 'm-shop', paymentRef: ref, date: DATE })
    }
    const rows = await Promise.all(['iso-1', 'iso-2', 'iso-3', 'iso-4', 'iso-5'].map(receiptFor))
    // A row breaking the receipts' amount check (VAT above the supply amount).
    rows[2] = { ...rows[2]!, vat_amount: Number(rows[2]!.supply_amount) + 1 }
    const { inserted, refused } = await insertIssueReceiptsIsolating(app.db(), rows)
    expect(inserted).toHaveLength(3)
    expect(refused.map((r) => [r.receipt.transaction_id, r.code, r.sqlstate, r.heldBy])).toEqual([
      ['iso-3', 'ROW_INVALID', '23514', null],
      ['iso-4', 'KEY_CONFLICT', '23505', 'iso-2'],
    ])
    const stored = await app.db().selectFrom('receipts').select('transaction_id').where('transaction_id', 'like', 'iso-%').orderBy('transaction_id').execute()
    expect(stored.map((r) => r.transaction_id)).toEqual(['iso-1', 'iso-2', 'iso-5'])
  })

  it("does not blame a row for an error that is not the row data's (the whole call fails, nothing is written)", async () => {
    await insertDirect({ id: 'iso-fk-ok', merchant: 'm-shop', paymentRef: 'pay-iso-fk-ok', date: DATE })
    const good = await receiptFor('iso-fk-ok')
    // A receipt for a transaction that does not exist: a foreign-key error, a caller's bug.
    const orphan = { ...good, transaction_id: 'iso-no-such-transaction', provider_key: 'pay-iso-orphan' }
    await expect(insertIssueReceiptsIsolating(app.db(), [good, orphan])).rejects.toMatchObject({ code: '23503' })
    const stored = await app.db().selectFrom('receipts').select('id').where('transaction_id', '=', 'iso-fk-ok').execute()
    expect(stored).toEqual([])
  })
})
