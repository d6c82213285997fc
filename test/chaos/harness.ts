/**
 * Chaos harness: proves the one rule (never issued twice, never lost) under faults.
 *
 * N transactions over every provider, plus bad rows; W worker processes; sandbox faults (5xx, timeout
 * after commit, connection reset, malformed body, latency) throughout the faults phase. Each fault of
 * the list below is a phase of the run, on by default in both sizes (`phases` switches one off):
 *
 * - kills:        one worker SIGKILLed every `killEveryMs` and restarted;
 * - slow_commit:  NTS (which does not deduplicate) answers slower than the read timeout plus the
 *                 backoff for a while: the client gives up, the sandbox commits afterwards;
 * - sigstop:      one worker SIGSTOPped past its lease, then SIGCONTed: its late sends must be fenced;
 * - redis_restart: the harness's Redis (AOF on, as in docker-compose.yml) shut down and restarted;
 * - redis_lost:   the same Redis SIGKILLed and started EMPTY (its AOF removed): the recovery pass
 *                 puts every unfinished receipt back on the queue, the workers ride out the outage;
 * - pg_terminate: the workers' Postgres connections terminated again and again (pg_terminate_backend);
 * - bad_rows:     rows with wrong JSON types, NUL bytes, an over-long key and a payment_ref two
 *                 merchants share, imported with --skip-invalid, plus rows written straight into the
 *                 table that settle's per-row isolation refuses.
 *
 * After the faults stop: workers finish (the recovery pass runs in each of them), one re-drive, then
 * reconcile (which finds and cancels duplicates at NTS). Checks: every transaction terminal or
 * rejected with a reason, ledger issued = sandbox live receipts, at most one live receipt per key at
 * the deduplicating providers at any time we look, every Popbill bulk batch done (its first two bulk
 * submits commit and then time out), every NTS duplicate recorded and cancelled (one
 * live per key after reconcile), nothing stuck, every failure classified, no worker process lost,
 * every run finished.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { sql } from 'kysely'
import pg from 'pg'
import { Redis } from 'ioredis'
import pino from 'pino'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { PROVIDERS } from '../../src/domain/index.ts'
import { createApp } from '../../src/app.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { freePort } from '../../src/demo/infra.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { settleDay } from '../../src/jobs/settle.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import { createTestDatabase } from '../helpers/test-env.ts'

const ROOT = resolve(import.meta.dirname, '../..')

export const PHASES = ['kills', 'slow_commit', 'sigstop', 'redis_restart', 'redis_lost', 'pg_terminate', 'bad_rows'] as const
export type Phase = (typeof PHASES)[number]

export interface ChaosOptions {
  readonly transactions: number
  readonly workers: number
  /** BullMQ concurrency per worker process. */
  readonly concurrency: number
  readonly killEveryMs: number
  /** Sandbox faults during the whole faults phase. */
  readonly faults: string
  /**
   * Overall cap, from the harness's start: only a run whose receipts keep moving without ever all
   * finishing reaches it (a hang is caught sooner, by `startupMs` and `stallMs`).
   */
  readonly timeoutMs: number
  /**
   * A process the harness starts must answer (the sandbox) or report at work (the first worker: its
   * first receipt outcome) within this of its spawn, and the day must be 5% issued within this of the
   * first worker at work. tsx start-up alone takes about 60 s at load 20 and up to 3 minutes at load
   * 30–40, so this is a cap for a hang, not a measure of speed.
   */
  readonly startupMs: number
  /**
   * After the faults: the run has hung when no receipt reached a terminal state for this long, counted
   * from a worker at work. Longer than a worker's start-up on a loaded machine plus the longest lease
   * (19.5 s), so restarts and take-overs fit; a drain that keeps moving is never cut short by it.
   */
  readonly stallMs: number
  /** Full size: how long, from the faults' start, the base faults and the kills may go on (`faultsUntilDone`). */
  readonly faultsMaxMs: number
  /** NTS answers this late (ms) during the slow_commit phase: more than the read timeout plus the backoff. */
  readonly slowCommitLatencyMs: number
  /** How long the slow_commit phase lasts. */
  readonly slowCommitMs: number
  /** How long the sigstop phase keeps its worker stopped: longer than the lease. */
  readonly stopMs: number
  /** How long Redis stays down in the redis_lost phase. */
  readonly redisDownMs: number
  /** The pg_terminate phase: this many rounds of pg_terminate_backend, `pgTerminateEveryMs` apart. */
  readonly pgTerminations: number
  readonly pgTerminateEveryMs: number
  /** Time between the starts of two phases. */
  readonly phaseGapMs: number
  /** After the phases, the base faults and the kills go on until this share of receipts is done (0: stop with the phases). */
  readonly faultsUntilDone: number
  /** Phases to run (default: all). */
  readonly phases?: readonly Phase[]
  readonly seed?: number
  readonly log?: (msg: string) => void
}

/**
 * The worker's timing in the harness: short enough that each phase fits in seconds. A claim's lease
 * is 4 s (WORKER_LEASE_MS) and BullMQ's lock 4 s; a row whose request went out is leased for the call
 * budget the fence grants (3 × (connect + read) + 2 × p-retry's 5 s, + 2 s = 19.5 s). The SIGSTOP
 * lasts longer than both, so every row the stopped worker holds — claimed or mid-call — can be taken
 * over before it runs again.
 */
const HTTP_READ_TIMEOUT_MS = 1_500
const WORKER_BACKOFF_MS = 200

export const FULL: ChaosOptions = {
  transactions: 20_000,
  workers: 4,
  concurrency: 8,
  killEveryMs: 3_000,
  faults: '*:5xx=0.05,timeout_after_commit=0.02,reset=0.01,malformed=0.01,latency=5-50',
  timeoutMs: 45 * 60_000,
  startupMs: 5 * 60_000,
  stallMs: 3 * 60_000,
  faultsMaxMs: 7 * 60_000,
  slowCommitLatencyMs: 3_500,
  slowCommitMs: 10_000,
  stopMs: 30_000,
  redisDownMs: 3_000,
  pgTerminations: 20,
  pgTerminateEveryMs: 1_500,
  phaseGapMs: 8_000,
  faultsUntilDone: 0.8,
}

/**
 * The size `npm test` runs. Fewer calls in flight and a few hundred ms of latency per call keep work
 * open through every phase (a quiet machine would otherwise finish the day before the faults start).
 */
export const QUICK: ChaosOptions = {
  ...FULL,
  transactions: 400,
  workers: 3,
  concurrency: 3,
  killEveryMs: 5_000,
  faults: '*:5xx=0.05,timeout_after_commit=0.02,reset=0.01,malformed=0.01,latency=100-300',
  timeoutMs: 20 * 60_000,
  slowCommitMs: 3_000,
  stopMs: 22_000,
  redisDownMs: 1_500,
  pgTerminations: 5,
  pgTerminateEveryMs: 1_000,
  phaseGapMs: 2_500,
  faultsUntilDone: 0,
}

export interface ChaosCheck {
  readonly name: string
  readonly ok: boolean
  readonly value: string | number
}

export interface ChaosResult {
  readonly ok: boolean
  readonly checks: readonly ChaosCheck[]
  readonly figures: Record<string, number>
  /** When each step and phase began, in seconds from the first worker at work (negative: before it). */
  readonly timeline: readonly string[]
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

/** Resolves when the process has exited, also when it already had. */
function exitOf(child: ChildProcess): Promise<unknown> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((r) => child.once('exit', r))
}

/**
 * redis-server is native: it answers within a second even on a loaded machine. A minute without an
 * answer is a hang, named as one (before, the harness went on after ~10 s as if it had answered).
 */
const REDIS_START_MS = 60_000

async function startRedis(port: number, dir: string, why: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'],
    { stdio: 'ignore' },
  )
  const started = Date.now()
  for (;;) {
    const r = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    r.on('error', () => {})
    try {
      await r.connect()
      if ((await r.ping()) === 'PONG') return child
    } catch {
      // starting
    } finally {
      r.disconnect()
    }
    if (child.exitCode !== null) throw new Error(`chaos: ${why}: redis-server on port ${port} exited with ${child.exitCode} before it answered`)
    if (Date.now() - started > REDIS_START_MS) {
      child.kill('SIGKILL')
      throw new Error(`chaos: ${why} hung: redis-server on port ${port} did not answer within ${REDIS_START_MS / 1000} s of its start`)
    }
    await sleep(100)
  }
}

/** Resolves when the process has exited; rejects, naming the step, if it has not within `ms`. */
async function exitWithin(child: ChildProcess, ms: number, why: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      exitOf(child),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`chaos: ${why} hung: the process did not exit within ${ms / 1000} s`)), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function startSandbox(env: Record<string, string>, faults: string, seed: number, sink: { out: string }, startupMs: number) {
  const port = await freePort()
  const child = spawnCli(['sandbox', '--port', String(port), '--faults', faults, '--seed', String(seed)], env, sink)
  const url = `http://127.0.0.1:${port}`
  // tsx start-up alone takes about a minute at load 20 on this 2-core machine: counted from the spawn.
  const spawned = Date.now()
  for (;;) {
    if (child.exitCode !== null) throw new Error(`chaos: sandbox start-up: the sandbox exited with ${child.exitCode}: ${sink.out.slice(-500)}`)
    try {
      if ((await fetch(`${url}/_sandbox/stats`)).ok) return { url, child }
    } catch {
      // starting
    }
    if (Date.now() - spawned > startupMs) {
      child.kill('SIGKILL')
      throw new Error(`chaos: sandbox start-up hung: no answer at ${url} within ${startupMs / 1000} s of its spawn: ${sink.out.slice(-500)}`)
    }
    await sleep(100)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface HeldReceipt {
  readonly key: string
  readonly status: 'issued' | 'cancelled'
  readonly provider: string
}

/** Per provider: the most live receipts for one key, and the live receipts beyond the first summed over keys. */
async function livePerKey(sandboxUrl: string): Promise<Record<string, { max: number; extra: number }>> {
  const { receipts } = (await (await fetch(`${sandboxUrl}/_sandbox/receipts`)).json()) as { receipts: HeldReceipt[] }
  const live = new Map<string, number>()
  for (const r of receipts) if (r.status === 'issued') live.set(`${r.provider}\u0000${r.key}`, (live.get(`${r.provider}\u0000${r.key}`) ?? 0) + 1)
  const out: Record<string, { max: number; extra: number }> = {}
  for (const [k, n] of live) {
    const p = k.slice(0, k.indexOf('\u0000'))
    const o = (out[p] ??= { max: 0, extra: 0 })
    o.max = Math.max(o.max, n)
    o.extra += n - 1
  }
  return out
}

/** Every provider but NTS refuses a second receipt for our key. */
const deduplicates = (provider: string) => provider !== 'nts'

/**
 * The bad rows of the day, as JSONL: every kind of field problem import must name (`line N: field:
 * reason`) and `--skip-invalid` must skip, next to two good rows that must go through.
 */
function badRowsJsonl(businessDate: string): { text: string; good: string[]; bad: number } {
  const paidAt = `${businessDate}T03:00:00+00:00`
  const base = (id: string, over: Record<string, unknown> = {}) => ({
    transaction_id: id,
    merchant_id: 'm-clinic',
    provider: 'portone-v2',
    payment_ref: `pay-${id}`,
    method: 'bank_transfer',
    amount: '12000',
    paid_at: paidAt,
    identifier: '',
    status: 'completed',
    ...over,
  })
  const rows = [
    base('CHBAD-GOOD-1'),
    base('CHBAD-ARRAY', { amount: [12000] }),
    base('CHBAD-OBJECT', { order_name: { name: 'x' } }),
    base('CHBAD-BOOL', { status: true }),
    base('CHBAD-NUL', { order_name: 'before\u0000after' }),
    base('CHBAD-LONGKEY', { payment_ref: `pay-${'x'.repeat(300)}` }),
    // One payment_ref at two merchants of one provider: import names the second as a clash.
    base('CHBAD-SHARED-A', { payment_ref: 'pay-shared-in-file', merchant_id: 'm-clinic' }),
    base('CHBAD-SHARED-B', { payment_ref: 'pay-shared-in-file', merchant_id: 'm-academy' }),
    base('CHBAD-GOOD-2', { provider: 'nts', payment_ref: '', merchant_id: 'm-academy' }),
  ]
  return { text: rows.map((r) => JSON.stringify(r)).join('\n') + '\n', good: ['CHBAD-GOOD-1', 'CHBAD-GOOD-2'], bad: rows.length - 2 }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const log = opts.log ?? (() => {})
  const on = (p: Phase) => (opts.phases ?? PHASES).includes(p)
  const seed = opts.seed ?? 42
  // Deadlines count from the moment what they measure can begin — a process's spawn, the first worker
  // at work, the last receipt finished — never from the harness's start, which on a loaded machine
  // lies a minute or more of tsx start-up before (issue: the quick run failed on time alone). The
  // overall cap only catches a run that keeps moving without end.
  const tHarness = Date.now()
  const overallEnd = tHarness + opts.timeoutMs
  /** The first worker's first receipt outcome: the timeline's zero. */
  let tWork: number | undefined
  const marks: { at: number; what: string }[] = []
  const dur = (ms: number) => `${(Math.abs(ms) / 1000).toFixed(1)} s`
  const secs = (ms: number) => `${ms < 0 ? '-' : '+'}${dur(ms)}`
  const when = (at: number) => (tWork === undefined ? `harness ${secs(at - tHarness)}` : `work ${secs(at - tWork)} (harness ${secs(at - tHarness)})`)
  /** Notes a step or phase as it begins (logged now, in the result's timeline at the end). */
  const mark = (what: string) => {
    const at = Date.now()
    marks.push({ at, what })
    log(`chaos: ${when(at)}  ${what}`)
  }
  /** Phases that ran into their deadline, each saying what it waited for: the check "no phase hung". */
  const hung: string[] = []
  const db = await createTestDatabase()
  let redisDir = await mkdtemp(join(tmpdir(), 'cr-chaos-redis-'))
  const redisPort = await freePort()
  let redisChild: ChildProcess
  try {
    redisChild = await startRedis(redisPort, redisDir, 'Redis start-up')
  } catch (err) {
    await rm(redisDir, { recursive: true, force: true })
    await db.drop().catch(() => {})
    throw err
  }
  mark('Redis answering')
  // The Redis phases take turns: on a loaded machine a restart (SHUTDOWN, then a new server that
  // answers) can outlast the gap to the next phase, which then waited for the exit of a server that
  // had already exited, and the run hung for good.
  let redisQueue: Promise<unknown> = Promise.resolve()
  const redisTurn = (f: () => Promise<void>): Promise<void> => {
    const turn = redisQueue.then(f)
    redisQueue = turn.catch(() => {})
    return turn
  }
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
    WORKER_CONCURRENCY: String(opts.concurrency),
    WORKER_ATTEMPTS: '8',
    WORKER_BACKOFF_MS: String(WORKER_BACKOFF_MS),
    WORKER_LOCK_MS: '4000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    WORKER_LEASE_MS: '4000',
    HTTP_READ_TIMEOUT_MS: String(HTTP_READ_TIMEOUT_MS),
    HTTP_CONNECT_TIMEOUT_MS: '1000',
    // An NTS request whose answer was lost may commit up to the slow_commit latency later; a lookup
    // is trusted only after the window since the last send, so the window must exceed that latency
    // (the 10-minute production default would outlast the run).
    NTS_COMMIT_WINDOW_MS: String(opts.slowCommitLatencyMs + 1_500),
    // The recovery pass in every worker: often, with a short grace, so a Redis that lost its data is
    // refilled within seconds.
    RECOVERY_INTERVAL_MS: '2000',
    RECOVERY_GRACE_MS: '3000',
    // A worker that cannot reach Postgres for this long exits; the pg_terminate phase must not reach it.
    DB_UNREACHABLE_EXIT_MS: '60000',
  }
  let sandbox: Awaited<ReturnType<typeof startSandbox>>
  try {
    sandbox = await startSandbox(baseEnv, opts.faults, seed, sink, opts.startupMs)
  } catch (err) {
    redisChild.kill('SIGKILL')
    await rm(redisDir, { recursive: true, force: true })
    await db.drop().catch(() => {})
    throw err
  }
  mark('sandbox answering')
  const env = { ...baseEnv, SANDBOX_URL: sandbox.url }
  // Its own log goes to stderr: stdout carries the result (`--json`).
  const app = createApp(loadDemoConfig(env), { logger: pino({ level: 'warn' }, pino.destination(2)) })
  const setFaults = async (spec: string) => {
    const r = await fetch(`${sandbox.url}/_sandbox/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ spec }) })
    if (!r.ok) throw new Error(`setting faults failed: ${r.status} ${await r.text()}`)
  }

  interface WorkerSlot {
    child: ChildProcess
    /** Killed or stopped by the harness on purpose. */
    deliberate: boolean
    /** Has finished a job since it started (on a loaded machine tsx start-up alone takes many seconds). */
    working: boolean
  }
  const workers: WorkerSlot[] = []
  let unexpectedExits = 0
  const figures: Record<string, number> = {}
  const cleanup = async () => {
    for (const w of workers) {
      w.deliberate = true
      w.child.kill('SIGCONT')
      w.child.kill('SIGKILL')
    }
    sandbox.child.kill('SIGKILL')
    await app.close().catch(() => {})
    redisChild.kill('SIGKILL')
    await rm(redisDir, { recursive: true, force: true })
    await db.drop().catch(() => {})
  }
  try {
    await app.prepareDatabase()
    const businessDate = '2026-11-20'
    // Every provider, Popbill included (the demo merchants issue Popbill in bulk: batches of up to 100).
    const day = generateDay({
      businessDate,
      count: opts.transactions,
      seed,
      providers: PROVIDERS,
      merchants: app.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
      idPrefix: 'CH',
    })
    const res = await fetch(`${sandbox.url}/_sandbox/portone/payments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(day.portonePayments.map((p) => ({ ...p, status: 'paid' }))),
    })
    if (!res.ok) throw new Error(`registering payments failed: ${res.status}`)
    const dir = await mkdtemp(join(tmpdir(), 'cr-chaos-'))
    await writeFile(join(dir, 'day.csv'), toCsv(day))
    const imported = await importTransactions(app.db(), app.config.dataKeys, join(dir, 'day.csv'), { nowMs: Date.now() })
    if (!imported.written) throw new Error(`import failed: ${JSON.stringify(imported.errors.slice(0, 3))}`)

    // Bad rows: import skips exactly the bad ones (each named), settle refuses what got past import.
    let badRows = 0
    let importRejected = 0
    let directRows = 0
    if (on('bad_rows')) {
      const bad = badRowsJsonl(businessDate)
      await writeFile(join(dir, 'bad.jsonl'), bad.text)
      const strict = await importTransactions(app.db(), app.config.dataKeys, join(dir, 'bad.jsonl'), { nowMs: Date.now() })
      if (strict.written) throw new Error('import without --skip-invalid wrote a file with bad rows')
      const skipped = await importTransactions(app.db(), app.config.dataKeys, join(dir, 'bad.jsonl'), { nowMs: Date.now(), skipInvalid: true })
      if (!skipped.written) throw new Error(`import --skip-invalid wrote nothing: ${JSON.stringify(skipped.errors.slice(0, 3))}`)
      badRows = bad.bad
      importRejected = new Set(skipped.errors.map((e) => e.line)).size
      for (const e of skipped.errors) log(`import rejected line ${e.line}: ${e.field}: ${e.message}`)
      // Rows past the importer (an older version, a hand-written INSERT): settle's isolation refuses
      // a payment_ref another merchant's transaction holds and one too long for the key index.
      // Random hex does not compress: 6,000 characters stay far above the btree row limit.
      const long = `pay-${randomBytes(3_000).toString('hex')}`
      const direct = [
        { id: 'CHDIRECT-A', merchant: 'm-clinic', ref: 'pay-shared-direct' },
        { id: 'CHDIRECT-B', merchant: 'm-academy', ref: 'pay-shared-direct' },
        { id: 'CHDIRECT-LONG', merchant: 'm-shop', ref: long },
      ]
      const c = new pg.Client({ connectionString: db.url })
      await c.connect()
      try {
        for (const d of direct) {
          await c.query(
            `INSERT INTO cash_transactions (transaction_id, merchant_id, provider, payment_ref, method, amount, paid_at, business_date, content_hash)
             VALUES ($1, $2, 'portone-v2', $3, 'bank_transfer', 33000, $4, $5, $6)`,
            [d.id, d.merchant, d.ref, `${businessDate}T03:00:00Z`, businessDate, `direct-${d.id}`],
          )
          directRows++
        }
      } finally {
        await c.end()
      }
    }
    await rm(dir, { recursive: true, force: true })

    const settled = await settleDay(
      { db: app.db(), queue: app.receiptsQueue(), logger: app.logger, chunkSize: 500, maxWaiting: 1_000_000, bulkSize: (m, p) => app.bulkSize(m, p) },
      { businessDate, trigger: 'manual' },
    )
    log(`chaos: ${settled.created} receipts to issue, ${settled.skipped} skipped; ${opts.workers} workers`)
    // Popbill bulk: the first two Popbill operations — bulk submits, the batches being the first
    // Popbill work — commit at the sandbox and then time out; their results decide (read back).
    const forced = await fetch(`${sandbox.url}/_sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'popbill', next: ['timeout_after_commit', 'timeout_after_commit'] }),
    })
    if (!forced.ok) throw new Error(`forcing Popbill faults failed: ${forced.status} ${await forced.text()}`)

    /** The last words of the last worker that exited by itself (start-up names them when it fails). */
    let lastWords = ''
    let workersStarted = 0
    const startWorker = (i: number) => {
      const slot: WorkerSlot = { child: spawnCli(['worker'], env, sink), deliberate: false, working: false }
      // Its last words, to say why should it exit by itself. The worker logs (to stderr) 'worker
      // started' once ready and one line per receipt outcome; the tail also finds a line that two
      // chunks split.
      let tail = ''
      slot.child.stderr!.on('data', (d: Buffer) => {
        const fresh = tail.slice(-32) + d.toString()
        tail = (tail + d.toString()).slice(-4_000)
        if (workersStarted === 0 && fresh.includes('worker started')) {
          workersStarted++
          mark(`first worker started (ready for jobs, ${dur(Date.now() - workersSpawned)} after the spawn)`)
        }
        if (!slot.working && fresh.includes('receipt outcome')) {
          slot.working = true
          if (tWork === undefined) {
            tWork = Date.now()
            mark(`first worker at work (its first receipt outcome, ${dur(tWork - workersSpawned)} after the spawn): the zero of this timeline`)
          }
        }
      })
      slot.child.once('exit', (code, signal) => {
        if (!slot.deliberate) {
          unexpectedExits++
          lastWords = `worker ${i} exited by itself (code ${code}, signal ${signal}); its last output:\n${tail}`
          log(`chaos: ${lastWords}`)
        }
      })
      workers[i] = slot
    }
    const kill = (i: number) => {
      workers[i]!.deliberate = true
      workers[i]!.child.kill('SIGKILL')
    }
    const workersSpawned = Date.now()
    for (let i = 0; i < opts.workers; i++) startWorker(i)
    mark(`${opts.workers} workers spawned`)

    const count = async (states: string[]) => {
      const r = await app
        .db()
        .selectFrom('receipts')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('state', 'in', states as never)
        .executeTakeFirstOrThrow()
      return Number(r.n)
    }
    const open = () => count(['pending', 'issuing', 'cancelling'])
    // The faults start once the workers are at work: the first worker reports a receipt outcome
    // (tsx start-up alone takes about a minute at load 20), then 5% of the day issued. Each wait
    // counts from the moment it can begin: the spawn, then the first worker at work.
    const startupEnd = Math.min(workersSpawned + opts.startupMs, overallEnd)
    while (tWork === undefined && unexpectedExits === 0 && Date.now() < startupEnd) await sleep(200)
    if (tWork === undefined) {
      throw new Error(
        unexpectedExits > 0
          ? `chaos: worker start-up failed: ${lastWords}`
          : `chaos: worker start-up hung: no worker reported a receipt outcome within ${((startupEnd - workersSpawned) / 1000).toFixed(0)} s of the spawn (cap ${opts.startupMs / 1000} s from the spawn, overall ${opts.timeoutMs / 1000} s from the harness's start); last output: ${sink.out.slice(-1_000)}`,
      )
    }
    const warm = Math.max(1, Math.floor(settled.created * 0.05))
    const warmEnd = Math.min(tWork + opts.startupMs, overallEnd)
    while ((await count(['issued'])) < warm && Date.now() < warmEnd) await sleep(200)
    const issuedWarm = await count(['issued'])
    if (issuedWarm < warm) {
      throw new Error(
        `chaos: warm-up hung: ${issuedWarm} of ${warm} receipts (5% of the day) issued ${((Date.now() - tWork) / 1000).toFixed(0)} s after the first worker was at work (cap ${opts.startupMs / 1000} s from it)`,
      )
    }
    const tStart = Date.now()
    figures.seconds_spawn_to_first_worker_at_work = Math.round((tWork - workersSpawned) / 100) / 10
    figures.seconds_first_worker_at_work_to_faults = Math.round((tStart - tWork) / 100) / 10
    mark(
      `5% of the day issued (${issuedWarm}/${settled.created}), ${opts.workers === 1 ? 'the worker' : `${workers.filter((w) => w.working).length} of ${opts.workers} workers`} at work: faults start`,
    )

    // Per-provider live receipts per key, sampled during the run (a duplicate at a deduplicating
    // provider must never exist, not only be gone at the end).
    const maxLive: Record<string, number> = {}
    const sampleLive = async () => {
      for (const [p, v] of Object.entries(await livePerKey(sandbox.url))) maxLive[p] = Math.max(maxLive[p] ?? 0, v.max)
    }

    let stopped = -1
    let workerKills = 0
    let killsDone = false
    const killLoop = (async () => {
      if (!on('kills')) return
      while (!killsDone) {
        await sleep(opts.killEveryMs)
        if (killsDone) break
        // The next worker that is at work: killing one still starting would only keep the fleet
        // starting (each restart costs a tsx start-up, seconds on a loaded machine).
        const order = Array.from({ length: opts.workers }, (_, k) => (workerKills + k) % opts.workers)
        const victim = order.find((k) => k !== stopped && workers[k]!.working)
        if (victim === undefined) continue
        kill(victim)
        workerKills++
        startWorker(victim)
        log(`chaos: ${when(Date.now())}  kills: worker ${victim} SIGKILLed and spawned again (kill ${workerKills})`)
      }
    })()

    const ntsRequests = async () => ((await (await fetch(`${sandbox.url}/_sandbox/stats`)).json()) as { providers: { nts: { requests: number } } }).providers.nts.requests
    let gap = 0
    const at = (n: number) => sleep(Math.max(0, tStart + n * opts.phaseGapMs - Date.now()))
    const phases: Promise<void>[] = []
    if (on('slow_commit')) {
      const n = gap++
      phases.push(
        (async () => {
          await at(n)
          mark(
            `phase slow_commit starts: NTS answers after ${opts.slowCommitLatencyMs} ms (read timeout ${HTTP_READ_TIMEOUT_MS} ms) for ${opts.slowCommitMs} ms, and until an NTS request came`,
          )
          // Counted only while NTS is slow (read after setting, before restoring): every request
          // counted was answered past the read timeout.
          await setFaults(`${opts.faults};nts:latency=${opts.slowCommitLatencyMs}`)
          const phaseStart = Date.now()
          const before = await ntsRequests()
          await sleep(opts.slowCommitMs)
          // The phase is for NTS requests, and at load 25–30 three seconds can pass without one:
          // it lasts until one came, counted from its start (a hang if none within stallMs).
          let seen = (await ntsRequests()) - before
          while (seen === 0 && Date.now() - phaseStart < opts.stallMs) {
            await sleep(250)
            seen = (await ntsRequests()) - before
          }
          await setFaults(opts.faults)
          figures.slow_commit_nts_requests = seen
          if (seen === 0) hung.push(`phase slow_commit: no NTS request within ${opts.stallMs / 1000} s of its start`)
          mark(`phase slow_commit ends: ${seen} NTS requests during it`)
        })(),
      )
    }
    if (on('sigstop')) {
      const n = gap++
      phases.push(
        (async () => {
          await at(n)
          // A worker at work (one still starting holds nothing to fence; at load 25–30 one can still
          // be starting when the faults begin), waited for from the phase's slot.
          const slot = Date.now()
          const working = () => [...workers.keys()].reverse().find((k) => workers[k]!.working && workers[k]!.child.exitCode === null && workers[k]!.child.signalCode === null)
          let victim = working()
          while (victim === undefined && Date.now() - slot < opts.stallMs) {
            await sleep(200)
            victim = working()
          }
          if (victim === undefined) hung.push(`phase sigstop: no worker at work within ${opts.stallMs / 1000} s of its slot`)
          // Chosen and marked in one turn: the kill loop passes over it from here on.
          stopped = victim ?? opts.workers - 1
          const w = workers[stopped]!
          w.deliberate = true
          mark(`phase sigstop starts: SIGSTOP worker ${stopped} (${w.working ? 'at work' : 'still starting'}) for ${opts.stopMs} ms (lease 4000 ms, call budget 19500 ms)`)
          w.child.kill('SIGSTOP')
          await sleep(opts.stopMs)
          w.child.kill('SIGCONT')
          // Running again: from here on it must stay alive like any other worker.
          w.deliberate = false
          stopped = -1
          figures.sigstop_ms = opts.stopMs
          mark('phase sigstop ends: SIGCONT')
        })(),
      )
    }
    if (on('redis_restart')) {
      const n = gap++
      phases.push(
        (async () => {
          await at(n)
          await redisTurn(async () => {
            mark('phase redis_restart starts: SHUTDOWN (AOF keeps the queue)')
            // Listen for the exit before asking: SHUTDOWN closes the connection without a reply.
            const exited = exitWithin(redisChild, REDIS_START_MS, 'phase redis_restart (SHUTDOWN)')
            const admin = new Redis(redisUrl, { maxRetriesPerRequest: 0, retryStrategy: () => null, autoResendUnfulfilledCommands: false })
            admin.on('error', () => {})
            await admin.call('SHUTDOWN').catch(() => {})
            admin.disconnect()
            await exited
            redisChild = await startRedis(redisPort, redisDir, 'phase redis_restart (start again)')
            figures.redis_restarts = 1
            mark('phase redis_restart ends: Redis answering again')
          })
        })(),
      )
    }
    if (on('redis_lost')) {
      const n = gap++
      phases.push(
        (async () => {
          await at(n)
          await redisTurn(async () => {
            const openBefore = await open()
            mark(`phase redis_lost starts: SIGKILL, AOF removed, ${opts.redisDownMs} ms down, started empty, with ${openBefore} receipts open`)
            const exited = exitWithin(redisChild, REDIS_START_MS, 'phase redis_lost (SIGKILL)')
            redisChild.kill('SIGKILL')
            await exited
            await rm(redisDir, { recursive: true, force: true })
            redisDir = await mkdtemp(join(tmpdir(), 'cr-chaos-redis-'))
            await mkdir(redisDir, { recursive: true })
            await sleep(opts.redisDownMs)
            redisChild = await startRedis(redisPort, redisDir, 'phase redis_lost (start empty)')
            figures.redis_lost = 1
            figures.redis_lost_open_receipts = openBefore
            mark('phase redis_lost ends: Redis answering again, empty')
          })
        })(),
      )
    }
    if (on('pg_terminate')) {
      const n = gap++
      phases.push(
        (async () => {
          await at(n)
          mark(`phase pg_terminate starts: ${opts.pgTerminations} rounds ${opts.pgTerminateEveryMs} ms apart`)
          let total = 0
          const c = new pg.Client({ connectionString: db.url })
          await c.connect()
          const phaseStart = Date.now()
          try {
            // The rounds, and more until a connection was terminated (all workers restarting at
            // load 25–30 can hold none for a while), counted from the phase's start.
            for (let k = 0; k < opts.pgTerminations || (total === 0 && Date.now() - phaseStart < opts.stallMs); k++) {
              const t = await c.query(
                `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cash-receipts' AND pid <> pg_backend_pid()`,
              )
              total += t.rows[0].n as number
              await sleep(opts.pgTerminateEveryMs)
            }
          } finally {
            await c.end()
          }
          figures.pg_backends_terminated = total
          if (total === 0) hung.push(`phase pg_terminate: no worker connection to terminate within ${opts.stallMs / 1000} s of its start`)
          mark(`phase pg_terminate ends: ${total} Postgres connections terminated in ${opts.pgTerminations} rounds`)
        })(),
      )
    }
    // Sample live receipts per key while the phases run.
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        await sampleLive().catch(() => {})
        await sleep(2_000)
      }
    })()
    try {
      await Promise.all(phases)
    } catch (err) {
      // A phase failed (say, Redis did not come back): no more kills or samples behind the cleanup.
      killsDone = true
      sampling = false
      throw err
    }
    // The kills: at least one, counted from the other phases' end (the loop kills only a worker at
    // work, and at load 25–30 each restart takes minutes).
    const phasesEnd = Date.now()
    while (on('kills') && workerKills === 0 && Date.now() - phasesEnd < opts.stallMs) await sleep(500)
    if (on('kills') && workerKills === 0) hung.push(`phase kills: no worker at work to kill within ${opts.stallMs / 1000} s of the other phases' end`)
    // Full size: the base faults and the kills go on until most of the day is done.
    while (Date.now() - tStart < opts.faultsMaxMs && Date.now() < overallEnd) {
      const done = 1 - (await open()) / Math.max(1, settled.created)
      if (done >= opts.faultsUntilDone || !on('kills')) break
      await sleep(1_000)
    }
    killsDone = true
    await killLoop
    figures.worker_kills = workerKills
    figures.faults_seconds = Math.round((Date.now() - tStart) / 100) / 10

    // Faults stop. Workers finish what they have (recovering what Redis lost), then one re-drive.
    await setFaults('')
    const faultsStopped = Date.now()
    mark(`faults stop (${workerKills} kills), ${await open()} receipts open: drain`)
    /** A worker that has reported a receipt outcome since its (re)start and runs (not SIGSTOPped, not exited). */
    const atWork = () => workers.some((w, i) => i !== stopped && w.working && w.child.exitCode === null && w.child.signalCode === null)
    /**
     * Waits until no receipt is open. The clock starts when a worker is at work (the SIGKILLed ones
     * start again: a minute at load 20) and starts over each time a receipt reaches a terminal state,
     * so a drain that keeps moving runs to its end however loaded the machine; one where nothing
     * finishes for `stallMs`, or still going at the overall cap, is named in `hung`.
     */
    const drain = async (what: string): Promise<boolean> => {
      const workEnd = Math.min(Date.now() + opts.startupMs, overallEnd)
      while (!atWork() && (await open()) > 0 && Date.now() < workEnd) await sleep(200)
      if (!atWork() && (await open()) > 0) {
        hung.push(
          `${what}: no worker at work within ${((Date.now() - faultsStopped) / 1000).toFixed(0)} s of the faults' stop (${workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length}/${opts.workers} processes running), ${await open()} receipts open`,
        )
        return false
      }
      let best = await open()
      let moved = Date.now()
      for (;;) {
        const n = await open()
        if (n === 0) return true
        if (n < best) {
          best = n
          moved = Date.now()
        }
        if (Date.now() - moved >= opts.stallMs) {
          hung.push(`${what}: ${n} receipts open and none finished for ${opts.stallMs / 1000} s with a worker at work`)
          return false
        }
        if (Date.now() >= overallEnd) {
          hung.push(`${what}: ${n} receipts open at the overall cap (${opts.timeoutMs / 1000} s from the harness's start)`)
          return false
        }
        await sleep(500)
      }
    }
    const drained = await drain('drain after the faults')
    mark(drained ? 'all receipts terminal: one re-drive' : `drain hung: ${hung.at(-1)}`)
    const rd = await redrive({ db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: businessDate }, {})
    figures.redriven = rd.count
    // After a hung drain the re-drive's wait would only hang again: the checks say what is left.
    if (drained && rd.count > 0) {
      const redrained = await drain('drain after the re-drive')
      mark(redrained ? `${rd.count} re-driven receipts terminal` : `re-drive drain hung: ${hung.at(-1)}`)
    }
    figures.seconds_faults_stopped_to_terminal = Math.round((Date.now() - faultsStopped) / 100) / 10
    sampling = false
    await sampler
    await sampleLive()

    // Every run reaches finished without an operator (the recovery pass in the workers, every 2 s
    // here, closes it): counted from the drain's end, when the workers are at work.
    const runsFrom = Date.now()
    const runsDeadline = Math.min(runsFrom + opts.stallMs, overallEnd)
    const unfinishedRuns = async () =>
      Number(
        (
          await app
            .db()
            .selectFrom('settlement_runs')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('status', '<>', 'finished')
            .executeTakeFirstOrThrow()
        ).n,
      )
    while ((await unfinishedRuns()) > 0 && Date.now() < runsDeadline) await sleep(500)
    const runsOpen = await unfinishedRuns()
    if (runsOpen > 0) hung.push(`settlement runs: ${runsOpen} not finished ${((Date.now() - runsFrom) / 1000).toFixed(0)} s after the drain`)
    mark(runsOpen > 0 ? `settlement runs hung: ${runsOpen} not finished` : 'every settlement run finished: reconcile')

    // Duplicates at NTS (which does not deduplicate) before reconcile, then reconcile repairs them.
    const beforeReconcile = await livePerKey(sandbox.url)
    const ntsExtra = beforeReconcile.nts?.extra ?? 0
    const rec = await reconcileDay({ db: app.db(), providers: app.providers(), logger: app.logger, cancelDuplicates: true }, businessDate, businessDate)
    const afterReconcile = await livePerKey(sandbox.url)
    const dupRows = await app.db().selectFrom('provider_duplicates').select(['provider', 'repaired_at']).execute()
    const dupRepaired = dupRows.filter((d) => d.repaired_at !== null).length
    mark(`reconcile done: ${rec.duplicates.length} duplicates`)
    figures.total_seconds = Math.round((Date.now() - workersSpawned) / 100) / 10
    figures.harness_seconds = Math.round((Date.now() - tHarness) / 100) / 10

    // Workers: every one the harness did not kill is still running.
    const workersAlive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length
    for (const w of workers) {
      w.deliberate = true
      w.child.kill('SIGTERM')
    }
    const fenced = (sink.out.match(/call not made/g) ?? []).length
    const takenOver = (sink.out.match(/"outcome":"taken-over"/g) ?? []).length

    const states = await app
      .db()
      .selectFrom('receipts')
      .select(['state'])
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('kind', '=', 'issue')
      .groupBy('state')
      .execute()
    const by = Object.fromEntries(states.map((s) => [s.state, Number(s.n)])) as Record<string, number>
    const unclassified = await app
      .db()
      .selectFrom('receipts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('state', '=', 'failed')
      .where((eb) => eb.or([eb('error_class', 'is', null), eb('error_code', 'is', null)]))
      .executeTakeFirstOrThrow()
    const failures = await app
      .db()
      .selectFrom('receipts')
      .select(['id', 'provider', 'state', 'error_class', 'error_code', 'error_message', 'needs_lookup', 'attempts', 'redrive_count'])
      .where('state', '=', 'failed')
      .limit(20)
      .execute()
    for (const f of failures) log(`failed receipt ${JSON.stringify(f)}`)
    // Every transaction of the day: a receipt in a terminal state, or refused by settle with a reason.
    const txs = Number(
      (
        await app
          .db()
          .selectFrom('cash_transactions')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('business_date', '=', businessDate)
          .executeTakeFirstOrThrow()
      ).n,
    )
    const rejected = await app
      .db()
      .selectFrom('settle_rejections as s')
      .select(['s.code', 's.message'])
      .where('s.trade_date', '=', businessDate)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom('receipts as r').select('r.id').whereRef('r.transaction_id', '=', 's.transaction_id').where('r.kind', '=', 'issue'))),
      )
      .execute()
    const rejectedWithReason = rejected.filter((r) => r.code && r.message).length
    const stats = (await (await fetch(`${sandbox.url}/_sandbox/stats`)).json()) as {
      providers: Record<string, { issued: number; cancelled: number }>
      max_live_receipts_per_key: number
      max_receipts_per_key: number
    }
    const live = Object.values(stats.providers).reduce((n, p) => n + p.issued - p.cancelled, 0)
    const terminal = (by.issued ?? 0) + (by.skipped ?? 0) + (by.failed ?? 0) + (by.cancelled ?? 0)
    const dedupMax = Math.max(
      0,
      ...Object.entries(maxLive)
        .filter(([p]) => deduplicates(p))
        .map(([, n]) => n),
    )
    Object.assign(figures, {
      transactions: txs,
      receipts: terminal,
      issued: by.issued ?? 0,
      skipped: by.skipped ?? 0,
      failed: by.failed ?? 0,
      bad_rows: badRows,
      import_rejected: importRejected,
      direct_rows: directRows,
      settle_rejected: rejected.length,
      sandbox_live: live,
      sandbox_issued: Object.values(stats.providers).reduce((n, p) => n + p.issued, 0),
      max_live_per_key_deduplicating: dedupMax,
      nts_max_live_per_key_before_reconcile: beforeReconcile.nts?.max ?? 0,
      nts_duplicates_before_reconcile: ntsExtra,
      duplicates_recorded: dupRows.length,
      duplicates_cancelled: dupRepaired,
      reconcile_duplicates: rec.duplicates.length,
      max_live_receipts_per_key: stats.max_live_receipts_per_key,
      max_receipts_per_key: stats.max_receipts_per_key,
      fenced_sends: fenced,
      jobs_taken_over: takenOver,
      worker_unexpected_exits: unexpectedExits,
    })
    const batches = await sql<{ state: string; n: number }>`SELECT state, count(*)::int AS n FROM provider_batches GROUP BY state`.execute(app.db())
    const batchBy = Object.fromEntries(batches.rows.map((r) => [r.state, r.n])) as Record<string, number>
    const bulkUnknown = await sql<{
      n: number
    }>`SELECT count(*)::int AS n FROM provider_batch_calls WHERE operation = 'bulk_submit' AND outcome IN ('unknown_outcome', 'tried')`.execute(app.db())
    const bulkSubmits = await sql<{ n: number }>`SELECT count(*)::int AS n FROM provider_batch_calls WHERE operation = 'bulk_submit'`.execute(app.db())
    Object.assign(figures, {
      popbill_batches: batches.rows.reduce((n, r) => n + r.n, 0),
      popbill_batches_done: batchBy.done ?? 0,
      popbill_bulk_submits: bulkSubmits.rows[0]!.n,
      popbill_bulk_submits_unanswered: bulkUnknown.rows[0]!.n,
    })
    const checks: ChaosCheck[] = [
      {
        name: 'every Popbill bulk batch done',
        ok: (batchBy.open ?? 0) + (batchBy.submitted ?? 0) === 0 && (batchBy.done ?? 0) > 0,
        value: `${batchBy.done ?? 0} done, ${(batchBy.open ?? 0) + (batchBy.submitted ?? 0)} open`,
      },
      {
        name: 'every transaction terminal or rejected with a reason',
        ok: terminal + rejectedWithReason === txs && rejected.length === rejectedWithReason,
        value: `${terminal} + ${rejectedWithReason} rejected = ${txs}`,
      },
      ...(on('bad_rows')
        ? [
            {
              name: 'bad rows: import rejected each one, settle the rest',
              ok: importRejected === badRows - 1 && rejected.length === 2,
              value: `import ${importRejected}/${badRows - 1}, settle ${rejected.length}/2`,
            },
          ]
        : []),
      { name: 'ledger issued = sandbox live receipts', ok: (by.issued ?? 0) === live, value: `${by.issued ?? 0} = ${live}` },
      { name: 'max live receipts per key = 1 at deduplicating providers', ok: dedupMax <= 1, value: dedupMax },
      {
        name: 'NTS duplicates recorded and cancelled by reconcile',
        ok: dupRows.length >= ntsExtra && dupRepaired === dupRows.length,
        value: `${ntsExtra} found, ${dupRows.length} recorded, ${dupRepaired} cancelled`,
      },
      {
        name: 'max live receipts per key = 1 after reconcile',
        ok: stats.max_live_receipts_per_key === 1 && Object.values(afterReconcile).every((v) => v.max <= 1),
        value: stats.max_live_receipts_per_key,
      },
      { name: 'zero receipts stuck in issuing or pending', ok: !by.issuing && !by.pending, value: (by.issuing ?? 0) + (by.pending ?? 0) },
      { name: 'every failure has a class and code', ok: Number(unclassified.n) === 0, value: Number(unclassified.n) },
      {
        name: 'no worker process lost',
        ok: unexpectedExits === 0 && workersAlive === opts.workers,
        value: `${workersAlive}/${opts.workers} alive, ${unexpectedExits} exited by themselves`,
      },
      { name: 'every settlement run finished', ok: runsOpen === 0, value: runsOpen },
      { name: 'faults stopped → all terminal (s)', ok: true, value: figures.seconds_faults_stopped_to_terminal! },
      { name: 'no phase hung (deadlines from the workers at work)', ok: hung.length === 0, value: hung.length ? hung.join('; ') : 'none' },
    ]
    const timeline = marks.map((m) => `${secs(m.at - tWork!).padStart(9)}  ${m.what}`)
    return { ok: checks.every((c) => c.ok), checks, figures, timeline, workerOutput: sink.out, databaseUrl: db.url, redisUrl, cleanup }
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
    '',
    'timeline (from the first worker at work: its first receipt outcome)',
    ...r.timeline,
  ].join('\n')
}
