/**
 * What the HTML report (and the dashboard's run page) shows beyond the report JSON (README, Report JSON): outcomes
 * per merchant, throughput over time, provider call latency, failure reasons and the receipts past
 * their legal deadline. A separate function so the JSON contract stays exactly as it is.
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { OPEN_STATES, listOpenRejections, resolveScope } from './report.ts'

export type Outcome = 'issued' | 'failed' | 'pending' | 'skipped' | 'cancelled'
export const OUTCOMES: readonly Outcome[] = ['issued', 'failed', 'pending', 'skipped', 'cancelled']

export interface ReportDetails {
  readonly by_merchant: readonly ({ merchant_id: string; name: string } & Record<Outcome, number>)[]
  /** Receipts finished per time bucket (finished_at), by outcome. */
  readonly throughput: {
    readonly bucket_s: number
    readonly points: readonly { t: string; issued: number; failed: number; skipped: number }[]
  }
  /** Provider calls (issuance_attempts) of the covered receipts: counts per latency bucket. */
  readonly latency: {
    /** Upper bounds in ms; counts has one more entry for calls slower than the last bound. */
    readonly bounds_ms: readonly number[]
    readonly by_provider: readonly {
      provider: string
      counts: number[]
      calls: number
      p50_ms: number
      p95_ms: number
      p99_ms: number
    }[]
  }
  readonly failure_reasons: readonly {
    provider: string
    error_class: string
    code: string
    count: number
    sample_message: string
  }[]
  /**
   * What a person needs beside each failed receipt the HTML report lists (the report's `failures`,
   * its first FAILED_LISTED): whose and which payment it is. Keyed by transaction id.
   */
  readonly failed_transactions: Readonly<Record<string, { merchant_name: string; amount: number; order_name: string | null; paid_at: string }>>
  readonly overdue: {
    readonly total: number
    readonly receipts: readonly {
      transaction_id: string
      merchant_id: string
      provider: string
      state: string
      trade_date: string
      deadline: string
      error_class: string | null
      code: string | null
    }[]
  }
}

export const LATENCY_BOUNDS_MS = [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000] as const
const BUCKET_CHOICES_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 21_600, 86_400]
const MAX_POINTS = 60
const OVERDUE_LISTED = 500
/** Failed receipts the HTML report lists (formatReportHtml shows as many). */
export const FAILED_LISTED = 500

/** Outcome bucket of a ledger state, as in the JSON report. */
export function outcomeOf(state: string): Outcome {
  switch (state) {
    case 'issued':
    case 'cancelling':
      return 'issued'
    case 'failed':
    case 'skipped':
    case 'cancelled':
      return state
    default:
      return 'pending'
  }
}

/** Refused transactions grouped like failed receipts: by provider and code, error class `settle`. */
function rejectionReasons(rejections: Awaited<ReturnType<typeof listOpenRejections>>): ReportDetails['failure_reasons'][number][] {
  const out = new Map<string, ReportDetails['failure_reasons'][number]>()
  for (const r of rejections) {
    const k = `${r.provider}\u0000${r.code}`
    const g = out.get(k) ?? { provider: r.provider, error_class: 'settle', code: r.code, count: 0, sample_message: r.message }
    out.set(k, { ...g, count: g.count + 1, sample_message: r.message < g.sample_message ? r.message : g.sample_message })
  }
  return [...out.values()]
}

/** The smallest bucket that keeps a span of `spanS` seconds within {@link MAX_POINTS} points. */
export function bucketSeconds(spanS: number): number {
  return BUCKET_CHOICES_S.find((b) => spanS / b <= MAX_POINTS) ?? BUCKET_CHOICES_S.at(-1)!
}

export async function buildReportDetails(db: Db, sel: { runId?: number; date?: string }, todayKst: string): Promise<ReportDetails> {
  const { ids, scopeColumn } = await resolveScope(db, sel)
  // Transactions settlement refused count as failures of the run, as in the JSON report.
  const rejections = scopeColumn === 'r.run_id' ? await listOpenRejections(db, ids) : []
  const inScope = sql`r.kind = 'issue' AND ${sql.ref(scopeColumn)} = ANY(${ids}::bigint[])`

  const merchants = await sql<{ merchant_id: string; name: string | null; state: string; n: number }>`
    SELECT r.merchant_id, m.name, r.state, count(*)::int AS n
    FROM receipts r LEFT JOIN merchants m ON m.id = r.merchant_id
    WHERE ${inScope} GROUP BY 1, 2, 3 ORDER BY 1`.execute(db)
  const byMerchant = new Map<string, { merchant_id: string; name: string } & Record<Outcome, number>>()
  for (const row of merchants.rows) {
    const m = byMerchant.get(row.merchant_id) ?? {
      merchant_id: row.merchant_id,
      name: row.name ?? row.merchant_id,
      issued: 0,
      failed: 0,
      pending: 0,
      skipped: 0,
      cancelled: 0,
    }
    m[outcomeOf(row.state)] += row.n
    byMerchant.set(row.merchant_id, m)
  }
  for (const r of rejections) {
    const m = byMerchant.get(r.merchant_id) ?? {
      merchant_id: r.merchant_id,
      name: r.merchant_name ?? r.merchant_id,
      issued: 0,
      failed: 0,
      pending: 0,
      skipped: 0,
      cancelled: 0,
    }
    m.failed++
    byMerchant.set(r.merchant_id, m)
  }

  const span = await sql<{ lo: number | null; hi: number | null }>`
    SELECT extract(epoch FROM min(r.finished_at))::float8 AS lo, extract(epoch FROM max(r.finished_at))::float8 AS hi
    FROM receipts r WHERE ${inScope} AND r.finished_at IS NOT NULL`.execute(db)
  const { lo, hi } = span.rows[0] ?? { lo: null, hi: null }
  const bucket = bucketSeconds(lo !== null && hi !== null ? hi - lo : 0)
  const tp = await sql<{ t: number; state: string; n: number }>`
    SELECT (floor(extract(epoch FROM r.finished_at) / ${bucket}) * ${bucket})::float8 AS t, r.state, count(*)::int AS n
    FROM receipts r WHERE ${inScope} AND r.finished_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1`.execute(db)
  const points = new Map<number, { t: string; issued: number; failed: number; skipped: number }>()
  if (lo !== null && hi !== null) {
    // Every bucket of the span, empty ones included, so the time axis is linear.
    for (let t = Math.floor(lo / bucket) * bucket; t <= hi; t += bucket) {
      points.set(t, { t: new Date(t * 1000).toISOString(), issued: 0, failed: 0, skipped: 0 })
    }
  }
  for (const row of tp.rows) {
    const p = points.get(row.t)
    const o = outcomeOf(row.state)
    if (p && (o === 'issued' || o === 'failed' || o === 'skipped')) p[o] += row.n
    else if (p && o === 'cancelled') p.issued += row.n // issued first, cancelled later
  }

  const bounds = LATENCY_BOUNDS_MS
  const lat = await sql<Record<string, number> & { provider: string; calls: number; p50: number; p95: number; p99: number }>`
    SELECT r.provider, count(*)::int AS calls,
      ${sql.join(bounds.map((b, i) => sql`count(*) FILTER (WHERE a.latency_ms <= ${b}${i ? sql` AND a.latency_ms > ${bounds[i - 1]!}` : sql``})::int AS ${sql.ref(`b${i}`)}`))},
      count(*) FILTER (WHERE a.latency_ms > ${bounds.at(-1)!})::int AS ${sql.ref(`b${bounds.length}`)},
      percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms)::float8 AS p50,
      percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms)::float8 AS p95,
      percentile_cont(0.99) WITHIN GROUP (ORDER BY a.latency_ms)::float8 AS p99
    FROM issuance_attempts a JOIN receipts r ON r.id = a.receipt_id
    WHERE ${inScope} GROUP BY 1 ORDER BY 1`.execute(db)

  const reasons = await sql<{
    provider: string
    error_class: string | null
    code: string | null
    count: number
    sample: string | null
  }>`
    SELECT r.provider, r.error_class, r.error_code AS code, count(*)::int AS count, min(r.error_message) AS sample
    FROM receipts r WHERE ${inScope} AND r.state = 'failed'
    GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT 50`.execute(db)

  const overdueWhere = sql`${inScope} AND r.state = ANY(${[...OPEN_STATES]}::text[]) AND r.deadline < ${todayKst}`
  const overdueTotal = await sql<{
    n: number
  }>`SELECT count(*)::int AS n FROM receipts r WHERE ${overdueWhere}`.execute(db)
  const overdue = await sql<ReportDetails['overdue']['receipts'][number]>`
    SELECT r.transaction_id, r.merchant_id, r.provider, r.state, r.trade_date::text AS trade_date, r.deadline::text AS deadline,
      r.error_class, r.error_code AS code
    FROM receipts r WHERE ${overdueWhere} ORDER BY r.deadline, r.id LIMIT ${OVERDUE_LISTED}`.execute(db)

  // The same receipts, in the same order, as the report's `failures` (then the refused transactions).
  const failedTx = await sql<{ transaction_id: string; merchant_name: string; amount: string; order_name: string | null; paid_at: Date }>`
    WITH listed AS (
      (SELECT r.transaction_id FROM receipts r WHERE ${inScope} AND r.state = 'failed' ORDER BY r.id LIMIT ${FAILED_LISTED})
      UNION SELECT unnest(${rejections.map((x) => x.transaction_id)}::text[])
    )
    SELECT t.transaction_id, coalesce(m.name, t.merchant_id) AS merchant_name, t.amount, t.order_name, t.paid_at
    FROM listed l JOIN cash_transactions t ON t.transaction_id = l.transaction_id
    LEFT JOIN merchants m ON m.id = t.merchant_id`.execute(db)

  return {
    by_merchant: [...byMerchant.values()],
    throughput: { bucket_s: bucket, points: [...points.values()] },
    latency: {
      bounds_ms: bounds,
      by_provider: lat.rows.map((row) => ({
        provider: row.provider,
        counts: Array.from({ length: bounds.length + 1 }, (_, i) => Number(row[`b${i}`] ?? 0)),
        calls: row.calls,
        p50_ms: Math.round(row.p50),
        p95_ms: Math.round(row.p95),
        p99_ms: Math.round(row.p99),
      })),
    },
    failure_reasons: [
      ...reasons.rows.map((row) => ({
        provider: row.provider,
        error_class: row.error_class ?? 'unknown',
        code: row.code ?? '',
        count: row.count,
        sample_message: row.sample ?? '',
      })),
      ...rejectionReasons(rejections),
    ].sort((a, b) => b.count - a.count),
    failed_transactions: Object.fromEntries(
      failedTx.rows.map((row) => [
        row.transaction_id,
        { merchant_name: row.merchant_name, amount: Number(row.amount), order_name: row.order_name, paid_at: new Date(row.paid_at).toISOString() },
      ]),
    ),
    overdue: { total: overdueTotal.rows[0]?.n ?? 0, receipts: overdue.rows },
  }
}
