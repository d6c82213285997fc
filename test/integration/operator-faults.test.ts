/**
 * Faults around the operator paths and concurrent operations, on real Postgres, Redis and the
 * sandbox over HTTP (operator commands as separate `cash-receipts` processes):
 *
 * - a partial cancel at NTS (which does not deduplicate cancels) whose answer is lost after the
 *   provider committed it: the next attempt looks the receipt up before sending again, and finds the
 *   cancelled part; one cancel request, the ledger's cancelled amount = the provider's;
 * - a cancel whose outcome stayed unknown after its last attempt: no further cancel of the receipt
 *   (its amount would be judged against the ledger's figure alone) until a re-drive has looked it up;
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Worker } from 'bullmq'
import type { Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { importDay, runCli, settle } from '../helpers/pipeline.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'

let sandbox: Sandbox
let env: TestEnv
useSandboxEnv({ env: { RECOVERY_INTERVAL_MS: '0' } }, (s, e) => ((sandbox = s), (env = e)))

const db = () => env.app.db()
let workers: Worker[] = []
afterEach(async () => {
  await Promise.all(workers.map((w) => w.close()))
  workers = []
})

/** Issues a small NTS day through an in-process worker; the issued rows. */
async function issuedDay(app: App, businessDate: string, idPrefix: string, seed: number) {
  await importDay(env.app, { businessDate, count: 6, seed, providers: ['nts'], idPrefix })
  const summary = await settle(app, businessDate)
  workers.push(app.startWorker({ concurrency: 4 }))
  return eventually(async () => {
    const rows = await db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('kind', '=', 'issue').orderBy('id').execute()
    return rows.every((r) => r.state === 'issued' || r.state === 'skipped') ? rows.filter((r) => r.state === 'issued') : undefined
  }, 30_000, 100)
}

/** The next NTS receipt operations (issue, cancel, lookup) get these faults, in order. */
async function ntsNext(next: string[]) {
  const res = await fetch(`${sandbox.url}/_sandbox/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider: 'nts', next }) })
  expect(res.ok).toBe(true)
}

async function ntsHeld(approvalNumber: string | null) {
  const held = (await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as { receipts: { approvalNumber: string; amount: number; issuedAmount: number; status: string }[] }
  return held.receipts.find((h) => h.approvalNumber === approvalNumber)
}

describe('a partial cancel whose answer is lost at a provider that does not deduplicate', () => {
  it('is looked up before any resend: one cancel request, the cancelled part recorded once', async () => {
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '1000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: '2000', WORKER_ATTEMPTS: '4', WORKER_BACKOFF_MS: '100' })
    const [victim] = await issuedDay(app, '2026-10-05', 'PCX', 31)
    expect(victim).toBeDefined()
    // The cancel commits at NTS and its answer never comes back (the client gives up after 1 s).
    await ntsNext(['timeout_after_commit'])
    const part = 1_000
    const requested = await app.cancel({ transactionId: victim!.transaction_id, amount: part, reason: 1 })
    expect(requested.partial).toBe(true)
    const cancelRow = () => db().selectFrom('receipts').selectAll().where('id', '=', requested.cancelReceiptId).executeTakeFirstOrThrow()
    const done = await eventually(async () => {
      const row = await cancelRow()
      return row.state === 'issued' || row.state === 'failed' ? row : undefined
    }, 40_000, 100)
    expect(done.state).toBe('issued')

    // NTS holds the receipt with exactly the part cancelled, once; the ledger agrees.
    const held = await ntsHeld(victim!.approval_number)
    expect(held).toMatchObject({ status: 'issued', issuedAmount: victim!.total_amount, amount: victim!.total_amount - part })
    const parent = await db().selectFrom('receipts').select(['state', 'cancelled_amount']).where('id', '=', victim!.id).executeTakeFirstOrThrow()
    expect(parent).toEqual({ state: 'issued', cancelled_amount: part })
    // One cancel request (its answer lost); the lookup before any resend found the part cancelled.
    const attempts = await db().selectFrom('issuance_attempts').select(['operation', 'outcome']).where('receipt_id', '=', done.id).orderBy('id').execute()
    expect(attempts.filter((a) => a.operation === 'cancel').map((a) => a.outcome)).toEqual(['unknown_outcome'])
    expect(attempts.at(-1)).toMatchObject({ operation: 'lookup' })
  }, 90_000)
})

describe('a cancel whose outcome stayed unknown', () => {
  it('blocks further cancels of the receipt, in KRW, until a re-drive has looked it up', async () => {
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '1000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: '500', WORKER_ATTEMPTS: '1', WORKER_BACKOFF_MS: '100' })
    const [victim] = await issuedDay(app, '2026-10-06', 'PCU', 32)
    const tx = victim!.transaction_id
    const total = victim!.total_amount
    // The cancel of 3000 commits at NTS and its answer is lost; with one attempt it ends failed, outcome unknown.
    await ntsNext(['timeout_after_commit'])
    const first = await app.cancel({ transactionId: tx, amount: 3_000, reason: 1 })
    const failed = await eventually(async () => {
      const row = await db().selectFrom('receipts').selectAll().where('id', '=', first.cancelReceiptId).executeTakeFirstOrThrow()
      return row.state === 'failed' ? row : undefined
    }, 30_000, 100)
    expect(failed).toMatchObject({ needs_lookup: true, error_class: 'unknown_outcome' })
    expect((await ntsHeld(victim!.approval_number))?.amount).toBe(total - 3_000)

    // The ledger still says nothing is cancelled; a cancel of everything, or of more than the 3000
    // NTS may already have cancelled leaves, is refused before anything is created or sent.
    const full = await runCli(['cancel', tx, '--json'], env.env())
    expect(full.code, full.stdout).toBe(2)
    expect(full.stderr).toContain(`an earlier cancellation of 3000 KRW for ${tx} (receipt ${first.cancelReceiptId}) failed with its outcome unknown`)
    expect(full.stderr).toContain(`${total - 3_000} to ${total} of ${total} KRW may still be receipted at nts`)
    expect(full.stderr).toContain('--class unknown_outcome')
    await expect(app.cancel({ transactionId: tx, amount: total - 1_000, reason: 1 })).rejects.toThrow(/outcome unknown/)
    expect(await db().selectFrom('receipts').select('id').where('parent_receipt_id', '=', victim!.id).execute()).toHaveLength(1)

    // The re-drive looks the cancel up and records what NTS holds; nothing is sent again.
    const again = await runCli(['redrive', '--date', '2026-10-06', '--class', 'unknown_outcome', '--json'], env.env())
    expect(again.code, again.stderr).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ count: 1 })
    await eventually(async () => (await db().selectFrom('receipts').select('state').where('id', '=', first.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued', 30_000, 100)
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: 3_000 })

    // Now the figures are known: more than the rest is refused in KRW, the rest is cancelled once.
    await expect(app.cancel({ transactionId: tx, amount: total - 3_000 + 1, reason: 1 })).rejects.toThrow(`--amount: ${total - 3_000 + 1} exceeds the ${total - 3_000} still receipted for ${tx}`)
    const rest = await app.cancel({ transactionId: tx, amount: total - 3_000, reason: 1 })
    await eventually(async () => (await db().selectFrom('receipts').select('state').where('id', '=', rest.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued', 30_000, 100)
    expect(await ntsHeld(victim!.approval_number)).toMatchObject({ status: 'cancelled', amount: 0 })
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: total })
    const sends = await db().selectFrom('issuance_attempts').select(['receipt_id']).where('receipt_id', 'in', [first.cancelReceiptId, rest.cancelReceiptId]).where('operation', '=', 'cancel').execute()
    expect(sends.map((a) => a.receipt_id).sort()).toEqual([first.cancelReceiptId, rest.cancelReceiptId].sort())
  }, 120_000)
})
