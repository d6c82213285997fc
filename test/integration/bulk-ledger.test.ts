/**
 * The bulk batch's ledger operations on real Postgres and Redis: a batch claims its members under
 * its own owner; the fence before a bulk submit is all or nothing (one member taken over: nothing is
 * written and nothing may be sent) and binds the batch to one submit id; every step is refused once
 * the batch's lease is another worker's; the recovery pass leaves a batch's members to the batch and
 * puts a batch without a live job back on the queue under a fresh id.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { batchOwner, claimBatch, createBatches, fenceBatchSend, recordBatchStep } from '../../src/db/ledger.ts'
import { recoveryCandidates } from '../../src/db/recovery.ts'
import { recoverOrphans } from '../../src/jobs/recover.ts'
import { batchJobId } from '../../src/queue/queues.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle } from '../helpers/pipeline.ts'

let env: TestEnv
let pending: { id: number; merchant_id: string; provider: string }[] = []

beforeAll(async () => {
  env = await createTestEnv({ env: { RECOVERY_INTERVAL_MS: '0' } })
  await importDay(env.app, { businessDate: '2026-11-21', count: 40, seed: 11, providers: ['payssam'] })
  await settle(env.app, '2026-11-21')
  pending = await env.app.db().selectFrom('receipts').select(['id', 'merchant_id', 'provider']).where('state', '=', 'pending').orderBy('id').execute()
  expect(pending.length).toBeGreaterThan(12)
}, 60_000)

afterAll(async () => {
  await env?.close()
})

const db = () => env.app.db()
const fence = (submitId: string, itemCount: number) => ({
  submitId,
  contentHash: `h-${submitId}`,
  itemCount,
  coverMs: 20_000,
  jobId: 'job-1',
})
async function newBatch(ids: number[]) {
  const m = pending.find((p) => p.id === ids[0])!
  const [b] = await createBatches(db(), [
    {
      merchantId: m.merchant_id,
      provider: m.provider,
      runId: null,
      tradeDate: '2026-11-21',
      receiptIds: ids,
    },
  ])
  return b!
}

describe('bulk batches in the ledger', () => {
  it('claims its members under the batch owner; a member already done leaves an open batch; a second claim waits', async () => {
    const ids = pending.slice(0, 4).map((p) => p.id)
    const b = await newBatch(ids)
    expect(b.receiptIds).toEqual(ids)
    // A receipt can be an active member of one batch only.
    expect((await newBatch([ids[0]!, pending[4]!.id])).receiptIds).toEqual([pending[4]!.id])
    await db().updateTable('receipts').set({ state: 'issued' }).where('id', '=', ids[3]!).execute()
    const c = await claimBatch(db(), b.id, 'w1', 60_000)
    if (c.status !== 'claimed') throw new Error(c.status)
    expect(c.members.map((m) => m.receipt.id)).toEqual(ids.slice(0, 3))
    expect(c.left).toEqual([ids[3]])
    for (const m of c.members) {
      expect(m.receipt).toMatchObject({ state: 'issuing', locked_by: batchOwner(b.id), attempts: 1 })
    }
    // Each claimed member's history: pending → issuing, by the batch's owner.
    const history = await db()
      .selectFrom('receipt_transitions')
      .select(['receipt_id', 'from_state', 'to_state', 'worker_id'])
      .where('receipt_id', 'in', ids.slice(0, 3))
      .where('to_state', '=', 'issuing')
      .execute()
    expect(history).toHaveLength(3)
    expect(history.every((h) => h.from_state === 'pending' && h.worker_id === batchOwner(b.id))).toBe(true)
    expect(await claimBatch(db(), b.id, 'w2', 60_000)).toMatchObject({ status: 'leased' })
  })

  it('fences all or nothing: a member taken over means no write and no send; then binds one submit id', async () => {
    const ids = pending.slice(5, 9).map((p) => p.id)
    const b = await newBatch(ids)
    const c = await claimBatch(db(), b.id, 'w1', 60_000)
    if (c.status !== 'claimed') throw new Error(c.status)
    // Another worker took one member over (its lease had expired).
    await db().updateTable('receipts').set({ locked_by: 'someone-else' }).where('id', '=', ids[2]!).execute()
    expect(await fenceBatchSend(db(), b.id, 'w1', fence('cr-a', 4))).toBeNull()
    const none = await db().selectFrom('issuance_attempts').select('id').where('receipt_id', 'in', ids).execute()
    expect(none).toEqual([])
    expect(await db().selectFrom('provider_batches').select(['state', 'submit_id']).where('id', '=', b.id).executeTakeFirst()).toEqual({ state: 'open', submit_id: null })

    await db()
      .updateTable('receipts')
      .set({ locked_by: batchOwner(b.id) })
      .where('id', '=', ids[2]!)
      .execute()
    // Another worker's fence is refused too.
    expect(await fenceBatchSend(db(), b.id, 'w2', fence('cr-a', 4))).toBeNull()
    const first = await fenceBatchSend(db(), b.id, 'w1', fence('cr-a', 4))
    expect([...first!.keys()].sort((x, y) => x - y)).toEqual(ids)
    // A repeated try of the same submit reuses the members' attempt rows; another submit id is refused.
    const again = await fenceBatchSend(db(), b.id, 'w1', fence('cr-a', 4))
    expect(again).toEqual(first)
    expect(await fenceBatchSend(db(), b.id, 'w1', fence('cr-b', 4))).toBeNull()
    const batch = await db().selectFrom('provider_batches').select(['state', 'submit_id']).where('id', '=', b.id).executeTakeFirstOrThrow()
    expect(batch).toEqual({ state: 'submitted', submit_id: 'cr-a' })
    const sent = await db().selectFrom('issuance_attempts').select(['receipt_id', 'outcome', 'operation']).where('receipt_id', 'in', ids).execute()
    expect(sent).toHaveLength(4)
    expect(sent.every((a) => a.outcome === 'sent' && a.operation === 'issue')).toBe(true)
    const rows = await db().selectFrom('receipts').select(['last_sent_at']).where('id', 'in', ids).execute()
    expect(rows.every((r) => r.last_sent_at !== null)).toBe(true)
  })

  it('records a step only under the batch lease; a held batch frees its lease and keeps its members', async () => {
    const ids = pending.slice(9, 12).map((p) => p.id)
    const b = await newBatch(ids)
    const c = await claimBatch(db(), b.id, 'w1', 60_000)
    if (c.status !== 'claimed') throw new Error(c.status)
    const m0 = c.members[0]!
    const item = {
      receiptId: m0.receipt.id,
      transition: { state: 'pending' as const, uncounted: true },
      item: 'single',
      attempts: { receipt: m0.receipt, rows: [] },
    }
    expect(await recordBatchStep(db(), b.id, 'w2', { items: [item], finish: 'done' })).toBeNull()
    expect(await db().selectFrom('receipts').select('state').where('id', '=', m0.receipt.id).executeTakeFirst()).toEqual({ state: 'issuing' })

    const applied = await recordBatchStep(db(), b.id, 'w1', { items: [item], holdMs: 30_000 })
    expect([...applied!]).toEqual([m0.receipt.id])
    const after = await db().selectFrom('provider_batches').select(['locked_by', 'state']).where('id', '=', b.id).executeTakeFirstOrThrow()
    expect(after).toEqual({ locked_by: null, state: 'open' })
    const items = await db().selectFrom('provider_batch_items').select(['receipt_id', 'active', 'outcome']).where('batch_id', '=', b.id).orderBy('receipt_id').execute()
    expect(items).toEqual([
      { receipt_id: ids[0], active: false, outcome: 'single' },
      { receipt_id: ids[1], active: true, outcome: null },
      { receipt_id: ids[2], active: true, outcome: null },
    ])
    // The receipt handed on is the single path's again; the held members stay the batch's.
    const candidates = await recoveryCandidates(db(), { graceMs: 0, afterId: 0, limit: 10_000 })
    const cand = new Set(candidates.map((r) => r.id))
    expect(cand.has(ids[0]!)).toBe(true)
    expect(cand.has(ids[1]!) || cand.has(ids[2]!)).toBe(false)
    // The next run of the batch takes the held members back without counting another attempt.
    const again = await claimBatch(db(), b.id, 'w3', 60_000)
    if (again.status !== 'claimed') throw new Error(again.status)
    expect(again.members.map((m) => [m.receipt.id, m.receipt.attempts])).toEqual([
      [ids[1], 1],
      [ids[2], 1],
    ])
  })

  it('the recovery pass puts a batch without a live job back under a fresh id, and leaves its members to it', async () => {
    const ids = pending.slice(12, 14).map((p) => p.id)
    const b = await newBatch(ids)
    await sql`UPDATE provider_batches SET updated_at = now() - interval '1 hour' WHERE id = ${b.id}`.execute(db())
    const r = await recoverOrphans({
      db: db(),
      queue: env.app.receiptsQueue(),
      logger: env.app.logger,
      graceMs: 1_000,
    })
    expect(r.batches).toBeGreaterThanOrEqual(1)
    expect(await env.app.receiptsQueue().getJobState(batchJobId(b.id, 1))).not.toBe('unknown')
    // A second pass finds its job live and adds nothing.
    await sql`UPDATE provider_batches SET updated_at = now() - interval '1 hour' WHERE id = ${b.id}`.execute(db())
    await recoverOrphans({ db: db(), queue: env.app.receiptsQueue(), logger: env.app.logger, graceMs: 1_000 })
    expect(await db().selectFrom('provider_batches').select('requeue_count').where('id', '=', b.id).executeTakeFirst()).toEqual({ requeue_count: 1 })
  })
})
