/**
 * Postgres failover: connections terminated under a running worker process and a dashboard
 * (57P01, as pg_terminate_backend, a restart or a failover do) are replaced, the jobs whose queries
 * failed are retried, and every receipt is still issued exactly once. Settlement whose statement
 * is cut runs again by itself, as a command and as the scheduler's nightly job, and the scheduler
 * process (its recovery pass included) keeps running. A Postgres that stays away makes the worker
 * exit non-zero with a message naming the database, never its password.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { PROVIDERS } from '../../src/domain/index.ts'
import { DatabaseUnavailableError } from '../../src/db/availability.ts'
import { adminUrl, pgServerUrl } from '../helpers/env.ts'
import { importDay, runCli, settle, spawnCli, stopChild, waitForRun } from '../helpers/pipeline.ts'
import { deleteKeys } from '../helpers/redis-keys.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'

let sandbox: Sandbox
let env: TestEnv

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { METRICS_CACHE_MS: '0' } })
})

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

/** Terminates every backend of the test database but the caller's; returns how many. */
async function terminateBackends(database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  try {
    const r = await admin.query(`SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [database])
    return r.rows.filter((x: { t: boolean }) => x.t).length
  } finally {
    await admin.end()
  }
}

const liveAtSandbox = () => Object.values(sandbox.stats().providers).reduce((n, p) => n + p.issued - p.cancelled, 0)

describe('Postgres terminating connections', () => {
  it('a worker process survives repeated pg_terminate_backend and issues every receipt exactly once', async () => {
    sandbox.setFaults(PROVIDERS.map((p) => `${p}:latency=20-60`).join(';'))
    const worker = spawnCli(['worker', '--concurrency', '4'], env.env({ LOG_LEVEL: 'warn' }))
    try {
      await importDay(env.app, { businessDate: '2026-10-07', count: 240, seed: 7 }, (p) => sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))))
      const run = await settle(env.app, '2026-10-07')
      // Terminate while the worker is issuing: wait for its first receipts, then strike repeatedly.
      await eventually(async () => liveAtSandbox() > 0, 60_000)
      let terminated = 0
      for (let i = 0; i < 6; i++) {
        terminated += await terminateBackends(env.name)
        await new Promise((r) => setTimeout(r, 300))
      }
      expect(terminated).toBeGreaterThan(0)
      const report = await eventually(async () => {
        const r = await waitForRun(env.app, run.runId!, 5_000).catch(() => undefined)
        return r
      }, 180_000)
      expect(worker.exitCode, worker.output()).toBeNull()
      expect(worker.signalCode).toBeNull()
      expect(report.totals.pending).toBe(0)
      expect(report.totals.failed).toBe(0)
      expect(report.totals.issued + report.totals.skipped).toBe(240)
      expect(liveAtSandbox()).toBe(report.totals.issued)
      expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
      expect(worker.output()).not.toMatch(/Unhandled 'error' event|uncaught/i)
    } finally {
      sandbox.setFaults('')
      await stopChild(worker)
    }
  }, 240_000)

  it('the dashboard answers /metrics and pages after its connections were terminated', async () => {
    const app = env.newApp()
    const dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
    try {
      expect((await fetch(`${dashboard.url}/metrics`)).status).toBe(200)
      expect(await terminateBackends(env.name)).toBeGreaterThan(0)
      await new Promise((r) => setTimeout(r, 200))
      const metrics = await fetch(`${dashboard.url}/metrics`)
      expect(metrics.status).toBe(200)
      expect(await metrics.text()).toContain('cash_receipts_')
      expect(await terminateBackends(env.name)).toBeGreaterThan(0)
      await new Promise((r) => setTimeout(r, 200))
      expect((await fetch(`${dashboard.url}/`)).status).toBe(200)
    } finally {
      await dashboard.close()
    }
  }, 60_000)
})

/**
 * From now on the `at`-th INSERT statement into receipts ends its own backend with 57P01, as a
 * failover or pg_terminate_backend would in the middle of a settlement. The count is a sequence:
 * it is not rolled back with the statement it cut.
 */
async function strikeOnReceiptsInsert(at: number): Promise<{ count(): Promise<number>; remove(): Promise<void> }> {
  const c = new pg.Client({ connectionString: env.databaseUrl })
  await c.connect()
  try {
    await c.query(`
      CREATE SEQUENCE failover_strike;
      CREATE FUNCTION failover_strike() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('failover_strike') = ${Number(at)} THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER failover_strike BEFORE INSERT ON receipts FOR EACH STATEMENT EXECUTE FUNCTION failover_strike();`)
  } finally {
    await c.end()
  }
  const query = async (text: string) => {
    const q = new pg.Client({ connectionString: env.databaseUrl })
    await q.connect()
    try {
      return await q.query(text)
    } finally {
      await q.end()
    }
  }
  return {
    count: async () => Number((await query('SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM failover_strike')).rows[0].n),
    remove: async () => void (await query('DROP TRIGGER failover_strike ON receipts; DROP FUNCTION failover_strike(); DROP SEQUENCE failover_strike')),
  }
}

/** Each transaction of the date has at most one issue receipt, and every pending one a job in Redis. */
async function expectSettledOnce(businessDate: string, transactions: number): Promise<void> {
  const rows = await env.app
    .db()
    .selectFrom('receipts as r')
    .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
    .select(['r.id', 'r.transaction_id', 'r.state'])
    .where('t.business_date', '=', businessDate)
    .where('r.kind', '=', 'issue')
    .execute()
  expect(rows).toHaveLength(transactions)
  expect(new Set(rows.map((r) => r.transaction_id)).size).toBe(transactions)
  const pending = rows.filter((r) => r.state === 'pending').map((r) => r.id)
  expect(pending.length).toBeGreaterThan(0)
  const jobs = await env.app.receiptsQueue().getJobs(['waiting', 'prioritized', 'delayed'])
  const withJob = new Set(jobs.map((j) => (j.data as { receiptId: number }).receiptId))
  expect(pending.filter((id) => !withJob.has(id))).toEqual([])
}

describe('settlement and the scheduler when Postgres ends their connections', () => {
  it('`settle` whose insert is cut by 57P01 runs again by itself: exit 0, every transaction settled once', async () => {
    await importDay(env.app, { businessDate: '2026-10-09', count: 60, seed: 9, providers: ['payssam'], idPrefix: 'FOS' })
    const strike = await strikeOnReceiptsInsert(2)
    try {
      const r = await runCli(['settle', '--date', '2026-10-09', '--json'], env.env({ SETTLE_CHUNK_SIZE: '20', LOG_LEVEL: 'warn' }))
      expect(r.code, r.stderr).toBe(0)
      // The second insert was cut, and inserts ran after it: the settlement went on past the cut.
      expect(await strike.count()).toBeGreaterThan(2)
      expect(r.stderr).toContain('postgres connection lost')
    } finally {
      await strike.remove()
    }
    await expectSettledOnce('2026-10-09', 60)
  })

  it('the scheduler process survives terminated connections, its nightly settlement runs through a cut, and its recovery pass still runs', async () => {
    const scheduler = spawnCli(['scheduler'], env.env({ LOG_LEVEL: 'info', SETTLE_CHUNK_SIZE: '20', RECOVERY_INTERVAL_MS: '500', RECOVERY_GRACE_MS: '0' }))
    try {
      await eventually(async () => scheduler.output().includes('scheduler started'), 120_000)
      let terminated = 0
      for (let i = 0; i < 3; i++) {
        terminated += await terminateBackends(env.name)
        await new Promise((r) => setTimeout(r, 300))
      }
      expect(terminated).toBeGreaterThan(0)

      // The nightly job (as its cron would add it), with Postgres cutting its second insert.
      await importDay(env.app, { businessDate: '2026-10-10', count: 60, seed: 10, providers: ['payssam'], idPrefix: 'FOSCH' })
      const strike = await strikeOnReceiptsInsert(2)
      try {
        const job = await env.app.controlQueue().add('settle-day', { businessDate: '2026-10-10', trigger: 'schedule' })
        const done = await eventually(
          async () => {
            const j = await env.app.controlQueue().getJob(job.id!)
            return j && (await j.getState()) === 'completed' ? j : undefined
          },
          120_000,
          200,
        )
        // Completed in its first attempt: no failure recorded, no retry waited for.
        expect(done.stacktrace ?? []).toEqual([])
        expect(await strike.count()).toBeGreaterThan(2)
      } finally {
        await strike.remove()
      }
      await expectSettledOnce('2026-10-10', 60)

      // Redis loses the jobs; the scheduler's recovery pass puts every pending receipt back.
      const putBack = () => scheduler.output().split('recovery: receipts without a live job put back on the queue').length - 1
      const before = putBack()
      expect(await deleteKeys(`${env.prefix}:receipts`)).toBeGreaterThan(0)
      await eventually(async () => putBack() > before, 60_000, 200)
      await eventually(
        async () => {
          try {
            await expectSettledOnce('2026-10-10', 60)
            return true
          } catch {
            return false
          }
        },
        60_000,
        200,
      )
      expect(scheduler.exitCode, scheduler.output()).toBeNull()
      expect(scheduler.signalCode).toBeNull()
      expect(scheduler.output()).not.toMatch(/Unhandled 'error' event|uncaught/i)
    } finally {
      await stopChild(scheduler)
    }
  }, 240_000)
})

describe('Postgres unreachable', () => {
  it('a worker pointed at a closed port exits non-zero within the window, naming the database but not the password', async () => {
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as { port: number }).port
    await new Promise<void>((r) => closed.close(() => r()))
    const started = Date.now()
    const r = await runCli(['worker'], env.env({ DATABASE_URL: `postgres://postgres:s3cret-pw@127.0.0.1:${port}/crt_nowhere`, DB_UNREACHABLE_EXIT_MS: '1500' }), 60_000)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`Postgres unreachable`)
    expect(r.stderr).toContain(`database "crt_nowhere" on 127.0.0.1:${port}`)
    expect(r.stderr + r.stdout).not.toContain('s3cret-pw')
    // The window plus the process's own start-up, which is slow on a loaded machine.
    expect(Date.now() - started).toBeLessThan(40_000)
  }, 60_000)

  it('a running process is told when Postgres goes away for longer than the window, and not before', async () => {
    // A TCP proxy in front of Postgres stands for a server that disappears.
    const upstream = new URL(pgServerUrl())
    const sockets = new Set<Socket>()
    const proxy: Server = createServer((down) => {
      const up = connect(Number(upstream.port || 5432), upstream.hostname)
      sockets.add(down).add(up)
      down.pipe(up).pipe(down)
      const drop = () => {
        down.destroy()
        up.destroy()
      }
      down.on('error', drop).on('close', drop)
      up.on('error', drop).on('close', drop)
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
    const port = (proxy.address() as { port: number }).port
    const app = env.newApp({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/${env.name}`, DB_UNREACHABLE_EXIT_MS: '1000' })
    const lost = app.databaseLost()
    let settled = false
    lost.catch(() => (settled = true))
    await new Promise((r) => setTimeout(r, 1_500))
    expect(settled).toBe(false) // reachable: the watch stays quiet
    const goneAt = Date.now()
    proxy.close()
    for (const s of sockets) s.destroy()
    await expect(lost).rejects.toThrow(DatabaseUnavailableError)
    await expect(lost).rejects.toThrow(`database "${env.name}" on 127.0.0.1:${port}`)
    // The window counts from the watch's last answer, which came up to one probe interval (250 ms
    // here) plus a probe's own duration before goneAt, longer on a loaded machine; half the window
    // still shows it did not give up at the first failed probe.
    expect(Date.now() - goneAt).toBeGreaterThanOrEqual(500)
    expect(Date.now() - goneAt).toBeLessThan(10_000)
  }, 30_000)
})

describe('start-up during a failover', () => {
  it('a start-up step whose connection Postgres ended is run again, and other errors are not', async () => {
    const { retryWhileUnavailable, isConnectionLoss } = await import('../../src/db/availability.ts')
    let runs = 0
    const result = await retryWhileUnavailable(env.databaseUrl, 10_000, async () => {
      runs++
      const c = new pg.Client({ connectionString: env.databaseUrl })
      c.on('error', () => {})
      await c.connect()
      try {
        // The first run's connection is ended by the server under it, as pg_terminate_backend does.
        if (runs === 1) await terminateBackends(env.name)
        return (await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one
      } finally {
        await c.end().catch(() => {})
      }
    })
    expect(result).toBe(1)
    expect(runs).toBe(2)

    let failing = 0
    const notConnection = retryWhileUnavailable(env.databaseUrl, 10_000, async () => {
      failing++
      throw Object.assign(new Error('duplicate key'), { code: '23505' })
    })
    await expect(notConnection).rejects.toThrow('duplicate key')
    expect(failing).toBe(1)
    expect(isConnectionLoss(Object.assign(new Error('x'), { code: '57P01' }))).toBe(true)
  })
})
