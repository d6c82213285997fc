import { sql, type Kysely } from 'kysely'

/**
 * One row naming the deployment this database belongs to; the row is written on first use, not
 * here, so two databases cloned from one migrated template still get ids of their own.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    deployment_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS deployment`.execute(db)
}
