/**
 * Run reports in the shape the README's Report JSON section documents (`report --json`, `settle --wait --json`, `redrive --wait --json`).
 *
 * Definitions (also in the README): a run's receipts are the issue receipts it created (or, for a
 * re-drive run, the ones it re-drove). `eligible` counts all of them; each is in exactly one of
 * issued / failed / pending (pending or issuing) / skipped / cancelled. `amount_issued` is the KRW
 * total currently receipted (issued receipts, net of partial cancellations).
 *
 * A transaction settlement could not turn into a receipt (settle_rejections) counts as `failed` of the
 * settlement run that first refused it and is listed in `failures` with error_class `settle` and its
 * code (KEY_CONFLICT, KEY_INVALID, ROW_INVALID), until it has an issue receipt after all.
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { auditSince } from '../db/audit.ts'
import { countNotifications, type NotificationCounts } from '../db/notifications.ts'

export interface RunReport {
  run_id: string
  business_date: string
  status: 'finished' | 'running'
  totals: { eligible: number; issued: number; failed: number; pending: number; skipped: number; cancelled: number }
  amount_issued: number
  by_provider: Record<string, { issued: number; failed: number; pending: number; skipped: number; cancelled: number }>
  failures: { transaction_id: string; provider: string; error_class: string; code: string; message: string }[]
  duration_s: number
  /** Additions to the contract (scripts may ignore them). */
  trigger: string
  merchant_scope: string
  overdue: number
  /**
   * Further receipts a provider held for the run's receipts, found by reconcile (provider_duplicates):
   * repaired ones (cancelled at the provider) included, so a repaired duplicate stays on record.
   */
  duplicates: ReportDuplicate[]
  /** Receipts re-issued for what was still paid after a partial refund at a full-cancel-only provider. */
  reissued: number
  /** Receipts a refund could not be receipted for (the provider cannot re-issue): for a person. */
  needs_attention: { transaction_id: string; provider: string; reason: string }[]
  /**
   * Re-drive links (additions). A settlement run: how many of its receipts were re-driven after
   * failing (their current state is counted above) and the re-drive runs that took them. A re-drive
   * run: the runs its receipts came from.
   */
  redriven: number
  redrive_runs: string[]
  redrive_of: string[]
  /**
   * Operator actions (audit_log) from the run's start on, oldest first, at most 200: who re-drove,
   * cancelled, reconciled or imported what (ids, dates, codes and counts only) while it was open.
   */
  operator_actions: { at: string; actor: string; action: string; selectors: Record<string, unknown>; counts: Record<string, number> }[]
  /**
   * Buyer notifications of the run's receipts (their issue and their cancellations), per state, and
   * per channel (docs/notifications.md). All zero when no merchant of the run has notifications on.
   */
  notifications: ReportNotifications
}

export interface ReportNotifications extends NotificationCounts {
  by_channel: Record<string, NotificationCounts>
}

export interface ReportDuplicate {
  transaction_id: string
  provider: string
  provider_receipt_id: string
  approval_number: string | null
  amount: number | null
  found_at: string
  repaired_at: string | null
  repair_outcome: string | null
}

export class ReportNotFoundError extends Error {
  override name = 'ReportNotFoundError'
}

/** The run to report: by id, or the settlement run of a business date (all scopes), or the latest. */
export async function resolveRunIds(db: Db, sel: { runId?: number; date?: string }): Promise<{ ids: number[]; label: string; date: string }> {
  if (sel.runId !== undefined) {
    const run = await db.selectFrom('settlement_runs').select(['id', 'business_date']).where('id', '=', sel.runId).executeTakeFirst()
    if (!run) throw new ReportNotFoundError(`--run: no settlement run with id ${sel.runId}`)
    return { ids: [run.id], label: String(run.id), date: run.business_date }
  }
  let q = db.selectFrom('settlement_runs').select(['id', 'business_date']).where('trigger', '<>', 'redrive')
  if (sel.date) q = q.where('business_date', '=', sel.date)
  const runs = await q.orderBy('id', 'desc').execute()
  if (!runs.length) throw new ReportNotFoundError(sel.date ? `--date: no settlement run for ${sel.date}` : 'no settlement run yet; run `cash-receipts settle` first')
  const date = sel.date ?? runs[0]!.business_date
  const ids = runs.filter((r) => r.business_date === date).map((r) => r.id)
  return { ids, label: ids.join(','), date }
}

/**
 * The receipts a report covers: those the run(s) created, or for a re-drive run the ones it re-drove
 * (`last_run_id`). Shared by the JSON report and the HTML report's extra data.
 */
export async function resolveScope(db: Db, sel: { runId?: number; date?: string }) {
  const { ids, label, date } = await resolveRunIds(db, sel)
  const runs = await db.selectFrom('settlement_runs').selectAll().where('id', 'in', ids).execute()
  const redrive = runs.length === 1 && runs[0]!.trigger === 'redrive'
  const scopeColumn = redrive ? ('r.last_run_id' as const) : ('r.run_id' as const)
  return { ids, label, date, runs, scopeColumn }
}

/** States that still owe a receipt: past the deadline they are overdue. */
export const OPEN_STATES = ['pending', 'issuing', 'failed'] as const

export async function buildReport(db: Db, sel: { runId?: number; date?: string }, todayKst?: string): Promise<RunReport> {
  const { ids, label, date, runs, scopeColumn } = await resolveScope(db, sel)
  const settleRun = scopeColumn === 'r.run_id'
  const rejections = settleRun ? await listOpenRejections(db, ids) : []
  const rejectedByProvider = settleRun ? await countOpenRejections(db, ids) : []

  const groups = await db
    .selectFrom('receipts as r')
    .select(['r.provider', 'r.state'])
    .select((eb) => [
      eb.fn.countAll<number>().as('n'),
      eb.fn.coalesce(eb.fn.sum<number>(sql`r.total_amount - r.cancelled_amount`), sql<number>`0`).as('amount'),
      eb.fn.max('r.finished_at').as('last_finished'),
      eb.fn
        .countAll<number>()
        .filterWhere(sql<boolean>`r.state IN ('pending','issuing','failed') AND r.deadline < ${todayKst ?? '0001-01-01'}`)
        .as('overdue'),
    ])
    .where('r.kind', '=', 'issue')
    .where(scopeColumn, 'in', ids)
    .groupBy(['r.provider', 'r.state'])
    .execute()

  const totals = { eligible: 0, issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
  const byProvider: RunReport['by_provider'] = {}
  let amountIssued = 0
  let lastFinished = 0
  let overdue = 0
  for (const g of groups) {
    const n = Number(g.n)
    const bucket = bucketOf(g.state)
    totals.eligible += n
    totals[bucket] += n
    const p = (byProvider[g.provider] ??= { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 })
    p[bucket] += n
    if (g.state === 'issued') amountIssued += Number(g.amount)
    overdue += Number(g.overdue)
    if (g.last_finished) lastFinished = Math.max(lastFinished, new Date(g.last_finished as unknown as string).getTime())
  }
  for (const r of rejectedByProvider) {
    const n = Number(r.n)
    totals.eligible += n
    totals.failed += n
    ;(byProvider[r.provider] ??= { issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }).failed += n
  }

  const failures = await db
    .selectFrom('receipts as r')
    .select(['r.transaction_id', 'r.provider', 'r.error_class', 'r.error_code', 'r.error_message'])
    .where('r.kind', '=', 'issue')
    .where('r.state', '=', 'failed')
    .where(scopeColumn, 'in', ids)
    .orderBy('r.id')
    .limit(1_000)
    .execute()

  const duplicates = await db
    .selectFrom('provider_duplicates as d')
    .innerJoin('receipts as r', 'r.id', 'd.receipt_id')
    .select(['r.transaction_id', 'd.provider', 'd.provider_receipt_id', 'd.approval_number', 'd.amount', 'd.found_at', 'd.repaired_at', 'd.repair_outcome'])
    .where(scopeColumn, 'in', ids)
    .orderBy('d.id')
    .limit(1_000)
    .execute()

  const links = settleRun
    ? await db
        .selectFrom('receipts as r')
        .innerJoin('settlement_runs as s', 's.id', 'r.last_run_id')
        .select(['s.id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('r.kind', '=', 'issue')
        .where('r.run_id', 'in', ids)
        .where('r.redrive_count', '>', 0)
        .where('s.trigger', '=', 'redrive')
        .groupBy('s.id')
        .orderBy('s.id')
        .execute()
    : []
  const redrivenCount = settleRun
    ? await db
        .selectFrom('receipts as r')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('r.kind', '=', 'issue')
        .where('r.run_id', 'in', ids)
        .where('r.redrive_count', '>', 0)
        .executeTakeFirstOrThrow()
    : { n: 0 }
  const origins = settleRun
    ? []
    : await db.selectFrom('receipts as r').select('r.run_id').distinct().where('r.last_run_id', 'in', ids).where('r.run_id', 'is not', null).orderBy('r.run_id').execute()

  const reissued = await db
    .selectFrom('receipts as r')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('r.kind', '=', 'issue')
    .where('r.replaces_receipt_id', 'is not', null)
    .where(scopeColumn, 'in', ids)
    .executeTakeFirstOrThrow()
  const attention = await db
    .selectFrom('receipts as r')
    .select(['r.transaction_id', 'r.provider', 'r.reconcile_flag'])
    .where('r.kind', '=', 'issue')
    .where('r.reconcile_flag', 'like', 'partial refund not receipted%')
    .where(scopeColumn, 'in', ids)
    .orderBy('r.id')
    .limit(1_000)
    .execute()

  const notified = await countNotifications(db, { column: scopeColumn === 'r.run_id' ? 'run_id' : 'last_run_id', runIds: ids })

  const started = Math.min(...runs.map((r) => new Date(r.started_at as unknown as string).getTime()))
  const running = totals.pending > 0
  const end = running || !lastFinished ? Date.now() : lastFinished
  return {
    run_id: label,
    business_date: date,
    status: running ? 'running' : 'finished',
    totals,
    amount_issued: amountIssued,
    by_provider: byProvider,
    failures: [
      ...failures.map((f) => ({
        transaction_id: f.transaction_id,
        provider: f.provider,
        error_class: f.error_class ?? 'unknown',
        code: f.error_code ?? '',
        message: f.error_message ?? '',
      })),
      ...rejections.map((r) => ({ transaction_id: r.transaction_id, provider: r.provider, error_class: 'settle', code: r.code, message: r.message })),
    ],
    duration_s: Math.max(0, Math.round((end - started) / 100) / 10),
    trigger: runs.map((r) => r.trigger).join(','),
    merchant_scope: runs.map((r) => r.merchant_scope).join(','),
    overdue,
    reissued: Number(reissued.n),
    needs_attention: attention.map((a) => ({ transaction_id: a.transaction_id, provider: a.provider, reason: a.reconcile_flag ?? '' })),
    duplicates: duplicates.map((d) => ({
      transaction_id: d.transaction_id,
      provider: d.provider,
      provider_receipt_id: d.provider_receipt_id,
      approval_number: d.approval_number,
      amount: d.amount === null ? null : Number(d.amount),
      found_at: new Date(d.found_at).toISOString(),
      repaired_at: d.repaired_at ? new Date(d.repaired_at).toISOString() : null,
      repair_outcome: d.repair_outcome,
    })),
    redriven: Number(redrivenCount.n),
    redrive_runs: links.map((l) => String(l.id)),
    redrive_of: origins.filter((o) => !ids.includes(Number(o.run_id))).map((o) => String(o.run_id)),
    operator_actions: (await auditSince(db, new Date(started))).map((a) => ({
      at: a.at.toISOString(),
      actor: a.actor,
      action: a.action,
      selectors: { ...a.selectors },
      counts: { ...a.counts },
    })),
    notifications: { ...notified.total, by_channel: notified.byChannel },
  }
}

/**
 * Transactions settlement refused (settle_rejections) first recorded by runs `ids` whose transaction
 * still has no issue receipt: failures of those runs. Shared by the JSON report and its details.
 */
function rejectionsOf(db: Db, ids: readonly number[]) {
  return db
    .selectFrom('settle_rejections as s')
    .where('s.run_id', 'in', ids)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('receipts as r')
            .select(sql`1`.as('one'))
            .whereRef('r.transaction_id', '=', 's.transaction_id')
            .where('r.kind', '=', 'issue'),
        ),
      ),
    )
}

/** At most 1,000, like the failed receipts listed. */
export function listOpenRejections(db: Db, ids: readonly number[]) {
  return rejectionsOf(db, ids)
    .leftJoin('merchants as m', 'm.id', 's.merchant_id')
    .select(['s.transaction_id', 's.merchant_id', 'm.name as merchant_name', 's.provider', 's.code', 's.message'])
    .orderBy('s.transaction_id')
    .limit(1_000)
    .execute()
}

export function countOpenRejections(db: Db, ids: readonly number[]) {
  return rejectionsOf(db, ids)
    .select(['s.provider', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('s.provider')
    .execute()
}

function bucketOf(state: string): 'issued' | 'failed' | 'pending' | 'skipped' | 'cancelled' {
  switch (state) {
    case 'issued':
    case 'cancelling':
      return 'issued'
    case 'failed':
      return 'failed'
    case 'skipped':
      return 'skipped'
    case 'cancelled':
      return 'cancelled'
    default:
      return 'pending'
  }
}
