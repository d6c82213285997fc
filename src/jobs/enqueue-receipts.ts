/**
 * Putting receipts that need work back on the queue (settle's carry-overs, re-drive, recovery), so
 * that none is left with no job behind it and none gets a second live job from the same path.
 *
 * A receipt's job id names its generation (queue/queues.ts). For each row:
 * - the job of that id is live (waiting, delayed, active, prioritized, waiting-children): nothing to
 *   do, the receipt is in hand;
 * - Redis holds no job of that id and the row is pending: the same id is added. Nothing else can be
 *   holding the receipt, and two callers racing (a settle whose addBulk is still in flight, a second
 *   settle, a recovery pass) add the same id, which BullMQ collapses into one job;
 * - the job of that id is finished (completed or failed) while the row still needs work, or the row
 *   is issuing with an expired lease and no live job: re-adding that id would be a silent no-op, so
 *   the ledger's bumpRequeue starts a new generation first (guarded by the count the caller read, so
 *   of two racing callers only one enqueues) and the new id is added. The finished job is kept, not
 *   removed: removing it would lose what it recorded, and a stale caller re-adding the old id still
 *   finds it finished and adds nothing.
 * Should two jobs for one receipt ever be live at once (a caller that read the row before another
 * bumped it, and the old id already dropped by retention), the ledger's claim makes it harmless:
 * only one worker holds the row's lease, and the lease guard checks it before any provider call.
 */
import { bumpRequeue } from '../db/ledger.ts'
import type { Db } from '../db/database.ts'
import type { RecoveryCandidate } from '../db/recovery.ts'
import { createRanker, jobStates, LIVE_JOB_STATES, receiptJob, type ReceiptsQueue } from '../queue/queues.ts'

/** A receipt row as the recovery read returns it (state: pending, or issuing whose lease expired). */
export type ReceiptToQueue = RecoveryCandidate

export interface EnqueueCounts {
  /** Added under the id they had (no job of it in Redis). */
  readonly added: number
  /** Added under a fresh id, their previous job being finished or the row taken from a vanished worker. */
  readonly requeued: number
  /** Left alone: a live job holds them. */
  readonly live: number
  /** Left alone: another caller moved the row first (it enqueues, or the row no longer needs work). */
  readonly raced: number
}

/**
 * `rank` numbers the jobs in the operator band (queue/queues.ts): re-drive and recovery go ahead of
 * the settled backlog, interleaved by credential. A caller enqueuing in chunks passes one ranker for
 * all of them; without it each call ranks on its own.
 */
export async function enqueueReceipts(
  deps: { readonly db: Db; readonly queue: ReceiptsQueue; readonly rank?: (merchantId: string, provider: string) => number },
  rows: readonly ReceiptToQueue[],
): Promise<EnqueueCounts> {
  if (rows.length === 0) return { added: 0, requeued: 0, live: 0, raced: 0 }
  const states = await jobStates(
    deps.queue,
    rows.map((r) => receiptJob(r).opts.jobId),
  )
  const same: ReceiptToQueue[] = []
  const fresh: ReceiptToQueue[] = []
  let live = 0
  rows.forEach((r, i) => {
    const state = states[i]!
    if (LIVE_JOB_STATES.has(state)) live++
    else if (state === 'unknown' && r.state === 'pending') same.push(r)
    else fresh.push(r)
  })
  const bumped = await bumpRequeue(
    deps.db,
    fresh.map((r) => ({ id: r.id, requeueCount: r.requeue_count })),
  )
  const next = new Map(bumped.map((b) => [b.id, b.requeue_count]))
  const requeued = fresh.filter((r) => next.has(r.id)).map((r) => ({ ...r, requeue_count: next.get(r.id)! }))
  const rank = deps.rank ?? createRanker('operator')
  const jobs = [...same, ...requeued].map((r) => receiptJob(r, rank(r.merchant_id, r.provider)))
  if (jobs.length) await deps.queue.addBulk(jobs)
  return { added: same.length, requeued: requeued.length, live, raced: fresh.length - requeued.length }
}
