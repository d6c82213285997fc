/**
 * Re-drive: failed receipts back to pending and onto the queue under FRESH job ids (a custom BullMQ
 * id only deduplicates while the old job is retained in Redis, so re-adding it would be a silent
 * no-op). The selection is a Postgres query — the ledger, not Redis, says what failed.
 *
 * Claiming is one conditional UPDATE … WHERE state = 'failed', so two concurrent re-drives split the
 * rows between them and nothing is enqueued twice; receipts whose earlier outcome is unknown keep
 * needs_lookup and are looked up at the provider before any new issue call.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { redriveIdempotencyKey } from '../providers/keys.ts'
import { cancelJobId, issueJobId, type ReceiptsQueue } from '../queue/queues.ts'

export interface RedriveFilter {
  readonly runId?: number
  readonly date?: string
  readonly provider?: string
  readonly code?: string
  readonly errorClass?: string
}

export interface RedriveResult {
  readonly runId: number | null
  readonly dryRun: boolean
  readonly count: number
  readonly byClass: Readonly<Record<string, number>>
  readonly businessDate: string | null
}

export async function redrive(
  deps: { db: Db; queue: ReceiptsQueue; logger: Logger; todayKst: string },
  filter: RedriveFilter,
  opts: { dryRun?: boolean } = {},
): Promise<RedriveResult> {
  const { db } = deps
  const conditions = sql.join(
    [
      sql`state = 'failed'`,
      ...(filter.runId !== undefined ? [sql`(run_id = ${filter.runId} OR last_run_id = ${filter.runId})`] : []),
      ...(filter.date ? [sql`trade_date = ${filter.date}`] : []),
      ...(filter.provider ? [sql`provider = ${filter.provider}`] : []),
      ...(filter.code ? [sql`error_code = ${filter.code}`] : []),
      ...(filter.errorClass ? [sql`error_class = ${filter.errorClass}`] : []),
    ],
    sql` AND `,
  )
  if (opts.dryRun) {
    const rows = await sql<{ cls: string; n: number; d: string | null }>`
      SELECT coalesce(error_class, 'unknown') AS cls, count(*)::int AS n, min(trade_date)::text AS d
      FROM receipts WHERE ${conditions} GROUP BY 1`.execute(db)
    const byClass = Object.fromEntries(rows.rows.map((r) => [r.cls, r.n]))
    return { runId: null, dryRun: true, count: rows.rows.reduce((a, r) => a + r.n, 0), byClass, businessDate: filter.date ?? rows.rows[0]?.d ?? null }
  }

  const businessDate = filter.date ?? deps.todayKst
  const run = await db
    .insertInto('settlement_runs')
    .values({ business_date: businessDate, trigger: 'redrive', merchant_scope: '*', filter: JSON.stringify(filter) })
    .returning('id')
    .executeTakeFirstOrThrow()

  const claimed = await sql<{ id: number; kind: 'issue' | 'cancel'; redrive_count: number; trade_date: string; error_class: string | null; idempotency_key: string }>`
    WITH old AS (SELECT id, error_class FROM receipts WHERE ${conditions} FOR UPDATE SKIP LOCKED)
    UPDATE receipts r SET
      state = 'pending',
      redrive_count = r.redrive_count + 1,
      last_run_id = ${run.id},
      error_class = NULL, error_code = NULL, error_message = NULL,
      finished_at = NULL,
      updated_at = now()
    FROM old WHERE r.id = old.id
    RETURNING r.id, r.kind, r.redrive_count, r.trade_date::text AS trade_date, old.error_class, r.idempotency_key`.execute(db)

  const byClass: Record<string, number> = {}
  for (const r of claimed.rows) byClass[r.error_class ?? 'unknown'] = (byClass[r.error_class ?? 'unknown'] ?? 0) + 1

  // PortOne V2 replays the first answer to an Idempotency-Key for hours: a re-drive needs a fresh one.
  const issueRows = claimed.rows.filter((r) => r.kind === 'issue')
  if (issueRows.length) {
    await sql`
      UPDATE receipts r SET idempotency_key = v.key
      FROM (SELECT unnest(${issueRows.map((r) => r.id)}::bigint[]) AS id, unnest(${issueRows.map((r) => redriveIdempotencyKey(r.idempotency_key, r.redrive_count))}::text[]) AS key) v
      WHERE r.id = v.id`.execute(db)
  }
  for (let i = 0; i < claimed.rows.length; i += 1_000) {
    await deps.queue.addBulk(
      claimed.rows.slice(i, i + 1_000).map((r) =>
        r.kind === 'issue'
          ? { name: 'issue-receipt' as const, data: { receiptId: r.id, businessDate: r.trade_date }, opts: { jobId: issueJobId(r.id, r.redrive_count) } }
          : { name: 'cancel-receipt' as const, data: { receiptId: r.id }, opts: { jobId: cancelJobId(r.id, r.redrive_count) } },
      ),
    )
  }
  await db
    .updateTable('settlement_runs')
    .set({ status: 'enqueued', enqueued_at: sql`now()`, selected_count: claimed.rows.length, enqueued_count: claimed.rows.length })
    .where('id', '=', run.id)
    .execute()
  deps.logger.info({ runId: run.id, count: claimed.rows.length, filter }, 'redrive enqueued')
  return { runId: run.id, dryRun: false, count: claimed.rows.length, byClass, businessDate }
}
