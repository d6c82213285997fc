import { sql, type Kysely } from 'kysely'

/**
 * Transactions settlement could not turn into a receipt (the receipts table refused the row: its
 * provider key is already another transaction's, is too long for the provider-key index, or the row
 * breaks a check). No receipts row can hold them without breaking the one-receipt-per-key rule, so
 * they are kept here, one row per transaction: the run that first refused it (`run_id`, whose report
 * lists it) and the last one (`last_run_id`, carry-over nights try it again). A reason, never the
 * key itself.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE settle_rejections (
      transaction_id text PRIMARY KEY REFERENCES cash_transactions(transaction_id),
      merchant_id text NOT NULL REFERENCES merchants(id),
      provider text NOT NULL,
      trade_date date NOT NULL,
      code text NOT NULL CHECK (code IN ('KEY_CONFLICT','KEY_INVALID','ROW_INVALID')),
      sqlstate text NOT NULL,
      message text NOT NULL,
      run_id bigint NOT NULL REFERENCES settlement_runs(id),
      last_run_id bigint NOT NULL REFERENCES settlement_runs(id),
      seen_count integer NOT NULL DEFAULT 1,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX settle_rejections_run ON settle_rejections (run_id);
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE settle_rejections`.execute(db)
}
