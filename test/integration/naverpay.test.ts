/**
 * Naver Pay (PortOne V1, 결제형) on real Postgres, Redis and the sandbox over HTTP. PortOne's
 * `POST /receipts/{imp_uid}` does not support naverpay (501) and would receipt the whole payment; the
 * cash-funded part, read from `/payments/{imp_uid}/naver/cash-amount`, is issued as an external receipt.
 * The ledger amount equals what the provider holds on every path: the direct issue, a lookup after a
 * worker died between the provider's yes and the record, and the read-back after "already issued".
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { GeneratedDay } from '../../src/demo/generate.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv
let day: GeneratedDay
let runId: number

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { RECOVERY_INTERVAL_MS: '0', RECOVERY_GRACE_MS: '0' } })
  day = await importDay(env.app, { businessDate: '2026-10-09', count: 60, seed: 12, providers: ['portone'], idPrefix: 'NP' }, (p) =>
    sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))),
  )
  runId = (await settle(env.app, '2026-10-09')).runId!
  env.app.startWorker({ concurrency: 8 })
  await waitForRun(env.app, runId, 60_000)
}, 120_000)

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const db = () => env.app.db()
const cashOf = (impUid: string) => day.portonePayments.find((p) => p.imp_uid === impUid)!.naver!
/** What the sandbox holds per key (merchant_uid or imp_uid), live receipts only. */
const heldAt = () =>
  new Map(
    sandbox
      .receipts('portone')
      .filter((r) => r.status === 'issued')
      .map((r) => [r.key, r]),
  )

async function naverRows() {
  return db()
    .selectFrom('receipts as r')
    .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
    .select(['r.id', 'r.state', 'r.provider_key', 'r.portone_payment', 'r.total_amount', 'r.vat_amount', 'r.supply_amount', 't.amount', 't.payment_ref'])
    .where('r.run_id', '=', runId)
    .where('r.kind', '=', 'issue')
    .where('t.method', '=', 'naverpay')
    .orderBy('r.id')
    .execute()
}

describe('Naver Pay cash part', () => {
  it('PortOne refuses the imp_uid route for a Naver Pay payment (501), as its schema lists no naverpay there', async () => {
    const impUid = day.portonePayments.find((p) => p.naver)!.imp_uid
    const token = await fetch(`${sandbox.url}/portone/users/getToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ imp_key: 'imp_key_m-acme', imp_secret: 'imp_secret_m-acme' }),
    }).then((r) => r.json() as Promise<{ response: { access_token: string } }>)
    const res = await fetch(`${sandbox.url}/portone/receipts/${impUid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token.response.access_token}` },
      body: JSON.stringify({ identifier: '01012345678', identifier_type: 'phone', type: 'person' }),
    })
    expect(res.status).toBe(501)
  })

  it('is issued externally for the cash amount, and the ledger holds what the provider holds', async () => {
    const rows = await naverRows()
    const issued = rows.filter((r) => r.state === 'issued')
    expect(issued.length).toBeGreaterThan(3)
    const held = heldAt()
    for (const r of issued) {
      const cash = cashOf(r.payment_ref!)
      expect(cash.amount_total).toBeLessThan(r.amount) // a part paid otherwise: not receipted
      expect(r.portone_payment).toBe(false)
      const h = held.get(r.provider_key)
      expect(h?.amount).toBe(cash.amount_total)
      expect([r.total_amount, r.vat_amount, r.supply_amount]).toEqual([cash.amount_total, cash.amount_vat, cash.amount_supply])
    }
    // The report's issued amount is the providers' total for the run.
    const ledger = await db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.sum<number>('total_amount').as('s'))
      .where('run_id', '=', runId)
      .where('state', '=', 'issued')
      .executeTakeFirstOrThrow()
    const sandboxTotal = [...held.values()].reduce((n, h) => n + h.amount, 0)
    expect(Number(ledger.s)).toBe(sandboxTotal)
  })

  it('a receipt found by lookup after a crash is recorded for the amount the provider holds, not the settlement amount', async () => {
    const [r] = (await naverRows()).filter((x) => x.state === 'issued')
    // The worker died after PortOne's yes and before the record: the row is issuing with the settlement's full amount.
    await sql`UPDATE receipts SET state = 'issuing', locked_by = 'dead-1', locked_until = now() - interval '1 second', total_amount = ${r!.amount},
      supply_amount = ${r!.amount - Math.floor((2 * r!.amount + 11) / 22)}, vat_amount = ${Math.floor((2 * r!.amount + 11) / 22)}, approval_number = NULL, finished_at = NULL
      WHERE id = ${r!.id}`.execute(db())
    const issuesBefore = sandbox.stats().providers.portone!.issued
    expect((await env.app.recover()).requeued).toBe(1)
    const done = await eventually(async () => {
      const x = await db().selectFrom('receipts').selectAll().where('id', '=', r!.id).executeTakeFirstOrThrow()
      return x.state === 'issued' ? x : undefined
    }, 20_000)
    const cash = cashOf(r!.payment_ref!)
    expect([done.total_amount, done.vat_amount, done.supply_amount]).toEqual([cash.amount_total, cash.amount_vat, cash.amount_supply])
    expect(done.approval_number).not.toBeNull()
    expect(sandbox.stats().providers.portone!.issued).toBe(issuesBefore) // looked up, not issued again
  })

  it('the read-back after "already issued" records the amount the provider holds', async () => {
    const [, r] = (await naverRows()).filter((x) => x.state === 'issued')
    // A row pending again without a lookup mark (its record lost): the issue call meets the receipt PortOne holds.
    await sql`UPDATE receipts SET state = 'pending', needs_lookup = false, total_amount = ${r!.amount}, approval_number = NULL, finished_at = NULL
      WHERE id = ${r!.id}`.execute(db())
    const issuesBefore = sandbox.stats().providers.portone!.issued
    expect((await env.app.recover()).requeued).toBe(1)
    const done = await eventually(async () => {
      const x = await db().selectFrom('receipts').selectAll().where('id', '=', r!.id).executeTakeFirstOrThrow()
      return x.state === 'issued' ? x : undefined
    }, 20_000)
    expect(done.total_amount).toBe(cashOf(r!.payment_ref!).amount_total)
    expect(sandbox.stats().providers.portone!.issued).toBe(issuesBefore)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    const attempts = await db().selectFrom('issuance_attempts').select(['operation', 'outcome']).where('receipt_id', '=', r!.id).orderBy('started_at').orderBy('id').execute()
    // PortOne answers a second issue with 400; the adapter reads the key back (already issued), then the worker does.
    expect(attempts.slice(-3)).toEqual([
      { operation: 'issue', outcome: 'permanent' },
      { operation: 'lookup', outcome: 'issued' },
      { operation: 'lookup', outcome: 'issued' },
    ])
  })
})
