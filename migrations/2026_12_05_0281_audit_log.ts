import { sql, type Kysely } from 'kysely'

/**
 * audit_log: who did what to the ledger by hand — re-drive, cancel, reconcile (its repairs), import.
 * One row per operator action, never updated; written through src/db/audit.ts only. Selectors and
 * counts are JSON objects of ids, dates, codes and numbers (never personal data).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    selectors jsonb NOT NULL DEFAULT '{}'::jsonb,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb
  )`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at DESC)`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_log`.execute(db)
}
