/**
 * The ledger lease must cover every provider call that can change what the provider holds.
 *
 * A claimed row is ours until `locked_until`; after that a redelivered job may take it over, look the
 * key up (finding nothing yet) and issue. If our own call then went out too, an NTS-style provider
 * (which does not deduplicate) would hold two receipts. So right before an issue or cancel call the
 * worker checks that the lease outlives the call's worst case (connect + read timeouts, the token
 * fetch, p-retry's budget) and extends it in Postgres when it might not; when the row has been taken
 * over, the call is not made.
 *
 * The check is local (a monotonic clock measured from before the claim was sent, so it errs short)
 * and costs a round trip only when the remaining lease is too short: after a long throttle wait, or
 * when the configured lease is shorter than a call can take.
 */
import type { Db } from '../db/database.ts'
import { extendLease } from '../db/ledger.ts'

/** Thrown instead of making a call when another worker owns the row now. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError'
}

export interface LeaseGuardOptions {
  /** Lease taken by the claim, ms. */
  readonly leaseMs: number
  /** Worst-case duration of one provider operation, ms (see callBudgetMs). */
  readonly callBudgetMs: number
  /** performance.now() taken just before the claim statement was sent. */
  readonly claimedAt: number
  readonly clock?: () => number
}

/** Slack for clock granularity and the round trip that records the outcome. */
const MARGIN_MS = 2_000

export function leaseGuard(db: Db, receiptId: number, workerId: string, opts: LeaseGuardOptions): () => Promise<void> {
  const clock = opts.clock ?? (() => performance.now())
  const need = opts.callBudgetMs + MARGIN_MS
  let expiresAt = opts.claimedAt + opts.leaseMs
  return async function ensureLease() {
    if (expiresAt - clock() >= need) return
    const before = clock()
    if (!(await extendLease(db, receiptId, workerId, need))) throw new LeaseLostError(`receipt ${receiptId} was taken over by another worker; call not made`)
    expiresAt = before + need
  }
}

/**
 * Worst case of one adapter operation: the call, a 401 token refresh and the repeated call (each up
 * to connect + read timeout), plus p-retry's budget twice (the call and the token fetch).
 */
export function callBudgetMs(http: { readonly connectTimeoutMs: number; readonly readTimeoutMs: number }, retryBudgetMs: number): number {
  return 3 * (http.connectTimeoutMs + http.readTimeoutMs) + 2 * retryBudgetMs
}
