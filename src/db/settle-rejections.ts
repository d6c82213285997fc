/**
 * The settle_rejections table: transactions settlement could not turn into a receipt, one row per
 * transaction. This module is its only writer. Settlement records a refusal here and moves on with the
 * rest of the day; a carry-over night that meets the same transaction again updates its row (last run,
 * how often), never adds one. A rejection whose transaction has an issue receipt by now (its data was
 * fixed, a later settle took it) no longer counts as a failure: readers filter on that.
 */
import { sql } from 'kysely'
import type { Db } from './database.ts'
import type { ProviderName } from '../domain/index.ts'
import type { SettleRejectionCode } from './schema.ts'

export interface SettleRejection {
  readonly transactionId: string
  readonly merchantId: string
  readonly provider: ProviderName
  readonly tradeDate: string
  readonly code: SettleRejectionCode
  readonly sqlstate: string
  /** Why, for an operator: no key value, no personal data. */
  readonly message: string
}

/** Records (or, for a transaction refused before, refreshes) the rejections of run `runId`. */
export async function recordSettleRejections(db: Db, runId: number, rejections: readonly SettleRejection[]): Promise<void> {
  if (rejections.length === 0) return
  const col = <T>(f: (r: SettleRejection) => T) => rejections.map(f)
  await sql`
    INSERT INTO settle_rejections (transaction_id, merchant_id, provider, trade_date, code, sqlstate, message, run_id, last_run_id)
    SELECT n.transaction_id, n.merchant_id, n.provider, n.trade_date, n.code, n.sqlstate, n.message, ${runId}::bigint, ${runId}::bigint
    FROM unnest(
      ${col((r) => r.transactionId)}::text[], ${col((r) => r.merchantId)}::text[], ${col((r) => r.provider)}::text[],
      ${col((r) => r.tradeDate)}::date[], ${col((r) => r.code)}::text[], ${col((r) => r.sqlstate)}::text[], ${col((r) => r.message.slice(0, 1000))}::text[]
    ) AS n(transaction_id, merchant_id, provider, trade_date, code, sqlstate, message)
    ON CONFLICT (transaction_id) DO UPDATE SET
      code = excluded.code,
      sqlstate = excluded.sqlstate,
      message = excluded.message,
      last_run_id = excluded.last_run_id,
      seen_count = settle_rejections.seen_count + CASE WHEN settle_rejections.last_run_id = excluded.last_run_id THEN 0 ELSE 1 END,
      updated_at = now()
  `.execute(db)
}
