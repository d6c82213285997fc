/** The dashboard's reads: recent runs with their live counts, and a run's failed receipts by filter. */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { outcomeOf, type Outcome } from '../report/report-details.ts'

export interface RunRow {
  readonly id: number
  readonly business_date: string
  readonly trigger: string
  readonly merchant_scope: string
  readonly status: string
  readonly started_at: Date
  readonly counts: Record<Outcome, number>
}

/** The latest runs; counts by run_id, or by last_run_id for re-drive runs (as in the report). */
export async function recentRuns(db: Db, limit = 50): Promise<RunRow[]> {
  const runs = await db.selectFrom('settlement_runs').selectAll().orderBy('id', 'desc').limit(limit).execute()
  if (!runs.length) return []
  const plain = runs.filter((r) => r.trigger !== 'redrive').map((r) => r.id)
  const redrives = runs.filter((r) => r.trigger === 'redrive').map((r) => r.id)
  const counts = await sql<{ id: number; state: string; n: number }>`
    SELECT run_id AS id, state, count(*)::int AS n FROM receipts WHERE kind = 'issue' AND run_id = ANY(${plain}::bigint[]) GROUP BY 1, 2
    UNION ALL
    SELECT last_run_id AS id, state, count(*)::int AS n FROM receipts WHERE kind = 'issue' AND last_run_id = ANY(${redrives}::bigint[]) GROUP BY 1, 2`.execute(
    db,
  )
  const byRun = new Map<number, Record<Outcome, number>>()
  for (const c of counts.rows) {
    const m = byRun.get(Number(c.id)) ?? { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
    m[outcomeOf(c.state)] += c.n
    byRun.set(Number(c.id), m)
  }
  return runs.map((r) => {
    const counts = byRun.get(r.id) ?? { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
    return { id: r.id, business_date: r.business_date, trigger: r.trigger, merchant_scope: r.merchant_scope, status: liveStatus(r.status, counts), started_at: r.started_at, counts }
  })
}

/**
 * What the runs list shows: the stored status says when enqueueing ended, not when issuing did, so
 * an enqueued run with nothing pending is finished (as its report says); one with pending receipts
 * is issuing.
 */
export function liveStatus(stored: string, counts: Record<Outcome, number>): string {
  if (stored === 'running') return 'enqueueing'
  if (stored === 'finished') return 'finished'
  return counts.pending > 0 ? 'issuing' : 'finished'
}

export interface FailureFilter {
  readonly provider?: string
  readonly code?: string
  readonly errorClass?: string
}

export interface FailedReceipt {
  readonly id: number
  readonly kind: string
  readonly transaction_id: string
  readonly merchant_id: string
  readonly provider: string
  readonly error_class: string | null
  readonly error_code: string | null
  readonly error_message: string | null
  readonly attempts: number
  readonly redrive_count: number
  readonly trade_date: string
  readonly deadline: string
  readonly finished_at: Date | null
}

/** Failed receipts of a run, selected exactly like `redrive --run` does (run_id or last_run_id). */
export async function runFailures(
  db: Db,
  runId: number,
  filter: FailureFilter,
  page: { limit: number; offset: number },
): Promise<{
  total: number
  rows: FailedReceipt[]
  facets: { provider: string; error_class: string; code: string; n: number }[]
}> {
  let q = db
    .selectFrom('receipts')
    .where('state', '=', 'failed')
    .where((eb) => eb.or([eb('run_id', '=', runId), eb('last_run_id', '=', runId)]))
  if (filter.provider) q = q.where('provider', '=', filter.provider as never)
  if (filter.code) q = q.where('error_code', '=', filter.code)
  if (filter.errorClass) q = q.where('error_class', '=', filter.errorClass)
  const [total, rows, facets] = await Promise.all([
    q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    q
      .select([
        'id',
        'kind',
        'transaction_id',
        'merchant_id',
        'provider',
        'error_class',
        'error_code',
        'error_message',
        'attempts',
        'redrive_count',
        'trade_date',
        'deadline',
        'finished_at',
      ])
      .orderBy('id')
      .limit(page.limit)
      .offset(page.offset)
      .execute(),
    sql<{ provider: string; error_class: string; code: string; n: number }>`
      SELECT provider, coalesce(error_class, '') AS error_class, coalesce(error_code, '') AS code, count(*)::int AS n
      FROM receipts WHERE state = 'failed' AND (run_id = ${runId} OR last_run_id = ${runId})
      GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`.execute(db),
  ])
  return { total: Number(total.n), rows, facets: facets.rows }
}
