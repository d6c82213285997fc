/**
 * The ledger operations of the exactly-once protocol. Every state change is one conditional
 * statement, so a second worker holding the same job can never move a row it does not own.
 *
 *   pending → issuing → issued | failed | skipped        (kind issue)
 *   issued → cancelling → cancelled                      (the issue row, on a full cancel)
 *   pending → issuing → issued | failed                  (kind cancel: "issued" = cancel accepted)
 */
import { sql } from 'kysely'
import { prepared, type Db } from './database.ts'
import type { CashTransaction, Receipt, ReceiptState, ReceiptsTable } from './schema.ts'
import type { OutcomeKind, ProviderReceipt } from '../providers/types.ts'

export type ClaimResult =
  | {
      readonly status: 'claimed'
      readonly receipt: Receipt
      readonly prevState: ReceiptState
      /** The receipt's transaction, read in the same statement (the worker needs it for the call). */
      readonly tx: CashTransaction
    }
  /** Terminal or owned by a cancel flow: nothing to do, the job completes. */
  | { readonly status: 'done'; readonly state: ReceiptState }
  /** Another worker holds a live lease (a redelivered job racing the original): try again later. */
  | { readonly status: 'leased'; readonly retryInMs: number }
  | { readonly status: 'missing' }

/**
 * Every receipts column, named: the claim is a prepared statement, and a cached plan fails ("must not
 * change result type") if `r.*` grows by a column a migration adds while workers run.
 */
const RECEIPT_COLUMNS = [
  'id', 'transaction_id', 'kind', 'seq', 'merchant_id', 'provider', 'state', 'provider_key', 'idempotency_key', 'portone_payment',
  'needs_lookup', 'approval_number', 'total_amount', 'supply_amount', 'vat_amount', 'tax_free_amount', 'service_fee',
  'cancelled_amount', 'purpose', 'self_issued', 'trade_date', 'deadline', 'provider_receipt_id', 'receipt_url', 'skip_reason',
  'error_class', 'error_code', 'error_message', 'attempts', 'locked_by', 'locked_until', 'run_id', 'last_run_id', 'redrive_count',
  'parent_receipt_id', 'cancel_reason', 'reconcile_flag', 'reconciled_at', 'created_at', 'updated_at', 'issued_at', 'finished_at',
] as const satisfies readonly (keyof ReceiptsTable)[]
// Compile-time check that the list is complete: a column added to ReceiptsTable and not here fails the build.
type Unlisted = Exclude<keyof ReceiptsTable, (typeof RECEIPT_COLUMNS)[number]>
const everyColumnListed: [Unlisted] extends [never] ? true : Unlisted = true
void everyColumnListed
const RETURNING_RECEIPT = sql.raw(RECEIPT_COLUMNS.map((c) => `r.${c}`).join(', '))

/**
 * Takes ownership of receipts for one attempt each: pending, or issuing whose lease expired (a
 * crashed or timed-out worker). A row taken over from `issuing` gets needs_lookup, because the
 * previous call may have reached the provider. One statement (one commit) for the whole batch;
 * rows are locked in id order so concurrent batches of other workers cannot deadlock with it.
 */
export async function claimReceipts(db: Db, receiptIds: readonly number[], workerId: string, leaseMs: number): Promise<Map<number, ClaimResult>> {
  const ids = [...new Set(receiptIds)]
  const res = await sql<Receipt & { prev_state: ReceiptState; tx: Record<string, unknown> }>`${prepared('ledger_claim')}
    WITH prev AS MATERIALIZED (
      SELECT id, state, locked_until FROM receipts WHERE id = ANY(${ids}::bigint[]) ORDER BY id FOR UPDATE
    ),
    claimed AS (
      UPDATE receipts r SET
        state = 'issuing',
        needs_lookup = r.needs_lookup OR prev.state = 'issuing',
        attempts = r.attempts + 1,
        locked_by = ${workerId},
        locked_until = now() + make_interval(secs => ${leaseMs / 1000}),
        updated_at = now()
      FROM prev
      WHERE r.id = prev.id
        AND (prev.state = 'pending' OR (prev.state = 'issuing' AND (prev.locked_until IS NULL OR prev.locked_until < now())))
      RETURNING ${RETURNING_RECEIPT}, prev.state AS prev_state
    )
    SELECT c.*, to_jsonb(t) AS tx FROM claimed c JOIN cash_transactions t ON t.transaction_id = c.transaction_id
  `.execute(db)
  const out = new Map<number, ClaimResult>()
  for (const row of res.rows) {
    const { prev_state, tx, ...receipt } = row
    out.set(row.id, { status: 'claimed', receipt: receipt as Receipt, prevState: prev_state, tx: transactionFromJson(tx) })
  }
  const rest = ids.filter((id) => !out.has(id))
  if (rest.length) {
    const current = await db
      .selectFrom('receipts')
      .select(['id', 'state', sql<number>`extract(epoch from (locked_until - now())) * 1000`.as('lease_left_ms')])
      .where('id', 'in', rest)
      .execute()
    for (const c of current) {
      out.set(c.id, c.state === 'issuing' ? { status: 'leased', retryInMs: Math.max(250, Number(c.lease_left_ms) + 50) } : { status: 'done', state: c.state })
    }
    for (const id of rest) if (!out.has(id)) out.set(id, { status: 'missing' })
  }
  return out
}

/** One receipt: {@link claimReceipts} with a batch of one. */
export async function claimReceipt(db: Db, receiptId: number, workerId: string, leaseMs: number): Promise<ClaimResult> {
  return (await claimReceipts(db, [receiptId], workerId, leaseMs)).get(receiptId)!
}

/** to_jsonb gives timestamps as strings; the row type has Dates. Everything else maps as is. */
function transactionFromJson(j: Record<string, unknown>): CashTransaction {
  return {
    ...(j as unknown as CashTransaction),
    paid_at: new Date(j.paid_at as string),
    imported_at: new Date(j.imported_at as string),
    updated_at: new Date(j.updated_at as string),
  }
}

export interface AttemptRecord {
  readonly operation: 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount'
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly outcome: OutcomeKind | 'local_quota'
  readonly httpStatus: number | null
  readonly providerCode: string | null
  readonly message: string | null
  readonly latencyMs: number
}

/** Fields a terminal or intermediate transition writes; undefined keeps the column. */
export interface Transition {
  readonly state: ReceiptState
  readonly needsLookup?: boolean
  readonly receipt?: ProviderReceipt
  readonly error?: { readonly errorClass: string; readonly code: string | null; readonly message: string | null } | null
  readonly skipReason?: string
  readonly amounts?: { total: number; supply: number; vat: number; taxFree: number; serviceFee: number }
}

/** One transition of a row owned by `workerId`, with the attempt rows of the calls made for it. */
export interface TransitionItem {
  readonly receiptId: number
  readonly workerId: string
  readonly transition: Transition
  readonly attempts: { readonly receipt: Pick<Receipt, 'id' | 'attempts'>; readonly jobId?: string; readonly rows: readonly AttemptRecord[] }
}

const TERMINAL: readonly ReceiptState[] = ['issued', 'failed', 'skipped', 'cancelled']

/**
 * Applies transitions to rows their workers own (state issuing, locked_by = worker) and inserts the
 * attempt rows, all in ONE statement (atomic, one commit) however many items. Returns the ids whose
 * update applied; an id missing from the result was taken over meanwhile (lease expired) and the
 * caller must leave it alone. The attempt rows are recorded either way: the calls happened.
 */
export async function applyTransitions(db: Db, items: readonly TransitionItem[]): Promise<Set<number>> {
  if (items.length === 0) return new Set()
  const col = <T>(f: (i: TransitionItem) => T) => items.map(f)
  const t = (i: TransitionItem) => i.transition
  const attempts = items.flatMap((i) =>
    i.attempts.rows.map((a) => ({
      receipt_id: i.attempts.receipt.id,
      attempt_no: i.attempts.receipt.attempts,
      operation: a.operation,
      started_at: a.startedAt.toISOString(),
      finished_at: a.finishedAt.toISOString(),
      outcome: a.outcome,
      http_status: a.httpStatus,
      provider_code: a.providerCode?.slice(0, 100) ?? null,
      message: a.message?.slice(0, 500) ?? null,
      latency_ms: Math.round(a.latencyMs),
      worker_id: i.workerId,
      job_id: i.attempts.jobId ?? null,
    })),
  )
  const acol = <K extends keyof (typeof attempts)[number]>(k: K) => attempts.map((a) => a[k])
  const res = await sql<{ id: number }>`${prepared('ledger_transitions')}
    WITH d AS (
      SELECT * FROM unnest(
        ${col((i) => i.receiptId)}::bigint[], ${col((i) => i.workerId)}::text[], ${col((i) => t(i).state)}::text[],
        ${col((i) => t(i).needsLookup ?? null)}::boolean[], ${col((i) => TERMINAL.includes(t(i).state))}::boolean[],
        ${col((i) => t(i).receipt !== undefined)}::boolean[], ${col((i) => t(i).receipt?.approvalNumber ?? null)}::text[],
        ${col((i) => t(i).receipt?.providerReceiptId ?? null)}::text[], ${col((i) => t(i).receipt?.receiptUrl ?? null)}::text[],
        ${col((i) => validDate(t(i).receipt?.issuedAt ?? null)?.toISOString() ?? null)}::timestamptz[],
        ${col((i) => t(i).error !== undefined)}::boolean[], ${col((i) => t(i).error?.errorClass ?? null)}::text[],
        ${col((i) => t(i).error?.code?.slice(0, 100) ?? null)}::text[], ${col((i) => t(i).error?.message?.slice(0, 1000) ?? null)}::text[],
        ${col((i) => t(i).skipReason ?? null)}::text[], ${col((i) => t(i).amounts !== undefined)}::boolean[],
        ${col((i) => t(i).amounts?.total ?? null)}::bigint[], ${col((i) => t(i).amounts?.supply ?? null)}::bigint[],
        ${col((i) => t(i).amounts?.vat ?? null)}::bigint[], ${col((i) => t(i).amounts?.taxFree ?? null)}::bigint[],
        ${col((i) => t(i).amounts?.serviceFee ?? null)}::bigint[]
      ) AS d(id, worker, state, needs_lookup, terminal, has_receipt, approval_number, provider_receipt_id, receipt_url, issued_at,
             has_error, error_class, error_code, error_message, skip_reason, has_amounts, total, supply, vat, tax_free, service_fee)
    ),
    att AS (
      INSERT INTO issuance_attempts (receipt_id, attempt_no, operation, started_at, finished_at, outcome, http_status, provider_code, message, latency_ms, worker_id, job_id)
      SELECT * FROM unnest(
        ${acol('receipt_id')}::bigint[], ${acol('attempt_no')}::int[], ${acol('operation')}::text[], ${acol('started_at')}::timestamptz[],
        ${acol('finished_at')}::timestamptz[], ${acol('outcome')}::text[], ${acol('http_status')}::smallint[], ${acol('provider_code')}::text[],
        ${acol('message')}::text[], ${acol('latency_ms')}::int[], ${acol('worker_id')}::text[], ${acol('job_id')}::text[]
      )
    ),
    locked AS MATERIALIZED (
      -- id order, like claimReceipts: two batches never wait on each other in a cycle
      SELECT r.id FROM receipts r JOIN d ON d.id = r.id AND r.state = 'issuing' AND r.locked_by = d.worker ORDER BY r.id FOR UPDATE OF r
    )
    UPDATE receipts r SET
      state = d.state,
      updated_at = now(),
      locked_by = NULL,
      locked_until = NULL,
      needs_lookup = COALESCE(d.needs_lookup, r.needs_lookup),
      finished_at = CASE WHEN d.terminal THEN now() ELSE r.finished_at END,
      approval_number = CASE WHEN d.has_receipt THEN d.approval_number ELSE r.approval_number END,
      provider_receipt_id = CASE WHEN d.has_receipt THEN d.provider_receipt_id ELSE r.provider_receipt_id END,
      receipt_url = CASE WHEN d.has_receipt THEN d.receipt_url ELSE r.receipt_url END,
      -- a provider timestamp we cannot parse must never fail the bookkeeping of a live receipt
      issued_at = CASE WHEN d.has_receipt THEN COALESCE(d.issued_at, now()) ELSE r.issued_at END,
      error_class = CASE WHEN d.has_error THEN d.error_class ELSE r.error_class END,
      error_code = CASE WHEN d.has_error THEN d.error_code ELSE r.error_code END,
      error_message = CASE WHEN d.has_error THEN d.error_message ELSE r.error_message END,
      skip_reason = COALESCE(d.skip_reason, r.skip_reason),
      total_amount = CASE WHEN d.has_amounts THEN d.total ELSE r.total_amount END,
      supply_amount = CASE WHEN d.has_amounts THEN d.supply ELSE r.supply_amount END,
      vat_amount = CASE WHEN d.has_amounts THEN d.vat ELSE r.vat_amount END,
      tax_free_amount = CASE WHEN d.has_amounts THEN d.tax_free ELSE r.tax_free_amount END,
      service_fee = CASE WHEN d.has_amounts THEN d.service_fee ELSE r.service_fee END
    FROM d JOIN locked l ON l.id = d.id
    WHERE r.id = d.id AND r.state = 'issuing' AND r.locked_by = d.worker
    RETURNING r.id
  `.execute(db)
  return new Set(res.rows.map((r) => Number(r.id)))
}

/**
 * Applies a transition to a row this worker owns (state issuing, locked_by = worker). Returns false
 * when the row was taken over meanwhile (lease expired): the caller must then leave it alone.
 */
export async function transition(db: Db, receiptId: number, workerId: string, t: Transition, attempts: TransitionItem['attempts']): Promise<boolean> {
  return (await applyTransitions(db, [{ receiptId, workerId, transition: t, attempts }])).has(receiptId)
}

/** Extends the lease while a long call (throttled wait, lookup + issue) is in progress. */
export async function extendLease(db: Db, receiptId: number, workerId: string, leaseMs: number): Promise<boolean> {
  const res = await db
    .updateTable('receipts')
    .set({ locked_until: sql`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where('id', '=', receiptId)
    .where('state', '=', 'issuing')
    .where('locked_by', '=', workerId)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * BullMQ gave up on a job for a reason the handler never saw (stalled more than allowed, lock lost
 * on the last attempt): the row must not stay pending/issuing with no job behind it. It becomes
 * `failed` with needs_lookup (a call may have been in flight) so `redrive` picks it up. Rows another
 * worker holds under a live lease are left alone.
 */
export async function failOrphaned(db: Db, receiptId: number, errorClass: string, message: string): Promise<boolean> {
  const res = await db
    .updateTable('receipts')
    .set({
      state: 'failed',
      needs_lookup: true,
      error_class: errorClass,
      error_code: 'QUEUE',
      error_message: message.slice(0, 1000),
      locked_by: null,
      locked_until: null,
      finished_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', receiptId)
    .where((eb) => eb.or([eb('state', '=', 'pending'), eb.and([eb('state', '=', 'issuing'), eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', sql<Date>`now()`)])])]))
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

function validDate(iso: string | null): Date | null {
  if (!iso) return null
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? null : d
}
