/**
 * Postgres access: a pg Pool wrapped by Kysely, the database auto-creation used on developer
 * machines, and the migrator. No module-scope connections: callers own what they create.
 */
import { createHash } from 'node:crypto'
import pg from 'pg'
import { Kysely, Migrator, PostgresDialect, sql, type MigrationResultSet, type PostgresPool, type PostgresPoolClient, type RawBuilder } from 'kysely'
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

export interface DbOptions {
  readonly max?: number
  readonly applicationName?: string
  /**
   * Run the statements marked with {@link prepared} as named prepared statements (default true):
   * Postgres then parses and plans each of them once per connection instead of on every run. Off for
   * a pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
   */
  readonly preparedStatements?: boolean
  /** Told of a connection Postgres dropped (failover, restart, pg_terminate_backend); the pool replaces it. */
  readonly onConnectionError?: (err: Error) => void
  /**
   * Every connection runs with `plan_cache_mode = force_generic_plan`: a prepared statement is planned
   * once per connection and the plan reused. Left to itself Postgres plans a statement anew for every
   * execution whenever the plan for the actual values looks cheaper than the generic one, which for
   * the ledger's batch statements (arrays of ids, so the values never change the right plan) it always
   * did: 0.2–0.5 ms of planning per batch. Only for a pool that runs such statements alone (the
   * worker's ledger batcher): an ad-hoc query with a skewed parameter may need the plan for its value.
   */
  readonly genericPlans?: boolean
}

export function createDb(databaseUrl: string, opts: DbOptions = {}): DbHandle {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'cash-receipts',
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    ...(opts.genericPlans ? { options: '-c plan_cache_mode=force_generic_plan' } : {}),
  })
  // A terminated backend (57P01 on failover, restart, pg_terminate_backend) is reported as an 'error'
  // event: by the pool for an idle client, by the client itself while it is checked out between two
  // queries. An 'error' event without a listener ends the process, so both get one. The query that
  // was running rejects on its own and its job is retried; the pool discards the broken client.
  const onError = (err: Error) => opts.onConnectionError?.(err)
  pool.on('error', onError)
  pool.on('connect', (client) => client.on('error', onError))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: opts.preparedStatements === false ? pool : preparingPool(pool) }) })
  return {
    db,
    pool,
    close: () => db.destroy(),
  }
}

/**
 * Marks the statement it starts as one to prepare: `sql\`${prepared('ledger_claim')} WITH …\``. Only
 * for statements whose text does not vary with their arguments (arrays, not value lists), and whose
 * result columns are named rather than `*` — a cached plan must not change its result type when a
 * migration adds a column.
 */
export function prepared(name: string): RawBuilder<unknown> {
  if (!PREPARED_NAME_ONLY.test(name)) throw new Error(`prepared statement name must be snake_case, got ${JSON.stringify(name)}`)
  return sql.raw(`${PREPARED_MARK}${name} */`)
}

const PREPARED_MARK = '/* prepared:'
// One pattern for what `prepared` accepts and what preparedName reads back, so they cannot drift apart.
const NAME_PATTERN = '[a-z][a-z0-9_]*'
const PREPARED_NAME_ONLY = new RegExp(`^${NAME_PATTERN}$`)
const PREPARED_NAME = new RegExp(`^/\\* prepared:(${NAME_PATTERN}) \\*/`)
/** Statement text → its name: the marker plus a hash of the text, so two texts never share a name. */
const preparedNames = new Map<string, string>()

function preparedName(text: string): string | undefined {
  if (!text.startsWith(PREPARED_MARK)) return undefined
  const known = preparedNames.get(text)
  if (known) return known
  const m = PREPARED_NAME.exec(text)
  if (!m) return undefined
  const name = `${m[1]}_${createHash('sha1').update(text).digest('hex').slice(0, 12)}`
  // The texts are the code's own; the bound only guards against a marked statement built from data.
  if (preparedNames.size < 256) preparedNames.set(text, name)
  return name
}

/**
 * The pool as Kysely sees it, running marked statements by name. Kysely's driver calls
 * `client.query(text, parameters)` and has no notion of a statement name; node-postgres prepares a
 * named query on first use on each connection and reuses it after. A wrapper rather than a plugin:
 * plugins rewrite the query tree, not how it is sent. One wrapper per connection, because Kysely keys
 * its connection objects by the client.
 */
function preparingPool(pool: pg.Pool): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>()
  const wrap = (client: pg.PoolClient): PostgresPoolClient => ({
    query: ((textOrCursor: string | object, parameters?: readonly unknown[]) => {
      if (typeof textOrCursor !== 'string') return client.query(textOrCursor as never)
      const name = preparedName(textOrCursor)
      return name ? client.query({ name, text: textOrCursor, values: parameters as unknown[] }) : client.query(textOrCursor, parameters as unknown[])
    }) as unknown as PostgresPoolClient['query'],
    release: () => client.release(),
  })
  return {
    async connect() {
      const client = await pool.connect()
      let w = wrappers.get(client)
      if (!w) wrappers.set(client, (w = wrap(client)))
      return w
    },
    end: () => pool.end(),
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
    // Migrations are numbered in ranges per line of work, so one may land after a later-numbered one
    // was applied; each is independent of its neighbours, so apply whatever is missing.
    allowUnorderedMigrations: true,
  })
  return migrator.migrateToLatest()
}
