/**
 * Whether Postgres answers at all, apart from the pool: a long-running process rides out a failover
 * or restart (its pool replaces dropped connections and failed jobs are retried), and gives up with a
 * clear message only when Postgres stays unreachable for longer than its configured window.
 */
import pg from 'pg'

export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError'
}

/** `database "x" on host:port`: what an operator needs to find it, never the user's password. */
export function describeDatabase(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl)
    const host = u.searchParams.get('host') ?? (u.hostname || 'localhost')
    return `database "${decodeURIComponent(u.pathname.replace(/^\//, ''))}" on ${host}:${u.port || '5432'}`
  } catch {
    return 'the database in DATABASE_URL'
  }
}

/**
 * One connection attempt on a connection of its own (a busy pool must not look like an outage).
 * Postgres is reachable when it answers, even with an error other than "cannot connect now" (57…)
 * or a connection exception (08…): a missing database is then reported by what runs next.
 */
async function probe(databaseUrl: string, timeoutMs: number): Promise<Error | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: timeoutMs, application_name: 'cash-receipts-probe' })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(57|08)/.test(code)) return undefined
    return err as Error
  } finally {
    await client.end().catch(() => {})
  }
}

function unavailable(databaseUrl: string, windowMs: number, cause: Error): DatabaseUnavailableError {
  return new DatabaseUnavailableError(
    `Postgres unreachable for ${Math.round(windowMs / 100) / 10} s: ${describeDatabase(databaseUrl)} (${cause.message}). ` +
      'Check that the server is up and DATABASE_URL points at it; DB_UNREACHABLE_EXIT_MS sets how long to wait.',
  )
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Resolves once Postgres answers; throws {@link DatabaseUnavailableError} when it has not within `windowMs`. */
export async function waitForDatabase(databaseUrl: string, windowMs: number): Promise<void> {
  const start = Date.now()
  for (;;) {
    const left = windowMs - (Date.now() - start)
    const err = await probe(databaseUrl, Math.max(100, Math.min(5_000, left)))
    if (!err) return
    if (Date.now() - start >= windowMs) throw unavailable(databaseUrl, windowMs, err)
    await sleep(Math.min(1_000, Math.max(0, windowMs - (Date.now() - start))))
  }
}

/**
 * Whether an error means the connection went away rather than the statement failing: the server
 * ended it (57…: admin shutdown, pg_terminate_backend, crash recovery, failover), a connection
 * exception (08…), or the socket closed or was refused under us.
 */
export function isConnectionLoss(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^(57P0[1-3]|08)/.test(code)) return true
  if (typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT)$/.test(code)) return true
  const message = err instanceof Error ? err.message : ''
  return /Connection terminated|connection ended|Client has encountered a connection error/i.test(message)
}

/**
 * Runs a start-up step (migrations, merchant sync, the deployment check) again when Postgres
 * dropped its connection under it, as long as Postgres comes back within the window: a process
 * started during a failover or a pg_terminate_backend waits it out instead of exiting. Each step is
 * safe to repeat (migrations run one at a time in their own transactions; the rest are upserts and reads).
 */
export async function retryWhileUnavailable<T>(databaseUrl: string, windowMs: number, step: () => Promise<T>): Promise<T> {
  const start = Date.now()
  for (;;) {
    try {
      return await step()
    } catch (err) {
      if (!isConnectionLoss(err) || Date.now() - start >= windowMs) throw err
      await waitForDatabase(databaseUrl, Math.max(1_000, windowMs - (Date.now() - start)))
    }
  }
}

export interface DatabaseWatch {
  /** Rejects with {@link DatabaseUnavailableError} once Postgres has not answered for the window; never resolves. */
  readonly lost: Promise<never>
  stop(): void
}

/** Probes Postgres every few seconds (a quarter of the window, at most 5 s) until stopped. */
export function watchDatabase(databaseUrl: string, windowMs: number): DatabaseWatch {
  const everyMs = Math.max(50, Math.min(5_000, Math.floor(windowMs / 4)))
  let lastAnswer = Date.now()
  let probing = false
  let fail: (err: Error) => void = () => {}
  const lost = new Promise<never>((_, reject) => (fail = reject))
  lost.catch(() => {}) // observed by whoever awaits it; never an unhandled rejection
  const timer = setInterval(() => {
    if (probing) return
    probing = true
    void probe(databaseUrl, Math.min(5_000, windowMs))
      .then((err) => {
        if (!err) lastAnswer = Date.now()
        else if (Date.now() - lastAnswer >= windowMs) {
          clearInterval(timer)
          fail(unavailable(databaseUrl, Date.now() - lastAnswer, err))
        }
      })
      .finally(() => (probing = false))
  }, everyMs)
  timer.unref()
  return { lost, stop: () => clearInterval(timer) }
}
