/**
 * The recovery pass's queries: which receipts say work is due or in flight (a job should hold them),
 * the lock that lets one pass run at a time across processes, and settlement runs whose receipts are
 * all done. Receipt writes stay in ledger.ts (bumpRequeue).
 */
import { sql } from 'kysely'
import type { Db } from './database.ts'
import type { ReceiptKind, ReceiptState } from './schema.ts'

export interface RecoveryCandidate {
  readonly id: number
  readonly kind: ReceiptKind
  readonly state: ReceiptState
  readonly trade_date: string
  readonly redrive_count: number
  readonly requeue_count: number
  /** The row's credential (merchant, provider): the pass ranks its jobs by it. */
  readonly merchant_id: string
  readonly provider: string
}

/**
 * Receipts a job should be holding, in id order after `afterId`: pending (issue rows, and cancel rows,
 * which also covers an issue row left `cancelling` by its full cancel) untouched for `graceMs` (a
 * row just inserted or re-driven, or just put back by its job, has its add in flight or a delayed
 * retry), and issuing whose lease has expired (its worker is gone or overran). Whether a live job
 * holds them is the queue's to say; the caller asks it.
 */
export async function recoveryCandidates(
  db: Db,
  opts: { readonly graceMs: number; readonly date?: string; readonly afterId: number; readonly limit: number },
): Promise<RecoveryCandidate[]> {
  let q = db
    .selectFrom('receipts')
    .select(['id', 'kind', 'state', 'trade_date', 'redrive_count', 'requeue_count', 'merchant_id', 'provider'])
    .where((eb) =>
      eb.or([
        eb.and([eb('state', '=', 'pending'), eb('updated_at', '<', sql<Date>`now() - make_interval(secs => ${opts.graceMs / 1000})`)]),
        eb.and([eb('state', '=', 'issuing'), eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', sql<Date>`now()`)])]),
      ]),
    )
    // A member of a live batch is the batch's: the batch's own recovery below finishes it.
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('provider_batch_items as i')
            .select(sql`1`.as('one'))
            .whereRef('i.receipt_id', '=', 'receipts.id')
            .where('i.active', '=', true),
        ),
      ),
    )
    .where('id', '>', opts.afterId)
    .orderBy('id')
    .limit(opts.limit)
  if (opts.date) q = q.where('trade_date', '=', opts.date)
  return q.execute()
}

export interface BatchRecoveryCandidate {
  readonly id: number
  readonly merchant_id: string
  readonly provider: string
  readonly trade_date: string
  readonly requeue_count: number
}

/**
 * Bulk batches a job should be holding: open or submitted, their lease free or expired (no run of
 * their job is at work), untouched for `graceMs` (a batch just created has its add in flight).
 */
export async function batchRecoveryCandidates(db: Db, opts: { readonly graceMs: number; readonly date?: string }): Promise<BatchRecoveryCandidate[]> {
  let q = db
    .selectFrom('provider_batches')
    .select(['id', 'merchant_id', 'provider', sql<string>`trade_date::text`.as('trade_date'), 'requeue_count'])
    .where('state', 'in', ['open', 'submitted'])
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', sql<Date>`now()`)]))
    .where('updated_at', '<', sql<Date>`now() - make_interval(secs => ${opts.graceMs / 1000})`)
    .orderBy('id')
  if (opts.date) q = q.where('trade_date', '=', opts.date)
  return (await q.execute()).map((r) => ({ id: Number(r.id), merchant_id: r.merchant_id, provider: r.provider, trade_date: r.trade_date, requeue_count: r.requeue_count }))
}

/** One number for the recovery pass's advisory lock (pg_try_advisory_xact_lock takes a bigint). */
const RECOVERY_LOCK = sql`hashtextextended('cash-receipts:recover', 0)`

/**
 * Runs `fn` while holding the recovery lock, or returns null at once when another process holds it.
 * A transaction-scoped advisory lock: Postgres releases it when the transaction ends, and when the
 * holder's connection dies with its process, so a crashed pass never blocks the next. The
 * transaction only holds the lock (fn does its work on other connections) and, in READ COMMITTED,
 * holds no snapshot between statements, so it keeps nothing from vacuum while it waits.
 */
export async function withRecoveryLock<T>(db: Db, fn: () => Promise<T>): Promise<T | null> {
  return db.transaction().execute(async (trx) => {
    const got = await sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(${RECOVERY_LOCK}) AS ok`.execute(trx)
    if (!got.rows[0]?.ok) return null
    return fn()
  })
}

/**
 * Settlement runs whose receipts are all done (no issue receipt pending or issuing, counted as the
 * report counts them: by run_id, or last_run_id for a re-drive run) move from enqueued to finished.
 * Returns the ids that moved.
 */
export async function finishDoneRuns(db: Db): Promise<number[]> {
  const res = await sql<{ id: number }>`
    UPDATE settlement_runs s SET status = 'finished', finished_at = now()
    WHERE s.status = 'enqueued'
      AND NOT EXISTS (
        SELECT 1 FROM receipts r
        WHERE r.kind = 'issue' AND r.state IN ('pending', 'issuing')
          AND ((s.trigger <> 'redrive' AND r.run_id = s.id) OR (s.trigger = 'redrive' AND r.last_run_id = s.id))
      )
    RETURNING s.id`.execute(db)
  return res.rows.map((r) => Number(r.id))
}
