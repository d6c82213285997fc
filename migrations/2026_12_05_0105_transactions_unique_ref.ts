import { sql, type Kysely } from 'kysely'

/**
 * Import checks that a new row's provider key (or payment id) is not already another stored
 * transaction's: `storedUniqueRef` in src/import/import-transactions.ts, compared for equality. This
 * index on that same expression turns the check into one lookup per imported row instead of a scan
 * of every stored transaction. A hash index: it stores a 4-byte hash, so a row written past import's
 * 64-character key rule (an older version, direct SQL) still fits, where a btree entry over ~2.7 kB
 * would refuse the row. The expression must stay the same as storedUniqueRef's, or the planner stops
 * using it; test/integration/bad-input.test.ts checks that it does. Building it locks writes on
 * cash_transactions for the build: run `migrate` outside the nightly window.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE INDEX IF NOT EXISTS cash_transactions_unique_ref ON cash_transactions USING hash ((CASE provider
      WHEN 'portone' THEN CASE WHEN payment_ref <> '' THEN payment_ref ELSE coalesce(order_id, transaction_id) END
      WHEN 'portone-v2' THEN coalesce(payment_ref, transaction_id)
      ELSE nullif(payment_ref, '') END))
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS cash_transactions_unique_ref`.execute(db)
}
