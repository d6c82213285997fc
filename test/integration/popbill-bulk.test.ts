/**
 * A day with Popbill bulk issuance, through real Postgres, Redis and the Popbill simulator: the
 * merchants' `bulk: true` turns their receipts into batches of up to 100; the first bulk submit
 * commits at the simulator and then times out (its result, read under the same submit id, decides;
 * nothing is submitted twice); per-item results are mixed — issued, duplicate keys read back as the
 * receipts the simulator holds, items the simulator refuses failed with its code; and a batch
 * whose worker died right after its submit left is found by the recovery pass and finished by
 * looking its result up first. Every key ends with one receipt at the simulator.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import type { Sandbox } from '../../sandbox/index.ts'
import { claimBatch, fenceBatchSend } from '../../src/db/ledger.ts'
import { DEMO_MERCHANTS } from '../../src/demo/defaults.ts'
import { addDays, kstToday } from '../../src/domain/index.ts'
import { batchContentHash, submitIdOf } from '../../src/jobs/issue-batch.ts'
import { issueRequest } from '../helpers/issue-request.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv
/** While set, the simulator's clock stands still there: no bulk submission finishes processing. */
let frozenAt: number | null = null

useSandboxEnv(
  {
    sandbox: { clock: () => frozenAt ?? Date.now() },
    env: { RECOVERY_INTERVAL_MS: '500', RECOVERY_GRACE_MS: '1000', BULK_POLL_MIN_MS: '200', BULK_POLL_MAX_MS: '400' },
    faults: 'popbill:hang=2500',
    beforeEach: () => (frozenAt = null),
  },
  (s, e) => ((sandbox = s), (env = e)),
)

const db = () => env.app.db()
/** A run's first `limit` batches still open, oldest first. */
const openBatches = (runId: number, limit: number) =>
  db().selectFrom('provider_batches').select(['id', 'merchant_id']).where('run_id', '=', runId).where('state', '=', 'open').orderBy('id').limit(limit).execute()
// The simulator takes a trade date of today or yesterday (KST) only.
const yesterday = () => addDays(kstToday(Date.now()), -1)

async function popbillStats() {
  const rows = await sql<{
    state: string
    n: number
  }>`SELECT state, count(*)::int AS n FROM receipts WHERE provider = 'popbill' AND kind = 'issue' GROUP BY state`.execute(db())
  return Object.fromEntries(rows.rows.map((r) => [r.state, r.n])) as Record<string, number>
}

/** The batch's issue requests as the batch handler builds them (src/jobs/issue-batch.ts). */
async function batchItems(members: Awaited<ReturnType<typeof claimBatch>> & { status: 'claimed' }, merchantId: string) {
  const { decryptPii } = await import('../../src/crypto/pii.ts')
  const merchantBn = env.config.merchants.find((m) => m.id === merchantId)!.businessNumber
  return members.members.map((m) => {
    const pii = m.tx.pii_enc ? decryptPii(m.tx.pii_enc, env.config.dataKeys, m.tx.transaction_id) : {}
    const r = m.receipt
    return issueRequest('bulk', {
      key: r.provider_key,
      idempotencyKey: r.idempotency_key,
      identifier: r.self_issued ? '0100001234' : pii.identifier!,
      identifierType: r.self_issued ? 'self' : (m.tx.identifier_type ?? 'phone'),
      purpose: r.purpose,
      orderName: m.tx.order_name ?? m.tx.order_id ?? m.tx.transaction_id,
      tradeDate: r.trade_date,
      paidAt: new Date(m.tx.paid_at).toISOString(),
      amounts: {
        total: r.total_amount,
        supply: r.supply_amount,
        vat: r.vat_amount,
        taxFree: r.tax_free_amount,
        serviceFee: r.service_fee,
      },
      merchantBusinessNumber: merchantBn,
    })
  })
}

async function batchCalls(batchId: number) {
  return db().selectFrom('provider_batch_calls').select(['operation', 'outcome', 'started_at', 'finished_at']).where('batch_id', '=', batchId).orderBy('id').execute()
}

describe('Popbill bulk issuance', () => {
  it('a day issues completely: commit-then-timeout decided by its result, duplicates read back, refused items failed', async () => {
    const date = yesterday()
    // Carry-overs from four days before: settled into the same batches as the day's receipts.
    await importDay(env.app, {
      businessDate: addDays(date, -3),
      count: 6,
      seed: 21,
      providers: ['popbill'],
      idPrefix: 'PBC',
    })
    await importDay(env.app, {
      businessDate: date,
      count: 220,
      seed: 22,
      providers: ['popbill'],
      idPrefix: 'PBD',
    })
    const s = await settle(env.app, date)
    const batches = await db().selectFrom('provider_batches').select(['id', 'merchant_id', 'item_count', 'state']).where('run_id', '=', s.runId!).orderBy('id').execute()
    expect(batches.length).toBeGreaterThanOrEqual(3)
    expect(batches.every((b) => b.item_count <= 100 && b.state === 'open')).toBe(true)
    const members = await db()
      .selectFrom('provider_batch_items')
      .select('receipt_id')
      .where(
        'batch_id',
        'in',
        batches.map((b) => b.id),
      )
      .execute()
    const pending = await db().selectFrom('receipts').select(['id']).where('provider', '=', 'popbill').where('state', '=', 'pending').execute()
    expect(members.length).toBe(pending.length)

    // Two receipts the simulator already holds (an earlier send the ledger never heard of): the batch
    // gets "mgtKey in use" for them and must record them as issued, not fail them.
    const dup = await db()
      .selectFrom('receipts')
      .selectAll()
      .where('provider', '=', 'popbill')
      .where('state', '=', 'pending')
      .where('trade_date', '=', date)
      .orderBy('id')
      .limit(2)
      .execute()
    for (const r of dup) {
      const adapter = env.app.providers().get(r.merchant_id, 'popbill').provider
      const o = await adapter.issue(
        issueRequest('bulk', {
          key: r.provider_key,
          tradeDate: date,
          paidAt: new Date(Date.parse(`${date}T12:00:00+09:00`)).toISOString(),
          amounts: {
            total: r.total_amount,
            supply: r.supply_amount,
            vat: r.vat_amount,
            taxFree: r.tax_free_amount,
            serviceFee: r.service_fee,
          },
          merchantBusinessNumber: env.config.merchants.find((m) => m.id === r.merchant_id)!.businessNumber,
        }),
      )
      expect(o.kind).toBe('issued')
    }
    // Two receipts whose key the simulator refuses (a key written by hand, not derived): per-item failures.
    const refused = await db()
      .selectFrom('receipts')
      .select(['id'])
      .where('provider', '=', 'popbill')
      .where('state', '=', 'pending')
      .where(
        'id',
        'not in',
        dup.map((r) => r.id),
      )
      .orderBy('id', 'desc')
      .limit(2)
      .execute()
    for (const r of refused) {
      await db()
        .updateTable('receipts')
        .set({ provider_key: `BAD KEY ${r.id}` })
        .where('id', '=', r.id)
        .execute()
    }
    // The first bulk submit commits at the simulator, then its answer never comes.
    sandbox.forceNext('popbill', ['timeout_after_commit'])

    const worker = env.newApp().startWorker({ concurrency: 4 })
    const report = await waitForRun(env.app, s.runId!, 90_000)
    await worker.close()

    const states = await popbillStats()
    const carry = await db()
      .selectFrom('receipts')
      .select(['state'])
      .where('provider', '=', 'popbill')
      .where('trade_date', '=', addDays(date, -3))
      .where('state', '!=', 'skipped')
      .execute()
    expect(carry.length).toBeGreaterThan(0)
    expect(carry.every((c) => c.state === 'issued')).toBe(true)
    // Refused per item with the simulator's code (a malformed mgtKey), not retried in bulk or one by one.
    const bad = await db()
      .selectFrom('receipts')
      .select(['state', 'error_class', 'error_code'])
      .where(
        'id',
        'in',
        refused.map((r) => r.id),
      )
      .execute()
    expect(bad).toEqual(refused.map(() => ({ state: 'failed', error_class: 'permanent', error_code: '-14001003' })))
    expect(states.pending ?? 0).toBe(0)
    expect(states.issuing ?? 0).toBe(0)
    expect(states.failed).toBe(refused.length)
    expect(report.totals.pending).toBe(0)
    for (const r of dup) {
      expect(await db().selectFrom('receipts').select('state').where('id', '=', r.id).executeTakeFirst()).toEqual({ state: 'issued' })
    }

    // The ledger's issued receipts are exactly what the simulator holds, one per key.
    const st = sandbox.stats()
    expect(st.providers.popbill.issued).toBe(states.issued)
    expect(st.max_live_receipts_per_key).toBe(1)
    expect(st.max_receipts_per_key).toBe(1)

    // Every batch finished; each was submitted once (the timed-out one was read back, not re-sent).
    const done = await db().selectFrom('provider_batches').select(['id', 'state', 'submit_id']).where('run_id', '=', s.runId!).execute()
    expect(done.every((b) => b.state === 'done' && b.submit_id !== null)).toBe(true)
    const submits = await sql<{ batch_id: number; n: number; outcomes: string[] }>`
      SELECT batch_id, count(*)::int AS n, array_agg(outcome ORDER BY id) AS outcomes FROM provider_batch_calls WHERE operation = 'bulk_submit' GROUP BY batch_id`.execute(db())
    expect(submits.rows).toHaveLength(done.length)
    expect(submits.rows.every((r) => r.n === 1)).toBe(true)
    expect(submits.rows.filter((r) => r.outcomes[0] === 'unknown_outcome')).toHaveLength(1)
    const lookups = await sql<{
      n: number
    }>`SELECT count(*)::int AS n FROM provider_batch_calls WHERE operation = 'lookup_many'`.execute(db())
    expect(lookups.rows[0]!.n).toBeGreaterThanOrEqual(1)

    // One issue attempt row per member, completed; the duplicates also have their read-back.
    const open = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM issuance_attempts a JOIN receipts r ON r.id = a.receipt_id WHERE r.provider = 'popbill' AND a.outcome = 'sent'`.execute(db())
    expect(open.rows[0]!.n).toBe(0)
    const perReceipt = await sql<{ n: number }>`
      SELECT max(c)::int AS n FROM (SELECT count(*) AS c FROM issuance_attempts a JOIN receipts r ON r.id = a.receipt_id
      WHERE r.provider = 'popbill' AND a.operation = 'issue' GROUP BY a.receipt_id) x`.execute(db())
    expect(perReceipt.rows[0]!.n).toBe(1)
    const dupAttempts = await db().selectFrom('issuance_attempts').select(['operation', 'outcome']).where('receipt_id', '=', dup[0]!.id).orderBy('id').execute()
    expect(dupAttempts).toEqual([
      { operation: 'issue', outcome: 'already_issued' },
      { operation: 'lookup', outcome: 'issued' },
    ])
  }, 150_000)

  it('a batch whose worker died after its submit left is found by recovery and finished by its result, once', async () => {
    const date = yesterday()
    await importDay(env.app, {
      businessDate: date,
      count: 60,
      seed: 23,
      providers: ['popbill'],
      idPrefix: 'PBK',
    })
    const s = await settle(env.app, date)
    const [batch] = await openBatches(s.runId!, 1)
    expect(batch).toBeDefined()
    // Its job is lost with its worker (Redis says nothing holds it).
    const q = env.app.receiptsQueue()
    for (const j of await q.getJobs(['prioritized', 'waiting', 'delayed'])) {
      if ((j?.data as { batchId?: number }).batchId === batch!.id) await j!.remove()
    }

    // Worker "dead-1" claims the batch, passes the fence and sends the submit, then dies before the answer.
    const c = await claimBatch(db(), batch!.id, 'dead-1', 60_000)
    if (c.status !== 'claimed') throw new Error(c.status)
    const items = await batchItems(c, batch!.merchant_id)
    const hash = batchContentHash(items)
    const submitId = submitIdOf(batch!.id, hash)
    const adapter = env.app.providers().get(batch!.merchant_id, 'popbill').provider
    const sent = await adapter.bulk!.submitBulk(
      { submitId, items },
      {
        beforeSend: async () =>
          void (await fenceBatchSend(db(), batch!.id, 'dead-1', {
            submitId,
            contentHash: hash,
            itemCount: items.length,
            coverMs: 5_000,
            jobId: null,
          })),
      },
    )
    expect(sent.kind).toBe('accepted')
    await sql`UPDATE provider_batches SET locked_until = now() - interval '1 second', updated_at = now() - interval '1 minute' WHERE id = ${batch!.id}`.execute(db())
    await sql`UPDATE receipts SET locked_until = now() - interval '1 second' WHERE locked_by = ${`batch:${batch!.id}`}`.execute(db())

    // A worker (with its recovery loop) comes up: the batch gets a new job, which asks for the result first.
    const worker = env.newApp().startWorker({ concurrency: 4 })
    await waitForRun(env.app, s.runId!, 60_000)
    await eventually(async () => (await db().selectFrom('provider_batches').select('state').where('id', '=', batch!.id).executeTakeFirst())?.state === 'done', 30_000)
    await worker.close()

    const b = await db().selectFrom('provider_batches').select(['state', 'requeue_count', 'submit_id']).where('id', '=', batch!.id).executeTakeFirstOrThrow()
    expect(b).toMatchObject({ state: 'done', submit_id: submitId })
    expect(b.requeue_count).toBeGreaterThanOrEqual(1)
    const calls = await db().selectFrom('provider_batch_calls').select(['operation']).where('batch_id', '=', batch!.id).execute()
    // The takeover never submitted: it read the result of the dead worker's submit.
    expect(calls.some((x) => x.operation === 'bulk_submit')).toBe(false)
    expect(calls.some((x) => x.operation === 'bulk_result')).toBe(true)
    const states = await db()
      .selectFrom('receipts')
      .select(['state'])
      .where(
        'id',
        'in',
        c.members.map((m) => m.receipt.id),
      )
      .execute()
    expect(states.every((x) => x.state === 'issued')).toBe(true)
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
    expect((await popbillStats()).pending ?? 0).toBe(0)
  }, 120_000)

  it('polls GetBulkResult every BULK_POLL interval while the submission is processing (txState 0/1), until txState 2; never submits twice', async () => {
    const date = yesterday()
    await importDay(env.app, { businessDate: date, count: 40, seed: 24, providers: ['popbill'], idPrefix: 'PBP' })
    const s = await settle(env.app, date)
    // This settlement's batches (a run of the same date may hold earlier ones, already done).
    const batches = await db().selectFrom('provider_batches').select(['id']).where('run_id', '=', s.runId!).where('state', '=', 'open').execute()
    expect(batches.length).toBeGreaterThanOrEqual(1)
    // The simulator's time stands still: every submission stays at txState 0 until it moves again.
    frozenAt = Date.now()
    const worker = env.newApp().startWorker({ concurrency: 4 })
    try {
      await eventually(async () => {
        for (const b of batches) if ((await batchCalls(b.id)).filter((c) => c.operation === 'bulk_result').length < 3) return false
        return true
      }, 90_000)
      frozenAt = null
      await waitForRun(env.app, s.runId!, 90_000)
    } finally {
      frozenAt = null
      await worker.close()
    }
    for (const b of batches) {
      const calls = await batchCalls(b.id)
      expect(calls.filter((c) => c.operation === 'bulk_submit').map((c) => c.outcome)).toEqual(['accepted'])
      const results = calls.filter((c) => c.operation === 'bulk_result')
      // processing, …, processing, done: the result decided the batch, nothing else did.
      expect(results.length).toBeGreaterThanOrEqual(4)
      expect(results.slice(0, -1).every((c) => c.outcome === 'processing')).toBe(true)
      expect(results.at(-1)!.outcome).toBe('done')
      expect(calls.some((c) => c.operation === 'lookup_many')).toBe(false)
      // Each poll waited at least the configured minimum (200 ms here; 2 s by default) after the
      // previous call ended; a lower bound, which load can only lengthen. 20 ms of slack for the
      // queue's delay timer and timestamp rounding.
      const sequence = calls.filter((c) => c.operation !== 'lookup_many')
      for (let i = 1; i < sequence.length; i++) {
        expect(sequence[i]!.started_at.getTime() - sequence[i - 1]!.finished_at.getTime()).toBeGreaterThanOrEqual(180)
      }
    }
    const members = await db()
      .selectFrom('provider_batch_items as i')
      .innerJoin('receipts as r', 'r.id', 'i.receipt_id')
      .select(['r.state', 'i.outcome'])
      .where(
        'i.batch_id',
        'in',
        batches.map((b) => b.id),
      )
      .execute()
    expect(members.every((m) => m.state === 'issued' && m.outcome === 'issued')).toBe(true)
    expect(sandbox.stats().providers.popbill.issued).toBe(members.length)
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
  }, 150_000)

  it('never sends a submit id with other content: not found under its id, the same content goes again under it, a changed one is issued one by one', async () => {
    const date = yesterday()
    await importDay(env.app, { businessDate: date, count: 120, seed: 25, providers: ['popbill'], idPrefix: 'PBN' })
    const s = await settle(env.app, date)
    const open = await openBatches(s.runId!, 2)
    expect(open).toHaveLength(2)
    const q = env.app.receiptsQueue()
    for (const j of await q.getJobs(['prioritized', 'waiting', 'delayed'])) {
      if (open.some((b) => b.id === (j?.data as { batchId?: number }).batchId)) await j!.remove()
    }

    // A worker claims both batches and passes the fence — which binds the submit id to the content —
    // then dies before its request leaves: Popbill never hears of either id.
    const bound = new Map<number, { submitId: string; receiptIds: number[]; txIds: string[] }>()
    for (const b of open) {
      const c = await claimBatch(db(), b.id, 'dead-2', 60_000)
      if (c.status !== 'claimed') throw new Error(c.status)
      const items = await batchItems(c, b.merchant_id)
      const hash = batchContentHash(items)
      const submitId = submitIdOf(b.id, hash)
      await fenceBatchSend(db(), b.id, 'dead-2', { submitId, contentHash: hash, itemCount: items.length, coverMs: 5_000, jobId: null })
      bound.set(b.id, { submitId, receiptIds: c.members.map((m) => m.receipt.id), txIds: c.members.map((m) => m.tx.transaction_id) })
    }
    const same = open[0]!
    const changed = open[1]!
    // The second batch's content changes after its id was bound (a member's order name, part of the content).
    await sql`UPDATE cash_transactions SET order_name = 'changed order name of another length' WHERE merchant_id = ${changed.merchant_id} AND transaction_id = ${bound.get(changed.id)!.txIds[0]!}`.execute(
      db(),
    )
    for (const b of open) {
      await sql`UPDATE provider_batches SET locked_until = now() - interval '1 second', updated_at = now() - interval '1 minute' WHERE id = ${b.id}`.execute(db())
      await sql`UPDATE receipts SET locked_until = now() - interval '1 second' WHERE locked_by = ${`batch:${b.id}`}`.execute(db())
    }

    const worker = env.newApp().startWorker({ concurrency: 4 })
    try {
      await waitForRun(env.app, s.runId!, 90_000)
      await eventually(async () => {
        const rows = await db().selectFrom('provider_batches').select('state').where('id', 'in', [same.id, changed.id]).execute()
        return rows.every((r) => r.state === 'done')
      }, 60_000)
    } finally {
      await worker.close()
    }

    // Unchanged: asked first (not found), then sent once under the id it was bound to.
    const a = await db().selectFrom('provider_batches').select(['submit_id']).where('id', '=', same.id).executeTakeFirstOrThrow()
    expect(a.submit_id).toBe(bound.get(same.id)!.submitId)
    const aCalls = await batchCalls(same.id)
    expect(aCalls[0]).toMatchObject({ operation: 'bulk_result', outcome: 'not_found' })
    expect(aCalls.filter((c) => c.operation === 'bulk_submit')).toHaveLength(1)
    // Changed: nothing goes out under its id; its receipts are decided one by one.
    const b = await db().selectFrom('provider_batches').select(['submit_id', 'error_code']).where('id', '=', changed.id).executeTakeFirstOrThrow()
    expect(b).toEqual({ submit_id: bound.get(changed.id)!.submitId, error_code: 'BATCH_CONTENT_CHANGED' })
    const bCalls = await batchCalls(changed.id)
    expect(bCalls.map((c) => [c.operation, c.outcome])).toEqual([['bulk_result', 'not_found']])
    const items = await db().selectFrom('provider_batch_items').select(['outcome']).where('batch_id', '=', changed.id).execute()
    expect(items.every((i) => i.outcome === 'single')).toBe(true)

    const states = await db()
      .selectFrom('receipts')
      .select(['state'])
      .where(
        'id',
        'in',
        [...bound.values()].flatMap((v) => v.receiptIds),
      )
      .execute()
    expect(states.every((x) => x.state === 'issued')).toBe(true)
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
    expect((await popbillStats()).pending ?? 0).toBe(0)
  }, 150_000)

  it("issues one by one (RegistIssue) when the merchant's popbill config has bulk: false — no batches, no bulk calls", async () => {
    // The same merchants, with Popbill bulk off: written as a MERCHANTS_FILE for a second app on the same database.
    const dir = await mkdtemp(join(tmpdir(), 'crt-popbill-single-'))
    const file = join(dir, 'merchants.json')
    await writeFile(file, JSON.stringify(DEMO_MERCHANTS.map((m) => ({ ...m, providers: { ...m.providers, popbill: { ...m.providers.popbill!, bulk: false } } }))))
    const single = env.newApp({ MERCHANTS_FILE: file })
    for (const m of DEMO_MERCHANTS) {
      expect(env.app.bulkSize(m.id, 'popbill')).toBe(100)
      expect(single.bulkSize(m.id, 'popbill')).toBe(0)
    }
    const date = yesterday()
    const day = await importDay(single, { businessDate: date, count: 30, seed: 26, providers: ['popbill'], idPrefix: 'PBS' })
    const s = await settle(single, date)
    const ours = await db()
      .selectFrom('receipts')
      .select(['id', 'state'])
      .where('provider', '=', 'popbill')
      .where(
        'transaction_id',
        'in',
        day.rows.map((r) => String(r.transaction_id)),
      )
      .execute()
    expect(ours.length).toBeGreaterThan(0)
    const batchesBefore = (
      await db()
        .selectFrom('provider_batch_items')
        .select('receipt_id')
        .where(
          'receipt_id',
          'in',
          ours.map((r) => r.id),
        )
        .execute()
    ).length
    expect(batchesBefore).toBe(0)
    const worker = single.startWorker({ concurrency: 4 })
    try {
      await waitForRun(single, s.runId!, 90_000)
    } finally {
      await worker.close()
      await rm(dir, { recursive: true, force: true })
    }
    const after = await db()
      .selectFrom('receipts')
      .select(['state'])
      .where(
        'id',
        'in',
        ours.map((r) => r.id),
      )
      .execute()
    const issued = after.filter((r) => r.state === 'issued').length
    expect(after.every((r) => r.state === 'issued' || r.state === 'skipped')).toBe(true)
    expect(issued).toBeGreaterThan(0)
    expect(
      (
        await db()
          .selectFrom('provider_batch_items')
          .select('receipt_id')
          .where(
            'receipt_id',
            'in',
            ours.map((r) => r.id),
          )
          .execute()
      ).length,
    ).toBe(0)
    const attempts = await db()
      .selectFrom('issuance_attempts')
      .select(['operation', 'outcome'])
      .where(
        'receipt_id',
        'in',
        ours.map((r) => r.id),
      )
      .where('operation', '=', 'issue')
      .execute()
    expect(attempts.filter((a) => a.outcome === 'issued')).toHaveLength(issued)
    expect(sandbox.stats().providers.popbill.issued).toBe(issued)
  }, 150_000)
})
