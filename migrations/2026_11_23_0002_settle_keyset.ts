import { sql, type Kysely } from 'kysely'

/**
 * Settlement pages through a date window by (business_date, transaction_id): this index serves that
 * keyset directly, so a run reads only its window however many days the table holds.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE INDEX IF NOT EXISTS cash_transactions_date_id ON cash_transactions (business_date, transaction_id)`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS cash_transactions_date_id`.execute(db)
}
