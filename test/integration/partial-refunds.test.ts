/**
 * Partial refunds at providers that cancel only in full, on real Postgres, Redis, the sandbox over
 * HTTP and the CLI: a re-import with a larger refunded_amount cancels the receipt in full and, once
 * the cancel is accepted, issues a new receipt (its own row and keys) for what is still paid; where
 * that is impossible (PortOne V1's imp_uid route) the import says so loudly and exits 3.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { IMPORT_HEADER } from '../../src/demo/generate.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { runCli, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv
let dir: string

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  env.app.startWorker({ concurrency: 4 })
  dir = await mkdtemp(join(tmpdir(), 'crt-refund-'))
}, 60_000)

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const db = () => env.app.db()
const csv = (rows: Record<string, string>[]) => `${IMPORT_HEADER.join(',')}\n${rows.map((r) => IMPORT_HEADER.map((h) => r[h] ?? '').join(',')).join('\n')}\n`
const tx = (over: Record<string, string>): Record<string, string> => ({
  merchant_id: 'm-clinic',
  order_name: '진료비',
  method: 'bank_transfer',
  amount: '55000',
  tax_free_amount: '0',
  service_fee: '0',
  paid_at: '2026-05-11T11:00:00+09:00',
  identifier: '01055556666',
  identifier_type: '',
  purpose: 'deduction',
  buyer_name: '',
  buyer_email: '',
  buyer_tel: '',
  status: 'completed',
  refunded_amount: '0',
  ...over,
})
async function importRows(name: string, rows: Record<string, string>[]) {
  await writeFile(join(dir, name), csv(rows))
  return runCli(['import', join(dir, name), '--json'], env.env())
}
const receiptsOf = (transactionId: string) => db().selectFrom('receipts').selectAll().where('transaction_id', '=', transactionId).orderBy('kind', 'desc').orderBy('seq').execute()

describe('a partial refund at a provider that cancels only in full', () => {
  it('cancels the receipt in full, then issues a new receipt for what is still paid, exactly once', async () => {
    const v2 = tx({ transaction_id: 'PR-V2', provider: 'portone-v2', payment_ref: 'pay-pr-v2', order_id: 'O-PR-V2' })
    const ps = tx({ transaction_id: 'PR-PS', provider: 'payssam', payment_ref: '', order_id: 'O-PR-PS', amount: '33000' })
    expect((await importRows('a.csv', [v2, ps])).code).toBe(0)
    await waitForRun(env.app, (await settle(env.app, '2026-05-11')).runId!)

    const re = await importRows('b.csv', [
      { ...v2, refunded_amount: '20000' },
      { ...ps, refunded_amount: '3000' },
    ])
    expect(re.code, re.stderr).toBe(0)
    const out = JSON.parse(re.stdout)
    expect(out).toMatchObject({ updated: 2 })
    expect(out.cancellations).toEqual([
      expect.objectContaining({ transaction_id: 'PR-V2', action: 'cancel_and_reissue', cancel_amount: 55000, reissue_amount: 35000 }),
      expect.objectContaining({ transaction_id: 'PR-PS', action: 'cancel_and_reissue', cancel_amount: 33000, reissue_amount: 30000 }),
    ])

    for (const [id, still] of [
      ['PR-V2', 35000],
      ['PR-PS', 30000],
    ] as const) {
      const rows = await eventually(async () => {
        const r = await receiptsOf(id)
        return r.some((x) => x.kind === 'issue' && x.seq === 1 && x.state === 'issued') ? r : undefined
      }, 30_000)
      const [original, reissue] = rows.filter((r) => r.kind === 'issue')
      const cancel = rows.find((r) => r.kind === 'cancel')!
      expect(original).toMatchObject({ seq: 0, state: 'cancelled' })
      expect(cancel).toMatchObject({ state: 'issued', parent_receipt_id: original!.id, reissue_amount: still })
      expect(reissue).toMatchObject({ seq: 1, state: 'issued', total_amount: still, replaces_receipt_id: original!.id })
      expect(reissue!.provider_key).not.toBe(original!.provider_key)
      // The re-issue exists only from the cancel's acceptance on: it was sent after the cancel was confirmed.
      expect(reissue!.created_at.getTime()).toBeGreaterThanOrEqual(cancel.finished_at!.getTime())
      const atProvider = sandbox.receipts(original!.provider)
      expect(
        atProvider
          .filter((r) => r.key === original!.provider_key || r.key === reissue!.provider_key)
          .map((r) => [r.status, r.amount])
          .sort(),
      ).toEqual([
        ['cancelled', 0],
        ['issued', still],
      ])
    }
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)

    // The same file again changes nothing and requests nothing.
    const again = await importRows('b.csv', [
      { ...v2, refunded_amount: '20000' },
      { ...ps, refunded_amount: '3000' },
    ])
    expect(JSON.parse(again.stdout)).toMatchObject({ updated: 0, cancellations: [] })
    // A further refund cancels the re-issue in full and re-issues again (seq 2).
    const third = await importRows('c.csv', [{ ...v2, refunded_amount: '25000' }])
    expect(JSON.parse(third.stdout).cancellations).toEqual([expect.objectContaining({ action: 'cancel_and_reissue', cancel_amount: 35000, reissue_amount: 30000 })])
    const last = await eventually(async () => {
      const r = (await receiptsOf('PR-V2')).find((x) => x.kind === 'issue' && x.seq === 2)
      return r?.state === 'issued' ? r : undefined
    }, 30_000)
    expect(last.total_amount).toBe(30000)
    const report = await env.app.report({ runId: last.run_id! })
    expect(report.reissued).toBe(3)
    expect(report.needs_attention).toEqual([])
  }, 90_000)

  it('says so loudly where a new receipt cannot be issued: NEEDS ATTENTION, exit 3, the receipt flagged', async () => {
    sandbox.registerPortonePayments([{ imp_uid: 'imp_pr_v1', amount: 44000, status: 'paid' }])
    const v1 = tx({ transaction_id: 'PR-V1', provider: 'portone', payment_ref: 'imp_pr_v1', order_id: 'O-PR-V1', amount: '44000', paid_at: '2026-05-12T11:00:00+09:00' })
    expect((await importRows('d.csv', [v1])).code).toBe(0)
    await waitForRun(env.app, (await settle(env.app, '2026-05-12')).runId!)
    await writeFile(join(dir, 'e.csv'), csv([{ ...v1, refunded_amount: '4000' }]))
    const text = await runCli(['import', join(dir, 'e.csv')], env.env())
    expect(text.code).toBe(3)
    expect(text.stderr).toMatch(/NEEDS ATTENTION PR-V1: needs attention: portone cancels only in full/)
    const [issue] = await receiptsOf('PR-V1')
    expect(issue).toMatchObject({ state: 'issued', total_amount: 44000 })
    expect(issue!.reconcile_flag).toMatch(/^partial refund not receipted/)
    const report = await env.app.report({ runId: issue!.run_id! })
    expect(report.needs_attention).toEqual([{ transaction_id: 'PR-V1', provider: 'portone', reason: issue!.reconcile_flag }])
    // And on the dashboard's page of the run.
    const dashboard = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
    try {
      const page = await (await fetch(`${dashboard.url}/runs/${issue!.run_id}`)).text()
      expect(page).toContain('확인 필요: 1건')
      expect(await (await fetch(`${dashboard.url}/runs/${issue!.run_id}?lang=en`)).text()).toContain('Needs attention: 1')
      expect(page).toMatch(/<td>PR-V1<\/td>\s*<td>portone<\/td>\s*<td>partial refund not receipted/)
    } finally {
      await dashboard.close()
    }
  }, 60_000)
})
