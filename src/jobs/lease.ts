/**
 * The send fence: every request that can change what the provider holds (issue, cancel) goes out
 * only after Postgres has confirmed, in that moment, that this worker still owns the row.
 *
 * A claimed row is ours until `locked_until`; after that a redelivered job may take it over, look the
 * key up (finding nothing yet) and issue. If our own request then went out too, an NTS-style provider
 * (which does not deduplicate) would hold two receipts. A worker can be paused past its lease at any
 * point (GC pause, SIGSTOP, VM freeze) — also between p-retry's tries or between a token refresh and
 * the repeated call — so a check made once before the operation is not enough. The adapters hand the
 * fence to the HTTP layer, which awaits it before EVERY mutating request (src/providers/http.ts):
 * one statement (src/db/ledger.ts fenceSend) that requires `locked_by = me`, makes the lease cover
 * the rest of the operation, records the send time (`last_sent_at`) and writes the request's
 * issuance_attempts row ('sent') before the request leaves.
 * An aborted job (BullMQ lost its lock, shutdown) sends nothing more.
 *
 * What remains is the time between the fence's commit and the bytes leaving: a pause longer than the
 * lease still left at that moment (at least the call budget) lets a new owner in. docs/exactly-once.md
 * says how that residual window is bounded and what covers it.
 */
import type { Db } from '../db/database.ts'
import { fenceSend, type SentAttempt } from '../db/ledger.ts'

/** Thrown instead of making a call when another worker owns the row now. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError'
}

export interface SendFenceOptions {
  /** Worst-case duration of one provider operation, ms (see callBudgetMs): what the lease must still cover. */
  readonly callBudgetMs: number
  /** The job's abort signal: once aborted, nothing more is sent. */
  readonly signal?: AbortSignal
  /** What the attempt row the fence writes ('sent') says about the request. */
  readonly attempt: SentAttempt
  /** Told the id of that row once the fence has committed (the answer completes it). */
  readonly onSent?: (attemptId: number) => void
}

/**
 * Runs the fence statement for one row (src/db/ledger.ts fenceSend; batched in a worker's ledger
 * batcher): the id of the request's attempt row, or null when the row is no longer this worker's.
 */
export type Fence = (receiptId: number, coverMs: number, attempt: SentAttempt) => Promise<number | null>

/** The unbatched fence of one worker: one statement per send. */
export const fenceOf =
  (db: Db, workerId: string): Fence =>
  (receiptId, coverMs, attempt) =>
    fenceSend(db, receiptId, workerId, coverMs, attempt)

/** Slack for clock granularity and the round trip that records the outcome. */
const MARGIN_MS = 2_000

/** The `beforeSend` of one job's call context for one receipt row. */
export function sendFence(fence: Fence, receiptId: number, opts: SendFenceOptions): () => Promise<void> {
  const cover = opts.callBudgetMs + MARGIN_MS
  return async function beforeSend() {
    opts.signal?.throwIfAborted()
    const attemptId = await fence(receiptId, cover, opts.attempt)
    if (attemptId === null) throw new LeaseLostError(`receipt ${receiptId} was taken over by another worker; call not made`)
    opts.onSent?.(attemptId)
    opts.signal?.throwIfAborted()
  }
}

/**
 * Worst case of one adapter operation: the call, a 401 token refresh and the repeated call (each up
 * to connect + read timeout), plus p-retry's budget twice (the call and the token fetch).
 */
export function callBudgetMs(http: { readonly connectTimeoutMs: number; readonly readTimeoutMs: number }, retryBudgetMs: number): number {
  return 3 * (http.connectTimeoutMs + http.readTimeoutMs) + 2 * retryBudgetMs
}
