/**
 * Faults around the operator paths and concurrent operations, on real Postgres, Redis and the
 * sandbox over HTTP (operator commands as separate `cash-receipts` processes):
 *
 * - a partial cancel at NTS (which does not deduplicate cancels) whose answer is lost after the
 *   provider committed it: the next attempt looks the receipt up before sending again, and finds the
 *   cancelled part; one cancel request, the ledger's cancelled amount = the provider's; the same
 *   when the worker process is SIGKILLed mid-call and another takes the row over;
 * - a cancel whose outcome stayed unknown after its last attempt: no further cancel of the receipt
 *   (its amount would be judged against the ledger's figure alone) until a re-drive has looked it up;
 * - a cancel requested while the issue is in flight, and two operators cancelling one receipt at
 *   the same moment (two processes): refused, and one cancel row, sent once;
 * - two re-drives of the same failed receipts at the same moment (two processes): each receipt
 *   re-driven once, one job each, one receipt per key at NTS;
 * - reconcile while a worker's issue has committed at NTS but not in the ledger (its answer still
 *   out): the row is neither repaired, nor flagged, nor its receipt taken for a duplicate; afterwards
 *   ledger and NTS agree, one receipt per key;
 * - reconcile while a partial cancel has committed at NTS but not in the ledger: the receipt is not
 *   flagged for an amount the ledger is about to record; afterwards reconcile matches it; a partial
 *   cancel of the rest in flight is not taken for a cancel the ledger missed (the worker records it,
 *   the cancelled amount included);
 * - a re-drive after a cancel failed and was asked again: the failed one is superseded, never sent;
 * - a re-drive racing the new cancel request itself (the request between its checks and its insert):
 *   one of the two cancels goes, never both.
 */
import { sql } from 'kysely'
import { afterEach, describe, expect, it } from 'vitest'
import type { Worker } from 'bullmq'
import type { Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { applyTransitions, claimReceipts } from '../../src/db/ledger.ts'
import { issueJobId } from '../../src/queue/queues.ts'
import { importDay, runCli, settle, spawnCli, stopChild } from '../helpers/pipeline.ts'
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
  return eventually(
    async () => {
      const rows = await db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('kind', '=', 'issue').orderBy('id').execute()
      return rows.every((r) => r.state === 'issued' || r.state === 'skipped') ? rows.filter((r) => r.state === 'issued') : undefined
    },
    30_000,
    100,
  )
}

/** The next NTS receipt operations (issue, cancel, lookup) get these faults, in order. */
async function ntsNext(next: string[]) {
  const res = await fetch(`${sandbox.url}/_sandbox/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ provider: 'nts', next }) })
  expect(res.ok).toBe(true)
}

async function ntsHeld(approvalNumber: string | null) {
  const held = (await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as {
    receipts: { approvalNumber: string; amount: number; issuedAmount: number; status: string }[]
  }
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
    const done = await eventually(
      async () => {
        const row = await cancelRow()
        return row.state === 'issued' || row.state === 'failed' ? row : undefined
      },
      40_000,
      100,
    )
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

describe('a worker SIGKILLed in the middle of a partial cancel call', () => {
  it('leaves the cancel to the next worker, which looks it up and sends nothing again', async () => {
    const [victim] = await issuedDay(env.app, '2026-10-10', 'PCK', 36)
    await Promise.all(workers.map((w) => w.close()))
    workers = []
    // Short job locks, so the killed worker's job stalls back quickly; the row's lease is the call budget.
    const processEnv = env.env({
      WORKER_LOCK_MS: '2000',
      WORKER_STALLED_INTERVAL_MS: '1000',
      WORKER_LEASE_MS: '2000',
      HTTP_READ_TIMEOUT_MS: '5000',
      HTTP_CONNECT_TIMEOUT_MS: '500',
      NTS_COMMIT_WINDOW_MS: '1000',
    })
    // The cancel commits at NTS and its answer never comes: the worker is killed while it waits.
    await ntsNext(['timeout_after_commit'])
    const first = spawnCli(['worker', '--concurrency', '1'], processEnv)
    const second: { child?: ReturnType<typeof spawnCli> } = {}
    try {
      const part = 2_000
      const requested = await env.app.cancel({ transactionId: victim!.transaction_id, amount: part, reason: 1 })
      const cancelRow = () => db().selectFrom('receipts').selectAll().where('id', '=', requested.cancelReceiptId).executeTakeFirstOrThrow()
      await eventually(async () => (await ntsHeld(victim!.approval_number))?.amount === victim!.total_amount - part && (await cancelRow()).state === 'issuing', 120_000, 20)
      await stopChild(first, 'SIGKILL')

      second.child = spawnCli(['worker', '--concurrency', '1'], processEnv)
      const done = await eventually(
        async () => {
          const row = await cancelRow()
          return row.state === 'issued' || row.state === 'failed' ? row : undefined
        },
        150_000,
        200,
      )
      expect(done.state, second.child.output()).toBe('issued')
      expect(await ntsHeld(victim!.approval_number)).toMatchObject({ status: 'issued', amount: victim!.total_amount - part })
      expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: part })
      // The killed worker's request is in the ledger ('sent', never answered); the takeover looked up and sent nothing.
      const attempts = await db().selectFrom('issuance_attempts').select(['operation', 'outcome', 'attempt_no']).where('receipt_id', '=', done.id).orderBy('id').execute()
      expect(attempts.filter((a) => a.operation === 'cancel')).toEqual([{ operation: 'cancel', outcome: 'sent', attempt_no: 1 }])
      expect(attempts.at(-1)).toMatchObject({ operation: 'lookup', attempt_no: 2 })
    } finally {
      await stopChild(first, 'SIGKILL')
      if (second.child) await stopChild(second.child)
    }
  }, 300_000)
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
    const failed = await eventually(
      async () => {
        const row = await db().selectFrom('receipts').selectAll().where('id', '=', first.cancelReceiptId).executeTakeFirstOrThrow()
        return row.state === 'failed' ? row : undefined
      },
      30_000,
      100,
    )
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
    await eventually(
      async () => (await db().selectFrom('receipts').select('state').where('id', '=', first.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued',
      30_000,
      100,
    )
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: 3_000 })

    // Now the figures are known: more than the rest is refused in KRW, the rest is cancelled once.
    await expect(app.cancel({ transactionId: tx, amount: total - 3_000 + 1, reason: 1 })).rejects.toThrow(
      `--amount: ${total - 3_000 + 1} exceeds the ${total - 3_000} still receipted for ${tx}`,
    )
    const rest = await app.cancel({ transactionId: tx, amount: total - 3_000, reason: 1 })
    await eventually(
      async () => (await db().selectFrom('receipts').select('state').where('id', '=', rest.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued',
      30_000,
      100,
    )
    expect(await ntsHeld(victim!.approval_number)).toMatchObject({ status: 'cancelled', amount: 0 })
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: total })
    const sends = await db()
      .selectFrom('issuance_attempts')
      .select(['receipt_id'])
      .where('receipt_id', 'in', [first.cancelReceiptId, rest.cancelReceiptId])
      .where('operation', '=', 'cancel')
      .execute()
    expect(sends.map((a) => a.receipt_id).sort()).toEqual([first.cancelReceiptId, rest.cancelReceiptId].sort())
  }, 120_000)
})

describe('operators racing each other and the workers', () => {
  it('refuses a cancel while the issue is in flight; of two cancels at the same moment one is created and sent once', async () => {
    await importDay(env.app, { businessDate: '2026-10-07', count: 6, seed: 33, providers: ['nts'], idPrefix: 'RACE' })
    const summary = await settle(env.app, '2026-10-07')
    const rows = await db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('state', '=', 'pending').orderBy('id').execute()
    expect(rows.length).toBeGreaterThanOrEqual(2)
    // A worker holds the first row (its issue call in flight): a cancel cannot be created for it.
    await claimReceipts(db(), [rows[0]!.id], 'paused-worker', 1_500)
    const early = await runCli(['cancel', rows[0]!.transaction_id], env.env())
    expect(early.code, early.stdout).toBe(2)
    expect(early.stderr).toContain(`receipt for ${rows[0]!.transaction_id} is issuing; only issued receipts can be cancelled`)

    const app = env.newApp()
    workers.push(app.startWorker({ concurrency: 4 }))
    const issued = await eventually(
      async () => {
        const now = await db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('kind', '=', 'issue').orderBy('id').execute()
        return now.every((r) => r.state === 'issued' || r.state === 'skipped') ? now.filter((r) => r.state === 'issued') : undefined
      },
      30_000,
      100,
    )
    await Promise.all(workers.map((w) => w.close()))
    workers = []

    // Two operators cancel the same receipt at the same moment, each in its own process.
    const target = issued[1]!
    const both = await Promise.all([runCli(['cancel', target.transaction_id, '--json'], env.env()), runCli(['cancel', target.transaction_id, '--json'], env.env())])
    expect(both.map((r) => r.code).sort()).toEqual([0, 2])
    const refused = both.find((r) => r.code === 2)!
    expect(refused.stderr).toMatch(new RegExp(`a cancellation for ${target.transaction_id} is already in progress \\(receipt \\d+\\)`))
    const cancels = await db().selectFrom('receipts').select(['id']).where('parent_receipt_id', '=', target.id).execute()
    expect(cancels).toHaveLength(1)

    workers.push(app.startWorker({ concurrency: 4 }))
    await eventually(async () => (await db().selectFrom('receipts').select('state').where('id', '=', target.id).executeTakeFirstOrThrow()).state === 'cancelled', 30_000, 100)
    const sends = await db().selectFrom('issuance_attempts').select('outcome').where('receipt_id', '=', cancels[0]!.id).where('operation', '=', 'cancel').execute()
    expect(sends).toEqual([{ outcome: 'cancelled' }])
    expect(await ntsHeld(target.approval_number)).toMatchObject({ status: 'cancelled' })
  }, 180_000)

  it('two re-drives of the same failed receipts at the same moment re-drive each once: one job, one receipt per key', async () => {
    const app = env.newApp({ WORKER_ATTEMPTS: '1', NTS_COMMIT_WINDOW_MS: '300' })
    await importDay(env.app, { businessDate: '2026-10-08', count: 10, seed: 34, providers: ['nts'], idPrefix: 'RDR' })
    // NTS answers every call 503: each issue ends failed after its one attempt.
    sandbox.setFaults('nts:5xx=1')
    const summary = await settle(env.app, '2026-10-08')
    workers.push(app.startWorker({ concurrency: 4 }))
    const failed = await eventually(
      async () => {
        const rows = await db()
          .selectFrom('receipts')
          .selectAll()
          .where('run_id', '=', summary.runId!)
          .where('kind', '=', 'issue')
          .where('state', '!=', 'skipped')
          .orderBy('id')
          .execute()
        return rows.every((r) => r.state === 'failed') ? rows : undefined
      },
      30_000,
      100,
    )
    expect(failed.length).toBeGreaterThan(2)
    await Promise.all(workers.map((w) => w.close()))
    workers = []
    sandbox.setFaults('')

    const both = await Promise.all([0, 1].map(() => runCli(['redrive', '--run', String(summary.runId), '--json'], env.env())))
    for (const r of both) expect(r.code, r.stderr).toBe(0)
    const counts = both.map((r) => (JSON.parse(r.stdout) as { count: number }).count)
    expect(counts[0]! + counts[1]!).toBe(failed.length)
    const after = await db()
      .selectFrom('receipts')
      .select(['id', 'state', 'redrive_count', 'requeue_count'])
      .where(
        'id',
        'in',
        failed.map((r) => r.id),
      )
      .orderBy('id')
      .execute()
    expect(after.every((r) => r.state === 'pending' && r.redrive_count === 1)).toBe(true)
    // One job per receipt, under its first re-drive's id.
    const queued = await env.app.receiptsQueue().getJobs(['waiting', 'prioritized', 'delayed'])
    const byReceipt = new Map<number, string[]>()
    for (const j of queued) byReceipt.set((j.data as { receiptId: number }).receiptId, [...(byReceipt.get((j.data as { receiptId: number }).receiptId) ?? []), j.id!])
    for (const r of after) expect(byReceipt.get(r.id)).toEqual([issueJobId(r.id, 1, r.requeue_count)])

    workers.push(app.startWorker({ concurrency: 4 }))
    await eventually(
      async () => {
        const rows = await db()
          .selectFrom('receipts')
          .select('state')
          .where(
            'id',
            'in',
            failed.map((r) => r.id),
          )
          .execute()
        return rows.every((r) => r.state === 'issued')
      },
      60_000,
      200,
    )
    expect(sandbox.stats().providers.nts!.issued).toBe(failed.length)
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
  }, 180_000)

  it('reconcile while an issue has committed at NTS but not in the ledger leaves the row to its worker; afterwards both agree', async () => {
    // The worker waits up to 8 s for the answer; meanwhile the row is issuing and NTS holds the receipt.
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '8000', NTS_COMMIT_WINDOW_MS: '300' })
    await importDay(env.app, { businessDate: '2026-10-09', count: 6, seed: 35, providers: ['nts'], idPrefix: 'RCN' })
    const summary = await settle(env.app, '2026-10-09')
    await ntsNext(['timeout_after_commit'])
    workers.push(app.startWorker({ concurrency: 1 }))
    const inFlight = await eventually(
      async () => {
        if (sandbox.stats().providers.nts!.issued < 1) return undefined
        return db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('state', '=', 'issuing').executeTakeFirst()
      },
      30_000,
      20,
    )

    // The operator's reconcile (another process's app) runs while the answer is still out.
    const seen = await env.newApp().reconcile('2026-10-09')
    expect((await db().selectFrom('receipts').select('state').where('id', '=', inFlight.id).executeTakeFirstOrThrow()).state).toBe('issuing')
    expect(seen.duplicates).toEqual([])
    expect(seen.repaired.map((r) => r.transaction_id)).not.toContain(inFlight.transaction_id)
    expect(seen.flagged.map((r) => r.transaction_id)).not.toContain(inFlight.transaction_id)
    expect(sandbox.stats().providers.nts!.cancelled).toBe(0)

    const rows = await eventually(
      async () => {
        const now = await db().selectFrom('receipts').selectAll().where('run_id', '=', summary.runId!).where('kind', '=', 'issue').orderBy('id').execute()
        return now.every((r) => r.state === 'issued' || r.state === 'skipped') ? now : undefined
      },
      60_000,
      200,
    )
    const issued = rows.filter((r) => r.state === 'issued')
    expect(issued.find((r) => r.id === inFlight.id)?.reconcile_flag ?? null).toBeNull()
    const stats = sandbox.stats()
    expect(stats.providers.nts!.issued).toBe(issued.length)
    expect(stats.providers.nts!.cancelled).toBe(0)
    expect(stats.max_receipts_per_key).toBe(1)
    const afterwards = await runCli(['reconcile', '--date', '2026-10-09', '--json'], env.env())
    expect(JSON.parse(afterwards.stdout)).toMatchObject({ checked: issued.length, matched: issued.length, duplicates: [], flagged: [], repaired: [] })
  }, 180_000)
})

describe('reconcile during a partial cancel in flight', () => {
  it('does not flag the amount NTS already holds cancelled while the cancel is still out; afterwards it matches', async () => {
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '8000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: '300' })
    const issued = await issuedDay(app, '2026-10-11', 'RPC', 37)
    const victim = issued[0]!
    const part = 1_500
    // The cancel commits at NTS at once and its answer is held back until the client's 8 s timeout.
    await ntsNext(['timeout_after_commit'])
    const requested = await app.cancel({ transactionId: victim.transaction_id, amount: part, reason: 1 })
    const cancelRow = () => db().selectFrom('receipts').selectAll().where('id', '=', requested.cancelReceiptId).executeTakeFirstOrThrow()
    await eventually(async () => (await ntsHeld(victim.approval_number))?.amount === victim.total_amount - part && (await cancelRow()).state === 'issuing', 30_000, 20)

    const during = await env.newApp().reconcile('2026-10-11')
    expect((await cancelRow()).state).toBe('issuing')
    expect(during.flagged).toEqual([])
    expect(during.amounts_corrected).toEqual([])
    const parent = () => db().selectFrom('receipts').select(['state', 'total_amount', 'cancelled_amount', 'reconcile_flag']).where('id', '=', victim.id).executeTakeFirstOrThrow()
    expect(await parent()).toEqual({ state: 'issued', total_amount: victim.total_amount, cancelled_amount: 0, reconcile_flag: null })

    // After its timeout the worker's next attempt looks the cancel up and records it; reconcile then agrees.
    await eventually(async () => (await cancelRow()).state === 'issued', 60_000, 200)
    expect(await parent()).toEqual({ state: 'issued', total_amount: victim.total_amount, cancelled_amount: part, reconcile_flag: null })
    const after = await env.newApp().reconcile('2026-10-11')
    expect(after).toMatchObject({ checked: issued.length, matched: issued.length, flagged: [], amounts_corrected: [] })
    expect((await ntsHeld(victim.approval_number))?.amount).toBe(victim.total_amount - part)
  }, 120_000)
})

describe('reconcile during a partial cancel of the rest in flight', () => {
  it('leaves the receipt to the cancel worker, which records every won cancelled; the next pass records it cancelled', async () => {
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '8000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: '300' })
    const issued = await issuedDay(app, '2026-10-12', 'RPR', 38)
    const victim = issued[0]!
    const first = await app.cancel({ transactionId: victim.transaction_id, amount: 1_000, reason: 1 })
    await eventually(
      async () => (await db().selectFrom('receipts').select('state').where('id', '=', first.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued',
      30_000,
      100,
    )
    // The rest (a partial cancel: part is already cancelled) commits at NTS; its answer is held back 8 s.
    await ntsNext(['timeout_after_commit'])
    const rest = await app.cancel({ transactionId: victim.transaction_id, amount: victim.total_amount - 1_000, reason: 1 })
    expect(rest.partial).toBe(true)
    const cancelRow = () => db().selectFrom('receipts').selectAll().where('id', '=', rest.cancelReceiptId).executeTakeFirstOrThrow()
    await eventually(async () => (await ntsHeld(victim.approval_number))?.status === 'cancelled' && (await cancelRow()).state === 'issuing', 30_000, 20)

    const during = await env.newApp().reconcile('2026-10-12')
    expect((await cancelRow()).state).toBe('issuing')
    expect(during.repaired).toEqual([])
    expect(during.flagged).toEqual([])

    await eventually(async () => (await cancelRow()).state === 'issued', 60_000, 200)
    const parent = await db().selectFrom('receipts').select(['state', 'cancelled_amount', 'reconcile_flag']).where('id', '=', victim.id).executeTakeFirstOrThrow()
    // An accepted partial cancel leaves the row issued (docs/exactly-once.md); the next pass records what NTS holds.
    expect(parent).toEqual({ state: 'issued', cancelled_amount: victim.total_amount, reconcile_flag: null })
    const after = await env.newApp().reconcile('2026-10-12')
    expect(after.repaired).toEqual([{ transaction_id: victim.transaction_id, provider: 'nts', from: 'issued', to: 'cancelled' }])
    expect(await db().selectFrom('receipts').select(['state', 'cancelled_amount']).where('id', '=', victim.id).executeTakeFirstOrThrow()).toEqual({
      state: 'cancelled',
      cancelled_amount: victim.total_amount,
    })
  }, 120_000)
})

describe('a re-drive after a failed cancel was asked again', () => {
  it('leaves the superseded cancel alone: the amount is cancelled once', async () => {
    const app = env.newApp({ NTS_COMMIT_WINDOW_MS: '300' })
    const [victim] = await issuedDay(app, '2026-10-13', 'SUP', 39)
    await Promise.all(workers.map((w) => w.close()))
    workers = []
    // The first cancel of 3000 is refused by NTS (nothing cancelled there): its worker records it failed.
    const refused = await app.cancel({ transactionId: victim!.transaction_id, amount: 3_000, reason: 1 })
    await claimReceipts(db(), [refused.cancelReceiptId], 'refused-worker', 10_000)
    const error = { errorClass: 'permanent', code: 'E500', message: '일시적인 처리 오류' }
    const failed = await applyTransitions(db(), [
      {
        receiptId: refused.cancelReceiptId,
        workerId: 'refused-worker',
        transition: { state: 'failed', needsLookup: false, error },
        attempts: { receipt: { id: refused.cancelReceiptId, attempts: 1 }, rows: [] },
      },
    ])
    expect(failed.has(refused.cancelReceiptId)).toBe(true)
    // The operator asks again; it is cancelled.
    const again = await app.cancel({ transactionId: victim!.transaction_id, amount: 3_000, reason: 1 })
    workers.push(app.startWorker({ concurrency: 2 }))
    await eventually(
      async () => (await db().selectFrom('receipts').select('state').where('id', '=', again.cancelReceiptId).executeTakeFirstOrThrow()).state === 'issued',
      30_000,
      100,
    )

    // The day's re-drive after the incident takes nothing of this receipt: 3000 stays cancelled once.
    const redrive = await runCli(['redrive', '--date', '2026-10-13', '--json'], env.env())
    expect(redrive.code, redrive.stderr).toBe(0)
    expect(JSON.parse(redrive.stdout)).toMatchObject({ count: 0 })
    expect(await db().selectFrom('receipts').select(['state', 'redrive_count']).where('id', '=', refused.cancelReceiptId).executeTakeFirstOrThrow()).toEqual({
      state: 'failed',
      redrive_count: 0,
    })
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: 3_000 })
    expect((await ntsHeld(victim!.approval_number))?.amount).toBe(victim!.total_amount - 3_000)
  }, 120_000)
})

describe('a re-drive racing a new cancel of the same receipt', () => {
  it('takes the failed cancel or lets the new one through, never both: the amount is cancelled once', async () => {
    const app = env.newApp({ NTS_COMMIT_WINDOW_MS: '300' })
    const [victim] = await issuedDay(app, '2026-10-14', 'RRC', 40)
    await Promise.all(workers.map((w) => w.close()))
    workers = []
    // A cancel of 3000 refused by NTS (nothing cancelled there), recorded failed by its worker.
    const refused = await app.cancel({ transactionId: victim!.transaction_id, amount: 3_000, reason: 1 })
    await claimReceipts(db(), [refused.cancelReceiptId], 'refused-worker', 10_000)
    const error = { errorClass: 'permanent', code: 'E500', message: '일시적인 처리 오류' }
    await applyTransitions(db(), [
      {
        receiptId: refused.cancelReceiptId,
        workerId: 'refused-worker',
        transition: { state: 'failed', needsLookup: false, error },
        attempts: { receipt: { id: refused.cancelReceiptId, attempts: 1 }, rows: [] },
      },
    ])
    // The operator asks again while the day's re-drive runs. The request is held between its checks
    // (no open cancel: the failed one is not open) and its insert, by a trigger that sleeps before the
    // insert of this transaction's cancel row; the re-drive starts in that gap.
    const tx = victim!.transaction_id
    await sql`CREATE FUNCTION test_slow_cancel_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.kind = 'cancel' AND NEW.transaction_id = ${sql.lit(tx)} THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$`.execute(db())
    await sql`CREATE TRIGGER test_slow_cancel_insert BEFORE INSERT ON receipts FOR EACH ROW EXECUTE FUNCTION test_slow_cancel_insert()`.execute(db())
    try {
      const asked = app.cancel({ transactionId: tx, amount: 3_000, reason: 1 }).then(
        (r) => ({ ok: true as const, id: r.cancelReceiptId }),
        (err: unknown) => ({ ok: false as const, message: String(err) }),
      )
      await eventually(
        async () => ((await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'`.execute(db())).rows[0]!.n > 0 ? true : undefined),
        10_000,
        10,
      )
      // In process, so that it surely starts inside the gap (a CLI process may take longer to start).
      const { count: taken } = await app.redrive({ date: '2026-10-14' })
      const request = await asked
      // Exactly one of the two: the new cancel (the re-drive then finds the failed one superseded) or
      // the re-driven one (the request then finds it open and refuses).
      expect(taken + (request.ok ? 1 : 0)).toBe(1)
    } finally {
      await sql`DROP TRIGGER IF EXISTS test_slow_cancel_insert ON receipts`.execute(db())
      await sql`DROP FUNCTION IF EXISTS test_slow_cancel_insert()`.execute(db())
    }
    const open = await db()
      .selectFrom('receipts')
      .select(['id', 'state'])
      .where('parent_receipt_id', '=', victim!.id)
      .where('kind', '=', 'cancel')
      .where('state', 'in', ['pending', 'issuing'])
      .execute()
    expect(open).toHaveLength(1)
    // Whichever went, the worker sends it once: 3000 cancelled once at NTS and in the ledger.
    workers.push(app.startWorker({ concurrency: 2 }))
    await eventually(
      async () => ((await db().selectFrom('receipts').select('state').where('id', '=', open[0]!.id).executeTakeFirstOrThrow()).state === 'issued' ? true : undefined),
      30_000,
      100,
    )
    expect(await db().selectFrom('receipts').select('cancelled_amount').where('id', '=', victim!.id).executeTakeFirstOrThrow()).toEqual({ cancelled_amount: 3_000 })
    expect((await ntsHeld(victim!.approval_number))?.amount).toBe(victim!.total_amount - 3_000)
  }, 120_000)
})
