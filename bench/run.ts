/**
 * `npm run bench [-- --quick] [-- --json] [-- --only ceiling,fidelity,settlement,soak]`
 *
 * Real Postgres and Redis on localhost (DATABASE_URL's server / REDIS_URL, or what `demo` would
 * start), the sandbox and workers as separate processes. Every scenario measures its baselines in
 * the same run: a no-op BullMQ worker on the same Redis and BullMQ addBulk (jobs/s).
 */
import pg from 'pg'
import { Redis } from 'ioredis'
import { loadDemoConfig } from '../src/demo/defaults.ts'
import { ensurePostgres, ensureRedis } from '../src/demo/infra.ts'
import {
  buildCli, copyTransactions, cpuMeter, measureBaselines, percentile, recreateDatabase, rssMb, runCli, sandboxStats, scenarioEnv, spawnCli,
  startSandboxProcess, stop, waitFor, writeMerchantsFile,
} from './lib.ts'
import { deleteKeys } from '../test/helpers/redis-keys.ts'

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
  const c = new pg.Client({ connectionString: databaseUrl })
  await c.connect()
  return {
    async count(upTo = 1_000_000_000): Promise<number> {
      const r = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (SELECT 1 FROM receipts WHERE state IN ('pending', 'issuing') AND kind = 'issue' LIMIT $1) x`,
        [upTo],
      )
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
  const c = new pg.Client({ connectionString: databaseUrl })
  await c.connect()
  try {
    const r = await c.query<{ ms: number; first: Date; last: Date }>(
      `SELECT extract(epoch FROM issued_at - created_at) * 1000 AS ms FROM receipts WHERE state = 'issued' ORDER BY 1`,
    )
    const w = await c.query<{ first: Date; last: Date; n: number }>(`SELECT min(created_at) AS first, max(issued_at) AS last, count(*)::int AS n FROM receipts WHERE state = 'issued'`)
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
  const db = await recreateDatabase(pgServer, 'cash_receipts_bench')
  // No provider limit (the ceiling): credentials without limits, so the throttle adds no Redis round trips.
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
    const meter = cpuMeter(redis, () => workers.map((w) => w.pid!), sandbox.child.pid)
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
    return {
      scenario: 'ceiling',
      figures: {
        merchants: merchantsN, receipts: created, issued: window.n, receipts_per_s: round(rate), p50_ms: round(percentile(sorted, 50)), p99_ms: round(percentile(sorted, 99)),
        wall_s: round(wall), noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec), addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
        ratio_to_noop: round(ratio, 3), max_live_receipts_per_key: stats.max_live_receipts_per_key, max_receipts_per_key: stats.max_receipts_per_key, ...cpu,
      },
      target: 'ratio ≥ 0.15 (goal 0.25)',
      met: ratio >= 0.15 && stats.max_live_receipts_per_key <= 1,
    }
  } finally {
    await stop(sandbox.child)
  }
}

async function fidelity(pgServer: string, redisUrl: string): Promise<Result> {
  const total = quick ? 1_500 : 20_000
  const limit = 100
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const db = await recreateDatabase(pgServer, 'cash_receipts_bench')
  // The operator configures the provider's documented limit; the throttle paces just under it.
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
    const meter = cpuMeter(redis, () => workers.map((w) => w.pid!), sandbox.child.pid)
    await meter.start()
    // The rate is measured at the sandbox while requests flow (first to last request it saw), so the
    // workers' start-up is not counted as unused capacity.
    let seen = before
    let firstAt = 0
    let lastAt = 0
    const sampler = setInterval(() => {
      void sandboxStats(sandbox.url).then((st) => {
        const n = st.providers.payssam!.requests
        if (n > seen) {
          const now = Date.now()
          if (!firstAt) firstAt = now
          lastAt = now
          seen = n
        }
      }, () => {}) // a missed sample (the sandbox busy past fetch's patience) is only a gap in sampling
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
        receipts: total, limit_req_per_s: limit, achieved_req_per_s: round(achieved), share_of_limit: round(share, 3), rate_limited_429: s.rate_limited, worker_processes: 4,
        requests: s.requests - before, sandbox_nice: sandbox.priority, active_seconds: round(activeSeconds), seconds: round(seconds), ...cpu, noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec), addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
      },
      target: '≥ 95% of the limit, zero 429s',
      met: share >= 0.95 && s.rate_limited === 0,
    }
  } finally {
    await stop(sandbox.child)
  }
}

async function settlement(pgServer: string, redisUrl: string): Promise<Result> {
  const total = quick ? 50_000 : 1_000_000
  const maxWaiting = quick ? 10_000 : 50_000
  const base = await measureBaselines(redisUrl, quick ? 5_000 : 20_000)
  const db = await recreateDatabase(pgServer, 'cash_receipts_bench')
  const { file, merchants } = await writeMerchantsFile(50)
  const prefix = scenarioPrefix()
  const chunkSize = 2_000
  const env = scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SETTLE_MAX_WAITING: String(maxWaiting), SETTLE_CHUNK_SIZE: String(chunkSize) })
  const redis = new Redis(redisUrl)
  try {
    await runCli(['migrate'], env)
    const loaded = await copyTransactions(db, { businessDate: '2026-11-21', count: total, merchants, noPortonePayments: true })
    log(`settlement: COPY ${total} rows at ${round(total / loaded.seconds)} rows/s`)
    const memBase = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
    let peakRedis = 0
    const sampler = setInterval(() => {
      void redis.info('memory').then((m) => (peakRedis = Math.max(peakRedis, Number(/used_memory:(\d+)/.exec(m)![1]) - memBase)), () => {})
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
      void queue
        .getWaitingCount()
        .then(async (waiting) => {
          if (waiting + chunkSize <= maxWaiting) return
          await queue.drain()
          drains++
        })
        .catch(() => {})
        .finally(() => (busy = false))
    }, 25)
    const t0 = performance.now()
    const settled = await runCli(['settle', '--date', '2026-11-21', '--json'], env)
    const seconds = (performance.now() - t0) / 1000
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
        transactions: total, enqueued: summary.enqueued, skipped: summary.skipped, seconds: round(seconds), enqueue_per_s: round(rate),
        addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec), noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec), ratio_to_addbulk: round(ratio, 3),
        settle_peak_rss_mb: round(settled.peakRssMb), redis_peak_used_mb: round(peakRedis / 1e6), max_waiting: maxWaiting, queue_full_drains: drains,
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
  const db = await recreateDatabase(pgServer, 'cash_receipts_bench')
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
      await waitFor(async () => {
        const left = await probe.count()
        const done = settled.created - left
        if (!rss10 && done >= settled.created * 0.1) rss10 = rssMb(worker.pid!)
        if (!rss50 && done >= settled.created * 0.5) rss50 = rssMb(worker.pid!)
        return left === 0
      }, 30 * 60_000, 500)
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
        receipts: settled.created, seconds: round(seconds), receipts_per_s: round(settled.created / seconds), rss_at_10pct_mb: round(rss10), rss_at_50pct_mb: round(rss50), rss_at_100pct_mb: round(rss100),
        growth_pct: round(growth * 100, 1), noop_baseline_jobs_per_s: round(base.noopWorkerJobsPerSec), addbulk_baseline_jobs_per_s: round(base.addBulkJobsPerSec),
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
  log('building the CLI (npm run build)…')
  buildCli()
  const postgres = await ensurePostgres(config.databaseUrl, log)
  const redis = await ensureRedis(config.redisUrl, log)
  const pgServer = postgres.url.replace(/\/[^/]*$/, '')
  const scenarios = { ceiling, fidelity, settlement, soak }
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
