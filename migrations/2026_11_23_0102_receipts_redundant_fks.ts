import { sql, type Kysely } from 'kysely'

/**
 * Two foreign keys of receipts that guard nothing the others do not, checked once per inserted row
 * (about half the cost of inserting a settlement's receipts; docs/performance.md, Settlement):
 * - merchant_id: every receipt belongs to a transaction (receipts_transaction_id_fkey), whose
 *   merchant_id references merchants; settlement copies it from there.
 * - last_run_id: starts equal to run_id (which keeps its key) and is moved only by re-drive, to the
 *   run it has just created in the same transaction.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_merchant_id_fkey, DROP CONSTRAINT IF EXISTS receipts_last_run_id_fkey`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE receipts
      ADD CONSTRAINT receipts_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id),
      ADD CONSTRAINT receipts_last_run_id_fkey FOREIGN KEY (last_run_id) REFERENCES settlement_runs(id)`.execute(db)
}
