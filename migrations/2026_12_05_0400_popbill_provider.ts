import { sql, type Kysely } from 'kysely'

/**
 * Popbill (Linkhub Cashbill): the provider `popbill` in cash_transactions' check. Popbill's deferred
 * NTS filing result (300 → 304/305) reuses receipts.provisional (migration 0300). The check is added
 * NOT VALID and validated separately, so writes are blocked only for the catalog change.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE cash_transactions DROP CONSTRAINT IF EXISTS cash_transactions_provider_check;
    ALTER TABLE cash_transactions ADD CONSTRAINT cash_transactions_provider_check
      CHECK (provider IN ('portone','portone-v2','payssam','nts','toss','popbill')) NOT VALID;
    ALTER TABLE cash_transactions VALIDATE CONSTRAINT cash_transactions_provider_check;
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE cash_transactions DROP CONSTRAINT IF EXISTS cash_transactions_provider_check;
    ALTER TABLE cash_transactions ADD CONSTRAINT cash_transactions_provider_check
      CHECK (provider IN ('portone','portone-v2','payssam','nts','toss')) NOT VALID;
  `.execute(db)
}
