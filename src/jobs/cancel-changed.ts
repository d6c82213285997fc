/**
 * A re-import moved these transactions forward (cancelled, or a larger refund). Where the receipt is
 * already issued, request a cancellation of what is no longer paid: everything for a cancelled
 * transaction, the newly refunded part otherwise. Unissued receipts need nothing: the worker reads
 * the transaction's current amounts when it issues.
 */
import type { Db } from '../db/database.ts'
import { issueReceiptAndPayment } from '../db/receipt-reads.ts'
import type { ReceiptsQueue } from '../queue/queues.ts'
import { requestCancellation } from './cancel-receipt.ts'
import type { ProviderSource } from './provider-source.ts'

export interface CancelChangedResult {
  readonly transaction_id: string
  readonly result: string
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
    const amount = row.total_amount - row.cancelled_amount - stillPaid
    if (amount <= 0) continue
    try {
      const r = await requestCancellation(deps, { transactionId: id, reason: 1, amount })
      out.push({ transaction_id: id, result: `cancellation of ${r.amount} enqueued` })
    } catch (err) {
      out.push({ transaction_id: id, result: (err as Error).message })
    }
  }
  return out
}
