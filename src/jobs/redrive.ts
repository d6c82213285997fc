/**
 * Re-drive: failed receipts back to pending and onto the queue under FRESH job ids (a custom BullMQ
 * id only deduplicates while the old job is retained in Redis, so re-adding it would be a silent
 * no-op): the re-drive generation is part of the id, and enqueueReceipts starts a new one should
 * that id still be held as finished. The selection is a Postgres query — the ledger, not Redis, says what failed.
 *
 * Claiming is the ledger's redriveFailed (failed → pending and a fresh idempotency key, in one
 * transaction), so two concurrent re-drives split the rows between them and nothing is enqueued
 * twice; receipts whose earlier outcome is unknown keep needs_lookup and are looked up at the
 * provider before any new issue call.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { countFailed, redriveFailed, type FailedFilter } from '../db/ledger.ts'
import { redriveIdempotencyKey } from '../providers/keys.ts'
import type { ReceiptsQueue } from '../queue/queues.ts'
import { enqueueReceipts } from './enqueue-receipts.ts'

export type RedriveFilter = FailedFilter

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
  if (opts.dryRun) {
    const rows = await countFailed(db, filter)
    const byClass = Object.fromEntries(rows.map((r) => [r.errorClass, r.count]))
    return { runId: null, dryRun: true, count: rows.reduce((a, r) => a + r.count, 0), byClass, businessDate: filter.date ?? rows[0]?.firstTradeDate ?? null }
  }

  const businessDate = filter.date ?? deps.todayKst
  const run = await db
    .insertInto('settlement_runs')
    .values({ business_date: businessDate, trigger: 'redrive', merchant_scope: '*', filter: JSON.stringify(filter) })
    .returning('id')
    .executeTakeFirstOrThrow()

  // PortOne V2 replays the first answer to an Idempotency-Key for hours: a re-drive needs a fresh one.
  const claimed = await redriveFailed(db, filter, run.id, (r) => redriveIdempotencyKey(r.idempotencyKey, r.redriveCount))

  const byClass: Record<string, number> = {}
  for (const r of claimed) byClass[r.error_class ?? 'unknown'] = (byClass[r.error_class ?? 'unknown'] ?? 0) + 1

  for (let i = 0; i < claimed.length; i += 1_000) {
    await enqueueReceipts(deps, claimed.slice(i, i + 1_000).map((r) => ({ ...r, state: 'pending' as const })))
  }
  await db
    .updateTable('settlement_runs')
    .set({ status: 'enqueued', enqueued_at: sql`now()`, selected_count: claimed.length, enqueued_count: claimed.length })
    .where('id', '=', run.id)
    .execute()
  deps.logger.info({ runId: run.id, count: claimed.length, filter }, 'redrive enqueued')
  return { runId: run.id, dryRun: false, count: claimed.length, byClass, businessDate }
}
