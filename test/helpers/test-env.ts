/**
 * One isolated environment per test file: its own database (cloned from the migrated template), its
 * own BullMQ/limiter key prefix in the shared Redis, and optionally an in-process provider sandbox.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import pino from 'pino'
import type { AppConfig } from '../../src/config.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { createApp, type App } from '../../src/app.ts'
import { TEMPLATE_DB, TEST_DB_NS, adminUrl, dbUrl, redisUrl } from './env.ts'
import { deleteKeys } from './redis-keys.ts'

export interface TestEnv {
  readonly name: string
  readonly databaseUrl: string
  readonly prefix: string
  readonly config: AppConfig
  readonly app: App
  /** Builds another app on the same database and prefix (a second "process"). */
  newApp(extraEnv?: Record<string, string>): App
  env(extra?: Record<string, string>): Record<string, string>
  close(): Promise<void>
}

export async function createTestDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${TEST_DB_NS}_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(TEMPLATE_DB)}`)
  } finally {
    await admin.end()
  }
  return {
    name,
    url: dbUrl(name),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl() })
      await c.connect()
      try {
        await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
      } finally {
        await c.end()
      }
    },
  }
}

export async function createTestEnv(opts: { sandboxUrl?: string; env?: Record<string, string> } = {}): Promise<TestEnv> {
  const db = await createTestDatabase()
  const prefix = `crt${randomBytes(4).toString('hex')}`
  const apps: App[] = []
  const env = (extra: Record<string, string> = {}) => ({
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl(),
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    WORKER_BACKOFF_MS: '100',
    WORKER_LEASE_MS: '3000',
    HTTP_READ_TIMEOUT_MS: '1500',
    HTTP_CONNECT_TIMEOUT_MS: '1000',
    // The sandbox commits a slow request within its latency fault; a test that needs longer sets its own.
    NTS_COMMIT_WINDOW_MS: '5000',
    // Circuit breakers off (a threshold never reached): many tests make failed rows with a provider
    // answering only 5xx and expect attempts to run out. test/integration/dispatch.test.ts turns them on.
    CIRCUIT_FAILURES: '1000000',
    CIRCUIT_UNKNOWN_OUTCOMES: '1000000',
    // The same for the in-flight window (it halves on each failure): a fixed cap, as configured.
    DISPATCH_ADAPTIVE_IN_FLIGHT: 'false',
    ...(opts.sandboxUrl ? { SANDBOX_URL: opts.sandboxUrl } : {}),
    ...opts.env,
    ...extra,
  })
  const newApp = (extra: Record<string, string> = {}) => {
    const config = loadDemoConfig(env(extra))
    const app = createApp(config, { logger: pino({ level: config.log.level }) })
    apps.push(app)
    return app
  }
  const app = newApp()
  await app.prepareDatabase()
  return {
    name: db.name,
    databaseUrl: db.url,
    prefix,
    config: app.config,
    app,
    newApp,
    env,
    async close() {
      for (const a of apps) await a.close()
      await deleteKeys(prefix)
      await db.drop()
    },
  }
}

/** Polls until fn returns a truthy value or the timeout passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
