import { sql, type Kysely } from 'kysely'

/**
 * cash_transactions.identifier_search: the buyer identifier's keyed hash (`<keyId>.<HMAC-SHA-256>`
 * under a search key derived from the data key, src/crypto/pii.ts searchHash) so the dashboard and
 * `show` find a buyer's transactions without the identifier being stored or compared in plaintext.
 * NULL where there is no buyer identifier (self-issue). Rows written before this migration are
 * filled by `cash-receipts rekey` and by re-importing them (the hash needs the data key, which a
 * migration does not have): docs/security.md. A partial btree index: lookups are by equality with
 * one hash per configured key. Adding a nullable column without default does not rewrite the table;
 * the index build locks writes on cash_transactions for its duration (run `migrate` outside the
 * nightly window, as for 0105).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE cash_transactions ADD COLUMN IF NOT EXISTS identifier_search text;
    CREATE INDEX IF NOT EXISTS cash_transactions_identifier_search ON cash_transactions (identifier_search) WHERE identifier_search IS NOT NULL;
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP INDEX IF EXISTS cash_transactions_identifier_search;
    ALTER TABLE cash_transactions DROP COLUMN IF EXISTS identifier_search;
  `.execute(db)
}
