/**
 * The deployment id: a random uuid stored in the database's one-row `deployment` table on first use.
 * The queue's Redis keys carry the same id (queue/deployment-guard.ts), so a worker pointed at a
 * database and a queue of two different deployments can tell before it takes a job.
 */
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from './database.ts'

/** This database's deployment id, created on first call (concurrent first calls agree on one). */
export async function databaseDeploymentId(db: Db): Promise<string> {
  await sql`INSERT INTO deployment (singleton, deployment_id) VALUES (true, ${randomUUID()}::uuid) ON CONFLICT (singleton) DO NOTHING`.execute(db)
  const { rows } = await sql<{ deployment_id: string }>`SELECT deployment_id::text AS deployment_id FROM deployment`.execute(db)
  return rows[0]!.deployment_id
}
