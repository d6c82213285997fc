import { sql, type Kysely } from 'kysely'

/**
 * Toss Payments: the provider `toss` in cash_transactions' check, and receipts.provisional — an issued
 * receipt whose tax-authority result is still to come (Toss answers IN_PROGRESS; COMPLETED or FAILED
 * follows one to two days later, read by reconcile). A constant default: no table rewrite. The check
 * is added NOT VALID and validated separately, so writes are blocked only for the catalog change.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE cash_transactions DROP CONSTRAINT IF EXISTS cash_transactions_provider_check;
    ALTER TABLE cash_transactions ADD CONSTRAINT cash_transactions_provider_check
      CHECK (provider IN ('portone','portone-v2','payssam','nts','toss')) NOT VALID;
    ALTER TABLE cash_transactions VALIDATE CONSTRAINT cash_transactions_provider_check;
    ALTER TABLE receipts ADD COLUMN IF NOT EXISTS provisional boolean NOT NULL DEFAULT false;
    CREATE INDEX IF NOT EXISTS receipts_provisional ON receipts (trade_date) WHERE provisional;
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP INDEX IF EXISTS receipts_provisional;
    ALTER TABLE receipts DROP COLUMN IF EXISTS provisional;
    ALTER TABLE cash_transactions DROP CONSTRAINT IF EXISTS cash_transactions_provider_check;
    ALTER TABLE cash_transactions ADD CONSTRAINT cash_transactions_provider_check
      CHECK (provider IN ('portone','portone-v2','payssam','nts')) NOT VALID;
  `.execute(db)
}
