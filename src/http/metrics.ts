/**
 * /metrics in the Prometheus text format (prom-client). Receipt figures come from the Postgres
 * ledger at scrape time — the ledger is the truth, and it is the same whatever number of worker
 * processes run — queue depth from BullMQ, limiter state from bottleneck's keys in Redis.
 *
 * One scrape reads everything once (cached for `cacheMs`, so concurrent scrapers share it); a source
 * that does not answer leaves its series out and sets cash_receipts_metrics_source_up{source} to 0
 * instead of failing the whole scrape.
 *
 * | metric | type | labels | from |
 * |---|---|---|---|
 * | cash_receipts_receipts | gauge | kind, provider, state | receipts, GROUP BY |
 * | cash_receipts_overdue_receipts | gauge | provider | open issue receipts past business date + 4 days |
 * | cash_receipts_provisional_receipts | gauge | provider | issued receipts whose tax-authority result is still due (Toss IN_PROGRESS) |
 * | cash_receipts_tax_authority_refusals | gauge | provider, code | failed receipts the tax authority refused after the provider accepted them (class tax_authority, by TSx code) |
 * | cash_receipts_notifications | gauge | channel, state | buyer notification outbox rows, GROUP BY (docs/notifications.md) |
 * | cash_receipts_attempts_total | counter | operation, outcome | issuance_attempts, GROUP BY (rows are never deleted) |
 * | cash_receipts_provider_latency_seconds | histogram | provider, operation | issuance_attempts of the last 24 h |
 * | cash_receipts_queue_jobs | gauge | queue, state | BullMQ getJobCounts |
 * | cash_receipts_limiter_running / _queued | gauge | limiter, provider | bottleneck's Redis keys |
 * | cash_receipts_limiter_quota_used | gauge | limiter, provider | today's (KST) daily-quota counter |
 * | cash_receipts_last_run_timestamp_seconds | gauge | trigger | settlement_runs.started_at |
 * | cash_receipts_metrics_source_up | gauge | source | 1 when Postgres / Redis answered this scrape |
 * | cash_receipts_duplicates_total | counter | provider | provider_duplicates rows (further receipts reconcile found; never deleted) |
 * | cash_receipts_duplicates_unrepaired | gauge | provider | provider_duplicates not yet cancelled at the provider |
 * | cash_receipts_settle_rejections_total | counter | code | settle_rejections rows (transactions settle refused; never deleted) |
 * | cash_receipts_settle_rejections_open | gauge | code | those whose transaction still has no issue receipt |
 */
import type { JobType } from 'bullmq'
import type { Redis } from 'ioredis'
import { sql } from 'kysely'
import type { Logger } from 'pino'
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client'
import type { Db } from '../db/database.ts'
import { kstToday } from '../domain/index.ts'
import { readLimiterStats, type LimiterStats } from '../throttle/limiter-stats.ts'
import { readDispatchStats, type DispatchReading } from '../throttle/dispatch-stats.ts'

/** Upper bounds (seconds) of the provider latency histogram. */
export const LATENCY_BUCKETS_S = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const
/** The latency histogram covers calls started within this window (a sliding 24 h histogram). */
export const LATENCY_WINDOW_HOURS = 24

/** A source slower than this counts as down for the scrape (Prometheus' default scrape timeout is 10 s). */
const SOURCE_TIMEOUT_MS = 5_000

const JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'failed', 'completed'] as const

export interface MetricsDeps {
  readonly db: Db
  readonly redis: Redis
  /** The queues whose depth is exported (only their name and job counts are read). */
  readonly queues: readonly {
    readonly name: string
    getJobCounts(...types: JobType[]): Promise<Record<string, number>>
  }[]
  readonly prefix: string
  readonly logger: Logger
  /** Reuse one reading for this long (0: read on every scrape). */
  readonly cacheMs: number
  readonly now?: () => number
}

interface LedgerReading {
  readonly receipts: { kind: string; provider: string; state: string; n: number }[]
  readonly overdue: { provider: string; n: number }[]
  readonly attempts: { operation: string; outcome: string; n: number }[]
  readonly latency: (Record<string, number> & {
    provider: string
    operation: string
    n: number
    sum_ms: number
  })[]
  readonly lastRuns: { trigger: string; t: number }[]
  readonly duplicates: { provider: string; n: number; open: number }[]
  readonly settleRejections: { code: string; n: number; open: number }[]
  readonly provisional: { provider: string; n: number }[]
  readonly refusals: { provider: string; code: string; n: number }[]
  readonly notifications: { channel: string; state: string; n: number }[]
}

interface RedisReading {
  readonly queues: { queue: string; counts: Record<string, number> }[]
  readonly limiters: LimiterStats[]
  readonly dispatch: DispatchReading
}

interface Reading {
  readonly ledger: LedgerReading | null
  readonly redis: RedisReading | null
}

export interface Metrics {
  readonly registry: Registry
  readonly contentType: string
  /** The exposition text of one scrape. */
  render(): Promise<string>
}

export function createMetrics(deps: MetricsDeps): Metrics {
  const now = deps.now ?? Date.now
  const registry = new Registry()
  // prom-client's process and runtime metrics. The event-loop lag gauges read NaN until the first
  // event-loop sample (prom-client prints it "Nan"). That stays exposed: NaN is a valid sample value
  // in the text format (Prometheus parses it case-insensitively), it says "no observation yet"
  // rather than a made-up zero, and it lasts only until the first sample.
  collectDefaultMetrics({ register: registry })
  let cached: { at: number; reading: Promise<Reading> } | undefined

  const read = (): Promise<Reading> => {
    const t = now()
    if (cached && t - cached.at < deps.cacheMs) return cached.reading
    const reading = Promise.all([
      withTimeout(readLedger(deps.db, kstToday(t)), SOURCE_TIMEOUT_MS).catch((err: unknown) => {
        deps.logger.warn({ err: (err as Error).message }, 'metrics: Postgres did not answer')
        return null
      }),
      withTimeout(readRedis(deps, t), SOURCE_TIMEOUT_MS).catch((err: unknown) => {
        deps.logger.warn({ err: (err as Error).message }, 'metrics: Redis did not answer')
        return null
      }),
    ]).then(([ledger, redis]) => ({ ledger, redis }))
    cached = { at: t, reading }
    return reading
  }

  new Gauge({
    name: 'cash_receipts_metrics_source_up',
    help: 'Whether the source answered for this scrape (1) or not (0); its series are missing while 0.',
    labelNames: ['source'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.set({ source: 'postgres' }, r.ledger ? 1 : 0)
      this.set({ source: 'redis' }, r.redis ? 1 : 0)
    },
  })

  new Gauge({
    name: 'cash_receipts_receipts',
    help: 'Receipts in the ledger by kind (issue|cancel), provider and state.',
    labelNames: ['kind', 'provider', 'state'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.receipts ?? []) {
        this.set({ kind: row.kind, provider: row.provider, state: row.state }, row.n)
      }
    },
  })

  new Gauge({
    name: 'cash_receipts_overdue_receipts',
    help: 'Issue receipts not issued (pending, issuing or failed) past their legal deadline (business date + 4 days, KST).',
    labelNames: ['provider'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.overdue ?? []) this.set({ provider: row.provider }, row.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_provisional_receipts',
    help: 'Issued receipts whose tax-authority result is still due (Toss IN_PROGRESS); reconcile finalises them.',
    labelNames: ['provider'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.provisional ?? []) this.set({ provider: row.provider }, row.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_tax_authority_refusals',
    help: 'Failed receipts the tax authority refused after the provider had accepted them (error class tax_authority), by NTS result code.',
    labelNames: ['provider', 'code'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.refusals ?? []) this.set({ provider: row.provider, code: row.code }, row.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_notifications',
    help: 'Buyer notifications (outbox rows) by channel (email|sms|kakao) and state (pending|sending|sent|failed|skipped); failed ones wait for `notify redrive`.',
    labelNames: ['channel', 'state'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.notifications ?? []) this.set({ channel: row.channel, state: row.state }, row.n)
    },
  })

  new Counter({
    name: 'cash_receipts_attempts_total',
    help: 'Provider calls recorded in issuance_attempts, by operation and outcome.',
    labelNames: ['operation', 'outcome'],
    registers: [registry],
    async collect() {
      const r = await read()
      // The ledger holds the running total; the counter is re-read, never accumulated here.
      this.reset()
      for (const row of r.ledger?.attempts ?? []) {
        this.inc({ operation: row.operation, outcome: row.outcome }, row.n)
      }
    },
  })

  registry.registerMetric(windowHistogram(read) as unknown as Metric)

  new Gauge({
    name: 'cash_receipts_queue_jobs',
    help: 'BullMQ jobs by queue and state.',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const q of r.redis?.queues ?? []) {
        for (const [state, n] of Object.entries(q.counts)) this.set({ queue: q.queue, state }, n)
      }
    },
  })

  const limiterGauge = (name: string, help: string, pick: (l: LimiterStats) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['limiter', 'provider'],
      registers: [registry],
      async collect() {
        const r = await read()
        this.reset()
        for (const l of r.redis?.limiters ?? []) {
          const v = pick(l)
          if (v !== null) this.set({ limiter: l.limiter, provider: l.provider }, v)
        }
      },
    })
  limiterGauge('cash_receipts_limiter_running', 'Provider calls in flight through a shared limiter, across all worker processes.', (l) => l.running)
  limiterGauge(
    'cash_receipts_limiter_queued',
    'Provider calls waiting in a shared limiter (throttled), across the worker processes alive; sustained > 0 means the limit, not the workers, sets the pace.',
    (l) => l.queued,
  )
  limiterGauge('cash_receipts_limiter_quota_used', "Issue calls counted today (KST) against the credential's daily quota.", (l) => l.quotaUsed)

  new Counter({
    name: 'cash_receipts_dispatch_deferred_total',
    help: 'Provider calls put off before anything was sent (job delayed, no attempt used), by provider and reason (rate, concurrency, hold, circuit, provider_cap, quota, queue_full, timeout), across all worker processes.',
    labelNames: ['provider', 'reason'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const d of r.redis?.dispatch.deferred ?? []) this.inc({ provider: d.provider, reason: d.reason }, d.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_circuit_state',
    help: 'Circuit breaker state (0 closed, 1 half-open, 2 open) of a provider (scope provider) or credential (scope credential), as last changed by any worker process.',
    labelNames: ['scope', 'provider', 'circuit'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const c of r.redis?.dispatch.circuits ?? []) {
        this.set({ scope: c.scope, provider: c.provider, circuit: c.name }, c.state === 'open' ? 2 : c.state === 'half_open' ? 1 : 0)
      }
    },
  })

  new Gauge({
    name: 'cash_receipts_last_run_timestamp_seconds',
    help: 'Start time (Unix seconds) of the latest settlement run, by trigger (schedule|manual|redrive).',
    labelNames: ['trigger'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.lastRuns ?? []) this.set({ trigger: row.trigger }, row.t)
    },
  })

  new Counter({
    name: 'cash_receipts_duplicates_total',
    help: 'Further receipts a provider held for one of our receipts, found by reconcile (provider_duplicates), repaired or not.',
    labelNames: ['provider'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.duplicates ?? []) this.inc({ provider: row.provider }, row.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_duplicates_unrepaired',
    help: 'Duplicate receipts still live at the provider (found by reconcile, not cancelled yet).',
    labelNames: ['provider'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.duplicates ?? []) this.set({ provider: row.provider }, row.open)
    },
  })

  new Counter({
    name: 'cash_receipts_settle_rejections_total',
    help: 'Transactions settlement could not turn into a receipt (settle_rejections), by code (KEY_CONFLICT, KEY_INVALID, ROW_INVALID).',
    labelNames: ['code'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.settleRejections ?? []) this.inc({ code: row.code }, row.n)
    },
  })

  new Gauge({
    name: 'cash_receipts_settle_rejections_open',
    help: 'Refused transactions that still have no issue receipt (not corrected and settled again yet), by code.',
    labelNames: ['code'],
    registers: [registry],
    async collect() {
      const r = await read()
      this.reset()
      for (const row of r.ledger?.settleRejections ?? []) this.set({ code: row.code }, row.open)
    },
  })

  return { registry, contentType: registry.contentType, render: () => registry.metrics() }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function readLedger(db: Db, todayKst: string): Promise<LedgerReading> {
  const bounds = LATENCY_BUCKETS_S.map((s) => Math.round(s * 1000))
  const [receipts, overdue, attempts, latency, lastRuns, duplicates, settleRejections, provisional, refusals, notifications] = await Promise.all([
    sql<LedgerReading['receipts'][number]>`SELECT kind, provider, state, count(*)::int AS n FROM receipts GROUP BY 1, 2, 3`.execute(db),
    sql<LedgerReading['overdue'][number]>`
      SELECT provider, count(*)::int AS n FROM receipts
      WHERE state IN ('pending', 'issuing', 'failed') AND kind = 'issue' AND deadline < ${todayKst} GROUP BY 1`.execute(db),
    sql<LedgerReading['attempts'][number]>`SELECT operation, outcome, count(*)::int AS n FROM issuance_attempts GROUP BY 1, 2`.execute(db),
    sql<LedgerReading['latency'][number]>`
      SELECT r.provider, a.operation, count(*)::int AS n, coalesce(sum(a.latency_ms), 0)::float8 AS sum_ms,
        ${sql.join(bounds.map((b, i) => sql`count(*) FILTER (WHERE a.latency_ms <= ${b})::int AS ${sql.ref(`le${i}`)}`))}
      FROM issuance_attempts a JOIN receipts r ON r.id = a.receipt_id
      WHERE a.started_at > now() - make_interval(hours => ${LATENCY_WINDOW_HOURS})
      GROUP BY 1, 2`.execute(db),
    sql<LedgerReading['lastRuns'][number]>`SELECT trigger, extract(epoch FROM max(started_at))::float8 AS t FROM settlement_runs GROUP BY 1`.execute(db),
    sql<LedgerReading['duplicates'][number]>`
      SELECT provider, count(*)::int AS n, count(*) FILTER (WHERE repaired_at IS NULL)::int AS open
      FROM provider_duplicates GROUP BY 1`.execute(db),
    sql<LedgerReading['settleRejections'][number]>`
      SELECT s.code, count(*)::int AS n,
        count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.transaction_id = s.transaction_id AND r.kind = 'issue'))::int AS open
      FROM settle_rejections s GROUP BY 1`.execute(db),
    sql<LedgerReading['provisional'][number]>`
      SELECT provider, count(*)::int AS n FROM receipts WHERE provisional AND state = 'issued' AND kind = 'issue' GROUP BY 1`.execute(db),
    sql<LedgerReading['refusals'][number]>`
      SELECT provider, coalesce(error_code, 'XXX') AS code, count(*)::int AS n FROM receipts
      WHERE state = 'failed' AND error_class = 'tax_authority' GROUP BY 1, 2`.execute(db),
    sql<LedgerReading['notifications'][number]>`
      SELECT channel, state, count(*)::int AS n FROM notifications GROUP BY 1, 2`.execute(db),
  ])
  return {
    receipts: receipts.rows,
    overdue: overdue.rows,
    attempts: attempts.rows,
    latency: latency.rows,
    lastRuns: lastRuns.rows,
    duplicates: duplicates.rows,
    settleRejections: settleRejections.rows,
    provisional: provisional.rows,
    refusals: refusals.rows,
    notifications: notifications.rows,
  }
}

async function readRedis(deps: MetricsDeps, nowMs: number): Promise<RedisReading> {
  const queues = await Promise.all(deps.queues.map(async (q) => ({ queue: q.name, counts: await q.getJobCounts(...JOB_STATES) })))
  const [limiters, dispatch] = await Promise.all([readLimiterStats(deps.redis, deps.prefix, kstToday(nowMs), nowMs), readDispatchStats(deps.redis, deps.prefix)])
  return { queues, limiters, dispatch }
}

/**
 * The provider latency histogram, bucketed in SQL over a sliding window. prom-client's Histogram
 * only accumulates observe() calls in this process, so this is a metric object of the same shape
 * (name, help, type, values with _bucket/_sum/_count) that prom-client's Registry renders. Because
 * the window slides, counts can go down: use histogram_quantile() on it directly, not on rate().
 */
function windowHistogram(read: () => Promise<Reading>) {
  const name = 'cash_receipts_provider_latency_seconds'
  const help = `Latency of provider calls started in the last ${LATENCY_WINDOW_HOURS} h (issuance_attempts.latency_ms), by provider and operation.`
  const get = async () => {
    const r = await read()
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = []
    for (const row of r.ledger?.latency ?? []) {
      const labels = { provider: row.provider, operation: row.operation }
      LATENCY_BUCKETS_S.forEach((le, i) =>
        values.push({
          metricName: `${name}_bucket`,
          labels: { ...labels, le },
          value: Number(row[`le${i}`] ?? 0),
        }),
      )
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: row.n })
      values.push({ metricName: `${name}_sum`, labels, value: row.sum_ms / 1000 })
      values.push({ metricName: `${name}_count`, labels, value: row.n })
    }
    return { name, help, type: 'histogram', aggregator: 'sum', values }
  }
  return { name, help, type: 'histogram', aggregator: 'sum', get }
}
