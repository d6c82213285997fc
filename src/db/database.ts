/**
 * Postgres access: a pg Pool wrapped by Kysely, the database auto-creation used on developer
 * machines, and the migrator. No module-scope connections: callers own what they create.
 */
import pg from 'pg'
import { Kysely, Migrator, PostgresDialect, type MigrationResultSet } from 'kysely'
import { migrations } from '../../migrations/index.ts'
import type { Database } from './schema.ts'

// int8 (bigint) → number: every amount is ≤ ₩999,999,999 and ids stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v))
// date → 'YYYY-MM-DD' string: business dates are calendar dates in KST, never instants.
pg.types.setTypeParser(1082, (v) => v)

export type Db = Kysely<Database>

export interface DbHandle {
  readonly db: Db
  readonly pool: pg.Pool
  close(): Promise<void>
}

export function createDb(databaseUrl: string, opts: { max?: number; applicationName?: string } = {}): DbHandle {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'cash-receipts',
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  })
  // A terminated backend (pg_terminate_backend, failover) surfaces here; the pool replaces the client.
  pool.on('error', () => {})
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  return {
    db,
    pool,
    close: () => db.destroy(),
  }
}

const DUPLICATE_DATABASE = '42P04'
const UNIQUE_VIOLATION = '23505'

/** Creates the database named in the URL when it does not exist (developer machines, tests). */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl)
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''))
  if (!name) return false
  const probe = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 })
  try {
    await probe.connect()
    return false
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err // 3D000: database does not exist
  } finally {
    await probe.end().catch(() => {})
  }
  url.pathname = '/postgres'
  const admin = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
    return true
  } catch (err) {
    const code = (err as { code?: string }).code
    // Another process created it at the same moment.
    if (code === DUPLICATE_DATABASE || code === UNIQUE_VIOLATION) return false
    throw err
  } finally {
    await admin.end()
  }
}

/**
 * Runs pending migrations. Safe to run twice and from two processes at once: Kysely's migrator takes
 * a Postgres advisory lock and each migration runs in its own transaction.
 */
export async function migrateToLatest(db: Db): Promise<MigrationResultSet> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
  })
  return migrator.migrateToLatest()
}
