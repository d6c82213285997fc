import { sql, type Kysely } from 'kysely'

/**
 * Indexes for /metrics, which aggregates the ledger at every scrape: with these the GROUP BY over
 * receipts (state, provider, kind) and over issuance_attempts (operation, outcome) are index-only
 * scans instead of reading every wide row, and the overdue count finds open receipts by state.
 * Building them locks writes on these tables for the build: run `migrate` outside the nightly window.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE INDEX IF NOT EXISTS receipts_state_provider_kind ON receipts (state, provider, kind);
    CREATE INDEX IF NOT EXISTS issuance_attempts_operation_outcome ON issuance_attempts (operation, outcome);
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS receipts_state_provider_kind; DROP INDEX IF EXISTS issuance_attempts_operation_outcome`.execute(db)
}
