/**
 * Faults around the operator paths and concurrent operations, on real Postgres, Redis and the
 * sandbox over HTTP (operator commands as separate `cash-receipts` processes):
 *
 * - a partial cancel at NTS (which does not deduplicate cancels) whose answer is lost after the
 *   provider committed it: the next attempt looks the receipt up before sending again, and finds the
 *   cancelled part; one cancel request, the ledger's cancelled amount = the provider's.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Worker } from 'bullmq'
import type { Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { importDay, settle } from '../helpers/pipeline.ts'
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
