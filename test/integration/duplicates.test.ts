/**
 * Duplicates at a provider that does not deduplicate by our key (NTS), on real Postgres, Redis and
 * the sandbox over HTTP: a second receipt issued for a key (what a worker frozen past its lease
 * leaves behind) is found by reconcile, recorded, cancelled at the provider (the ledger's receipt is
 * kept), reported, and left alone by a second reconcile; with cancelling off it is recorded and
 * reported only. An amount the provider holds that differs from the ledger's is flagged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import type { Receipt } from '../../src/db/schema.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import type { ProviderSource } from '../../src/jobs/provider-source.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { parseExposition } from '../helpers/prometheus-text.ts'

let sandbox: Sandbox
let env: TestEnv

const TOKEN = 'duplicates-test-token'

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { DASHBOARD_TOKEN: TOKEN, METRICS_CACHE_MS: '0' } })
  env.app.startWorker({ concurrency: 4 })
})
afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const amountsOf = (r: Receipt) => ({ total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee })

/** Issues a second receipt for the row's key straight at the sandbox, through the NTS adapter. */
async function issueDuplicate(app: App, r: Receipt): Promise<string> {
  const { provider } = app.providers().get(r.merchant_id, 'nts')
  const o = await provider.issue({
    providerKey: r.provider_key,
    idempotencyKey: `dup-test-${r.id}`,
    portonePayment: false,
    orderName: 'duplicate',
    identifier: '0100001234',
    identifierType: 'self',
    purpose: 'deduction',
    amounts: amountsOf(r),
    tradeDate: r.trade_date,
    paidAt: `${r.trade_date}T12:00:00+09:00`,
    merchantBusinessNumber: '1234567890',
  })
  if (o.kind !== 'issued') throw new Error(`duplicate issue: ${o.kind}`)
  return o.receipt.approvalNumber!
}

async function issuedNtsRows(app: App, businessDate: string, prefix: string, n: number): Promise<Receipt[]> {
  await importDay(app, { businessDate, count: 12, seed: 21, providers: ['nts'], idPrefix: prefix })
  const s = await settle(app, businessDate)
  await waitForRun(app, s.runId!)
  const rows = await app.db().selectFrom('receipts').selectAll().where('run_id', '=', s.runId!).where('kind', '=', 'issue').where('state', '=', 'issued').orderBy('id').execute()
  expect(rows.length).toBeGreaterThanOrEqual(n + 1)
  return rows
}

type Held = { key: string; status: string; approvalNumber: string; amount: number }
const heldAt = async (): Promise<Held[]> => ((await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as { receipts: Held[] }).receipts

/** `cash_receipts_duplicates_unrepaired{provider="nts"}` as the dashboard's /metrics exports it. */
async function unrepairedAtNts(app: App): Promise<number | undefined> {
  const dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
  try {
    const text = await (await fetch(`${dashboard.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text()
    return parseExposition(text)
      .get('cash_receipts_duplicates_unrepaired')
      ?.samples.find((x) => x.labels.provider === 'nts')?.value
  } finally {
    await dashboard.close()
  }
}

describe('reconcile finds duplicates at NTS', () => {
  it('records, cancels and reports them once; the ledger receipt is kept', async () => {
    const app = env.app
    const rows = await issuedNtsRows(app, '2026-07-01', 'DUP', 3)
    const victims = rows.slice(0, 3)
    const dupApprovals = await Promise.all(victims.map((r) => issueDuplicate(app, r)))
    expect(sandbox.stats().max_live_receipts_per_key).toBe(2)
    expect(sandbox.stats().max_receipts_per_key).toBe(2)

    const first = await app.reconcile('2026-07-01', '2026-07-02')
    expect(first.duplicates).toHaveLength(3)
    expect(first.duplicates.map((d) => d.approval_number).sort()).toEqual([...dupApprovals].sort())
    expect(first.duplicates.every((d) => d.outcome === 'cancelled')).toBe(true)
    expect(new Set(first.duplicates.map((d) => d.transaction_id))).toEqual(new Set(victims.map((v) => v.transaction_id)))
    expect(first.flagged).toEqual([])

    const recorded = await app.db().selectFrom('provider_duplicates').selectAll().orderBy('id').execute()
    expect(recorded).toHaveLength(3)
    for (const d of recorded) {
      expect(d.provider).toBe('nts')
      expect(d.repaired_at).not.toBeNull()
      expect(d.repair_outcome).toMatch(/cancelled at provider/)
      expect(victims.map((v) => v.id)).toContain(Number(d.receipt_id))
      expect(victims.map((v) => v.approval_number)).not.toContain(d.approval_number)
    }
    // At the provider: the duplicates are cancelled, every ledger receipt is still live.
    const held = await heldAt()
    for (const a of dupApprovals) expect(held.find((h) => h.approvalNumber === a)?.status).toBe('cancelled')
    for (const r of rows) expect(held.find((h) => h.approvalNumber === r.approval_number)?.status).toBe('issued')
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    expect(sandbox.stats().max_receipts_per_key).toBe(2)
    const ledger = await app
      .db()
      .selectFrom('receipts')
      .select(['id', 'state', 'approval_number'])
      .where(
        'id',
        'in',
        victims.map((v) => v.id),
      )
      .execute()
    for (const l of ledger) expect(l).toMatchObject({ state: 'issued', approval_number: victims.find((v) => v.id === l.id)!.approval_number })

    // Reported: report --json lists them (repaired, so still on record), the dashboard's run page
    // shows them, and /metrics counts them.
    const rep = await runCli(['report', '--date', '2026-07-01', '--json'], env.env())
    expect(rep.code, rep.stderr).toBe(0)
    const json = JSON.parse(rep.stdout) as { duplicates: { transaction_id: string; approval_number: string; repaired_at: string | null; amount: number }[] }
    expect(json.duplicates.map((d) => d.approval_number).sort()).toEqual([...dupApprovals].sort())
    for (const d of json.duplicates) {
      expect(d.repaired_at).not.toBeNull()
      expect(d.amount).toBe(victims.find((v) => v.transaction_id === d.transaction_id)!.total_amount)
    }
    const dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
    try {
      const auth = { headers: { authorization: `Bearer ${TOKEN}` } }
      const families = parseExposition(await (await fetch(`${dashboard.url}/metrics`, auth)).text())
      expect(families.get('cash_receipts_duplicates_total')?.samples).toEqual([{ name: 'cash_receipts_duplicates_total', labels: { provider: 'nts' }, value: 3 }])
      expect(families.get('cash_receipts_duplicates_unrepaired')?.samples).toEqual([{ name: 'cash_receipts_duplicates_unrepaired', labels: { provider: 'nts' }, value: 0 }])
      const page = await (await fetch(`${dashboard.url}/runs/${victims[0]!.run_id}`, auth)).text()
      expect(page).toContain('발급사 중복 영수증: 3건 (미정정 0건)')
      const english = await (await fetch(`${dashboard.url}/runs/${victims[0]!.run_id}?lang=en`, auth)).text()
      expect(english).toContain('Duplicate receipts at providers: 3 (0 not repaired)')
      for (const a of dupApprovals) expect(page).toContain(a)
    } finally {
      await dashboard.close()
    }

    // A second reconcile finds nothing more and sends nothing.
    const cancelledBefore = sandbox.stats().providers.nts.cancelled
    const second = await app.reconcile('2026-07-01', '2026-07-02')
    expect(second.duplicates).toEqual([])
    expect(second.flagged).toEqual([])
    expect(sandbox.stats().providers.nts.cancelled).toBe(cancelledBefore)
    const after = await app.db().selectFrom('provider_duplicates').selectAll().orderBy('id').execute()
    expect(after).toEqual(recorded)
  })

  it('with cancelling switched off records and reports them but leaves them at the provider', async () => {
    const app = env.newApp({ RECONCILE_CANCEL_DUPLICATES: 'false' })
    expect(app.config.settle.reconcileCancelDuplicates).toBe(false)
    const rows = await issuedNtsRows(app, '2026-07-03', 'DUPOFF', 1)
    const victim = rows[0]!
    const dup = await issueDuplicate(app, victim)

    const first = await app.reconcile('2026-07-03', '2026-07-04')
    expect(first.duplicates).toEqual([expect.objectContaining({ transaction_id: victim.transaction_id, approval_number: dup, outcome: 'recorded' })])
    const row = await app.db().selectFrom('provider_duplicates').selectAll().where('receipt_id', '=', victim.id).executeTakeFirstOrThrow()
    expect(row).toMatchObject({ approval_number: dup, repaired_at: null })
    expect(row.repair_outcome).toMatch(/switched off/)
    expect((await heldAt()).find((h) => h.approvalNumber === dup)?.status).toBe('issued')
    // The alert DuplicateReceipts (docs/operations.md) fires on the open one: sum(unrepaired) > 0.
    expect(await unrepairedAtNts(app)).toBe(1)

    // Still open, so reported again, and still not cancelled; recorded once.
    const cancelledBefore = sandbox.stats().providers.nts.cancelled
    const second = await app.reconcile('2026-07-03', '2026-07-04')
    expect(second.duplicates).toEqual([expect.objectContaining({ approval_number: dup, outcome: 'recorded' })])
    expect(sandbox.stats().providers.nts.cancelled).toBe(cancelledBefore)
    expect(await app.db().selectFrom('provider_duplicates').select('id').where('receipt_id', '=', victim.id).execute()).toHaveLength(1)

    // Switched back on (the default), the next reconcile cancels it.
    const third = await env.app.reconcile('2026-07-03', '2026-07-04')
    expect(third.duplicates).toEqual([expect.objectContaining({ approval_number: dup, outcome: 'cancelled' })])
    expect((await heldAt()).find((h) => h.approvalNumber === dup)?.status).toBe('cancelled')
    expect((await heldAt()).find((h) => h.approvalNumber === victim.approval_number)?.status).toBe('issued')
    expect(await unrepairedAtNts(env.app)).toBe(0)
  })

  it('sends no duplicate cancel once another reconcile took the claim over before the send', async () => {
    const app = env.app
    const rows = await issuedNtsRows(app, '2026-07-07', 'DUPFENCE', 1)
    const victim = rows[0]!
    const dup = await issueDuplicate(app, victim)
    // This reconcile is frozen between its claim and its cancel request long enough for its claim
    // to go stale (0 ms here) and for a second reconcile to take it: made from inside the adapter,
    // right before the HTTP layer runs the fence.
    let takenOver = 0
    const source = app.providers()
    const providers: ProviderSource = {
      ...source,
      get(merchantId, name) {
        const got = source.get(merchantId, name)
        const provider = Object.assign(Object.create(got.provider) as typeof got.provider, {
          cancel: async (...args: Parameters<typeof got.provider.cancel>) => {
            takenOver += Number(
              (
                await app
                  .db()
                  .updateTable('provider_duplicates')
                  .set({ cancel_claimed_by: 'reconcile:the-other-one', cancel_started_at: new Date() })
                  .where('receipt_id', '=', victim.id)
                  .executeTakeFirst()
              ).numUpdatedRows,
            )
            return got.provider.cancel(...args)
          },
        })
        return { ...got, provider }
      },
    }
    const cancelRequestsBefore = sandbox.stats().providers.nts.cancelled
    const res = await reconcileDay({ db: app.db(), providers, logger: app.logger, duplicateClaimStaleMs: 0 }, '2026-07-07', '2026-07-08')
    expect(takenOver).toBe(1)
    expect(res.duplicates).toEqual([expect.objectContaining({ transaction_id: victim.transaction_id, approval_number: dup, outcome: 'cancel_in_progress' })])
    // Nothing went out: the duplicate is still live at NTS, and the other reconcile's claim stands.
    expect(sandbox.stats().providers.nts.cancelled).toBe(cancelRequestsBefore)
    expect((await heldAt()).find((h) => h.approvalNumber === dup)?.status).toBe('issued')
    const row = await app.db().selectFrom('provider_duplicates').selectAll().where('receipt_id', '=', victim.id).executeTakeFirstOrThrow()
    expect(row).toMatchObject({ repaired_at: null, cancel_claimed_by: 'reconcile:the-other-one' })

    // The claim holder (a reconcile whose claim is live) sends it once; a plain reconcile after that
    // finds it cancelled and closes it, sending nothing.
    await app.db().updateTable('provider_duplicates').set({ cancel_started_at: null, cancel_claimed_by: null }).where('id', '=', row.id).execute()
    const next = await app.reconcile('2026-07-07', '2026-07-08')
    expect(next.duplicates).toEqual([expect.objectContaining({ approval_number: dup, outcome: 'cancelled' })])
    expect(sandbox.stats().providers.nts.cancelled).toBe(cancelRequestsBefore + 1)
    expect((await heldAt()).find((h) => h.approvalNumber === victim.approval_number)?.status).toBe('issued')
  })

  it('flags an amount the provider holds that differs from the ledger', async () => {
    const app = env.app
    const rows = await issuedNtsRows(app, '2026-07-05', 'DUPAMT', 1)
    const victim = rows[0]!
    // Part of the receipt is cancelled at the provider behind the ledger's back.
    const { provider } = app.providers().get(victim.merchant_id, 'nts')
    const part = { ...amountsOf(victim), total: 1_000 }
    const c = await provider.cancel({
      providerKey: victim.provider_key,
      portonePayment: false,
      idempotencyKey: `amt-test-${victim.id}`,
      original: { approvalNumber: victim.approval_number, tradeDate: victim.trade_date, amounts: amountsOf(victim) },
      amounts: part,
      partial: true,
      reason: 1,
      purpose: victim.purpose,
    })
    expect(c.kind).toBe('cancelled')

    const res = await app.reconcile('2026-07-05', '2026-07-06')
    const flag = `amount mismatch: ledger ${victim.total_amount}, provider ${victim.total_amount - 1_000}`
    expect(res.flagged).toEqual([{ transaction_id: victim.transaction_id, provider: 'nts', flag }])
    expect(res.duplicates).toEqual([])
    const row = await app.db().selectFrom('receipts').select(['state', 'reconcile_flag']).where('id', '=', victim.id).executeTakeFirstOrThrow()
    expect(row).toEqual({ state: 'issued', reconcile_flag: flag })
  })
})
