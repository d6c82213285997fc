/**
 * Runs once per `vitest run`: checks that Postgres and Redis answer, and builds a migrated template
 * database that every integration test file clones (CREATE DATABASE … TEMPLATE), so each file gets
 * its own database in milliseconds.
 */
import pg from 'pg'
import { Redis } from 'ioredis'
import { createDb, migrateToLatest } from '../src/db/database.ts'
import { TEMPLATE_DB, TEST_DB_NS, adminUrl, dbUrl, redisUrl } from './helpers/env.ts'

export default async function setup() {
  const admin = new pg.Client({ connectionString: adminUrl(), connectionTimeoutMillis: 5_000 })
  try {
    await admin.connect()
  } catch (err) {
    throw new Error(`Postgres does not answer at ${adminUrl()} (${(err as Error).message}); start it or set TEST_PG_URL. .ci/run starts it for you.`)
  }
  const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    await redis.ping()
  } catch (err) {
    throw new Error(`Redis does not answer at ${redisUrl()} (${(err as Error).message}); start it or set REDIS_URL. .ci/run starts it for you.`)
  } finally {
    redis.disconnect()
  }
  try {
    // Leftovers of earlier runs (a killed run leaves its databases behind).
    const old = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${TEST_DB_NS}\\_%`])
    for (const { datname } of old.rows) await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`)
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(TEMPLATE_DB)}`)
  } finally {
    await admin.end()
  }
  const handle = createDb(dbUrl(TEMPLATE_DB), { max: 1 })
  try {
    const res = await migrateToLatest(handle.db)
    if (res.error) throw res.error
  } finally {
    await handle.close()
  }
}
