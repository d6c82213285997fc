import { sql, type Kysely } from 'kysely'

/**
 * provider_duplicates: a second (third, …) live receipt a provider holds for one of our receipts,
 * found by reconcile at a provider that does not deduplicate by our key. One row per provider
 * receipt, so a repeated reconcile records it once. No personal data: the receipt id, the
 * provider's receipt id / approval number and the amount only.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS provider_duplicates (
      id bigserial PRIMARY KEY,
      receipt_id bigint NOT NULL REFERENCES receipts(id),
      provider text NOT NULL,
      provider_receipt_id text NOT NULL,
      approval_number text,
      amount bigint,
      found_at timestamptz NOT NULL DEFAULT now(),
      cancel_started_at timestamptz,
      repaired_at timestamptz,
      repair_outcome text,
      UNIQUE (receipt_id, provider_receipt_id)
    )`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS provider_duplicates_open ON provider_duplicates (provider) WHERE repaired_at IS NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS provider_duplicates`.execute(db)
}
