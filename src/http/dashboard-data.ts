/**
 * The dashboard's reads: runs with their live counts, a run's failed receipts by filter, the known
 * merchants. Lists are keyset pages (src/db/keyset.ts) and filter by merchant.
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import type { SettlementRun } from '../db/schema.ts'
import { outcomeOf, type Outcome } from '../report/report-details.ts'
import { DEFAULT_PAGE_SIZE, keysetPage, type PageOf, type PageRequest } from '../db/keyset.ts'

export interface RunRow {
  readonly id: number
  readonly business_date: string
  readonly trigger: string
  readonly merchant_scope: string
  readonly status: string
  readonly started_at: Date
  readonly counts: Record<Outcome, number>
}

/** The merchants the lists can be filtered by (the merchant select), by id. */
export async function knownMerchants(db: Db): Promise<{ id: string; name: string }[]> {
  return db.selectFrom('merchants').select(['id', 'name']).orderBy('id').execute()
}

/**
 * Runs, newest first, a keyset page of them; counts by run_id, or by last_run_id for re-drive runs
 * (as in the report). With a merchant: the runs scoped to it or holding any of its receipts, and
 * only its receipts counted.
 */
export async function recentRuns(db: Db, page: PageRequest<number> = { size: DEFAULT_PAGE_SIZE }, merchantId?: string): Promise<PageOf<RunRow, number>> {
  const got = await keysetPage<SettlementRun, number>(
    page,
    (r) => r.id,
    (cursor, limit) => {
      let q = db.selectFrom('settlement_runs as s').selectAll('s')
      if (cursor) q = q.where('s.id', cursor.forward ? '<' : '>', cursor.key)
      if (merchantId) {
        q = q.where((eb) =>
          eb.or([
            eb('s.merchant_scope', '=', merchantId),
            eb.exists(
              eb
                .selectFrom('receipts as r')
                .select('r.id')
                .where('r.merchant_id', '=', merchantId)
                .where((w) => w.or([w('r.run_id', '=', w.ref('s.id')), w('r.last_run_id', '=', w.ref('s.id'))])),
            ),
          ]),
        )
      }
      return q
        .orderBy('s.id', cursor && !cursor.forward ? 'asc' : 'desc')
        .limit(limit)
        .execute()
    },
  )
  const runs = got.rows
  if (!runs.length) return { ...got, rows: [] }
  const plain = runs.filter((r) => r.trigger !== 'redrive').map((r) => r.id)
  const redrives = runs.filter((r) => r.trigger === 'redrive').map((r) => r.id)
  const merchant = merchantId ? sql`AND merchant_id = ${merchantId}` : sql``
  const counts = await sql<{ id: number; state: string; n: number }>`
    SELECT run_id AS id, state, count(*)::int AS n FROM receipts WHERE kind = 'issue' AND run_id = ANY(${plain}::bigint[]) ${merchant} GROUP BY 1, 2
    UNION ALL
    SELECT last_run_id AS id, state, count(*)::int AS n FROM receipts WHERE kind = 'issue' AND last_run_id = ANY(${redrives}::bigint[]) ${merchant} GROUP BY 1, 2`.execute(db)
  const byRun = new Map<number, Record<Outcome, number>>()
  for (const c of counts.rows) {
    const m = byRun.get(Number(c.id)) ?? { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
    m[outcomeOf(c.state)] += c.n
    byRun.set(Number(c.id), m)
  }
  return {
    ...got,
    rows: runs.map((r) => {
      const counts = byRun.get(r.id) ?? { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
      return {
        id: r.id,
        business_date: r.business_date,
        trigger: r.trigger,
        merchant_scope: r.merchant_scope,
        status: liveStatus(r.status, counts),
        started_at: r.started_at,
        counts,
      }
    }),
  }
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
  readonly merchantId?: string
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
  /** The merchant's name (null when the merchant is no longer configured). */
  readonly merchant_name: string | null
  /** The receipt's amount (KRW). */
  readonly amount: number
  /** The transaction's order name: merchant data, stored in plaintext (not a personal identifier). */
  readonly order_name: string | null
  readonly paid_at: Date
}

/**
 * Failed receipts of a run, selected exactly like `redrive --run` does (run_id or last_run_id), a
 * keyset page of them by receipt id, each with its transaction's merchant name, amount, order name and
 * paid-at beside the error. `total` counts every row the filter selects.
 */
export async function runFailures(
  db: Db,
  runId: number,
  filter: FailureFilter,
  page: PageRequest<number>,
): Promise<
  PageOf<FailedReceipt, number> & {
    total: number
    facets: { provider: string; error_class: string; code: string; n: number }[]
  }
> {
  let q = db
    .selectFrom('receipts as r')
    .where('r.state', '=', 'failed')
    .where((eb) => eb.or([eb('r.run_id', '=', runId), eb('r.last_run_id', '=', runId)]))
  if (filter.provider) q = q.where('r.provider', '=', filter.provider as never)
  if (filter.code) q = q.where('r.error_code', '=', filter.code)
  if (filter.errorClass) q = q.where('r.error_class', '=', filter.errorClass)
  if (filter.merchantId) q = q.where('r.merchant_id', '=', filter.merchantId)
  const [total, got, facets] = await Promise.all([
    q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    keysetPage<FailedReceipt, number>(
      page,
      (f) => f.id,
      async (cursor, limit) => {
        const rows = await (cursor ? q.where('r.id', cursor.forward ? '>' : '<', cursor.key) : q)
          .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
          .leftJoin('merchants as m', 'm.id', 'r.merchant_id')
          .select([
            'r.id',
            'r.kind',
            'r.transaction_id',
            'r.merchant_id',
            'r.provider',
            'r.error_class',
            'r.error_code',
            'r.error_message',
            'r.attempts',
            'r.redrive_count',
            'r.trade_date',
            'r.deadline',
            'r.finished_at',
            'm.name as merchant_name',
            'r.total_amount',
            't.order_name',
            't.paid_at',
          ])
          .orderBy('r.id', cursor && !cursor.forward ? 'desc' : 'asc')
          .limit(limit)
          .execute()
        return rows.map(({ total_amount, merchant_name, ...r }) => ({ ...r, merchant_name: merchant_name ?? null, amount: Number(total_amount) }))
      },
    ),
    sql<{ provider: string; error_class: string; code: string; n: number }>`
      SELECT provider, coalesce(error_class, '') AS error_class, coalesce(error_code, '') AS code, count(*)::int AS n
      FROM receipts WHERE state = 'failed' AND (run_id = ${runId} OR last_run_id = ${runId})
      GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`.execute(db),
  ])
  return { ...got, total: Number(total.n), facets: facets.rows }
}
