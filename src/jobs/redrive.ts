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
import { cancelJobId, createRanker, issueJobId } from '../queue/queues.ts'

export type RedriveFilter = FailedFilter

/** A filter that names something that does not exist (`--run 999`): bad input, exit 2. */
export class RedriveInputError extends Error {
  override name = 'RedriveInputError'
}

export interface RedriveResult {
  readonly runId: number | null
  readonly dryRun: boolean
  readonly count: number
  readonly byClass: Readonly<Record<string, number>>
  readonly businessDate: string | null
  /** The settlement runs the re-driven receipts came from (the runs this re-drive follows up). */
  readonly redriveOf: readonly number[]
}

export async function redrive(
  deps: { db: Db; queue: ReceiptsQueue; logger: Logger; todayKst: string },
  filter: RedriveFilter,
  opts: { dryRun?: boolean } = {},
): Promise<RedriveResult> {
  const { db } = deps
  if (filter.runId !== undefined) {
    const exists = await db.selectFrom('settlement_runs').select('id').where('id', '=', filter.runId).executeTakeFirst()
    if (!exists) throw new RedriveInputError(`--run: no settlement run with id ${filter.runId}`)
  }
  if (opts.dryRun) {
    const rows = await countFailed(db, filter)
    const byClass = Object.fromEntries(rows.map((r) => [r.errorClass, r.count]))
    const firstDate = rows
      .map((r) => r.firstTradeDate)
      .filter((d): d is string => d !== null)
      .sort()[0]
    return { runId: null, dryRun: true, count: rows.reduce((a, r) => a + r.count, 0), byClass, businessDate: filter.date ?? firstDate ?? null, redriveOf: [] }
  }

  // Labelled with the business date of what it re-drives (set below from the receipts taken), so
  // `report --date` and the runs list show it beside the run it follows up, not under today.
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

  // The failed jobs of the previous generation stay in Redis for inspection (Bull Board's failed
  // count); once re-driven they are history, not failures: remove them (best effort, never blocking).
  await removeFailedJobs(deps.queue, claimed).catch((err) => deps.logger.warn({ err: (err as Error).message }, 'could not remove the failed jobs of re-driven receipts'))

  // One ranking over the whole re-drive: its jobs go ahead of the settled backlog (the operator band),
  // interleaved by credential across its chunks.
  const rank = createRanker('operator')
  for (let i = 0; i < claimed.length; i += 1_000) {
    await enqueueReceipts(
      { ...deps, rank },
      claimed.slice(i, i + 1_000).map((r) => ({ ...r, state: 'pending' as const })),
    )
  }
  const firstDate = claimed.map((r) => r.trade_date).sort()[0]
  const label = filter.date ?? firstDate ?? businessDate
  await db
    .updateTable('settlement_runs')
    .set({ status: 'enqueued', enqueued_at: sql`now()`, selected_count: claimed.length, enqueued_count: claimed.length, business_date: label })
    .where('id', '=', run.id)
    .execute()
  const origins = await db.selectFrom('receipts').select('run_id').distinct().where('last_run_id', '=', run.id).where('run_id', 'is not', null).orderBy('run_id').execute()
  const redriveOf = origins.map((o) => Number(o.run_id))
  deps.logger.info({ runId: run.id, count: claimed.length, filter, redriveOf }, 'redrive enqueued')
  return { runId: run.id, dryRun: false, count: claimed.length, byClass, businessDate: label, redriveOf }
}

/** Removes the failed BullMQ job of each re-driven receipt's previous generation, where Redis still holds one. */
async function removeFailedJobs(queue: ReceiptsQueue, claimed: readonly { id: number; kind: 'issue' | 'cancel'; redrive_count: number; requeue_count: number }[]): Promise<void> {
  for (let i = 0; i < claimed.length; i += 100) {
    await Promise.all(
      claimed.slice(i, i + 100).map(async (r) => {
        const id = (r.kind === 'issue' ? issueJobId : cancelJobId)(r.id, r.redrive_count - 1, r.requeue_count)
        if ((await queue.getJobState(id)) === 'failed') await queue.remove(id)
      }),
    )
  }
}
