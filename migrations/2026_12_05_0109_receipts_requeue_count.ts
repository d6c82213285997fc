import { sql, type Kysely } from 'kysely'

/**
 * receipts.requeue_count: how many times a receipt was put back on the queue under a fresh job id
 * because the job it had was finished (completed or failed) while the row still needed work. It is
 * part of the receipt's job id, so a re-enqueue never reuses the id of a job BullMQ still holds as
 * finished (re-adding such an id is a silent no-op). A constant default: no table rewrite.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts ADD COLUMN IF NOT EXISTS requeue_count integer NOT NULL DEFAULT 0`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE receipts DROP COLUMN IF EXISTS requeue_count`.execute(db)
}
