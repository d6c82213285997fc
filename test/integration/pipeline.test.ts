/**
 * The issuance pipeline end to end on real Postgres, Redis and the sandbox over HTTP:
 * a full day over every provider and method, settle idempotence, outage → failed → re-drive,
 * cancellation, and the ledger/sandbox invariant (report totals = live receipts held; ≤ 1 per key).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { requestCancellation } from '../../src/jobs/cancel-receipt.ts'
import { buildReport } from '../../src/report/report.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'
import type { App } from '../../src/app.ts'

let sandbox: Sandbox
let env: TestEnv
let app: App

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '3' } })
  app = env.app
  app.startWorker({ concurrency: 8 })
})

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

beforeEach(() => {
  sandbox.reset()
  sandbox.setFaults('')
})

const liveAtSandbox = () => {
  const s = sandbox.stats()
  return Object.values(s.providers).reduce((n, p) => n + p.issued - p.cancelled, 0)
}

describe('a settlement day', () => {
  it('issues every eligible receipt over every provider and method, and the ledger equals the sandbox', async () => {
    const day = await importDay(app, { businessDate: '2026-10-01', count: 160, seed: 1 }, (p) => sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))))
    const providers = new Set(day.rows.map((r) => r.provider))
    const methods = new Set(day.rows.map((r) => r.method))
    expect([...providers].sort()).toEqual(['nts', 'payssam', 'popbill', 'portone', 'portone-v2', 'toss'])
    expect([...methods].sort()).toEqual(['bank_transfer', 'cash', 'naverpay', 'virtual_account'])

    const summary = await settle(app, '2026-10-01')
    expect(summary.selected).toBe(160)
    const report = await waitForRun(app, summary.runId!)

    expect(report.totals.eligible).toBe(160)
    expect(report.totals.failed).toBe(0)
    expect(report.totals.pending).toBe(0)
    expect(report.totals.issued).toBeGreaterThan(100)
    expect(report.totals.issued + report.totals.skipped).toBe(160)
    for (const p of ['portone', 'portone-v2', 'payssam', 'nts', 'toss', 'popbill']) expect(report.by_provider[p]!.issued).toBeGreaterThan(0)

    expect(liveAtSandbox()).toBe(report.totals.issued)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)

    // Every issued receipt has its approval number and at least one successful attempt row.
    const issued = await app.db().selectFrom('receipts').select(['id', 'approval_number']).where('run_id', '=', summary.runId!).where('state', '=', 'issued').execute()
    expect(issued.every((r) => r.approval_number)).toBe(true)
    const withAttempt = await app
      .db()
      .selectFrom('issuance_attempts')
      .select((eb) => eb.fn.count<number>('receipt_id').distinct().as('n'))
      .where(
        'receipt_id',
        'in',
        issued.map((r) => r.id),
      )
      .where('outcome', '=', 'issued')
      .executeTakeFirstOrThrow()
    expect(Number(withAttempt.n)).toBe(issued.length)

    // Report amounts are integers and match the ledger.
    const sum = await app
      .db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.sum<number>('total_amount').as('s'))
      .where('run_id', '=', summary.runId!)
      .where('state', '=', 'issued')
      .executeTakeFirstOrThrow()
    expect(report.amount_issued).toBe(Number(sum.s))
    expect(Number.isInteger(report.amount_issued)).toBe(true)
  })

  it('running the same settlement twice changes nothing', async () => {
    await importDay(app, { businessDate: '2026-10-11', count: 40, seed: 2, providers: ['payssam', 'nts'] })
    const first = await settle(app, '2026-10-11')
    await waitForRun(app, first.runId!)
    const before = await app
      .db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    const requestsBefore = sandbox.stats().providers.payssam!.requests + sandbox.stats().providers.nts!.requests

    const second = await settle(app, '2026-10-11')
    expect(second.runId).toBe(first.runId)
    expect(second.selected).toBe(0)
    expect(second.created).toBe(0)
    expect(second.enqueued).toBe(0)
    await new Promise((r) => setTimeout(r, 500))
    const after = await app
      .db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    expect(Number(after.n)).toBe(Number(before.n))
    expect(sandbox.stats().providers.payssam!.requests + sandbox.stats().providers.nts!.requests).toBe(requestsBefore)
    const runs = await app.db().selectFrom('settlement_runs').select('id').where('business_date', '=', '2026-10-11').execute()
    expect(runs).toHaveLength(1)
  })

  it('a provider outage ends in failed rows that one re-drive completes, and a second re-drive does nothing', async () => {
    sandbox.setFaults('payssam:5xx=1')
    await importDay(app, { businessDate: '2026-10-21', count: 16, seed: 3, providers: ['payssam'] })
    const summary = await settle(app, '2026-10-21')
    const failedReport = await waitForRun(app, summary.runId!, 120_000)
    expect(failedReport.totals.failed).toBeGreaterThan(0)
    expect(failedReport.totals.issued).toBe(0)
    for (const f of failedReport.failures) {
      expect(f.error_class).toBeTruthy()
      expect(f.code).toBeTruthy()
    }
    expect(liveAtSandbox()).toBe(0)

    sandbox.setFaults('')
    const dry = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-10-22' }, { runId: summary.runId! }, { dryRun: true })
    expect(dry.count).toBe(failedReport.totals.failed)
    const rd = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-10-22' }, { runId: summary.runId! })
    expect(rd.count).toBe(failedReport.totals.failed)
    const again = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-10-22' }, { runId: summary.runId! })
    expect(again.count).toBe(0)

    const redriven = await waitForRun(app, rd.runId!, 120_000)
    expect(redriven.totals.issued).toBe(failedReport.totals.failed)
    const original = await buildReport(app.db(), { runId: summary.runId! })
    expect(original.totals.failed).toBe(0)
    expect(liveAtSandbox()).toBe(original.totals.issued)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  }, 180_000)

  it('cancels an issued receipt fully and marks it cancelled on both sides', async () => {
    await importDay(app, { businessDate: '2026-11-01', count: 12, seed: 4, providers: ['portone-v2'] })
    const summary = await settle(app, '2026-11-01')
    await waitForRun(app, summary.runId!)
    const target = await app
      .db()
      .selectFrom('receipts')
      .select(['transaction_id', 'total_amount'])
      .where('run_id', '=', summary.runId!)
      .where('state', '=', 'issued')
      .executeTakeFirstOrThrow()
    const req = await requestCancellation({ db: app.db(), queue: app.receiptsQueue(), providers: app.providers() }, { transactionId: target.transaction_id, reason: 1 })
    expect(req.amount).toBe(target.total_amount)
    await eventually(async () => {
      const r = await app.db().selectFrom('receipts').select('state').where('transaction_id', '=', target.transaction_id).where('kind', '=', 'issue').executeTakeFirstOrThrow()
      return r.state === 'cancelled'
    })
    expect(sandbox.stats().providers['portone-v2']!.cancelled).toBe(1)
    await expect(
      requestCancellation({ db: app.db(), queue: app.receiptsQueue(), providers: app.providers() }, { transactionId: target.transaction_id, reason: 1 }),
    ).rejects.toThrow(/only issued receipts can be cancelled/)
    const report = await buildReport(app.db(), { runId: summary.runId! })
    expect(report.totals.cancelled).toBe(1)
  })

  it('every receipt of the days above has a history from its creation to its state, each step from where the last ended', async () => {
    const receipts = await app.db().selectFrom('receipts').select(['id', 'state']).execute()
    const steps = await app.db().selectFrom('receipt_transitions').select(['receipt_id', 'from_state', 'to_state', 'cause']).orderBy('id').execute()
    const byReceipt = new Map<number, typeof steps>()
    for (const s of steps) byReceipt.set(s.receipt_id, [...(byReceipt.get(s.receipt_id) ?? []), s])
    expect(receipts.length).toBeGreaterThan(50)
    const causes = new Set<string>()
    for (const r of receipts) {
      const chain = byReceipt.get(r.id) ?? []
      expect(chain[0], `receipt ${r.id}`).toMatchObject({ from_state: null })
      for (let i = 1; i < chain.length; i++) expect(chain[i]!.from_state, `receipt ${r.id} step ${i}`).toBe(chain[i - 1]!.to_state)
      expect(chain.at(-1)!.to_state, `receipt ${r.id}`).toBe(r.state)
      for (const s of chain) causes.add(s.cause.replace(/:\d+$/, ''))
    }
    // the days above issued, failed, re-drove and cancelled
    expect([...causes]).toEqual(expect.arrayContaining(['settle', 'attempt', 'redrive', 'cancel']))
  })
})
