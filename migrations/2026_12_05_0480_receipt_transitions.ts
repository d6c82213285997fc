import { sql, type Kysely } from 'kysely'

/**
 * receipt_transitions: every change of a receipt's state (and of who works on it: a claim, a lease
 * taken over, a recovery requeue), written by src/db/ledger.ts in the same statement or transaction
 * as the change itself, with its cause (settle, attempt:<n>, lookup, redrive, cancel, reconcile, …)
 * and the run, job and worker behind it. Never updated; never personal data (ids, states, causes).
 * Rows go with their receipt (ON DELETE CASCADE): whatever retention removes a receipt removes its
 * history. Receipts created before this table have no rows; `show` then derives their history.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS receipt_transitions (
    id bigserial PRIMARY KEY,
    receipt_id bigint NOT NULL REFERENCES receipts (id) ON DELETE CASCADE,
    from_state text,
    to_state text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    cause text NOT NULL,
    run_id bigint,
    job_id text,
    worker_id text
  )`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS receipt_transitions_receipt ON receipt_transitions (receipt_id, id)`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS receipt_transitions`.execute(db)
}
