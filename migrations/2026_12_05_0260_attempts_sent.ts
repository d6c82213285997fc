import { sql, type Kysely } from 'kysely'

/**
 * issuance_attempts rows are written BEFORE an issue or cancel request leaves (by the send fence, in
 * the statement that verifies the lease) with outcome 'sent' and no finish time, and completed when
 * the answer is recorded. A worker killed mid-call therefore leaves a 'sent' row: every request the
 * provider may have seen is in the ledger. finished_at and latency_ms are unknown until then; the
 * check keeps 'sent' and "no finish time" together. Dropping NOT NULL and adding a NOT VALID check
 * rewrite nothing; VALIDATE reads the table once under a lock that lets writes continue.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE issuance_attempts ALTER COLUMN finished_at DROP NOT NULL, ALTER COLUMN latency_ms DROP NOT NULL`.execute(db)
  await sql`ALTER TABLE issuance_attempts DROP CONSTRAINT IF EXISTS issuance_attempts_sent_open`.execute(db)
  await sql`ALTER TABLE issuance_attempts ADD CONSTRAINT issuance_attempts_sent_open
    CHECK ((outcome = 'sent') = (finished_at IS NULL) AND (finished_at IS NULL) = (latency_ms IS NULL)) NOT VALID`.execute(db)
  await sql`ALTER TABLE issuance_attempts VALIDATE CONSTRAINT issuance_attempts_sent_open`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE issuance_attempts DROP CONSTRAINT IF EXISTS issuance_attempts_sent_open`.execute(db)
  await sql`UPDATE issuance_attempts SET finished_at = started_at, latency_ms = 0 WHERE finished_at IS NULL`.execute(db)
  await sql`ALTER TABLE issuance_attempts ALTER COLUMN finished_at SET NOT NULL, ALTER COLUMN latency_ms SET NOT NULL`.execute(db)
}
