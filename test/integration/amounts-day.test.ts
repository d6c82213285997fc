/**
 * Issue 20's done-when check, on real Postgres, Redis and the sandbox over HTTP: a day over every
 * provider and method (Naver Pay included), then refunds imported later — full cancels and partial
 * refunds at providers that cancel partially and at ones that cancel only in full — ends with the
 * ledger's amount equal to the provider's for every receipt, and the report's amount_issued equal to
 * the providers' total.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { toCsv } from '../../src/demo/generate.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { RECOVERY_GRACE_MS: '0', RECOVERY_INTERVAL_MS: '2000' } })
  env.app.startWorker({ concurrency: 8 })
}, 60_000)

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

describe('a day with refunds', () => {
  it("ends with ledger amount = provider amount for every receipt, and amount_issued = the providers' total", async () => {
    const app = env.app
    const day = await importDay(app, { businessDate: '2026-09-14', count: 120, seed: 20, idPrefix: 'AD' }, (p) =>
      sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))),
    )
    expect(new Set(day.rows.map((r) => r.method))).toContain('naverpay')
    const run = (await settle(app, '2026-09-14')).runId!
    await waitForRun(app, run, 90_000)

    // Refunds imported later: per provider a partial refund and a full cancel of an issued receipt
    // (PortOne V1 only for external receipts: its imp_uid route cannot re-issue).
    const issued = await app
      .db()
      .selectFrom('receipts')
      .select(['transaction_id', 'provider', 'portone_payment'])
      .where('run_id', '=', run)
      .where('state', '=', 'issued')
      .where('kind', '=', 'issue')
      .orderBy('id')
      .execute()
    const picks = new Map<string, 'partial' | 'cancel'>()
    for (const p of ['portone', 'portone-v2', 'payssam', 'nts', 'toss', 'popbill']) {
      const of = issued.filter((r) => r.provider === p && !(p === 'portone' && r.portone_payment))
      if (of[0]) picks.set(of[0].transaction_id, 'partial')
      if (of[1]) picks.set(of[1].transaction_id, 'cancel')
    }
    expect(picks.size).toBeGreaterThan(6)
    const rows = day.rows
      .filter((r) => picks.has(r.transaction_id!))
      .map((r) => {
        const amount = Number(r.amount)
        return picks.get(r.transaction_id!) === 'cancel' ? { ...r, status: 'cancelled' } : { ...r, refunded_amount: String(Math.floor(amount / 3)) }
      })
    const dir = await mkdtemp(join(tmpdir(), 'crt-amounts-'))
    await writeFile(join(dir, 'refunds.csv'), toCsv({ ...day, rows }))
    const res = await app.importFile(join(dir, 'refunds.csv'), { nowMs: Date.now() })
    expect(res.updated).toBe(rows.length)
    const requested = await app.cancelChanged(res.changedTransactionIds)
    expect(requested.filter((c) => c.action === 'needs_attention')).toEqual([])
    // Popbill revokes part of a receipt only once it is filed: the same-day partial refund of a
    // provisional one is a withdrawal in full and a re-issue of what is still paid.
    const popbillPartial = [...picks].find(([id, how]) => how === 'partial' && issued.find((r) => r.transaction_id === id)?.provider === 'popbill')
    expect(popbillPartial).toBeDefined()
    expect(requested.find((c) => c.transaction_id === popbillPartial![0])?.action).toBe('cancel_and_reissue')

    // Everything settles: no cancel or re-issue left in flight.
    await eventually(
      async () => {
        const open = await app.db().selectFrom('receipts').select('id').where('state', 'in', ['pending', 'issuing', 'cancelling']).where('trade_date', '=', '2026-09-14').execute()
        return open.length === 0
      },
      90_000,
      250,
    )

    // Every live receipt: the ledger's amount is the provider's.
    const live = await app
      .db()
      .selectFrom('receipts')
      .select(['provider', 'provider_key', 'total_amount', 'cancelled_amount'])
      .where('trade_date', '=', '2026-09-14')
      .where('kind', '=', 'issue')
      .where('state', '=', 'issued')
      .execute()
    const held = sandbox.receipts().filter((r) => r.status === 'issued')
    const heldByKey = new Map(held.map((r) => [r.key, r.amount]))
    for (const r of live) expect([r.provider_key, heldByKey.get(r.provider_key)]).toEqual([r.provider_key, r.total_amount - r.cancelled_amount])
    const providersTotal = held.reduce((n, r) => n + r.amount, 0)
    const report = await app.report({ runId: run })
    expect(report.amount_issued).toBe(providersTotal)
    expect(live.length).toBe(held.length)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  }, 240_000)
})
