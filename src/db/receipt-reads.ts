/** Reads of single receipts for operator commands (writes belong to the ledger). */
import type { Db } from './database.ts'

/** The state of one receipt row, with its last error (throws when there is no such row). */
export async function receiptState(db: Db, receiptId: number): Promise<{ state: string; error_code: string | null; error_message: string | null }> {
  return db.selectFrom('receipts').select(['state', 'error_code', 'error_message']).where('id', '=', receiptId).executeTakeFirstOrThrow()
}

/** A transaction's issue receipt next to what the transaction says is still paid, if it has one. */
export async function issueReceiptAndPayment(db: Db, transactionId: string) {
  return (
    db
      .selectFrom('receipts as r')
      .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
      .select([
        'r.state',
        'r.total_amount',
        'r.cancelled_amount',
        'r.provider',
        'r.merchant_id',
        'r.provider_key',
        'r.idempotency_key',
        'r.portone_payment',
        'r.seq',
        'r.provisional',
        't.status',
        't.amount',
        't.refunded_amount',
      ])
      .where('r.transaction_id', '=', transactionId)
      .where('r.kind', '=', 'issue')
      // The latest receipt: a re-issue (seq 1, 2, …) replaces a cancelled one.
      .orderBy('r.seq', 'desc')
      .limit(1)
      .executeTakeFirst()
  )
}
