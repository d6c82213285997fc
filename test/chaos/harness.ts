/**
 * Chaos harness: proves the one rule (never issued twice, never lost) under faults.
 *
 * N transactions over every provider; W worker processes, one SIGKILLed every `killEveryMs` and
 * restarted; sandbox faults (5xx, timeout after commit, connection reset, malformed body, latency);
 * a dedicated Redis (AOF on, as in docker-compose.yml) restarted once mid-run; the workers' Postgres
 * connections terminated once (pg_terminate_backend). After faults stop: workers finish, then one
 * re-drive. Checks: every transaction terminal, ledger issued = sandbox live receipts,
 * max_live_receipts_per_key = 1, nothing stuck in issuing, every failure classified.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { Redis } from 'ioredis'
import pino from 'pino'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { createApp } from '../../src/app.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { freePort } from '../../src/demo/infra.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { settleDay } from '../../src/jobs/settle.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { createTestDatabase } from '../helpers/test-env.ts'

const ROOT = resolve(import.meta.dirname, '../..')

export interface ChaosOptions {
  readonly transactions: number
  readonly workers: number
  readonly killEveryMs: number
  readonly faults: string
  readonly timeoutMs: number
  readonly seed?: number
  readonly log?: (msg: string) => void
}

export const FULL: ChaosOptions = {
  transactions: 20_000,
  workers: 4,
  killEveryMs: 3_000,
  faults: '*:5xx=0.05,timeout_after_commit=0.02,reset=0.01,malformed=0.01,latency=5-50',
  timeoutMs: 20 * 60_000,
}

export const QUICK: ChaosOptions = { ...FULL, transactions: 400, workers: 3, killEveryMs: 2_000, timeoutMs: 4 * 60_000 }

export interface ChaosCheck {
  readonly name: string
  readonly ok: boolean
  readonly value: string | number
}

export interface ChaosResult {
  readonly ok: boolean
  readonly checks: readonly ChaosCheck[]
  readonly figures: Record<string, number>
  /** Captured worker stdout/stderr (for the personal-data scan). */
  readonly workerOutput: string
  readonly databaseUrl: string
  readonly redisUrl: string
  cleanup(): Promise<void>
}

function spawnCli(args: string[], env: Record<string, string>, sink: { out: string }): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const cap = (d: Buffer) => {
    if (sink.out.length < 20_000_000) sink.out += d.toString()
  }
  child.stdout!.on('data', cap)
  child.stderr!.on('data', cap)
  return child
}

async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' })
  const r = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  r.on('error', () => {})
  for (let i = 0; i < 100; i++) {
    try {
      await r.connect()
      if ((await r.ping()) === 'PONG') break
    } catch {
      r.disconnect()
      await new Promise((res) => setTimeout(res, 100))
    }
  }
  r.disconnect()
  return child
}

async function startSandbox(env: Record<string, string>, faults: string, seed: number, sink: { out: string }) {
  const port = await freePort()
  const child = spawnCli(['sandbox', '--port', String(port), '--faults', faults, '--seed', String(seed)], env, sink)
  const url = `http://127.0.0.1:${port}`
  // tsx start-up under a loaded 2-core machine can take many seconds.
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`sandbox exited with ${child.exitCode}: ${sink.out.slice(-500)}`)
    try {
      if ((await fetch(`${url}/_sandbox/stats`)).ok) return { url, child }
    } catch {
      // starting
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('sandbox did not start')
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const log = opts.log ?? (() => {})
  const seed = opts.seed ?? 42
  const db = await createTestDatabase()
  const redisDir = await mkdtemp(join(tmpdir(), 'cr-chaos-redis-'))
  const redisPort = await freePort()
  let redisChild = await startRedis(redisPort, redisDir)
  const redisUrl = `redis://127.0.0.1:${redisPort}`
  const sink = { out: '' }
  const prefix = `chaos${Date.now().toString(36)}`
  const baseEnv = {
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
    WORKER_CONCURRENCY: '8',
    WORKER_ATTEMPTS: '8',
    WORKER_BACKOFF_MS: '200',
    WORKER_LOCK_MS: '4000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    WORKER_LEASE_MS: '4000',
    HTTP_READ_TIMEOUT_MS: '1500',
    HTTP_CONNECT_TIMEOUT_MS: '1000',
    // A worker SIGKILLed between its send and the answer leaves an NTS receipt whose fate only a
    // lookup after the commit window may decide. The sandbox commits within its injected latency
    // (≤ 50 ms) or never, so 5 s is a safe window here; the 10-minute production default would
    // outlast the run.
    NTS_COMMIT_WINDOW_MS: '5000',
  }
  const sandbox = await startSandbox(baseEnv, opts.faults, seed, sink)
  const env = { ...baseEnv, SANDBOX_URL: sandbox.url }
  const app = createApp(loadDemoConfig(env), { logger: pino({ level: 'warn' }) })
  const workers: (ChildProcess | undefined)[] = []
  const figures: Record<string, number> = {}
  let workerKills = 0
  const cleanup = async () => {
    for (const w of workers) w?.kill('SIGKILL')
    sandbox.child.kill('SIGKILL')
    await app.close().catch(() => {})
    redisChild.kill('SIGKILL')
    await rm(redisDir, { recursive: true, force: true })
    await db.drop().catch(() => {})
  }
  try {
    await app.prepareDatabase()
    const businessDate = '2026-11-20'
    const day = generateDay({ businessDate, count: opts.transactions, seed, merchants: app.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })), idPrefix: 'CH' })
    const res = await fetch(`${sandbox.url}/_sandbox/portone/payments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(day.portonePayments.map((p) => ({ ...p, status: 'paid' }))) })
    if (!res.ok) throw new Error(`registering payments failed: ${res.status}`)
    const dir = await mkdtemp(join(tmpdir(), 'cr-chaos-'))
    await writeFile(join(dir, 'day.csv'), toCsv(day))
    const imported = await importTransactions(app.db(), app.config.dataKeys, join(dir, 'day.csv'), { nowMs: Date.now() })
    await rm(dir, { recursive: true, force: true })
    if (!imported.written) throw new Error(`import failed: ${JSON.stringify(imported.errors.slice(0, 3))}`)
    const settled = await settleDay(
      { db: app.db(), queue: app.receiptsQueue(), logger: app.logger, chunkSize: 500, maxWaiting: 1_000_000 },
      { businessDate, trigger: 'manual' },
    )
    log(`chaos: ${settled.created} receipts to issue, ${settled.skipped} skipped; ${opts.workers} workers`)

    const startWorker = (i: number) => (workers[i] = spawnCli(['worker'], env, sink))
    for (let i = 0; i < opts.workers; i++) startWorker(i)

    const open = async () => {
      const r = await app.db().selectFrom('receipts').select((eb) => eb.fn.countAll<number>().as('n')).where('state', 'in', ['pending', 'issuing', 'cancelling']).executeTakeFirstOrThrow()
      return Number(r.n)
    }
    const t0 = Date.now()
    let redisRestarted = false
    let pgTerminated = false
    // Faults phase: until 80% of receipts are settled (or time runs out), keep killing.
    for (;;) {
      await new Promise((r) => setTimeout(r, opts.killEveryMs))
      const remaining = await open()
      const done = 1 - remaining / Math.max(1, settled.created)
      const victim = workerKills % opts.workers
      workers[victim]!.kill('SIGKILL')
      workerKills++
      startWorker(victim)
      if (!redisRestarted && done >= 0.3) {
        redisRestarted = true
        log('chaos: restarting Redis (AOF keeps the queue)')
        // Listen for the exit before asking: SHUTDOWN closes the connection without a reply.
        const exited = new Promise((r) => redisChild.once('exit', r))
        const admin = new Redis(redisUrl, { maxRetriesPerRequest: 0, retryStrategy: () => null, autoResendUnfulfilledCommands: false })
        admin.on('error', () => {})
        await admin.call('SHUTDOWN').catch(() => {})
        admin.disconnect()
        await exited
        redisChild = await startRedis(redisPort, redisDir)
      }
      if (!pgTerminated && done >= 0.5) {
        pgTerminated = true
        const c = new pg.Client({ connectionString: db.url })
        await c.connect()
        const t = await c.query(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cash-receipts' AND pid <> pg_backend_pid()`)
        figures.pg_backends_terminated = t.rows[0].n
        await c.end()
        log(`chaos: terminated ${figures.pg_backends_terminated} Postgres connections`)
      }
      if (done >= 0.8 || Date.now() - t0 > opts.timeoutMs / 2) break
    }
    figures.worker_kills = workerKills
    figures.redis_restarts = redisRestarted ? 1 : 0

    // Faults stop. Workers finish what they have, then one re-drive of what failed.
    await fetch(`${sandbox.url}/_sandbox/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ spec: '' }) })
    const faultsStopped = Date.now()
    const deadline = faultsStopped + opts.timeoutMs / 2
    while ((await open()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500))
    const rd = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: businessDate }, {})
    figures.redriven = rd.count
    while ((await open()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500))
    figures.seconds_faults_stopped_to_terminal = Math.round((Date.now() - faultsStopped) / 100) / 10
    figures.total_seconds = Math.round((Date.now() - t0) / 100) / 10
    for (const w of workers) w?.kill('SIGTERM')

    const states = await app.db().selectFrom('receipts').select(['state']).select((eb) => eb.fn.countAll<number>().as('n')).where('kind', '=', 'issue').groupBy('state').execute()
    const by = Object.fromEntries(states.map((s) => [s.state, Number(s.n)])) as Record<string, number>
    const unclassified = await app.db().selectFrom('receipts').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'failed').where((eb) => eb.or([eb('error_class', 'is', null), eb('error_code', 'is', null)])).executeTakeFirstOrThrow()
    const failures = await app
      .db()
      .selectFrom('receipts')
      .select(['id', 'provider', 'state', 'error_class', 'error_code', 'error_message', 'needs_lookup', 'attempts', 'redrive_count'])
      .where('state', '=', 'failed')
      .limit(20)
      .execute()
    for (const f of failures) log(`failed receipt ${JSON.stringify(f)}`)
    const stats = (await (await fetch(`${sandbox.url}/_sandbox/stats`)).json()) as { providers: Record<string, { issued: number; cancelled: number }>; max_live_receipts_per_key: number; max_receipts_per_key: number }
    const live = Object.values(stats.providers).reduce((n, p) => n + p.issued - p.cancelled, 0)
    const terminal = (by.issued ?? 0) + (by.skipped ?? 0) + (by.failed ?? 0) + (by.cancelled ?? 0)
    Object.assign(figures, { transactions: opts.transactions, issued: by.issued ?? 0, skipped: by.skipped ?? 0, failed: by.failed ?? 0, sandbox_live: live, sandbox_max_receipts_per_key: stats.max_receipts_per_key })
    const checks: ChaosCheck[] = [
      { name: 'every transaction in a terminal state', ok: terminal === opts.transactions, value: `${terminal}/${opts.transactions}` },
      { name: 'ledger issued = sandbox live receipts', ok: (by.issued ?? 0) === live, value: `${by.issued ?? 0} = ${live}` },
      { name: 'max_live_receipts_per_key = 1', ok: stats.max_live_receipts_per_key === 1, value: stats.max_live_receipts_per_key },
      { name: 'zero receipts stuck in issuing', ok: !by.issuing && !by.pending, value: (by.issuing ?? 0) + (by.pending ?? 0) },
      { name: 'every failure has a class and code', ok: Number(unclassified.n) === 0, value: Number(unclassified.n) },
      { name: 'faults stopped → all terminal (s)', ok: true, value: figures.seconds_faults_stopped_to_terminal! },
    ]
    return { ok: checks.every((c) => c.ok), checks, figures, workerOutput: sink.out, databaseUrl: db.url, redisUrl, cleanup }
  } catch (err) {
    await cleanup()
    throw err
  }
}

export function formatChaos(r: ChaosResult): string {
  const w = Math.max(...r.checks.map((c) => c.name.length))
  return [
    ...r.checks.map((c) => `${c.ok ? 'PASS' : 'FAIL'}  ${c.name.padEnd(w)}  ${c.value}`),
    '',
    ...Object.entries(r.figures).map(([k, v]) => `${k.padEnd(w + 6)}  ${v}`),
  ].join('\n')
}
