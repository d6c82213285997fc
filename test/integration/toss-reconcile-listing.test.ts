/**
 * Reconcile of a busy Toss credential, on real Postgres, Redis and the sandbox over HTTP: one
 * merchant's day of 1,000+ Toss receipts (list pages of 250) is reconciled from one read of the
 * credential's list — about `pages` list requests, counted at the sandbox — not from one list scan
 * per batch of 8 lookups (pages × receipts / 8). Among the receipts: one the tax authority refused
 * (FAILED only → rejected), then re-issued by a re-drive (two receipts of one order at Toss: the live
 * one counts), a partial cancel (the amount still receipted matches the ledger's), a receipt missing
 * at the provider (flagged, after a lookup of its own), a ledger row that missed its issue
 * (repaired), and, at NTS in the same pass, a duplicate receipt (recorded and cancelled as before).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import type { Receipt } from '../../src/db/schema.ts'
import type { ProviderName } from '../../src/domain/index.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { requestCancellation } from '../../src/jobs/cancel-receipt.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '3' } })
  env.app.startWorker({ concurrency: 8 })
})
afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const DAY = '2026-10-05'
const MERCHANT = 'm-clinic'
const PAGE = 250

/** One merchant's transactions of DAY, all with the one provider. */
async function importFor(app: App, provider: ProviderName, count: number, idPrefix: string): Promise<void> {
  const day = generateDay({ businessDate: DAY, count, seed: 57, providers: [provider], idPrefix, merchants: [{ id: MERCHANT, mandatoryIssuer: true }] })
  const dir = await mkdtemp(join(tmpdir(), 'crt-list-'))
  const file = join(dir, 'day.csv')
  await writeFile(file, toCsv(day))
  const res = await importTransactions(app.db(), app.config.dataKeys, file, { nowMs: Date.now() })
  if (!res.written) throw new Error(`import failed: ${JSON.stringify(res.errors.slice(0, 5))}`)
}

const rowsOf = (provider: ProviderName) =>
  env.app.db().selectFrom('receipts').selectAll().where('kind', '=', 'issue').where('provider', '=', provider).where('trade_date', '=', DAY).orderBy('id').execute()

/** Entries Toss lists for the credential today (one request of up to 10,000, outside any count taken). */
async function listedToday(): Promise<number> {
  const date = new Date(Date.now() + 9 * 3600_000).toISOString().slice(0, 10)
  const secretKey = env.app.config.merchants.find((m) => m.id === MERCHANT)!.providers.toss!.secretKey
  const res = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=${date}&limit=10000`, {
    headers: { authorization: `Basic ${Buffer.from(`${secretKey}:`).toString('base64')}` },
  })
  const body = (await res.json()) as { hasNext: boolean; data: unknown[] }
  expect(body.hasNext).toBe(false)
  return body.data.length
}

const amountsOf = (r: Receipt) => ({ total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee })

describe('reconcile of a busy Toss credential', () => {
  it('reads the credential’s list once per pass and finds refusals, cancels, missing receipts and duplicates as before', async () => {
    const app = env.app
    const db = app.db()
    const deps = { db, providers: app.providers(), logger: app.logger }
    // The first Toss issue will be refused by the tax authority once its answer is in.
    sandbox.toss.failNext(['TS1'])
    await importFor(app, 'toss', 1_300, 'TLIST')
    await importFor(app, 'nts', 12, 'NLIST')
    const summary = await settle(app, DAY)
    const report = await waitForRun(app, summary.runId!, 240_000)
    expect(report.totals.pending).toBe(0)
    expect(report.totals.failed).toBe(0)

    const toss = (await rowsOf('toss')).filter((r) => r.state === 'issued')
    expect(toss.length).toBeGreaterThanOrEqual(1_000)
    expect(toss.every((r) => r.provisional && r.provider_receipt_id)).toBe(true)

    // The tax authority's answers are in (the receipts picked below are ones it accepted).
    sandbox.toss.advance(2 * 86_400_000)
    const accepted = new Set(sandbox.receipts('toss').map((h) => h.key))
    expect(accepted.size).toBe(toss.length - 1)
    const picks = toss.filter((r) => accepted.has(r.provider_key)).slice(100)

    // A partial cancel of one receipt: Toss lists a CANCEL entry, the ledger keeps the receipt issued.
    const cancelled = picks.find((r) => r.total_amount >= 2_000)!
    const req = await requestCancellation({ db, queue: app.receiptsQueue(), providers: app.providers() }, { transactionId: cancelled.transaction_id, amount: 1_000, reason: 1 })
    expect(req.partial).toBe(true)
    await eventually(async () => (await db.selectFrom('receipts').select('state').where('id', '=', req.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued')
    // A receipt the ledger records issued under a key Toss never saw: missing at the provider.
    const missing = picks.find((r) => r.id !== cancelled.id)!
    await db
      .updateTable('receipts')
      .set({ provider_key: `CRMISSING${String(missing.id).padStart(21, '0')}` })
      .where('id', '=', missing.id)
      .execute()
    // A ledger row that missed its issue's answer (failed), while Toss holds the receipt: repaired.
    const lost = picks.find((r) => r.id !== cancelled.id && r.id !== missing.id)!
    await db.updateTable('receipts').set({ state: 'failed', provisional: false, approval_number: null, provider_receipt_id: null }).where('id', '=', lost.id).execute()
    // A second NTS receipt for one key (NTS does not deduplicate): a duplicate at the provider.
    const ntsRow = (await rowsOf('nts')).find((r) => r.state === 'issued')!
    const { provider: nts } = app.providers().get(MERCHANT, 'nts')
    const dup = await nts.issue({
      providerKey: ntsRow.provider_key,
      idempotencyKey: `dup-list-${ntsRow.id}`,
      portonePayment: false,
      orderName: 'duplicate',
      identifier: '0100001234',
      identifierType: 'self',
      purpose: 'deduction',
      amounts: amountsOf(ntsRow),
      tradeDate: DAY,
      paidAt: `${DAY}T12:00:00+09:00`,
      merchantBusinessNumber: '2208162517',
    })
    expect(dup.kind).toBe('issued')

    const entries = await listedToday()
    expect(entries).toBe(toss.length + 1) // every CONFIRM (the refused one too) and one CANCEL
    const pages = Math.ceil(entries / PAGE)
    expect(pages).toBeGreaterThanOrEqual(5)

    const before = sandbox.stats().providers.toss.requests
    const first = await reconcileDay(deps, DAY, '2026-10-06')
    const firstRequests = sandbox.stats().providers.toss.requests - before
    // One read of the list (pages), plus one lookup of the missing receipt (its dates: pages again).
    // The lookup-per-receipt pass this replaces cost about pages × receipts / 8 (≈ 680 here).
    expect(firstRequests).toBe(2 * pages)

    expect(first.rejected.map((r) => r.code)).toEqual(['TS1'])
    const rejectedId = first.rejected[0]!.transaction_id
    expect(toss.find((r) => r.transaction_id === rejectedId)!.provider_key).not.toSatisfy((k: string) => accepted.has(k))
    // Every other receipt of the day is final now but the missing one and the repaired one.
    expect(first.finalized.length).toBe(toss.length - 3)
    expect(first.provisional).toBe(0)
    expect(first.repaired).toEqual([{ transaction_id: lost.transaction_id, provider: 'toss', from: 'failed', to: 'issued' }])
    expect(first.flagged).toEqual([{ transaction_id: missing.transaction_id, provider: 'toss', flag: 'ledger issued, provider has no receipt' }])
    expect(first.duplicates).toEqual([expect.objectContaining({ transaction_id: ntsRow.transaction_id, provider: 'nts', outcome: 'cancelled' })])
    expect(first.lookupErrors).toBe(0)
    const repaired = await db.selectFrom('receipts').selectAll().where('id', '=', lost.id).executeTakeFirstOrThrow()
    expect([repaired.state, repaired.provisional, repaired.provider_receipt_id, repaired.approval_number]).toEqual([
      'issued',
      false,
      lost.provider_receipt_id,
      lost.approval_number,
    ])
    expect((await db.selectFrom('receipts').select('reconcile_flag').where('id', '=', missing.id).executeTakeFirstOrThrow()).reconcile_flag).toBe('missing at provider')

    // Re-drive the refused receipt: Toss now holds two receipts for its order, the FAILED one and a
    // new IN_PROGRESS one, and the live one is what the listing answers with.
    const rd = await redrive({ db, queue: app.receiptsQueue(), logger: app.logger, todayKst: '2026-10-06' }, { errorClass: 'tax_authority' })
    expect(rd.count).toBe(1)
    await waitForRun(app, rd.runId!)
    const reissued = await db.selectFrom('receipts').selectAll().where('transaction_id', '=', rejectedId).where('kind', '=', 'issue').executeTakeFirstOrThrow()
    expect([reissued.state, reissued.provisional]).toEqual(['issued', true])

    const pagesNow = Math.ceil((await listedToday()) / PAGE)
    const before2 = sandbox.stats().providers.toss.requests
    const second = await reconcileDay(deps, DAY, '2026-10-06')
    expect(sandbox.stats().providers.toss.requests - before2).toBe(2 * pagesNow)
    expect(second.provisional).toBe(1)
    expect(second.rejected).toEqual([])
    expect(second.finalized).toEqual([])
    expect(second.repaired).toEqual([])
    expect(second.amounts_corrected).toEqual([])
    // The partly cancelled receipt is final now, and its amount is compared: it matches.
    expect(second.flagged).toEqual([{ transaction_id: missing.transaction_id, provider: 'toss', flag: 'ledger issued, provider has no receipt' }])
    expect(second.duplicates).toEqual([])
    expect(second.lookupErrors).toBe(0)
    const checkedToss = (await rowsOf('toss')).filter((r) => ['issued', 'failed', 'pending', 'cancelled'].includes(r.state)).length
    const checkedNts = (await rowsOf('nts')).filter((r) => ['issued', 'failed', 'pending', 'cancelled'].includes(r.state)).length
    expect(second.checked).toBe(checkedToss + checkedNts)
    expect(second.matched).toBe(second.checked - 2) // all but the re-issued (provisional) and the missing one
    const partly = await db.selectFrom('receipts').selectAll().where('id', '=', cancelled.id).executeTakeFirstOrThrow()
    expect([partly.state, partly.cancelled_amount, partly.reconcile_flag]).toEqual(['issued', 1_000, null])

    // Its answer in, the re-issued receipt is final.
    sandbox.toss.advance(2 * 86_400_000)
    const third = await reconcileDay(deps, DAY, '2026-10-06')
    expect(third.finalized.map((f) => f.transaction_id)).toEqual([rejectedId])
    expect(third.provisional).toBe(0)
    expect(third.flagged.map((f) => f.transaction_id)).toEqual([missing.transaction_id])
  }, 300_000)
})
