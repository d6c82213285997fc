/**
 * Operator flows on real Postgres, Redis and the sandbox: concurrent migrate, reconcile (repair and
 * flag), a refund imported later cancelling an issued receipt, and a partial cancel.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { migrations } from '../../migrations/index.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import { requestCancellation } from '../../src/jobs/cancel-receipt.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { TEST_DB_NS, adminUrl, pgServerUrl } from '../helpers/env.ts'
import { IMPORT_HEADER } from '../../src/demo/generate.ts'

let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  env.app.startWorker({ concurrency: 4 })
})
afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

describe('migrate', () => {
  it('creates the database and migrates when two processes run it at the same moment', async () => {
    const name = `${TEST_DB_NS}_mig_${randomBytes(4).toString('hex')}`
    const url = `${pgServerUrl()}/${name}`
    try {
      const [a, b] = await Promise.all([runCli(['migrate', '--json'], env.env({ DATABASE_URL: url })), runCli(['migrate', '--json'], env.env({ DATABASE_URL: url }))])
      expect(a.code, a.stderr).toBe(0)
      expect(b.code, b.stderr).toBe(0)
      const c = new pg.Client({ connectionString: url })
      await c.connect()
      const rows = await c.query<{ name: string }>('SELECT name FROM kysely_migration ORDER BY name')
      expect(rows.rows.map((r) => r.name)).toEqual(Object.keys(migrations))
      const merchants = await c.query('SELECT count(*)::int AS n FROM merchants')
      expect(merchants.rows[0].n).toBe(env.config.merchants.length)
      await c.end()
      const again = await runCli(['migrate', '--json'], env.env({ DATABASE_URL: url }))
      expect(JSON.parse(again.stdout)).toEqual({ created: false, migrations: [] })
    } finally {
      const c = new pg.Client({ connectionString: adminUrl() })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    }
  })
})

describe('reconcile', () => {
  it('records a receipt the provider holds but the ledger lost, and flags ledger receipts the provider does not hold', async () => {
    const app = env.app
    await importDay(app, { businessDate: '2026-06-01', count: 20, seed: 11, providers: ['payssam', 'nts'], idPrefix: 'REC' })
    const summary = await settle(app, '2026-06-01')
    await waitForRun(app, summary.runId!)
    const victim = await app
      .db()
      .selectFrom('receipts')
      .select(['id', 'transaction_id'])
      .where('run_id', '=', summary.runId!)
      .where('state', '=', 'issued')
      .executeTakeFirstOrThrow()
    await app
      .db()
      .updateTable('receipts')
      .set({ state: 'failed', error_class: 'unknown_outcome', error_code: 'TIMEOUT', approval_number: null })
      .where('id', '=', victim.id)
      .execute()

    const deps = { db: app.db(), providers: app.providers(), logger: app.logger }
    const first = await reconcileDay(deps, '2026-06-01', '2026-06-02')
    expect(first.repaired).toEqual([expect.objectContaining({ transaction_id: victim.transaction_id, from: 'failed', to: 'issued' })])
    expect(first.flagged).toEqual([])
    const repaired = await app.db().selectFrom('receipts').select(['state', 'approval_number']).where('id', '=', victim.id).executeTakeFirstOrThrow()
    expect(repaired.state).toBe('issued')
    expect(repaired.approval_number).toMatch(/^\d{9}$/)

    sandbox.reset() // the provider "loses" everything: the ledger's issued receipts must be flagged, not changed
    const second = await reconcileDay(deps, '2026-06-01', '2026-06-02')
    // Every receipt reconcile checks (issued ones; skipped are not looked up) is now missing at the provider.
    expect(second.checked).toBe(first.checked)
    expect(second.flagged.length).toBe(second.checked)
    expect(second.repaired).toEqual([])
    const stillIssued = await app
      .db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('run_id', '=', summary.runId!)
      .where('reconcile_flag', '=', 'missing at provider')
      .executeTakeFirstOrThrow()
    expect(Number(stillIssued.n)).toBe(second.flagged.length)
  })
})

describe('reconcile compares amounts', () => {
  it('corrects a ledger amount the provider provably disagrees with, and flags one it cannot prove', async () => {
    const app = env.app
    await importDay(app, { businessDate: '2026-06-03', count: 16, seed: 13, providers: ['portone-v2', 'payssam'], idPrefix: 'AMT' })
    const summary = await settle(app, '2026-06-03')
    await waitForRun(app, summary.runId!)
    const [wrong, other] = await app.db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('state', '=', 'issued').orderBy('id').limit(2).execute()
    // The ledger says 1,000 more than the receipt the provider holds under the same approval number.
    await app
      .db()
      .updateTable('receipts')
      .set({ total_amount: wrong!.total_amount + 1000, supply_amount: wrong!.supply_amount + 1000 })
      .where('id', '=', wrong!.id)
      .execute()
    // A receipt partly cancelled in the ledger that the provider holds for another amount: not provable.
    await app.db().updateTable('receipts').set({ cancelled_amount: 1 }).where('id', '=', other!.id).execute()

    const result = await reconcileDay({ db: app.db(), providers: app.providers(), logger: app.logger }, '2026-06-03', '2026-06-04')
    expect(result.amounts_corrected).toEqual([
      { transaction_id: wrong!.transaction_id, provider: wrong!.provider, ledger_amount: wrong!.total_amount + 1000, provider_amount: wrong!.total_amount },
    ])
    expect(result.flagged).toEqual([
      { transaction_id: other!.transaction_id, provider: other!.provider, flag: `amount mismatch: ledger ${other!.total_amount - 1}, provider ${other!.total_amount}` },
    ])
    const fixed = await app.db().selectFrom('receipts').selectAll().where('id', '=', wrong!.id).executeTakeFirstOrThrow()
    expect([fixed.total_amount, fixed.supply_amount, fixed.vat_amount, fixed.reconcile_flag]).toEqual([wrong!.total_amount, wrong!.supply_amount, wrong!.vat_amount, null])
    // A second pass finds nothing more to correct.
    expect((await reconcileDay({ db: app.db(), providers: app.providers(), logger: app.logger }, '2026-06-03', '2026-06-04')).amounts_corrected).toEqual([])
  })
})

describe('cancellation', () => {
  it('a transaction re-imported as cancelled cancels its issued receipt', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crt-ops-'))
    const row: Record<string, string> = {
      transaction_id: 'REFUND-1',
      merchant_id: 'm-clinic',
      provider: 'portone-v2',
      payment_ref: 'pay-refund-1',
      order_id: 'O-REFUND-1',
      order_name: '진료비',
      method: 'bank_transfer',
      amount: '55000',
      tax_free_amount: '0',
      service_fee: '0',
      paid_at: '2026-05-01T11:00:00+09:00',
      identifier: '01055556666',
      identifier_type: '',
      purpose: 'deduction',
      buyer_name: '',
      buyer_email: '',
      buyer_tel: '',
      status: 'completed',
      refunded_amount: '0',
    }
    const csv = (r: Record<string, string>) => `${IMPORT_HEADER.join(',')}\n${IMPORT_HEADER.map((h) => r[h] ?? '').join(',')}\n`
    await writeFile(join(dir, 'a.csv'), csv(row))
    expect((await runCli(['import', join(dir, 'a.csv')], env.env())).code).toBe(0)
    const s = await settle(env.app, '2026-05-01')
    await waitForRun(env.app, s.runId!)

    await writeFile(join(dir, 'b.csv'), csv({ ...row, status: 'cancelled' }))
    const reimport = await runCli(['import', join(dir, 'b.csv'), '--json'], env.env())
    expect(reimport.code, reimport.stderr).toBe(0)
    const out = JSON.parse(reimport.stdout)
    expect(out).toMatchObject({ updated: 1 })
    expect(out.cancellations).toEqual([{ transaction_id: 'REFUND-1', result: 'cancellation of 55000 enqueued', action: 'cancel', cancel_amount: 55000, reissue_amount: null }])
    await eventually(async () => {
      const r = await env.app.db().selectFrom('receipts').select('state').where('transaction_id', '=', 'REFUND-1').where('kind', '=', 'issue').executeTakeFirstOrThrow()
      return r.state === 'cancelled'
    })
    const going = await writeFile(join(dir, 'c.csv'), csv(row)).then(() => runCli(['import', join(dir, 'c.csv')], env.env()))
    expect(going.code).toBe(2)
    expect(going.stderr).toMatch(/line 2: status: was cancelled in an earlier import/)
  })

  it('cancels part of an NTS receipt; the provider keeps the rest and more than what is left is refused', async () => {
    await importDay(env.app, { businessDate: '2026-04-01', count: 6, seed: 13, providers: ['nts'], idPrefix: 'PART' })
    const s = await settle(env.app, '2026-04-01')
    await waitForRun(env.app, s.runId!)
    const target = await env.app
      .db()
      .selectFrom('receipts')
      .select(['transaction_id', 'total_amount', 'provider_key'])
      .where('run_id', '=', s.runId!)
      .where('state', '=', 'issued')
      .executeTakeFirstOrThrow()
    const deps = { db: env.app.db(), queue: env.app.receiptsQueue(), providers: env.app.providers() }
    const part = await requestCancellation(deps, { transactionId: target.transaction_id, amount: 1_000, reason: 1 })
    expect(part.partial).toBe(true)
    await eventually(async () => {
      const r = await env.app
        .db()
        .selectFrom('receipts')
        .select(['state', 'cancelled_amount'])
        .where('transaction_id', '=', target.transaction_id)
        .where('kind', '=', 'issue')
        .executeTakeFirstOrThrow()
      return r.cancelled_amount === 1_000 && r.state === 'issued'
    })
    const held = (await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as { receipts: { key: string; amount: number }[] }
    expect(held.receipts.find((r) => r.key === target.provider_key)?.amount).toBe(target.total_amount - 1_000)
    await expect(requestCancellation(deps, { transactionId: target.transaction_id, amount: target.total_amount, reason: 1 })).rejects.toThrow(/exceeds the .* still receipted/)
  })
})
