/**
 * A re-import moved these transactions forward (cancelled, or a larger refund). Where the receipt is
 * already issued, request a cancellation of what is no longer paid: everything for a cancelled
 * transaction, the newly refunded part otherwise. Unissued receipts need nothing: the worker reads
 * the transaction's current amounts when it issues.
 *
 * A partial refund at a provider that cancels only in full (PortOne V1/V2, PaySsam) is what Korean
 * practice does with it: the receipt is cancelled in full and a new receipt issued for what is still
 * paid, the re-issue created only once the cancel is accepted (src/db/ledger.ts recordCancelOutcome).
 * Where even that is impossible (PortOne V1's imp_uid route keys the one receipt by the payment), the
 * receipt is flagged for a person and the result says so (`needs_attention`).
 */
import type { Db } from '../db/database.ts'
import { flagReconcile } from '../db/ledger.ts'
import { issueReceiptAndPayment } from '../db/receipt-reads.ts'
import { reissueKeys } from '../providers/keys.ts'
import type { ReceiptsQueue } from '../queue/queues.ts'
import { requestCancellation } from './cancel-receipt.ts'
import type { ProviderSource } from './provider-source.ts'

export interface CancelChangedResult {
  readonly transaction_id: string
  readonly result: string
  /** cancel (what is no longer paid) · cancel_and_reissue (in full, then a new receipt) · needs_attention (nothing could be requested) */
  readonly action: 'cancel' | 'cancel_and_reissue' | 'needs_attention'
  /** KRW cancelled at the provider (0 when nothing was requested). */
  readonly cancel_amount: number
  /** KRW of the new receipt that follows the full cancel (cancel_and_reissue), else null. */
  readonly reissue_amount: number | null
}

export async function cancelChangedTransactions(
  deps: { db: Db; queue: ReceiptsQueue; providers: Pick<ProviderSource, 'get'> },
  transactionIds: readonly string[],
): Promise<CancelChangedResult[]> {
  const out: CancelChangedResult[] = []
  for (const id of transactionIds) {
    const row = await issueReceiptAndPayment(deps.db, id)
    if (row?.state !== 'issued') continue
    const stillPaid = row.status === 'cancelled' ? 0 : Math.max(0, row.amount - row.refunded_amount)
    const receipted = row.total_amount - row.cancelled_amount
    const amount = receipted - stillPaid
    if (amount <= 0) continue
    const partial = stillPaid > 0
    const caps = deps.providers.get(row.merchant_id, row.provider).provider.capabilities
    // Full cancel + re-issue where the provider cannot cancel part of this receipt (now).
    const fullOnly = partial && (!caps.partialCancel || (caps.partialCancelOnlyFinal === true && row.provisional))
    const attention = (why: string) => ({ transaction_id: id, result: `needs attention: ${why}`, action: 'needs_attention' as const, cancel_amount: 0, reissue_amount: null })
    if (fullOnly) {
      const keys = { provider: row.provider, providerKey: row.provider_key, idempotencyKey: row.idempotency_key, portonePayment: row.portone_payment }
      if (row.cancelled_amount > 0 || !reissueKeys(keys, row.seq + 1)) {
        const why = `${row.provider} cancels only in full and cannot re-issue ${stillPaid} of this payment under a receipt of its own; ${amount} refunded stays receipted`
        await flagReconcile(deps.db, await receiptIdOf(deps.db, id), 'issued', `partial refund not receipted: ${why}`.slice(0, 200))
        out.push(attention(why))
        continue
      }
    }
    try {
      if (fullOnly) {
        const r = await requestCancellation(deps, { transactionId: id, reason: 1, reissueAmount: stillPaid, cause: 'refund' })
        out.push({
          transaction_id: id,
          result: `full cancellation of ${r.amount} enqueued; a new receipt for ${stillPaid} follows once it is accepted (${row.provider} cancels only in full)`,
          action: 'cancel_and_reissue',
          cancel_amount: r.amount,
          reissue_amount: stillPaid,
        })
      } else {
        const r = await requestCancellation(deps, { transactionId: id, reason: 1, amount, cause: 'refund' })
        out.push({ transaction_id: id, result: `cancellation of ${r.amount} enqueued`, action: 'cancel', cancel_amount: r.amount, reissue_amount: null })
      }
    } catch (err) {
      out.push(attention((err as Error).message))
    }
  }
  return out
}

async function receiptIdOf(db: Db, transactionId: string): Promise<number> {
  const r = await db
    .selectFrom('receipts')
    .select('id')
    .where('transaction_id', '=', transactionId)
    .where('kind', '=', 'issue')
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirstOrThrow()
  return r.id
}
