/**
 * `npm run bench [-- --quick] [-- --json] [-- --only ceiling,popbill-bulk,fidelity,settlement,soak,fairness,outage,many-credentials]`
 *
 * Real Postgres and Redis on localhost (DATABASE_URL's server / REDIS_URL, or what `demo` would
 * start), the sandbox and workers as separate processes. Every scenario measures its baselines in
 * the same run: a no-op BullMQ worker on the same Redis and BullMQ addBulk (jobs/s).
 */
import { writeFile } from 'node:fs/promises'
import pg from 'pg'
import { Redis } from 'ioredis'
import { loadDemoConfig } from '../src/demo/defaults.ts'
import type { MerchantConfig } from '../src/config.ts'
import { ensurePostgres, ensureRedis } from '../src/demo/infra.ts'
import {
  benchClient,
  benchDatabaseName,
  buildCli,
  databaseCpuMeter,
  redisCpuSeconds,
  copyTransactions,
  cpuMeter,
  measureBaselines,
  measureSettleShapedAddBulk,
  percentile,
  recreateDatabase,
  resetSandbox,
  rssMb,
  runCli,
  sandboxStats,
  scenarioEnv,
  setSandboxFaults,
  spawnCli,
  spawnScript,
  startSandboxProcess,
  stop,
  waitFor,
  writeMerchantsFile,
} from './lib.ts'
import { NAIVE_TABLE_SQL, type NaiveJob } from './naive-worker.ts'
import { receiptJobOptions } from '../src/queue/queues.ts'
import { deleteKeys } from '../test/helpers/redis-keys.ts'
import { readDispatchStats } from '../src/throttle/dispatch-stats.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const only = (() => {
  const i = args.indexOf('--only')
  return i >= 0 ? new Set(args[i + 1]!.split(',')) : null
})()
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`)

/** The Redis key prefix of each scenario this run started, so the run can remove their keys at the end. */
const RUN = `bench${Date.now().toString(36)}`
const prefixes: string[] = []
const scenarioPrefix = () => {
  prefixes.push(`${RUN}s${prefixes.length + 1}`)
  return prefixes.at(-1)!
}

interface Result {
  scenario: string
  figures: Record<string, number | string>
  target: string
  met: boolean
}

/**
 * How many issue receipts are still pending or issuing, counted up to `upTo` (1: "is anything left?").
 * Polled every 250–500 ms while a scenario runs, so it must cost the measured pipeline nothing worth
 * counting: one connection for the scenario (not a new backend per poll) and an index-only range of
 * the state index that shrinks as work finishes. Counting every receipt by state would read the whole
 * table each poll, and that work would be charged to Postgres's CPU per receipt.
 */
async function unfinishedProbe(databaseUrl: string) {
  const c = benchClient(databaseUrl)
  await c.connect()
  return {
    async count(upTo = 1_000_000_000): Promise<number> {
      const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT 1 FROM receipts WHERE state IN ('pending', 'issuing') AND kind = 'issue' LIMIT $1) x`, [upTo])
      return r.rows[0]!.n
    },
    end: () => c.end(),
  }
}

/** Waits until no issue receipt is pending or issuing. */
async function untilIssued(databaseUrl: string, timeoutMs: number): Promise<void> {
  const probe = await unfinishedProbe(databaseUrl)
  try {
    await waitFor(async () => (await probe.count(1)) === 0, timeoutMs)
  } finally {
    await probe.end()
  }
}

async function latencies(databaseUrl: string) {
  const c = benchClient(databaseUrl)
  await c.connect()
  try {
    const r = await c.query<{ ms: number; first: Date; last: Date }>(
      `SELECT extract(epoch FROM issued_at - created_at) * 1000 AS ms FROM receipts WHERE state = 'issued' ORDER BY 1`,
    )
    const w = await c.query<{ first: Date; last: Date; n: number }>(
      `SELECT min(created_at) AS first, max(issued_at) AS last, count(*)::int AS n FROM receipts WHERE state = 'issued'`,
    )
    return { sorted: r.rows.map((x) => Number(x.ms)), window: w.rows[0]! }
  } finally {
    await c.end()
  }
}

async function ceiling(pgServer: string, redisUrl: string): Promise<Result> {
  const merchantsN = quick ? 100 : 1_000
  const perMerchant = quick ? 20 : 50
  const total = merchantsN * perMerchant
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const db = await recreateDatabase(pgServer, benchDatabaseName())
  // No provider limit (the issue's ceiling): credentials without limits, so the throttle adds no Redis round trips.
  const { file, merchants } = await writeMerchantsFile(merchantsN, { maxConcurrent: null })
  const prefix = scenarioPrefix()
  const sandbox = await startSandboxProcess(scenarioEnv(db, redisUrl, prefix))
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SANDBOX_URL: sandbox.url, WORKER_CONCURRENCY: '64' })
  try {
    await runCli(['migrate'], env)
    const date = '2026-11-21'
    const loaded = await copyTransactions(db, { businessDate: date, count: total, merchants, noPortonePayments: true })
    log(`ceiling: loaded ${total} transactions in ${loaded.seconds.toFixed(1)} s`)
    const workers = [spawnCli(['worker'], env), spawnCli(['worker'], env)]
    const redis = new Redis(redisUrl)
    // CPU used while issuing (after the workers' start-up), per receipt: where the machine's time goes.
    await new Promise((r) => setTimeout(r, 3_000))
    const meter = cpuMeter(redis, () => workers.map((w) => w.pid!), sandbox.child.pid, db)
    await meter.start()
    const t0 = Date.now()
    const settled = await runCli(['settle', '--date', date, '--json'], env)
    const created = JSON.parse(settled.stdout).created as number
    await untilIssued(db, 15 * 60_000)
    const wall = (Date.now() - t0) / 1000
    const cpu = await meter.stop(created, 'receipt')
    redis.disconnect()
    await Promise.all(workers.map((w) => stop(w)))
    const { sorted, window } = await latencies(db)
    const issuingSeconds = (new Date(window.last).getTime() - new Date(window.first).getTime()) / 1000
    const rate = window.n / issuingSeconds
    const ratio = rate / base.noopWorkerJobsPerSec
    const stats = await sandboxStats(sandbox.url)
    // The re-based yardstick: the at-least-once worker a user would write instead, same calls to the
    // same sandbox (emptied first), same worker processes and concurrency.
    const naive = await naiveBaseline(db, redisUrl, sandbox.url, env, 2)
    const ratioNaive = rate / naive.jobsPerSec
    ceilingRate = rate
    return {
      scenario: 'ceiling',
      figures: {
        merchants: merchantsN,
        receipts: created,
        issued: window.n,
        receipts_per_s: round(rate),
        p50_ms: round(percentile(sorted, 50)),
        p99_ms: round(percentile(sorted, 99)),
        wall_s: round(wall),
        naive_baseline_jobs_per_s: round(naive.jobsPerSec),
        ratio_to_naive: round(ratioNaive, 3),
        noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec),
        addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
        ratio_to_noop: round(ratio, 3),
        max_live_receipts_per_key: stats.max_live_receipts_per_key,
        max_receipts_per_key: stats.max_receipts_per_key,
        ...cpu,
        ...naive.cpu,
      },
      target: 'pipeline ≥ 0.7× the at-least-once worker (ratio_to_noop is information)',
      met: ratioNaive >= 0.7 && stats.max_live_receipts_per_key <= 1,
    }
  } finally {
    await stop(sandbox.child)
  }
}

/**
 * Popbill's own processing time per call, ms, as the sandbox is told to model it in both runs of
 * popbill-bulk. Popbill's bulk-issue guide (docs/providers.md, Popbill: timing) gives 10,000 single
 * RegistIssue calls in 0.39 h, one after another (~140 ms each), and 100 BulkSubmit calls of 100 in
 * 0.18 min (~108 ms each): one figure for every /Cashbill call, bulk polls included, is within that.
 */
const POPBILL_CALL_MS = 140

/**
 * The ceiling with Popbill: the same merchants and day, every transaction a Popbill one, issued once
 * with single RegistIssue calls and once in bulk (the merchants' `bulk: true`: batches of up to 100,
 * result polled every 2–5 s, as the provider asks), each on a fresh database in this run; receipts/s
 * from settle's start until nothing is pending, and the ratio bulk / single. In both runs every
 * /Cashbill call takes POPBILL_CALL_MS at the sandbox (an instant sandbox made single calls look
 * free), and bulk processing its own modelled time after that.
 */
async function popbillBulk(pgServer: string, redisUrl: string): Promise<Result> {
  const merchantsN = quick ? 10 : 50
  const perMerchant = quick ? 200 : 400
  const total = merchantsN * perMerchant
  const once = async (bulk: boolean) => {
    const db = await recreateDatabase(pgServer, benchDatabaseName())
    const { file, merchants } = await writeMerchantsFile(merchantsN, { maxConcurrent: null })
    // Popbill credentials the sandbox accepts (SecretKey = base64("sandbox-secret:<LinkID>")), no limits.
    const withPopbill = merchants.map((m) => ({
      ...m,
      providers: {
        ...m.providers,
        popbill: {
          linkId: `LINK-${m.id}`,
          secretKey: Buffer.from(`sandbox-secret:LINK-${m.id}`, 'utf8').toString('base64'),
          corpNum: m.businessNumber,
          bulk,
          limits: { maxConcurrent: null },
        },
      },
    }))
    await writeFile(file, JSON.stringify(withPopbill))
    const prefix = scenarioPrefix()
    const sandbox = await startSandboxProcess(scenarioEnv(db, redisUrl, prefix), ['--popbill-call-ms', String(POPBILL_CALL_MS)])
    const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SANDBOX_URL: sandbox.url, WORKER_CONCURRENCY: '64' })
    try {
      await runCli(['migrate'], env)
      const date = '2026-11-21'
      await copyTransactions(db, { businessDate: date, count: total, merchants, providers: ['popbill'], noPortonePayments: true })
      const workers = [spawnCli(['worker'], env), spawnCli(['worker'], env)]
      await new Promise((r) => setTimeout(r, 3_000)) // the workers' start-up, as in the ceiling
      const t0 = Date.now()
      const settled = await runCli(['settle', '--date', date, '--json'], env)
      const created = JSON.parse(settled.stdout).created as number
      await untilIssued(db, 15 * 60_000)
      const seconds = (Date.now() - t0) / 1000
      await Promise.all(workers.map((w) => stop(w)))
      const stats = await sandboxStats(sandbox.url)
      const c = benchClient(db)
      await c.connect()
      const issued = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM receipts WHERE state = 'issued' AND provider = 'popbill'`)).rows[0]!.n
      const batches = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM provider_batches`)).rows[0]!.n
      await c.end()
      log(`popbill-bulk: ${bulk ? 'bulk' : 'single'} issued ${issued} of ${created} in ${seconds.toFixed(1)} s (${batches} batches)`)
      return { created, issued, seconds, rate: issued / seconds, batches, maxLive: stats.max_live_receipts_per_key }
    } finally {
      await stop(sandbox.child)
    }
  }
  const single = await once(false)
  const bulk = await once(true)
  const ratio = bulk.rate / single.rate
  return {
    scenario: 'popbill-bulk',
    figures: {
      merchants: merchantsN,
      receipts: bulk.created,
      popbill_call_ms: POPBILL_CALL_MS,
      single_receipts_per_s: round(single.rate),
      bulk_receipts_per_s: round(bulk.rate),
      ratio_bulk_to_single: round(ratio, 2),
      single_wall_s: round(single.seconds),
      bulk_wall_s: round(bulk.seconds),
      bulk_batches: bulk.batches,
      single_issued: single.issued,
      bulk_issued: bulk.issued,
      max_live_receipts_per_key: Math.max(single.maxLive, bulk.maxLive),
    },
    target: 'bulk issues every receipt, faster than single calls, at most one live receipt per key',
    met: bulk.issued === bulk.created && single.issued === single.created && ratio > 1 && Math.max(single.maxLive, bulk.maxLive) <= 1,
  }
}

/** The ceiling scenario's pipeline rate in this run (receipts/s), for the many-credentials target. */
let ceilingRate: number | null = null

/**
 * The at-least-once worker (bench/naive-worker.ts) over the receipts the pipeline just issued: the
 * same requests, keys and credentials, the sandbox emptied first so every call issues anew. Jobs are
 * enqueued before its processes start; the rate runs from the first job's start to the last insert.
 */
async function naiveBaseline(db: string, redisUrl: string, sandboxUrl: string, env: Record<string, string>, processes: number) {
  const c = benchClient(db)
  await c.connect()
  const { Queue } = await import('bullmq')
  const conn = new Redis(redisUrl, { maxRetriesPerRequest: null })
  const queueName = 'naive'
  const queue = new Queue<NaiveJob>(queueName, { connection: conn as never, prefix: env.QUEUE_PREFIX })
  const workers: import('node:child_process').ChildProcess[] = []
  try {
    await c.query(NAIVE_TABLE_SQL)
    const rows = (
      await c.query<{
        merchant_id: string
        provider: NaiveJob['provider']
        provider_key: string
        idempotency_key: string
        portone_payment: boolean
        self_issued: boolean
        purpose: NaiveJob['request']['purpose']
        total_amount: number
        supply_amount: number
        vat_amount: number
        tax_free_amount: number
        service_fee: number
        trade_date: string
        transaction_id: string
        order_name: string | null
        order_id: string | null
        identifier_type: NaiveJob['request']['identifierType'] | null
        paid_at: Date
        pii_enc: string | null
      }>(
        `SELECT r.merchant_id, r.provider, r.provider_key, r.idempotency_key, r.portone_payment, r.self_issued, r.purpose, r.total_amount, r.supply_amount, r.vat_amount,
                r.tax_free_amount, r.service_fee, to_char(r.trade_date, 'YYYY-MM-DD') AS trade_date, t.transaction_id, t.order_name, t.order_id, t.identifier_type, t.paid_at, t.pii_enc
           FROM receipts r JOIN cash_transactions t ON t.transaction_id = r.transaction_id
          WHERE r.kind = 'issue' AND r.state = 'issued' ORDER BY r.id`,
      )
    ).rows
    await resetSandbox(sandboxUrl)
    const opts = receiptJobOptions(6, 1_000)
    for (let i = 0; i < rows.length; i += 1_000) {
      await queue.addBulk(
        rows.slice(i, i + 1_000).map((r) => ({
          name: 'issue',
          data: {
            merchantId: r.merchant_id,
            provider: r.provider,
            transactionId: r.transaction_id,
            piiEnc: r.pii_enc,
            selfIssued: r.self_issued,
            request: {
              providerKey: r.provider_key,
              idempotencyKey: r.idempotency_key,
              portonePayment: r.portone_payment,
              orderName: r.order_name ?? r.order_id ?? r.transaction_id,
              identifierType: r.self_issued ? 'self' : (r.identifier_type ?? 'phone'),
              purpose: r.purpose,
              tradeDate: r.trade_date,
              paidAt: new Date(r.paid_at).toISOString(),
              // bigint columns arrive as strings from pg
              amounts: {
                total: Number(r.total_amount),
                supply: Number(r.supply_amount),
                vat: Number(r.vat_amount),
                taxFree: Number(r.tax_free_amount),
                serviceFee: Number(r.service_fee),
              },
            },
          },
          opts,
        })),
      )
    }
    const redis = new Redis(redisUrl)
    const naiveEnv = { ...env, NAIVE_QUEUE: queueName, NAIVE_CONCURRENCY: env.WORKER_CONCURRENCY ?? '64' }
    // Started together, as the pipeline's workers were already up when settle began.
    const started = await Promise.all(Array.from({ length: processes }, () => spawnScript('naive-worker.ts', naiveEnv)))
    workers.push(...started)
    const meter = cpuMeter(redis, () => workers.map((w) => w.pid!), undefined, db)
    await meter.start()
    // Done when every job inserted its row or failed for good (a mapping error would otherwise wait out the timeout).
    await waitFor(
      async () => (await c.query<{ n: number }>('SELECT coalesce(max(id), 0)::int AS n FROM naive_results')).rows[0]!.n + (await queue.getFailedCount()) >= rows.length,
      15 * 60_000,
    )
    const failed = await queue.getFailedCount()
    if (failed) log(`ceiling: ${failed} jobs of the at-least-once worker failed, e.g. ${(await queue.getFailed(0, 0))[0]?.failedReason}`)
    const cpuAll = await meter.stop(rows.length, 'job')
    redis.disconnect()
    const w = (await c.query<{ n: number; seconds: number }>(`SELECT count(*)::int AS n, extract(epoch FROM max(done_at) - min(started_at))::float8 AS seconds FROM naive_results`))
      .rows[0]!
    const dup = (await sandboxStats(sandboxUrl)).max_live_receipts_per_key
    log(`ceiling: at-least-once worker issued ${w.n} in ${w.seconds.toFixed(1)} s (max live receipts per key ${dup})`)
    return {
      jobsPerSec: w.n / w.seconds,
      cpu: {
        naive_worker_cpu_ms_per_job: cpuAll.worker_cpu_ms_per_job!,
        naive_postgres_cpu_ms_per_job: cpuAll.postgres_cpu_ms_per_job!,
        naive_redis_cpu_ms_per_job: cpuAll.redis_cpu_ms_per_job!,
      },
    }
  } finally {
    await Promise.all(workers.map((w) => stop(w)))
    await queue.obliterate({ force: true }).catch(() => {})
    await queue.close()
    conn.disconnect()
    await c.end()
  }
}

/** One merchant's issue receipts: counts by state and the time window of its work. */
async function merchantFigures(c: pg.Client, merchantId: string) {
  const r = await c.query<{ receipts: number; issued: number; failed: number; open: number; first_created: Date | null; first_issued: Date | null; last_issued: Date | null }>(
    `SELECT count(*)::int AS receipts, count(*) FILTER (WHERE state = 'issued')::int AS issued, count(*) FILTER (WHERE state = 'failed')::int AS failed,
            count(*) FILTER (WHERE state IN ('pending', 'issuing'))::int AS open, min(created_at) AS first_created, min(issued_at) AS first_issued, max(issued_at) AS last_issued
       FROM receipts WHERE kind = 'issue' AND merchant_id = $1 AND state <> 'skipped'`,
    [merchantId],
  )
  const d = await c.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM receipt_transitions t JOIN receipts r ON r.id = t.receipt_id WHERE r.merchant_id = $1 AND t.cause = 'deferred'`,
    [merchantId],
  )
  const f = { ...r.rows[0]!, deferred: d.rows[0]!.n }
  const ms = (a: Date | null, b: Date | null) => (a && b ? new Date(b).getTime() - new Date(a).getTime() : NaN)
  return {
    ...f,
    /** From its first receipt's creation (settle) to its last issue: the merchant's night. */
    seconds: ms(f.first_created, f.last_issued) / 1000,
    /** Issues per second between its first and its last issue. */
    issueRate: f.issued > 1 ? (f.issued - 1) / (ms(f.first_issued, f.last_issued) / 1000) : 0,
  }
}

/** Transactions to load for about `receipts` issue receipts at mandatory issuers (~18 % of a generated day gets none). */
const txFor = (receipts: number) => Math.round(receipts / 0.82)

/**
 * One issuing run of the dispatch scenarios: a fresh database, the given loads (each one merchant's
 * or a group's transactions, in settle order by id prefix), the sandbox with `sandboxArgs`, `workers`
 * processes of `concurrency`, one settle; then `during` runs with the live run and returns figures.
 */
async function dispatchRun<T>(
  pgServer: string,
  redisUrl: string,
  o: {
    merchantsFile: string
    loads: { merchants: readonly { id: string; mandatoryIssuer: boolean }[]; count: number; idPrefix: string; provider: 'payssam' | 'nts'; perMerchant?: number }[]
    sandboxArgs: string[]
    workers: number
    concurrency: number
    /** Extra environment of the workers (and every CLI run of the scenario). */
    env?: Record<string, string>
    during: (ctx: { db: pg.Client; sandboxUrl: string }) => Promise<T>
    /** Also measure CPU per receipt of the workers, sandbox, Redis and the database from settle to the end of `during`. */
    cpuPerReceipt?: boolean
  },
): Promise<T & { rate_limited_429: number; deferred: Record<string, number>; cpu: Record<string, number> }> {
  const db = await recreateDatabase(pgServer, benchDatabaseName())
  const prefix = scenarioPrefix()
  // The sandbox counts arrivals against the limits: it runs ahead of the workers, as in fidelity.
  const sandbox = await startSandboxProcess(scenarioEnv(db, redisUrl, prefix), o.sandboxArgs, { priority: -10 })
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: o.merchantsFile, SANDBOX_URL: sandbox.url, WORKER_CONCURRENCY: String(o.concurrency), ...o.env })
  const c = benchClient(db)
  const workers: import('node:child_process').ChildProcess[] = []
  try {
    await runCli(['migrate'], env)
    for (const l of o.loads) {
      await copyTransactions(db, { businessDate: '2026-11-21', count: l.count, merchants: l.merchants, providers: [l.provider], idPrefix: l.idPrefix, perMerchant: l.perMerchant })
    }
    await c.connect()
    workers.push(...Array.from({ length: o.workers }, () => spawnCli(['worker'], env)))
    await new Promise((r) => setTimeout(r, 3_000)) // the workers' start-up, as in the ceiling
    const redis = new Redis(redisUrl)
    try {
      const meter = o.cpuPerReceipt ? cpuMeter(redis, () => workers.map((w) => w.pid!), sandbox.child.pid, db) : undefined
      await meter?.start()
      // Every receipt exists once settle returns (small days: a second or two), so "nothing open" below
      // cannot be read between two of its chunks. The figures come from the rows' own timestamps.
      const settled = await runCli(['settle', '--date', '2026-11-21', '--json'], env)
      if (settled.code !== 0) throw new Error(`settle exited with ${settled.code}`)
      const figures = await o.during({ db: c, sandboxUrl: sandbox.url })
      const created = JSON.parse(settled.stdout).created as number
      const cpu = meter ? await meter.stop(created, 'receipt') : {}
      const st = await sandboxStats(sandbox.url)
      const limited = Object.values(st.providers).reduce((n, p) => n + p.rate_limited, 0)
      // Deferrals by reason (the workers add theirs to this hash once a second).
      await new Promise((r) => setTimeout(r, 1_100))
      const deferred = Object.fromEntries((await readDispatchStats(redis, prefix)).deferred.map((d) => [`deferred_${d.reason}`, d.n]))
      return { ...figures, rate_limited_429: limited, deferred, cpu }
    } finally {
      redis.disconnect()
    }
  } finally {
    await Promise.all(workers.map((w) => stop(w)))
    await c.end().catch(() => {})
    await stop(sandbox.child)
  }
}

/** Polls until `merchantId` has nothing pending or issuing (and has receipts), or the timeout passes; true when done. */
function untilMerchantDone(c: pg.Client, merchantId: string, timeoutMs: number): Promise<boolean> {
  return waitFor(
    async () => {
      const r = await c.query<{ open: boolean; any: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM receipts WHERE merchant_id = $1 AND kind = 'issue' AND state IN ('pending', 'issuing')) AS open,
              EXISTS (SELECT 1 FROM receipts WHERE merchant_id = $1 AND kind = 'issue') AS any`,
        [merchantId],
      )
      return r.rows[0]!.any && !r.rows[0]!.open
    },
    timeoutMs,
    250,
  )
}

/**
 * Fairness (issue 19): a merchant limited to 5 req/s, settled first, ahead of an unlimited one at the
 * same provider, one worker process of concurrency 16. Baseline: the unlimited merchant alone.
 */
async function fairness(pgServer: string, redisUrl: string): Promise<Result> {
  const slowN = quick ? 100 : 500
  const fastN = quick ? 1_500 : 3_000
  const limit = 5
  // bm0000 (m-slow) has a contract of 5 req/s at PaySsam, configured and enforced by the sandbox; bm0001
  // (m-fast) none. No concurrency limit on either (as in the ceiling): what is measured is dispatch.
  const { file, merchants } = await writeMerchantsFile(2, undefined, {
    limitsOf: (i) => (i === 0 ? { maxConcurrent: null, maxPerSecond: limit } : { maxConcurrent: null }),
    mandatory: true,
  })
  const [slow, fast] = merchants as [MerchantConfig, MerchantConfig]
  const sandboxArgs = ['--rate-limit', `payssam@apikey${slow.id}=${limit}`]
  const common = { merchantsFile: file, sandboxArgs, workers: 1, concurrency: 16 }
  const alone = await dispatchRun(pgServer, redisUrl, {
    ...common,
    loads: [{ merchants: [fast], count: txFor(fastN), idPrefix: 'C', provider: 'payssam' }],
    during: async ({ db }) => {
      await untilMerchantDone(db, fast.id, 10 * 60_000)
      return { fast: await merchantFigures(db, fast.id) }
    },
  })
  log(`fairness: m-fast alone ${alone.fast.issued} receipts in ${alone.fast.seconds.toFixed(1)} s`)
  const fastBudgetMs = Math.max(60_000, alone.fast.seconds * 1000 * 20)
  const mixed = await dispatchRun(pgServer, redisUrl, {
    ...common,
    loads: [
      { merchants: [slow], count: txFor(slowN), idPrefix: 'A', provider: 'payssam' },
      { merchants: [fast], count: txFor(fastN), idPrefix: 'C', provider: 'payssam' },
    ],
    during: async ({ db }) => {
      const fastDone = await untilMerchantDone(db, fast.id, fastBudgetMs)
      const f = await merchantFigures(db, fast.id)
      const slowDone = await untilMerchantDone(db, slow.id, ((slowN / limit) * 2 + 60) * 1000)
      return { fastDone, fast: f, slowDone, slow: await merchantFigures(db, slow.id) }
    },
  })
  // Unfinished within its budget: at least the budget.
  const fastSeconds = mixed.fastDone ? mixed.fast.seconds : fastBudgetMs / 1000
  const factor = fastSeconds / alone.fast.seconds
  const share = mixed.slow.issueRate / limit
  return {
    scenario: 'fairness',
    figures: {
      slow_receipts: mixed.slow.receipts,
      slow_limit_req_per_s: limit,
      slow_issued: mixed.slow.issued,
      slow_req_per_s: round(mixed.slow.issueRate, 2),
      slow_share_of_limit: round(share, 3),
      fast_receipts: mixed.fast.receipts,
      fast_issued: mixed.fast.issued,
      fast_finished: String(mixed.fastDone),
      fast_seconds: round(fastSeconds),
      fast_alone_seconds: round(alone.fast.seconds),
      fast_factor_to_alone: round(factor, 2),
      rate_limited_429: mixed.rate_limited_429,
      worker_processes: 1,
      concurrency: 16,
    },
    target: 'm-fast ≤ 1.25× its time alone; m-slow ≥ 95% of its limit; zero 429',
    met: mixed.fastDone && factor <= 1.25 && mixed.slowDone && share >= 0.95 && mixed.rate_limited_429 === 0,
  }
}

/**
 * The failing merchant's receipts after an outage, in two groups. *Unknown outcome*: an issue request
 * went out and timed out, so NTS may still commit it; such a receipt may only be looked up and sent
 * again once NTS's commit window (NTS_COMMIT_WINDOW_MS) since that send has passed
 * (docs/exactly-once.md): its issue time is reported against the end of its window, which it must
 * never precede. *Held back*: never sent while the provider hung (deferred behind the in-flight cap
 * or the open circuit); these must issue promptly after the fault is lifted.
 */
async function outageGroups(c: pg.Client, merchantId: string, windowMs: number, liftedAt = 0) {
  const r = await c.query<{ unknown: boolean; state: string; issued_at: Date | null; window_end: Date | null }>(
    `SELECT u.last_unknown IS NOT NULL AS unknown, r.state, r.issued_at, u.last_unknown + make_interval(secs => $2::float8 / 1000) AS window_end
       FROM receipts r
       LEFT JOIN LATERAL (SELECT max(a.started_at) AS last_unknown FROM issuance_attempts a
                           WHERE a.receipt_id = r.id AND a.operation = 'issue' AND a.outcome IN ('unknown_outcome', 'sent')) u ON true
      WHERE r.kind = 'issue' AND r.merchant_id = $1 AND r.state <> 'skipped'`,
    [merchantId, windowMs],
  )
  const unknown = r.rows.filter((x) => x.unknown)
  const held = r.rows.filter((x) => !x.unknown)
  const t = (d: Date | null) => (d ? new Date(d).getTime() : NaN)
  const issuedUnknown = unknown.filter((x) => x.state === 'issued')
  const afterWindow = issuedUnknown.map((x) => (t(x.issued_at) - t(x.window_end)) / 1000)
  // From when it could first be issued: its window over and the provider answering again.
  const afterDue = issuedUnknown.map((x) => (t(x.issued_at) - Math.max(t(x.window_end), liftedAt)) / 1000)
  return {
    unknown: unknown.length,
    unknownIssued: unknown.filter((x) => x.state === 'issued').length,
    unknownWindowEnd: Math.max(0, ...unknown.map((x) => t(x.window_end))),
    /** Seconds from the end of its commit window to its issue, per issued unknown-outcome receipt. */
    afterWindowMin: afterWindow.length ? Math.min(...afterWindow) : NaN,
    afterWindowMax: afterWindow.length ? Math.max(...afterWindow) : NaN,
    /** Seconds from the later of its window's end and the lift to its issue, the slowest one. */
    afterDueMax: afterDue.length ? Math.max(...afterDue) : NaN,
    held: held.length,
    heldIssued: held.filter((x) => x.state === 'issued').length,
    heldFailed: held.filter((x) => x.state === 'failed').length,
    heldLastIssued: Math.max(0, ...held.filter((x) => x.state === 'issued').map((x) => t(x.issued_at))),
    failed: r.rows.filter((x) => x.state === 'failed').length,
    open: r.rows.filter((x) => x.state === 'pending' || x.state === 'issuing').length,
  }
}

/**
 * Outage (issue 19): every call to one provider runs into the read timeout (HTTP_READ_TIMEOUT_MS)
 * while a healthy merchant at another provider waits behind it; then the fault is lifted. Baseline:
 * the healthy merchant alone. NTS's commit window is shortened to OUTAGE_COMMIT_WINDOW_MS in this
 * scenario (production default 10 min) so that the run can wait for the unknown-outcome receipts
 * too and report when they issued against their window; the rule itself is unchanged.
 */
const OUTAGE_COMMIT_WINDOW_MS = 30_000
async function outage(pgServer: string, redisUrl: string): Promise<Result> {
  const downN = quick ? 100 : 200
  const okN = quick ? 1_500 : 3_000
  // bm0000 issues at the NTS-style API, which hangs every receipt call; bm0001 at PaySsam.
  const { file, merchants } = await writeMerchantsFile(2, { maxConcurrent: null }, { mandatory: true })
  const [down, ok] = merchants as [MerchantConfig, MerchantConfig]
  const sandboxArgs = ['--faults', 'nts:timeout_before_commit=1']
  const common = { merchantsFile: file, sandboxArgs, workers: 1, concurrency: 16, env: { NTS_COMMIT_WINDOW_MS: String(OUTAGE_COMMIT_WINDOW_MS) } }
  const alone = await dispatchRun(pgServer, redisUrl, {
    ...common,
    loads: [{ merchants: [ok], count: txFor(okN), idPrefix: 'C', provider: 'payssam' }],
    during: async ({ db }) => {
      await untilMerchantDone(db, ok.id, 10 * 60_000)
      return { ok: await merchantFigures(db, ok.id) }
    },
  })
  log(`outage: healthy merchant alone ${alone.ok.issued} receipts in ${alone.ok.seconds.toFixed(1)} s`)
  const okBudgetMs = quick ? 90_000 : 300_000
  const recoveryBudgetMs = quick ? 90_000 : 180_000
  const run = await dispatchRun(pgServer, redisUrl, {
    ...common,
    loads: [
      { merchants: [down], count: txFor(downN), idPrefix: 'A', provider: 'nts' },
      { merchants: [ok], count: txFor(okN), idPrefix: 'C', provider: 'payssam' },
    ],
    during: async ({ db, sandboxUrl }) => {
      const okDone = await untilMerchantDone(db, ok.id, okBudgetMs)
      const okFigures = await merchantFigures(db, ok.id)
      const atLift = await merchantFigures(db, down.id)
      // Worker-slot seconds the failing provider's calls took while the healthy merchant ran (a call
      // still open counts up to now): what the hanging calls cost the others, whatever the wall clock.
      const slots = await db.query<{ calls: number; slot_s: number }>(
        `SELECT count(*)::int AS calls, coalesce(sum(extract(epoch FROM least(coalesce(a.finished_at, now()), $2::timestamptz) - a.started_at)), 0)::float8 AS slot_s
           FROM issuance_attempts a JOIN receipts r ON r.id = a.receipt_id WHERE r.merchant_id = $1 AND a.started_at < $2::timestamptz`,
        [down.id, okFigures.last_issued],
      )
      await setSandboxFaults(sandboxUrl, 'none')
      const liftedAt = Date.now()
      // The held-back receipts first (the 60 s target), then the unknown-outcome ones, whose windows
      // may end later: waited for until 60 s after the last window ends.
      await waitFor(
        async () => {
          const g = await outageGroups(db, down.id, OUTAGE_COMMIT_WINDOW_MS)
          return g.heldIssued + g.heldFailed === g.held
        },
        recoveryBudgetMs,
        250,
      )
      const held = await outageGroups(db, down.id, OUTAGE_COMMIT_WINDOW_MS)
      const windowsEnd = Math.max(liftedAt, held.unknownWindowEnd)
      await untilMerchantDone(db, down.id, Math.max(0, windowsEnd - Date.now()) + 60_000)
      const after = await merchantFigures(db, down.id)
      const groups = await outageGroups(db, down.id, OUTAGE_COMMIT_WINDOW_MS, liftedAt)
      const recovery = held.heldIssued === held.held && held.held > 0 ? (held.heldLastIssued - liftedAt) / 1000 : recoveryBudgetMs / 1000
      return { okDone, ok: okFigures, atLift, after, groups, recovery, downCalls: slots.rows[0]!.calls, downSlotSeconds: slots.rows[0]!.slot_s }
    },
  })
  const okSeconds = run.okDone ? run.ok.seconds : okBudgetMs / 1000
  const factor = okSeconds / alone.ok.seconds
  const g = run.groups
  return {
    scenario: 'outage',
    figures: {
      down_receipts: run.after.receipts,
      down_failed_during_outage: run.atLift.failed,
      down_open_during_outage: run.atLift.open,
      down_issued: run.after.issued,
      down_failed: run.after.failed,
      held_back: g.held,
      held_issued: g.heldIssued,
      held_recovery_seconds: round(run.recovery),
      unknown_outcome: g.unknown,
      unknown_issued: g.unknownIssued,
      commit_window_ms: OUTAGE_COMMIT_WINDOW_MS,
      unknown_issued_after_window_min_s: round(g.afterWindowMin),
      unknown_issued_after_window_max_s: round(g.afterWindowMax),
      unknown_issued_after_due_max_s: round(g.afterDueMax),
      down_calls_during_healthy: run.downCalls,
      down_slot_seconds_during_healthy: round(run.downSlotSeconds),
      down_deferred: run.after.deferred,
      healthy_receipts: run.ok.receipts,
      healthy_finished: String(run.okDone),
      healthy_deferred: run.ok.deferred,
      healthy_alone_deferred: alone.ok.deferred,
      healthy_seconds: round(okSeconds),
      healthy_alone_seconds: round(alone.ok.seconds),
      healthy_factor_to_alone: round(factor, 2),
      rate_limited_429: run.rate_limited_429,
      read_timeout_ms: 15_000,
      worker_processes: 1,
      concurrency: 16,
    },
    target:
      "healthy ≤ 1.25× alone; none of the failing provider's receipts failed; the held-back ones issue within 60 s of the fault lifted; " +
      'each unknown-outcome one issues after its commit window (never before), within 60 s of the later of its end and the lift',
    met:
      run.okDone &&
      factor <= 1.25 &&
      run.atLift.failed === 0 &&
      run.after.failed === 0 &&
      g.heldIssued === g.held &&
      run.recovery <= 60 &&
      g.unknownIssued === g.unknown &&
      (g.unknown === 0 || (g.afterWindowMin >= 0 && g.afterDueMax <= 60)),
  }
}

/**
 * Many credentials (issue 19): many merchants each limited to 5 req/s at PaySsam, rows grouped by
 * merchant, 2 worker processes. Target: 90 % of min(Σ limits, the ceiling's rate in this run).
 *
 * The workers are the ceiling's fleet (2 × 64): the yardstick is the ceiling's rate with that fleet,
 * so the share measures what dispatch over 1,000 limited credentials costs against unlimited ones,
 * not what a quarter of the slots costs. A second run of the same day with 2 × 16 (the fleet the
 * scenario used before) is reported beside it as information (`fleet16_*`), not judged.
 */
async function manyCredentials(pgServer: string, redisUrl: string): Promise<Result> {
  const merchantsN = quick ? 200 : 1_000
  const perMerchant = quick ? 10 : 20
  const limit = 5
  const { file, merchants } = await writeMerchantsFile(merchantsN, { maxConcurrent: null, maxPerSecond: limit }, { mandatory: true })
  const perTx = txFor(perMerchant)
  const runWith = (concurrency: number) =>
    dispatchRun(pgServer, redisUrl, {
      merchantsFile: file,
      sandboxArgs: ['--rate-limit', `payssam=${limit}`],
      workers: 2,
      concurrency,
      loads: [{ merchants, count: perTx * merchantsN, idPrefix: 'G', provider: 'payssam', perMerchant: perTx }],
      cpuPerReceipt: true,
      during: async ({ db }) => {
        const done = await waitFor(
          async () => {
            const r = await db.query<{ open: boolean }>(`SELECT EXISTS (SELECT 1 FROM receipts WHERE kind = 'issue' AND state IN ('pending', 'issuing')) AS open`)
            return !r.rows[0]!.open
          },
          quick ? 300_000 : 900_000,
          500,
        )
        const w = (
          await db.query<{ receipts: number; issued: number; failed: number; seconds: number }>(
            `SELECT count(*)::int AS receipts, count(*) FILTER (WHERE state = 'issued')::int AS issued, count(*) FILTER (WHERE state = 'failed')::int AS failed,
                    extract(epoch FROM max(issued_at) - min(created_at))::float8 AS seconds FROM receipts WHERE kind = 'issue' AND state <> 'skipped'`,
          )
        ).rows[0]!
        return { done, ...w }
      },
    })
  const sumLimits = merchantsN * limit
  const yardstick = Math.min(sumLimits, ceilingRate ?? sumLimits)
  const run = await runWith(64)
  const rate = run.issued / run.seconds
  const share = rate / yardstick
  log(`many-credentials: 2 × 64 ${round(rate)} receipts/s (${round(share, 3)}); now 2 × 16 for information…`)
  const small = await runWith(16)
  const smallRate = small.issued / small.seconds
  const prefixed = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [`fleet16_${k}`, v]))
  return {
    scenario: 'many-credentials',
    figures: {
      merchants: merchantsN,
      limit_req_per_s_each: limit,
      receipts: run.receipts,
      issued: run.issued,
      failed: run.failed,
      finished: String(run.done),
      seconds: round(run.seconds),
      receipts_per_s: round(rate),
      sum_of_limits: sumLimits,
      ceiling_receipts_per_s: ceilingRate === null ? 'not measured' : round(ceilingRate),
      share_of_yardstick: round(share, 3),
      rate_limited_429: run.rate_limited_429,
      worker_processes: 2,
      concurrency: 64,
      ...run.deferred,
      ...run.cpu,
      fleet16_concurrency: 16,
      fleet16_issued: small.issued,
      fleet16_failed: small.failed,
      fleet16_finished: String(small.done),
      fleet16_seconds: round(small.seconds),
      fleet16_receipts_per_s: round(smallRate),
      fleet16_share_of_yardstick: round(smallRate / yardstick, 3),
      fleet16_rate_limited_429: small.rate_limited_429,
      ...prefixed(small.deferred),
      ...prefixed(small.cpu),
    },
    target: "aggregate ≥ 90% of min(Σ limits, the ceiling scenario's rate in this run), with the ceiling's fleet (2 workers × 64); 2 × 16 reported as information",
    met: run.done && ceilingRate !== null && share >= 0.9,
  }
}

async function fidelity(pgServer: string, redisUrl: string): Promise<Result> {
  const total = quick ? 1_500 : 20_000
  const limit = 100
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const db = await recreateDatabase(pgServer, benchDatabaseName())
  // The operator configures the provider's documented limit; the throttle's rate window keeps it.
  const { file, merchants } = await writeMerchantsFile(1, { maxConcurrent: null, maxPerSecond: limit })
  const prefix = scenarioPrefix()
  // The sandbox counts arrivals: it runs ahead of the workers, as a remote provider's gateway would (lib.ts).
  const sandbox = await startSandboxProcess(scenarioEnv(db, redisUrl, prefix), ['--rate-limit', `payssam=${limit}`], { priority: -10 })
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SANDBOX_URL: sandbox.url, WORKER_CONCURRENCY: '16' })
  try {
    await runCli(['migrate'], env)
    await copyTransactions(db, { businessDate: '2026-11-21', count: total, merchants, providers: ['payssam'] })
    await runCli(['settle', '--date', '2026-11-21'], env)
    const before = (await sandboxStats(sandbox.url)).providers.payssam!.requests
    const t0 = Date.now()
    const workers = Array.from({ length: 4 }, () => spawnCli(['worker'], env))
    const redis = new Redis(redisUrl)
    const meter = cpuMeter(redis, () => workers.map((w) => w.pid!), sandbox.child.pid, db)
    await meter.start()
    // The rate is measured at the sandbox while requests flow (first to last request it saw), so the
    // workers' start-up is not counted as unused capacity.
    let seen = before
    let firstAt = 0
    let lastAt = 0
    const sampler = setInterval(() => {
      void sandboxStats(sandbox.url).then(
        (st) => {
          const n = st.providers.payssam!.requests
          if (n > seen) {
            const now = Date.now()
            if (!firstAt) firstAt = now
            lastAt = now
            seen = n
          }
        },
        () => {},
      ) // a missed sample (the sandbox busy past fetch's patience) is only a gap in sampling
    }, 50)
    await untilIssued(db, 15 * 60_000)
    clearInterval(sampler)
    const seconds = (Date.now() - t0) / 1000
    const cpu = await meter.stop(total, 'request')
    redis.disconnect()
    await Promise.all(workers.map((w) => stop(w)))
    const s = (await sandboxStats(sandbox.url)).providers.payssam!
    // The first sample after the first request undercounts by ≤ 50 ms; requests seen from then on.
    const activeSeconds = Math.max(0.001, (lastAt - firstAt) / 1000)
    const achieved = (seen - before) / activeSeconds
    const share = achieved / limit
    return {
      scenario: 'fidelity',
      figures: {
        receipts: total,
        limit_req_per_s: limit,
        achieved_req_per_s: round(achieved),
        share_of_limit: round(share, 3),
        rate_limited_429: s.rate_limited,
        worker_processes: 4,
        requests: s.requests - before,
        sandbox_nice: sandbox.priority,
        active_seconds: round(activeSeconds),
        seconds: round(seconds),
        ...cpu,
        noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec),
        addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
      },
      target: '≥ 97% of the limit, zero 429s',
      met: share >= 0.97 && s.rate_limited === 0,
    }
  } finally {
    await stop(sandbox.child)
  }
}

async function settlement(pgServer: string, redisUrl: string): Promise<Result> {
  const total = quick ? 50_000 : 1_000_000
  const maxWaiting = quick ? 10_000 : 50_000
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const chunkSize = 2_000
  // Information beside the issue's baseline: addBulk of the jobs settle itself adds.
  const sameJobs = await measureSettleShapedAddBulk(redisUrl, quick ? 5_000 : 20_000, chunkSize)
  const db = await recreateDatabase(pgServer, benchDatabaseName())
  const { file, merchants } = await writeMerchantsFile(50)
  const prefix = scenarioPrefix()
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SETTLE_MAX_WAITING: String(maxWaiting), SETTLE_CHUNK_SIZE: String(chunkSize) })
  const redis = new Redis(redisUrl)
  try {
    await runCli(['migrate'], env)
    const loaded = await copyTransactions(db, { businessDate: '2026-11-21', count: total, merchants, noPortonePayments: true })
    log(`settlement: COPY ${total} rows at ${round(total / loaded.seconds)} rows/s`)
    const memBase = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
    let peakRedis = 0
    const sampler = setInterval(() => {
      void redis.info('memory').then(
        (m) => (peakRedis = Math.max(peakRedis, Number(/used_memory:(\d+)/.exec(m)![1]) - memBase)),
        () => {},
      )
    }, 200)
    // Workers off. The queue is drained (its waiting jobs removed in bulk, one script) each time it
    // is full, i.e. when settle's backpressure has stopped it: Redis stays bounded by the limit, and
    // the figure is settle's own enqueue rate, not a consumer's (a BullMQ worker draining 1,000,000
    // jobs would share Redis and the two cores with settle, and measure itself).
    const { Queue } = await import('bullmq')
    const drainConn = new Redis(redisUrl, { maxRetriesPerRequest: null })
    const queue = new Queue('receipts', { connection: drainConn as never, prefix })
    let drains = 0
    let busy = false
    const drainer = setInterval(() => {
      if (busy) return
      busy = true
      // Settled jobs carry a priority: they wait in the prioritized set, not the wait list (a count
      // of the wait list alone never sees the queue full, and settle waits for room forever).
      void queue
        .getJobCountByTypes('waiting', 'prioritized')
        .then(async (waiting) => {
          if (waiting + chunkSize <= maxWaiting) return
          await queue.drain()
          drains++
        })
        .catch(() => {})
        .finally(() => (busy = false))
    }, 25)
    const pgMeter = databaseCpuMeter(db)
    await pgMeter.start()
    const cpuBefore = { redis: await redisCpuSeconds(redis) }
    const t0 = performance.now()
    const settled = await runCli(['settle', '--date', '2026-11-21', '--json'], env)
    const seconds = (performance.now() - t0) / 1000
    const cpuUs = (s: number) => round((s * 1e6) / total, 1)
    const cpu = {
      settle_cpu_us_per_row: cpuUs(settled.cpuSeconds),
      postgres_cpu_us_per_row: cpuUs(await pgMeter.stop()),
      redis_cpu_us_per_row: cpuUs((await redisCpuSeconds(redis)) - cpuBefore.redis),
    }
    clearInterval(sampler)
    clearInterval(drainer)
    await queue.drain().catch(() => {})
    await queue.close()
    drainConn.disconnect()
    const summary = JSON.parse(settled.stdout)
    const rate = summary.enqueued / seconds
    const ratio = rate / base.addBulkJobsPerSec
    const bound = maxWaiting * 1_500 // bytes: ~734 B per waiting job (docs/performance.md), ×2 headroom
    return {
      scenario: 'settlement',
      figures: {
        transactions: total,
        enqueued: summary.enqueued,
        skipped: summary.skipped,
        seconds: round(seconds),
        enqueue_per_s: round(rate),
        addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
        noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec),
        ratio_to_addbulk: round(ratio, 3),
        addbulk_settle_shaped_jobs_per_s: round(sameJobs),
        ratio_to_settle_shaped_addbulk: round(rate / sameJobs, 3),
        settle_peak_rss_mb: round(settled.peakRssMb),
        redis_peak_used_mb: round(peakRedis / 1e6),
        max_waiting: maxWaiting,
        queue_full_drains: drains,
        ...cpu,
      },
      target: 'ratio ≥ 0.5, RSS ≤ 300 MB, Redis bounded by the backpressure limit (which engaged)',
      // Backpressure must have engaged (the queue was full at least once) for the Redis bound to mean anything.
      met: ratio >= 0.5 && settled.peakRssMb <= 300 && peakRedis <= bound && drains > 0,
    }
  } finally {
    redis.disconnect()
  }
}

async function soak(pgServer: string, redisUrl: string): Promise<Result> {
  // The issue asks for 200,000 receipts. About 14 % of a generated day gets none (no buyer identifier
  // at a merchant that is not a mandatory issuer): 200,000 transactions made 171,869 receipts, so the
  // full soak loads 235,000 (~202,000 receipts; the figure reports the exact count).
  const total = quick ? 20_000 : 235_000
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const db = await recreateDatabase(pgServer, benchDatabaseName())
  const { file, merchants } = await writeMerchantsFile(100, { maxConcurrent: 50, minTimeMs: 0 })
  const prefix = scenarioPrefix()
  const sandbox = await startSandboxProcess(scenarioEnv(db, redisUrl, prefix))
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SANDBOX_URL: sandbox.url, WORKER_CONCURRENCY: '64' })
  try {
    await runCli(['migrate'], env)
    await copyTransactions(db, { businessDate: '2026-11-21', count: total, merchants, providers: ['payssam', 'nts', 'portone-v2'] })
    // The worker runs while settle enqueues: ~200,000 receipts are more than the backpressure limit
    // lets wait in Redis, so settle only finishes because the worker drains the queue.
    const worker = spawnCli(['worker'], env)
    const t0 = Date.now()
    const settled = JSON.parse((await runCli(['settle', '--date', '2026-11-21', '--json'], env)).stdout)
    let rss10 = 0
    let rss50 = 0
    // settle has returned: every receipt it created is either done or still unfinished.
    const probe = await unfinishedProbe(db)
    try {
      await waitFor(
        async () => {
          const left = await probe.count()
          const done = settled.created - left
          if (!rss10 && done >= settled.created * 0.1) rss10 = rssMb(worker.pid!)
          if (!rss50 && done >= settled.created * 0.5) rss50 = rssMb(worker.pid!)
          return left === 0
        },
        30 * 60_000,
        500,
      )
    } finally {
      await probe.end()
    }
    const rss100 = rssMb(worker.pid!)
    const seconds = (Date.now() - t0) / 1000
    await stop(worker)
    const growth = rss10 ? (rss100 - rss10) / rss10 : 0
    return {
      scenario: 'soak',
      figures: {
        receipts: settled.created,
        seconds: round(seconds),
        receipts_per_s: round(settled.created / seconds),
        rss_at_10pct_mb: round(rss10),
        rss_at_50pct_mb: round(rss50),
        rss_at_100pct_mb: round(rss100),
        growth_pct: round(growth * 100, 1),
        noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec),
        addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
      },
      target: 'RSS growth ≤ 10% from 10% to 100%',
      met: growth <= 0.1,
    }
  } finally {
    await stop(sandbox.child)
  }
}

const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d

async function main() {
  const config = loadDemoConfig()
  // BENCH_NO_BUILD=1: use the dist/ a run started moments ago built (two runs side by side would
  // otherwise rewrite it under each other's starting processes).
  if (process.env.BENCH_NO_BUILD === '1') log('using the CLI already built (BENCH_NO_BUILD=1)')
  else {
    log('building the CLI (npm run build)…')
    buildCli()
  }
  const postgres = await ensurePostgres(config.databaseUrl, log)
  const redis = await ensureRedis(config.redisUrl, log)
  const pgServer = postgres.url.replace(/\/[^/]*$/, '')
  const scenarios = { ceiling, 'popbill-bulk': popbillBulk, fidelity, settlement, soak, fairness, outage, 'many-credentials': manyCredentials }
  // many-credentials is judged against the ceiling's rate in the same run.
  if (only?.has('many-credentials')) only.add('ceiling')
  const results: Result[] = []
  const t0 = Date.now()
  try {
    for (const [name, fn] of Object.entries(scenarios)) {
      if (only && !only.has(name)) continue
      log(`${name}${quick ? ' (quick)' : ''}…`)
      const started = Date.now()
      const r = await fn(pgServer, redis.url)
      r.figures.scenario_seconds = round((Date.now() - started) / 1000)
      results.push(r)
      if (json) process.stdout.write(`${JSON.stringify(r)}\n`)
      else log(`${name}: ${r.met ? 'target met' : 'TARGET MISSED'} ${JSON.stringify(r.figures)}`)
    }
  } finally {
    // Queues keep their last completed jobs, the throttle its limiter and pacer keys: about 10,000
    // keys a scenario, which earlier runs left behind in a shared Redis.
    let removed = 0
    for (const prefix of prefixes) removed += await deleteKeys(prefix, redis.url).catch((err: unknown) => (log(`could not remove the Redis keys of ${prefix}: ${String(err)}`), 0))
    log(`removed ${removed} Redis keys of this run`)
    await redis.stop()
    await postgres.stop()
  }
  if (!json) {
    process.stdout.write(`\nmachine: ${(await import('node:os')).cpus().length} cores, node ${process.version}; total ${round((Date.now() - t0) / 1000)} s\n`)
    for (const r of results) {
      process.stdout.write(`\n${r.scenario} — target: ${r.target} — ${r.met ? 'MET' : 'MISSED'}\n`)
      for (const [k, v] of Object.entries(r.figures)) process.stdout.write(`  ${k.padEnd(30)} ${v}\n`)
    }
  }
}

await main()
// Pools and Redis clients of the scenarios may keep the event loop alive; the report is written.
process.exit(0)
