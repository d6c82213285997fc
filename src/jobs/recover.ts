/**
 * Recovery: receipts whose ledger state says work is due or in flight but that no live job holds —
 * a row left `issuing` by a worker that was SIGKILLed or whose Redis lost its data, a cancel whose job
 * was lost (Redis flushed, or down while `cancel` enqueued it), a pending row whose job id sits in
 * Redis's completed or failed set. Settle, re-drive and reconcile do not look at such rows, and the
 * run would stay "running" for good.
 *
 * A pass reads the candidates from the ledger (src/db/recovery.ts: pending rows older than a grace
 * period, issuing rows past their lease), asks BullMQ for each one's current job, and puts back on
 * the queue the ones without a live job, through enqueueReceipts (enqueue-receipts.ts): the same id
 * when Redis holds no job of it, a fresh id (with needs_lookup for an issuing row, whose last call's
 * outcome is unknown, so the handler looks up before any new call) when it is finished. A live job
 * (waiting, delayed, active, prioritized, waiting-children) means the row is left alone.
 *
 * One pass at a time across processes (a Postgres advisory lock); a pass that finds the lock taken
 * returns at once. Were two passes to race anyway, the ledger's guarded requeue_count lets only one of
 * them enqueue a receipt's new generation, and the claim with its lease makes any duplicate job
 * harmless: only the lease holder calls the provider.
 */
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { bumpBatchRequeue } from '../db/ledger.ts'
import { batchRecoveryCandidates, finishDoneRuns, recoveryCandidates, withRecoveryLock } from '../db/recovery.ts'
import { batchJobId, createRanker, jobStates, LIVE_JOB_STATES, type ReceiptsQueue } from '../queue/queues.ts'
import { enqueueReceipts } from './enqueue-receipts.ts'

export interface RecoverDeps {
  readonly db: Db
  readonly queue: ReceiptsQueue
  readonly logger: Logger
  /** A pending row younger than this is not touched: its add may be in flight. */
  readonly graceMs: number
  readonly batchSize?: number
}

export interface RecoverOptions {
  /** Only receipts of this business date. */
  readonly date?: string
  readonly onProgress?: (checked: number) => void
}

export interface RecoverResult {
  /** False when another pass held the lock: this one did nothing. */
  readonly ran: boolean
  /** Receipts that said work was due or in flight. */
  readonly checked: number
  /** A live job held them. */
  readonly live: number
  /** Put back on the queue under the job id they had (Redis held no job of it). */
  readonly added: number
  /** Put back on the queue under a fresh job id (their job was finished, or their worker vanished). */
  readonly requeued: number
  /** Moved by someone else meanwhile (a worker finished them, another caller enqueued them). */
  readonly raced: number
  /** Bulk batches open or submitted with no live job, put back on the queue under a fresh id. */
  readonly batches: number
  /** Settlement runs that this pass found with every receipt done. */
  readonly finishedRuns: readonly number[]
}

export async function recoverOrphans(deps: RecoverDeps, opts: RecoverOptions = {}): Promise<RecoverResult> {
  const result = await withRecoveryLock(deps.db, async () => {
    let checked = 0
    let live = 0
    let added = 0
    let requeued = 0
    let raced = 0
    let afterId = 0
    // One ranking over the pass (operator band): what it re-enqueues has waited already.
    const rank = createRanker('operator')
    for (;;) {
      const rows = await recoveryCandidates(deps.db, { graceMs: deps.graceMs, date: opts.date, afterId, limit: deps.batchSize ?? 500 })
      if (rows.length === 0) break
      afterId = rows.at(-1)!.id
      const c = await enqueueReceipts({ ...deps, rank }, rows)
      checked += rows.length
      live += c.live
      added += c.added
      requeued += c.requeued
      raced += c.raced
      opts.onProgress?.(checked)
    }
    const batches = await recoverBatches(deps, opts, rank)
    const finishedRuns = await finishDoneRuns(deps.db)
    return { ran: true, checked, live, added, requeued, raced, batches, finishedRuns }
  })
  const out = result ?? { ran: false, checked: 0, live: 0, added: 0, requeued: 0, raced: 0, batches: 0, finishedRuns: [] }
  if (out.added + out.requeued + out.batches > 0) deps.logger.warn({ ...out, date: opts.date }, 'recovery: receipts without a live job put back on the queue')
  else deps.logger.debug({ ...out, date: opts.date }, 'recovery pass')
  return out
}

/**
 * Bulk batches in flight (open, or submitted with its result not yet recorded) that no live job
 * holds — their worker died mid-batch, Redis lost the delayed job — get a new job generation. Their
 * members are left to the batch (the receipt candidates above skip active members): the batch's
 * next run takes them back and, submitted, asks for its result before anything is sent.
 */
async function recoverBatches(deps: RecoverDeps, opts: RecoverOptions, rank: (merchantId: string, provider: string) => number): Promise<number> {
  const rows = await batchRecoveryCandidates(deps.db, { graceMs: deps.graceMs, date: opts.date })
  if (!rows.length) return 0
  const states = await jobStates(
    deps.queue,
    rows.map((r) => batchJobId(r.id, r.requeue_count)),
  )
  const idle = rows.filter((_, i) => !LIVE_JOB_STATES.has(states[i]!))
  const bumped = await bumpBatchRequeue(
    deps.db,
    idle.map((r) => ({ id: r.id, requeueCount: r.requeue_count })),
  )
  const byId = new Map(idle.map((r) => [r.id, r]))
  if (bumped.length) {
    await deps.queue.addBulk(
      bumped.map((b) => ({
        name: 'issue-batch' as const,
        data: { batchId: b.id, businessDate: byId.get(b.id)!.trade_date },
        opts: { jobId: batchJobId(b.id, b.requeue_count), priority: rank(byId.get(b.id)!.merchant_id, byId.get(b.id)!.provider) },
      })),
    )
  }
  return bumped.length
}

export interface RecoveryLoop {
  close(): Promise<void>
}

/**
 * Runs a recovery pass every `intervalMs` (0: never) until closed; a tick that finds the previous
 * pass still running is skipped. A failed pass is logged and the next one runs on time; close()
 * waits for a pass in progress.
 */
export function startRecoveryLoop(pass: () => Promise<RecoverResult>, intervalMs: number, logger: Logger): RecoveryLoop {
  if (intervalMs <= 0) return { close: async () => {} }
  let running: Promise<unknown> | null = null
  const timer = setInterval(() => {
    if (running) return
    running = pass()
      .catch((err) => logger.error({ err: (err as Error).message }, 'recovery pass failed'))
      .finally(() => (running = null))
  }, intervalMs)
  timer.unref()
  return {
    async close() {
      clearInterval(timer)
      await running
    },
  }
}
