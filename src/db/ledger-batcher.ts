/**
 * Group commit for the hot path of a worker process: the claims and the completions of all jobs in
 * flight are coalesced (DataLoader, a short window) into one statement each, so a receipt costs two
 * batched statements instead of six round trips and two commits of its own. Every commit waits for
 * its WAL flush, so single-row autocommits top out at a few thousand rows a second while one
 * statement over an array of rows carries tens of thousands (figures in docs/performance.md).
 *
 * The protocol is unchanged: a claim still commits before its provider call starts, and each
 * completion is atomic with its attempt rows. A batch that fails (a bad row, a deadlock, a dropped
 * connection) is retried item by item so only the item at fault sees an error.
 */
import DataLoader from 'dataloader'
import type { Db } from './database.ts'
import { applyTransitions, claimReceipts, fenceSends, type ClaimResult, type FenceItem, type SentAttempt, type TransitionItem } from './ledger.ts'

export interface LedgerBatcher {
  /** Claims one receipt for this worker (see claimReceipts). */
  claim(receiptId: number): Promise<ClaimResult>
  /** Applies one transition; false when the row was taken over (see applyTransitions). */
  transition(item: Omit<TransitionItem, 'workerId'>): Promise<boolean>
  /**
   * The fence before one send, with the request's attempt row (see fenceSends): the attempt row's
   * id, or null when the row is no longer this worker's.
   */
  fence(receiptId: number, coverMs: number, attempt: SentAttempt): Promise<number | null>
}

export interface LedgerBatcherOptions {
  readonly workerId: string
  readonly leaseMs: number
  /**
   * How long a claim or outcome batch waits for company before it is sent (default 6 ms). Each
   * statement costs Postgres a fixed share (executor start-up, locks, the commit's WAL flush) besides
   * its rows, so fewer, fuller batches cost less per receipt; a job waits a few ms more, which a worker
   * running dozens of jobs at once does not notice.
   */
  readonly windowMs?: number
  /**
   * The same for fence batches (default 2 ms): the fence stands between a job's rate slot and its
   * request, so its wait delays the request's arrival at the provider.
   */
  readonly fenceWindowMs?: number
  readonly maxBatchSize?: number
}

export function createLedgerBatcher(db: Db, opts: LedgerBatcherOptions): LedgerBatcher {
  const windowMs = opts.windowMs ?? 6
  const fenceWindowMs = opts.fenceWindowMs ?? 2
  const common = {
    cache: false,
    maxBatchSize: opts.maxBatchSize ?? 200,
    batchScheduleFn: (run: () => void) => setTimeout(run, windowMs),
  } as const

  const claims = new DataLoader<number, ClaimResult>(
    (ids) =>
      withFallback(ids, async (batch) => {
        const m = await claimReceipts(db, batch, opts.workerId, opts.leaseMs)
        return batch.map((id) => m.get(id)!)
      }),
    common,
  )

  const transitions = new DataLoader<TransitionItem, boolean>(
    (items) =>
      withFallback(items, async (batch) => {
        // One update per receipt per statement: a second item for the same row goes in its own batch.
        if (new Set(batch.map((i) => i.receiptId)).size !== batch.length) throw new Error('duplicate receipt in batch')
        const owned = await applyTransitions(db, batch)
        return batch.map((i) => owned.has(i.receiptId))
      }),
    common,
  )

  const fences = new DataLoader<FenceItem, number | null>(
    (items) =>
      withFallback(items, async (batch) => {
        if (new Set(batch.map((i) => i.receiptId)).size !== batch.length) throw new Error('duplicate receipt in batch')
        const owned = await fenceSends(db, opts.workerId, batch)
        return batch.map((i) => owned.get(i.receiptId) ?? null)
      }),
    { ...common, batchScheduleFn: (run: () => void) => setTimeout(run, fenceWindowMs) },
  )

  return {
    claim: (receiptId) => claims.load(receiptId),
    fence: (receiptId, coverMs, attempt) => fences.load({ receiptId, coverMs, attempt }),
    transition: (item) => transitions.load({ ...item, workerId: opts.workerId }),
  }
}

/** Runs the batch; if the statement fails, runs each item alone and reports per-item errors. */
async function withFallback<K, V>(keys: readonly K[], run: (batch: readonly K[]) => Promise<V[]>): Promise<(V | Error)[]> {
  try {
    return await run(keys)
  } catch (err) {
    if (keys.length === 1) return [asError(err)]
    return Promise.all(keys.map((k) => run([k]).then((v) => v[0] as V, asError)))
  }
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)))
