/**
 * The ledger operations of the exactly-once protocol. Every state change is one conditional
 * statement, so a second worker holding the same job can never move a row it does not own.
 *
 *   pending → issuing → issued | failed | skipped        (kind issue)
 *   issued → cancelling → cancelled                      (the issue row, on a full cancel)
 *   pending → issuing → issued | failed                  (kind cancel: "issued" = cancel accepted)
 */
import { sql } from 'kysely'
import type { Db } from './database.ts'
import type { Receipt, ReceiptState } from './schema.ts'
import type { OutcomeKind, ProviderReceipt } from '../providers/types.ts'

export type ClaimResult =
  | { readonly status: 'claimed'; readonly receipt: Receipt; readonly prevState: ReceiptState }
  /** Terminal or owned by a cancel flow: nothing to do, the job completes. */
  | { readonly status: 'done'; readonly state: ReceiptState }
  /** Another worker holds a live lease (a redelivered job racing the original): try again later. */
  | { readonly status: 'leased'; readonly retryInMs: number }
  | { readonly status: 'missing' }

/**
 * Takes ownership of a receipt for one attempt: pending, or issuing whose lease expired (a crashed
 * or timed-out worker). A row taken over from `issuing` gets needs_lookup, because the previous
 * call may have reached the provider.
 */
export async function claimReceipt(db: Db, receiptId: number, workerId: string, leaseMs: number): Promise<ClaimResult> {
  const res = await sql<Receipt & { prev_state: ReceiptState }>`
    WITH prev AS (
      SELECT id, state, locked_until FROM receipts WHERE id = ${receiptId} FOR UPDATE
    )
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
    RETURNING r.*, prev.state AS prev_state
  `.execute(db)
  const row = res.rows[0]
  if (row) {
    const { prev_state, ...receipt } = row
    return { status: 'claimed', receipt: receipt as Receipt, prevState: prev_state }
  }
  const current = await db
    .selectFrom('receipts')
    .select(['state', sql<number>`extract(epoch from (locked_until - now())) * 1000`.as('lease_left_ms')])
    .where('id', '=', receiptId)
    .executeTakeFirst()
  if (!current) return { status: 'missing' }
  if (current.state === 'issuing') return { status: 'leased', retryInMs: Math.max(250, Number(current.lease_left_ms) + 50) }
  return { status: 'done', state: current.state }
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

/** Inserts attempt rows; callers batch them with the state change in one transaction when they can. */
export async function insertAttempts(
  db: Db,
  receipt: Pick<Receipt, 'id' | 'attempts'>,
  workerId: string,
  jobId: string | undefined,
  attempts: readonly AttemptRecord[],
): Promise<void> {
  if (attempts.length === 0) return
  await db
    .insertInto('issuance_attempts')
    .values(
      attempts.map((a) => ({
        receipt_id: receipt.id,
        attempt_no: receipt.attempts,
        operation: a.operation,
        started_at: a.startedAt,
        finished_at: a.finishedAt,
        outcome: a.outcome,
        http_status: a.httpStatus,
        provider_code: a.providerCode?.slice(0, 100) ?? null,
        message: a.message?.slice(0, 500) ?? null,
        latency_ms: Math.round(a.latencyMs),
        worker_id: workerId,
        job_id: jobId ?? null,
      })),
    )
    .execute()
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

/**
 * Applies a transition to a row this worker owns (state issuing, locked_by = worker). Returns false
 * when the row was taken over meanwhile (lease expired): the caller must then leave it alone.
 */
export async function transition(
  db: Db,
  receiptId: number,
  workerId: string,
  t: Transition,
  attempts: { readonly receipt: Pick<Receipt, 'id' | 'attempts'>; readonly jobId?: string; readonly rows: readonly AttemptRecord[] },
): Promise<boolean> {
  const apply = async (trx: Db) => {
    await insertAttempts(trx, attempts.receipt, workerId, attempts.jobId, attempts.rows)
    const terminal = t.state === 'issued' || t.state === 'failed' || t.state === 'skipped' || t.state === 'cancelled'
    const res = await trx
      .updateTable('receipts')
      .set({
        state: t.state,
        updated_at: sql`now()`,
        locked_by: null,
        locked_until: null,
        ...(t.needsLookup !== undefined ? { needs_lookup: t.needsLookup } : {}),
        ...(terminal ? { finished_at: sql`now()` } : {}),
        ...(t.receipt
          ? {
              approval_number: t.receipt.approvalNumber,
              provider_receipt_id: t.receipt.providerReceiptId,
              receipt_url: t.receipt.receiptUrl,
              // A provider timestamp we cannot parse must never fail the bookkeeping of a live receipt.
              issued_at: validDate(t.receipt.issuedAt) ?? sql`now()`,
            }
          : {}),
        ...(t.error !== undefined
          ? {
              error_class: t.error?.errorClass ?? null,
              error_code: t.error?.code?.slice(0, 100) ?? null,
              error_message: t.error?.message?.slice(0, 1000) ?? null,
            }
          : {}),
        ...(t.skipReason ? { skip_reason: t.skipReason } : {}),
        ...(t.amounts
          ? {
              total_amount: t.amounts.total,
              supply_amount: t.amounts.supply,
              vat_amount: t.amounts.vat,
              tax_free_amount: t.amounts.taxFree,
              service_fee: t.amounts.serviceFee,
            }
          : {}),
      })
      .where('id', '=', receiptId)
      .where('state', '=', 'issuing')
      .where('locked_by', '=', workerId)
      .executeTakeFirst()
    return Number(res.numUpdatedRows) === 1
  }
  return db.isTransaction ? apply(db) : db.transaction().execute(apply)
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
