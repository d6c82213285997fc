import { sql, type Kysely } from 'kysely'

/**
 * provider_duplicates.cancel_claimed_by: which reconcile holds the cancel of a duplicate. The claim
 * (cancel_started_at) lets one reconcile at a time take the cancel; the owner lets the send fence
 * check, right before every cancel request (retries and the repeat after a token refresh included),
 * that the claim is still this reconcile's — one paused past the claim's staleness and overtaken by
 * another sends nothing. Nullable, no default: no table rewrite.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE provider_duplicates ADD COLUMN IF NOT EXISTS cancel_claimed_by text`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE provider_duplicates DROP COLUMN IF EXISTS cancel_claimed_by`.execute(db)
}
