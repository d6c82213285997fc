import { sql, type Kysely } from 'kysely'

/**
 * Partial refunds at providers that cancel only in full (PortOne V1/V2, PaySsam): the receipt is
 * cancelled in full and a new receipt issued for what is still paid. `reissue_amount` on the full
 * cancel row says a new receipt for that amount follows once the cancel is accepted; the new receipt
 * is an issue row of its own (seq 1, 2, … after the original's 0) whose `replaces_receipt_id` names the receipt it replaces.
 * Nullable columns without defaults: no table rewrite; the foreign key is validated separately.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts ADD COLUMN IF NOT EXISTS reissue_amount bigint CHECK (reissue_amount IS NULL OR reissue_amount >= 1),
    ADD COLUMN IF NOT EXISTS replaces_receipt_id bigint`.execute(db)
  await sql`ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_replaces_fk`.execute(db)
  await sql`ALTER TABLE receipts ADD CONSTRAINT receipts_replaces_fk FOREIGN KEY (replaces_receipt_id) REFERENCES receipts(id) NOT VALID`.execute(db)
  await sql`ALTER TABLE receipts VALIDATE CONSTRAINT receipts_replaces_fk`.execute(db)
  await sql`CREATE UNIQUE INDEX IF NOT EXISTS receipts_replaces_once ON receipts (replaces_receipt_id) WHERE replaces_receipt_id IS NOT NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS receipts_replaces_once`.execute(db)
  await sql`ALTER TABLE receipts DROP CONSTRAINT IF EXISTS receipts_replaces_fk`.execute(db)
  await sql`ALTER TABLE receipts DROP COLUMN IF EXISTS replaces_receipt_id, DROP COLUMN IF EXISTS reissue_amount`.execute(db)
}
