import { sql, type Kysely } from 'kysely'

/**
 * receipts.last_sent_at: when this row's latest issue or cancel request was about to go out. The
 * worker's fence writes it in the statement that verifies and extends its lease, and that statement
 * commits before the request is sent, so a request that went out always has its time here (a process
 * that dies between the two leaves a time with no request: that only makes a later "not found" wait).
 * A "not found" from a provider that does not deduplicate is trusted only once the provider's commit
 * window since this time has passed.
 *
 * Rows waiting for a lookup or held by a worker get their last update as the time: an over-estimate of the last
 * send, which errs towards waiting.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts ADD COLUMN IF NOT EXISTS last_sent_at timestamptz`.execute(db)
  await sql`UPDATE receipts SET last_sent_at = updated_at WHERE (needs_lookup OR state = 'issuing') AND last_sent_at IS NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts DROP COLUMN IF EXISTS last_sent_at`.execute(db)
}
