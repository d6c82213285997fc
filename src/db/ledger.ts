/**
 * The receipts ledger: the ONE module that writes the `receipts` table. Every write is a named
 * operation below, and each carries its guard in the WHERE clause (the states it may start from and,
 * for a row a worker holds, the lease owner), so a racing worker, a redelivered job or an operator
 * command can never move a row along an edge not listed here. An operation whose guard does not hold
 * changes nothing and says so: false, null, or the row missing from its result.
 *
 * States: pending, issuing (a worker holds a lease: locked_by, locked_until), issued, failed,
 * skipped, cancelling, cancelled. Kind `issue` is one row per transaction; kind `cancel` (seq 1, 2, …)
 * points at the issue row it cancels, and its `issued` means the 취소 receipt was accepted.
 *
 *   operation            kind    from                                   to
 *   insertIssueReceipts  issue   no row for (transaction, issue)        pending | skipped
 *   insertIssueReceiptsIsolating                                        the same; a row the table refuses
 *                                                                       is returned with why, not inserted
 *   insertCancelReceipt  cancel  parent issue row issued, no open cancel pending
 *   claimReceipts        any     pending | issuing with expired lease   issuing (new owner, attempts + 1;
 *                                                                       needs_lookup when taken over)
 *   extendLease          any     issuing, locked_by = worker            issuing (later locked_until)
 *   fenceSend            any     issuing, locked_by = worker            issuing (locked_until never earlier,
 *                                                                       last_sent_at = now); an attempt row 'sent'
 *   applyTransitions     issue   issuing, locked_by = worker            pending | issued | failed | skipped | cancelled
 *                        cancel  issuing, locked_by = worker            pending | issued | failed
 *   failOrphaned         any     pending | issuing with expired lease   failed (needs_lookup)
 *   bumpRequeue          any     pending | issuing with expired lease,  unchanged; requeue_count + 1 (a fresh job id),
 *                                requeue_count as the caller read it    needs_lookup when issuing
 *   beginFullCancel      issue   issued                                 cancelling
 *   recordCancelOutcome  cancel  issuing, locked_by = worker            pending | issued | failed, and in the same
 *                                                                       transaction, when the cancel row moved:
 *                        issue   issued | cancelling (full cancel)      cancelled        (cancel accepted)
 *                        issue   issued (partial cancel)                issued, cancelled_amount + the cancel's total
 *                        issue   cancelling                             issued           (full cancel failed for good)
 *                        issue   (none: a new row)                      pending, replaces_receipt_id (an accepted full cancel
 *                                                                       with reissue_amount: the re-issue for what is still paid)
 *   redriveFailed        any     failed                                 pending (issue rows: a fresh idempotency key),
 *                                                                       both updates in one transaction
 *   repairFromProvider   issue   failed | pending                       issued | cancelled (what the provider holds)
 *                        issue   issued                                 cancelled
 *   markReconciled       issue   issued | cancelled (the state read)    unchanged; reconciled_at, flag cleared
 *   flagReconcile        issue   issued | cancelled (the state read)    unchanged; reconcile_flag set
 *   correctAmountsFromProvider issue issued, no partial cancel, total as read  issued; the provider's amounts (reconcile)
 *   finalizeProvisional  issue   issued, provisional                    issued, final (tax authority accepted)
 *   failProvisional      issue   issued, provisional, nothing cancelled failed, class tax_authority, code TSx
 *                                and no cancel open                     (tax authority refused)
 *
 * An issue row recorded issued with `provisional` (Toss: the tax authority's answer comes a day or
 * two later) is live like any issued row — it can be cancelled — until reconcile finalises or fails it.
 *
 * Terminal: skipped; issued and cancelled move only by cancellation or reconcile; failed only by
 * re-drive or reconcile. Nothing ever deletes a receipt.
 *
 * The worker's hot path (claim, applyTransitions) runs as prepared statements batched by
 * ledger-batcher.ts; the other operations are occasional and plain.
 *
 * History: every operation that changes a row's state or owner (the creations, claim, claimBatch, applyTransitions,
 * failOrphaned, bumpRequeue, beginFullCancel, recordCancelOutcome, redriveFailed, repairFromProvider,
 * failProvisional) writes one receipt_transitions row per moved receipt in the SAME statement (a
 * data-modifying CTE fed by the update's RETURNING), with its cause, so a history row exists exactly
 * when the guarded change applied. Any new operation that moves receipts.state must do the same
 * (docs/architecture.md, "Receipt transition history").
 */
import { sql, type UpdateQueryBuilder } from 'kysely'
import { prepared, type Db } from './database.ts'
import { boolArray, intArray, textArray } from './pg-arrays.ts'
import type { CashTransaction, Database, NewReceipt, Receipt, ReceiptKind, ReceiptState, ReceiptsTable } from './schema.ts'
import type { OutcomeKind, ProviderReceipt, ReceiptAmounts } from '../domain/index.ts'

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
  'id',
  'transaction_id',
  'kind',
  'seq',
  'merchant_id',
  'provider',
  'state',
  'provider_key',
  'idempotency_key',
  'portone_payment',
  'needs_lookup',
  'approval_number',
  'total_amount',
  'supply_amount',
  'vat_amount',
  'tax_free_amount',
  'service_fee',
  'cancelled_amount',
  'purpose',
  'self_issued',
  'trade_date',
  'deadline',
  'provider_receipt_id',
  'receipt_url',
  'skip_reason',
  'error_class',
  'error_code',
  'error_message',
  'attempts',
  'locked_by',
  'locked_until',
  'last_sent_at',
  'run_id',
  'last_run_id',
  'redrive_count',
  'requeue_count',
  'parent_receipt_id',
  'reissue_amount',
  'replaces_receipt_id',
  'cancel_reason',
  'reconcile_flag',
  'reconciled_at',
  'provisional',
  'created_at',
  'updated_at',
  'issued_at',
  'finished_at',
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
    ),
    logged AS (
      INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, worker_id)
      SELECT c.id, c.prev_state, 'issuing', CASE WHEN c.prev_state = 'issuing' THEN 'lease_takeover' ELSE 'attempt:' || c.attempts END, ${workerId}::text
      FROM claimed c
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
  /** The issuance_attempts row the send fence wrote ('sent') for this request; completed, not inserted. */
  readonly id?: number
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
  /**
   * The attempt was put off before its call (a throttle deferral): the claim does not count, so
   * `attempts` goes back down by the one the claim added.
   */
  readonly uncounted?: boolean
  /**
   * Why, for the receipt's transition history (receipt_transitions.cause). Default: `deferred` for an
   * uncounted attempt, `lookup` when only lookups were made, else `attempt:<n>`.
   */
  readonly cause?: string
}

/** One transition of a row owned by `workerId`, with the attempt rows of the calls made for it. */
export interface TransitionItem {
  readonly receiptId: number
  readonly workerId: string
  readonly transition: Transition
  readonly attempts: { readonly receipt: Pick<Receipt, 'id' | 'attempts'>; readonly jobId?: string; readonly rows: readonly AttemptRecord[] }
}

const TERMINAL: readonly ReceiptState[] = ['issued', 'failed', 'skipped', 'cancelled']
/** The states an attempt may end in, per kind (a cancel row is never skipped or cancelled itself). */
const RECORDABLE = sql.raw(`d.state IN ('pending', 'issued', 'failed', 'skipped', 'cancelled') AND (r.kind = 'issue' OR d.state IN ('pending', 'issued', 'failed'))`)

/**
 * Applies transitions to rows their workers own (state issuing, locked_by = worker; the target one
 * the row's kind may end an attempt in) and inserts the attempt rows, all in ONE statement (atomic, one commit) however many items. Returns the ids whose
 * update applied; an id missing from the result was taken over meanwhile (lease expired) and the
 * caller must leave it alone. The attempt rows are recorded either way: the calls happened.
 */
export async function applyTransitions(db: Db, items: readonly TransitionItem[]): Promise<Set<number>> {
  if (items.length === 0) return new Set()
  const col = <T>(f: (i: TransitionItem) => T) => items.map(f)
  const t = (i: TransitionItem) => i.transition
  const attempts = items.flatMap((i) =>
    i.attempts.rows.map((a) => ({
      id: a.id ?? null,
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
        ${col((i) => t(i).amounts?.serviceFee ?? null)}::bigint[], ${col((i) => t(i).receipt?.provisional === true)}::boolean[],
        ${col((i) => t(i).uncounted === true)}::boolean[], ${col(causeOf)}::text[], ${col((i) => i.attempts.jobId ?? null)}::text[]
      ) AS d(id, worker, state, needs_lookup, terminal, has_receipt, approval_number, provider_receipt_id, receipt_url, issued_at,
             has_error, error_class, error_code, error_message, skip_reason, has_amounts, total, supply, vat, tax_free, service_fee, provisional,
             uncounted, cause, job_id)
    ),
    att AS (
      -- a request the send fence recorded as 'sent' is completed; any other call (lookups) is inserted
      INSERT INTO issuance_attempts AS a (id, receipt_id, attempt_no, operation, started_at, finished_at, outcome, http_status, provider_code, message, latency_ms, worker_id, job_id)
      SELECT coalesce(v.id, nextval(pg_get_serial_sequence('issuance_attempts', 'id'))), v.receipt_id, v.attempt_no, v.operation, v.started_at,
        v.finished_at, v.outcome, v.http_status, v.provider_code, v.message, v.latency_ms, v.worker_id, v.job_id
      FROM unnest(
        ${acol('id')}::bigint[], ${acol('receipt_id')}::bigint[], ${acol('attempt_no')}::int[], ${acol('operation')}::text[], ${acol('started_at')}::timestamptz[],
        ${acol('finished_at')}::timestamptz[], ${acol('outcome')}::text[], ${acol('http_status')}::smallint[], ${acol('provider_code')}::text[],
        ${acol('message')}::text[], ${acol('latency_ms')}::int[], ${acol('worker_id')}::text[], ${acol('job_id')}::text[]
      ) AS v(id, receipt_id, attempt_no, operation, started_at, finished_at, outcome, http_status, provider_code, message, latency_ms, worker_id, job_id)
      ON CONFLICT (id) DO UPDATE SET finished_at = EXCLUDED.finished_at, outcome = EXCLUDED.outcome, http_status = EXCLUDED.http_status,
        provider_code = EXCLUDED.provider_code, message = EXCLUDED.message, latency_ms = EXCLUDED.latency_ms
      WHERE a.outcome = 'sent' AND a.receipt_id = EXCLUDED.receipt_id
    ),
    locked AS MATERIALIZED (
      -- id order, like claimReceipts: two batches never wait on each other in a cycle. By id alone (the
      -- primary key; the guard is the update's): a state condition here lets the planner scan every
      -- row in state issuing, all workers' in-flight rows, for each batch.
      SELECT r.id FROM receipts r WHERE r.id = ANY(${col((i) => i.receiptId)}::bigint[]) ORDER BY r.id FOR UPDATE
    ),
    moved AS (
      UPDATE receipts r SET
        state = d.state,
        updated_at = now(),
        locked_by = NULL,
        locked_until = NULL,
        needs_lookup = COALESCE(d.needs_lookup, r.needs_lookup),
        attempts = CASE WHEN d.uncounted THEN GREATEST(r.attempts - 1, 0) ELSE r.attempts END,
        finished_at = CASE WHEN d.terminal THEN now() ELSE r.finished_at END,
        approval_number = CASE WHEN d.has_receipt THEN d.approval_number ELSE r.approval_number END,
        provider_receipt_id = CASE WHEN d.has_receipt THEN d.provider_receipt_id ELSE r.provider_receipt_id END,
        receipt_url = CASE WHEN d.has_receipt THEN d.receipt_url ELSE r.receipt_url END,
        -- only an issue row can be provisional (a cancel row's receipt is the cancellation)
        provisional = CASE WHEN d.has_receipt THEN d.provisional AND r.kind = 'issue' AND d.state = 'issued' ELSE r.provisional END,
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
      WHERE r.id = d.id AND r.state = 'issuing' AND r.locked_by = d.worker AND ${RECORDABLE}
      RETURNING r.id, r.state, d.cause, d.job_id, d.worker
    ),
    logged AS (
      -- the guard above holds only from issuing: that is the from state of every row that moved
      INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, job_id, worker_id)
      SELECT m.id, 'issuing', m.state, m.cause, m.job_id, m.worker FROM moved m
    )
    SELECT id FROM moved
  `.execute(db)
  return new Set(res.rows.map((r) => Number(r.id)))
}

/** The transition's cause (see Transition.cause): given, deferred, lookup-only, or the attempt number. */
function causeOf(i: TransitionItem): string {
  const t = i.transition
  if (t.cause) return t.cause.slice(0, 100)
  if (t.uncounted) return 'deferred'
  const ops = i.attempts.rows.map((a) => a.operation)
  if (ops.length > 0 && ops.every((o) => o === 'lookup')) return 'lookup'
  return `attempt:${i.attempts.receipt.attempts}`
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

/** The attempt row a fence writes before its request leaves: outcome 'sent', completed by applyTransitions. */
export interface SentAttempt {
  readonly operation: 'issue' | 'cancel'
  /** The receipt's attempts count of the claim this request belongs to. */
  readonly attemptNo: number
  readonly jobId: string | null
}

export interface FenceItem {
  readonly receiptId: number
  readonly coverMs: number
  readonly attempt: SentAttempt
}

/**
 * The fence before one issue or cancel request: proves this worker still owns the row, makes the
 * lease cover the request (`locked_until` at least `now() + coverMs`, never shortened), records the
 * send time, and inserts the request's issuance_attempts row (outcome 'sent', started now), all in
 * one statement that commits before the request goes out: a worker killed mid-call leaves the row.
 * Returns, per receipt still owned, the attempt row's id; a receipt missing from the map was taken
 * over (or left issuing) and its request must not be sent. Many rows in one statement (one commit);
 * id order, like the claim, so concurrent batches never wait on each other in a cycle.
 */
export async function fenceSends(db: Db, workerId: string, items: readonly FenceItem[]): Promise<Map<number, number>> {
  if (items.length === 0) return new Map()
  const col = <T>(f: (i: FenceItem) => T) => items.map(f)
  const res = await sql<{ receipt_id: number; attempt_id: number }>`${prepared('ledger_fence')}
    WITH d AS (
      SELECT * FROM unnest(${col((i) => i.receiptId)}::bigint[], ${col((i) => i.coverMs / 1000)}::float8[], ${col((i) => i.attempt.operation)}::text[],
        ${col((i) => i.attempt.attemptNo)}::int[], ${col((i) => i.attempt.jobId)}::text[]) AS d(id, cover_s, operation, attempt_no, job_id)
    ),
    locked AS MATERIALIZED (
      -- by id alone (the primary key; the guard is the update's), like applyTransitions
      SELECT r.id FROM receipts r WHERE r.id = ANY(${col((i) => i.receiptId)}::bigint[]) ORDER BY r.id FOR UPDATE
    ),
    fenced AS (
      UPDATE receipts r SET
        locked_until = GREATEST(r.locked_until, now() + make_interval(secs => d.cover_s)),
        last_sent_at = clock_timestamp()
      FROM d JOIN locked l ON l.id = d.id
      WHERE r.id = d.id AND r.state = 'issuing' AND r.locked_by = ${workerId}
      RETURNING r.id, r.last_sent_at
    )
    INSERT INTO issuance_attempts (receipt_id, attempt_no, operation, started_at, outcome, worker_id, job_id)
    SELECT f.id, d.attempt_no, d.operation, f.last_sent_at, 'sent', ${workerId}, d.job_id FROM fenced f JOIN d ON d.id = f.id
    RETURNING receipt_id, id AS attempt_id
  `.execute(db)
  return new Map(res.rows.map((r) => [Number(r.receipt_id), Number(r.attempt_id)]))
}

/** {@link fenceSends} for one row: the attempt row's id, or null when the row is no longer this worker's. */
export async function fenceSend(db: Db, receiptId: number, workerId: string, coverMs: number, attempt: SentAttempt): Promise<number | null> {
  return (await fenceSends(db, workerId, [{ receiptId, coverMs, attempt }])).get(receiptId) ?? null
}

/**
 * How long, from the database's clock, until `windowMs` has passed since the row's last send
 * (0 when it has, or when nothing was ever sent).
 */
export async function commitWindowLeftMs(db: Db, receiptId: number, windowMs: number): Promise<number> {
  if (windowMs <= 0) return 0
  const row = await db
    .selectFrom('receipts')
    .select(sql<string | null>`extract(epoch from (last_sent_at + make_interval(secs => ${windowMs / 1000}) - clock_timestamp())) * 1000`.as('left_ms'))
    .where('id', '=', receiptId)
    .executeTakeFirst()
  const left = row?.left_ms == null ? 0 : Number(row.left_ms)
  return left > 0 ? Math.ceil(left) : 0
}

/**
 * BullMQ gave up on a job for a reason the handler never saw (stalled more than allowed, lock lost
 * on the last attempt): the row must not stay pending/issuing with no job behind it. It becomes
 * `failed` with needs_lookup (a call may have been in flight) so `redrive` picks it up. Rows another
 * worker holds under a live lease are left alone.
 */
export async function failOrphaned(db: Db, receiptId: number, errorClass: string, message: string): Promise<boolean> {
  const res = await sql<{ id: number }>`
    WITH prev AS MATERIALIZED (SELECT id, state FROM receipts WHERE id = ${receiptId}::bigint FOR UPDATE),
    moved AS (
      UPDATE receipts r SET
        state = 'failed',
        needs_lookup = true,
        error_class = ${errorClass}::text,
        error_code = 'QUEUE',
        error_message = ${message.slice(0, 1000)}::text,
        locked_by = NULL,
        locked_until = NULL,
        finished_at = now(),
        updated_at = now()
      FROM prev
      WHERE r.id = prev.id
        AND (prev.state = 'pending' OR (prev.state = 'issuing' AND (r.locked_until IS NULL OR r.locked_until < now())))
      RETURNING r.id, prev.state AS from_state
    ),
    logged AS (
      INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause) SELECT id, from_state, 'failed', 'queue_gave_up' FROM moved
    )
    SELECT id FROM moved`.execute(db)
  return res.rows.length === 1
}

/** A row the caller read, to be put on the queue under a fresh job id. */
export interface RequeueItem {
  readonly id: number
  /** requeue_count as the caller read it: the guard that makes one of two racing callers win. */
  readonly requeueCount: number
}

/**
 * A receipt whose job is gone or finished while the row still needs work starts a new job
 * generation: requeue_count + 1, which is part of its job id (queue/queues.ts), so the job added next
 * is never one BullMQ already holds as finished. Guard: the row still needs work (pending, or issuing
 * whose lease expired) and requeue_count is still what the caller read, so of two callers racing on
 * one row exactly one wins and only the winner enqueues. A row taken from `issuing` gets needs_lookup:
 * the call its vanished worker was making may have reached the provider. updated_at moves, so a
 * recovery pass gives the job being added its grace period. Returns the rows that moved, with the
 * new count.
 */
export async function bumpRequeue(db: Db, items: readonly RequeueItem[]): Promise<{ id: number; requeue_count: number }[]> {
  if (items.length === 0) return []
  const res = await sql<{ id: number; requeue_count: number }>`
    WITH v AS (SELECT * FROM unnest(${items.map((i) => i.id)}::bigint[], ${items.map((i) => i.requeueCount)}::int[]) AS v(id, n)),
    locked AS MATERIALIZED (SELECT r.id FROM receipts r JOIN v ON v.id = r.id ORDER BY r.id FOR UPDATE OF r),
    bumped AS (
    UPDATE receipts r SET
      requeue_count = r.requeue_count + 1,
      needs_lookup = r.needs_lookup OR r.state = 'issuing',
      updated_at = now()
    FROM v JOIN locked l ON l.id = v.id
    WHERE r.id = v.id AND r.requeue_count = v.n
      AND (r.state = 'pending' OR (r.state = 'issuing' AND (r.locked_until IS NULL OR r.locked_until < now())))
    RETURNING r.id, r.requeue_count, r.state
  ),
  logged AS (
    -- not a change of state but of owner: the row's next job generation (issuing: the old lease is given up)
    INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause) SELECT id, state, state, 'recover' FROM bumped
  )
  SELECT id, requeue_count FROM bumped`.execute(db)
  return res.rows.map((r) => ({ id: Number(r.id), requeue_count: r.requeue_count }))
}

// ---------------------------------------------------------------------------------------------
// Creation

/**
 * Settlement: one issue row per transaction, pending or skipped, in one INSERT … SELECT FROM
 * unnest(…) per chunk (a few array parameters instead of a VALUES list with ~20 bind parameters per
 * row). Conflict only on (transaction, kind, seq): a concurrent settle of the same window inserts
 * nothing twice, and a provider-key clash still fails loudly, never drops a row. A row in any other
 * state is not inserted. Settlement calls it through {@link insertIssueReceiptsIsolating}.
 */
export async function insertIssueReceipts(db: Db, receipts: readonly NewReceipt[]): Promise<InsertedIssueReceipt[]> {
  if (receipts.length === 0) return []
  // Each column goes as one array literal (pg-arrays.ts): pg's per-element encoding of 20 arrays was
  // a measurable share of settle's thread. The statement returns only what the caller cannot know —
  // each new row's id, with its transaction to match it to the input — and the rest is taken from
  // the input row, which is what was inserted (redrive_count: the column's default, 0, on a new row).
  const res = await sql<{ id: number; transaction_id: string }>`
    WITH ins AS (
    INSERT INTO receipts (transaction_id, kind, merchant_id, provider, provider_key, idempotency_key, portone_payment, trade_date, deadline,
      run_id, last_run_id, total_amount, supply_amount, vat_amount, tax_free_amount, service_fee, state, purpose, skip_reason, finished_at, self_issued)
    SELECT transaction_id, 'issue', merchant_id, provider, provider_key, idempotency_key, portone_payment, trade_date, deadline,
      run_id, last_run_id, total_amount, supply_amount, vat_amount, tax_free_amount, service_fee, state, purpose, skip_reason, finished_at, self_issued
    FROM unnest(
      ${textArray(receipts, (r) => r.transaction_id)}::text[], ${textArray(receipts, (r) => r.merchant_id)}::text[], ${textArray(receipts, (r) => r.provider)}::text[],
      ${textArray(receipts, (r) => r.provider_key)}::text[], ${textArray(receipts, (r) => r.idempotency_key)}::text[], ${boolArray(receipts, (r) => r.portone_payment ?? false)}::boolean[],
      ${textArray(receipts, (r) => r.trade_date)}::date[], ${textArray(receipts, (r) => r.deadline)}::date[],
      ${intArray(receipts, (r) => r.run_id ?? null)}::bigint[], ${intArray(receipts, (r) => r.last_run_id ?? null)}::bigint[],
      ${intArray(receipts, (r) => r.total_amount ?? 0)}::bigint[], ${intArray(receipts, (r) => r.supply_amount ?? 0)}::bigint[], ${intArray(receipts, (r) => r.vat_amount ?? 0)}::bigint[],
      ${intArray(receipts, (r) => r.tax_free_amount ?? 0)}::bigint[], ${intArray(receipts, (r) => r.service_fee ?? 0)}::bigint[],
      ${textArray(receipts, (r) => r.state)}::text[], ${textArray(receipts, (r) => r.purpose)}::text[], ${textArray(receipts, (r) => r.skip_reason ?? null)}::text[],
      ${textArray(receipts, (r) => (r.finished_at ? new Date(r.finished_at as Date).toISOString() : null))}::timestamptz[],
      ${boolArray(receipts, (r) => r.self_issued ?? false)}::boolean[]
    ) AS n(transaction_id, merchant_id, provider, provider_key, idempotency_key, portone_payment, trade_date, deadline,
      run_id, last_run_id, total_amount, supply_amount, vat_amount, tax_free_amount, service_fee, state, purpose, skip_reason, finished_at, self_issued)
    WHERE n.state IN ('pending', 'skipped')
    ON CONFLICT (transaction_id, kind, seq) DO NOTHING
    RETURNING id, transaction_id, state, run_id
    ),
    logged AS (
      INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, run_id) SELECT id, NULL, state, 'settle', run_id FROM ins
    )
    SELECT id, transaction_id FROM ins
  `.execute(db)
  // The rows come back in input order in practice (one INSERT … SELECT over unnest); matching by
  // transaction (one issue row per transaction per call) holds whatever the order.
  const out: InsertedIssueReceipt[] = []
  let i = 0
  let byTransaction: Map<string, NewReceipt> | null = null
  for (const row of res.rows) {
    while (i < receipts.length && receipts[i]!.transaction_id !== row.transaction_id) i++
    let r = receipts[i]
    if (r === undefined) {
      byTransaction ??= new Map(receipts.map((x) => [x.transaction_id, x]))
      r = byTransaction.get(row.transaction_id)!
    } else i++
    out.push({ id: row.id, state: r.state, trade_date: r.trade_date, redrive_count: 0, merchant_id: r.merchant_id, provider: r.provider, skip_reason: r.skip_reason ?? null })
  }
  return out
}

/** A receipt settlement created: its id and what the caller needs to count and enqueue it. */
export interface InsertedIssueReceipt {
  readonly id: number
  readonly state: ReceiptState
  readonly trade_date: string
  readonly redrive_count: number
  readonly merchant_id: string
  readonly provider: string
  readonly skip_reason: string | null
}

/** Why the receipts table refused one issue row (a reason, never the key or the row's values). */
export interface RefusedIssueReceipt {
  readonly receipt: NewReceipt
  /** KEY_CONFLICT: another transaction's issue receipt has the provider key; KEY_INVALID: the key is
   * too long for the provider-key index; ROW_INVALID: the row breaks a check or a type's range. */
  readonly code: 'KEY_CONFLICT' | 'KEY_INVALID' | 'ROW_INVALID'
  readonly sqlstate: string
  readonly constraint: string | null
  /** KEY_CONFLICT: the transaction whose receipt holds the key (null if it could not be read). */
  readonly heldBy: string | null
}

/**
 * Errors one row's data causes; anything else (connection, server, a lock timeout, a missing
 * referenced row) is not the row's fault and must stop the caller, not be blamed on a row.
 */
function refusalOf(err: unknown): Pick<RefusedIssueReceipt, 'code' | 'sqlstate' | 'constraint'> | null {
  const e = err as { code?: unknown; constraint?: unknown } | null
  if (!e || typeof e.code !== 'string') return null
  const constraint = typeof e.constraint === 'string' ? e.constraint : null
  if (e.code === '23505' && constraint === 'receipts_provider_key') return { code: 'KEY_CONFLICT', sqlstate: e.code, constraint }
  if (e.code === '54000') return { code: 'KEY_INVALID', sqlstate: e.code, constraint }
  if (e.code.startsWith('22') || e.code === '23514') return { code: 'ROW_INVALID', sqlstate: e.code, constraint }
  return null
}

/**
 * {@link insertIssueReceipts} for settlement, where a transaction may carry data the receipts table
 * refuses (written by an older version or by hand): one statement for the batch as long as it goes
 * through; when the table refuses a row, the batch is halved and each half tried again, down to the
 * single rows it refuses, which are returned instead of inserted (about 2·log2(n) statements per bad
 * row; a failed statement writes nothing, so no row is inserted twice). Among rows sharing a provider
 * key, the one earlier in the batch keeps it. Run it outside a transaction: a refused statement
 * aborts an enclosing one.
 */
export async function insertIssueReceiptsIsolating(db: Db, receipts: readonly NewReceipt[]): Promise<{ inserted: InsertedIssueReceipt[]; refused: RefusedIssueReceipt[] }> {
  const inserted: InsertedIssueReceipt[] = []
  const refused: RefusedIssueReceipt[] = []
  const attempt = async (part: readonly NewReceipt[]): Promise<void> => {
    if (part.length === 0) return
    try {
      inserted.push(...(await insertIssueReceipts(db, part)))
      return
    } catch (err) {
      const why = refusalOf(err)
      if (!why) throw err
      if (part.length > 1) {
        const mid = part.length >>> 1
        await attempt(part.slice(0, mid))
        await attempt(part.slice(mid))
        return
      }
      const receipt = part[0]!
      let heldBy: string | null = null
      if (why.code === 'KEY_CONFLICT') {
        const holder = await db
          .selectFrom('receipts')
          .select('transaction_id')
          .where('kind', '=', 'issue')
          .where('provider', '=', receipt.provider)
          .where('provider_key', '=', receipt.provider_key)
          .executeTakeFirst()
        heldBy = holder?.transaction_id ?? null
      }
      refused.push({ receipt, ...why, heldBy })
    }
  }
  await attempt(receipts)
  return { inserted, refused }
}

export interface NewCancelReceipt {
  readonly parentId: number
  readonly seq: number
  readonly idempotencyKey: string
  readonly amounts: ReceiptAmounts
  readonly reason: 1 | 2 | 3
  /** A full cancel after which a new receipt for this amount follows (see recordCancelOutcome). */
  readonly reissueAmount?: number | null
  /** For the transition history: `cancel` (default) or `operator:cancel` for a cancel a person asked for. */
  readonly cause?: string
}

/**
 * A cancel row (pending) for an issue row that is issued and has no cancel in progress; everything
 * else is copied from the parent. Returns its id, or null when the parent is not in that state.
 * Run it in the transaction that read and locked the parent.
 */
export async function insertCancelReceipt(db: Db, c: NewCancelReceipt): Promise<number | null> {
  const res = await sql<{ id: number }>`
    WITH ins AS (
    INSERT INTO receipts (transaction_id, kind, seq, merchant_id, provider, state, provider_key, idempotency_key, portone_payment, purpose,
      trade_date, deadline, total_amount, supply_amount, vat_amount, tax_free_amount, service_fee, parent_receipt_id, cancel_reason, run_id, last_run_id, reissue_amount)
    SELECT p.transaction_id, 'cancel', ${c.seq}::int, p.merchant_id, p.provider, 'pending', p.provider_key, ${c.idempotencyKey}::text, p.portone_payment, p.purpose,
      p.trade_date, p.deadline, ${c.amounts.total}::bigint, ${c.amounts.supply}::bigint, ${c.amounts.vat}::bigint, ${c.amounts.taxFree}::bigint,
      ${c.amounts.serviceFee}::bigint, p.id, ${c.reason}::smallint, p.run_id, p.last_run_id, ${c.reissueAmount ?? null}::bigint
    FROM receipts p
    WHERE p.id = ${c.parentId} AND p.kind = 'issue' AND p.state = 'issued'
      AND NOT EXISTS (SELECT 1 FROM receipts o WHERE o.parent_receipt_id = p.id AND o.state IN ('pending', 'issuing'))
    RETURNING id
    ),
    logged AS (
      INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause) SELECT id, NULL, 'pending', ${c.cause ?? 'cancel'}::text FROM ins
    )
    SELECT id FROM ins`.execute(db)
  return res.rows[0] ? Number(res.rows[0].id) : null
}

// ---------------------------------------------------------------------------------------------
// Cancellation: the issue row a cancel row points at

/** A full cancel is about to be sent: issued → cancelling. False when the row is not issued. */
export async function beginFullCancel(db: Db, parentId: number): Promise<boolean> {
  const moved = db
    .updateTable('receipts')
    .set({ state: 'cancelling', updated_at: sql`now()` })
    .where('id', '=', parentId)
    .where('kind', '=', 'issue')
    .where('state', '=', 'issued')
    .returning('id')
  return logTransition(db, moved, 'issued', 'cancelling', 'cancel')
}

export interface CancelOutcome {
  /** The cancel row's transition (see applyTransitions); `issued` = the cancel was accepted. */
  readonly item: Omit<TransitionItem, 'transition'> & { readonly transition: Transition }
  readonly parentId: number
  /** The whole receipt is cancelled (the parent went cancelling before the call). */
  readonly full: boolean
  /**
   * The new receipt that follows an accepted full cancel whose row carries `reissue_amount`: its
   * (transaction-wide) issue seq, deterministic keys and amounts (total = reissue_amount).
   */
  readonly reissue?: { readonly seq: number; readonly providerKey: string; readonly idempotencyKey: string; readonly amounts: ReceiptAmounts }
}

export interface CancelRecorded {
  /** The cancel row was still this worker's and moved. */
  readonly owned: boolean
  /** The issue row moved with it (false when nothing was due or its guard did not hold). */
  readonly parentMoved: boolean
  /** The re-issue row created in the same transaction (pending), to be enqueued; null when none. */
  readonly reissuedId: number | null
}

/**
 * Records a cancel attempt and its consequence for the issue row, in ONE transaction:
 * - accepted (cancel row issued): the issue row becomes cancelled (full: from issued or
 *   cancelling) or keeps issued with the cancelled amount added (partial: from issued);
 * - failed for good on a full cancel: the issue row goes back from cancelling to issued, since the
 *   provider still holds the receipt;
 * - otherwise (pending for another attempt) the issue row is left as it is.
 * Nothing happens to the issue row unless the cancel row was still this worker's.
 */
export async function recordCancelOutcome(db: Db, o: CancelOutcome): Promise<CancelRecorded> {
  return db.transaction().execute(async (trx) => {
    const owned = (await applyTransitions(trx, [o.item])).has(o.item.receiptId)
    if (!owned) return { owned, parentMoved: false, reissuedId: null }
    const state = o.item.transition.state
    let set
    let from: ReceiptState[]
    if (state === 'issued') {
      set = sql`cancelled_amount = r.cancelled_amount + c.total_amount, state = ${o.full ? 'cancelled' : 'issued'}::text`
      from = o.full ? ['issued', 'cancelling'] : ['issued']
    } else if (state === 'failed' && o.full) {
      set = sql`state = 'issued'`
      from = ['cancelling']
    } else {
      return { owned, parentMoved: false, reissuedId: null }
    }
    // The issue row is read under lock first, so its state before the update is the history's from state.
    const res = await sql<{ id: number }>`
      WITH prev AS MATERIALIZED (
        SELECT p.id, p.state FROM receipts p JOIN receipts c ON c.id = ${o.item.receiptId}::bigint AND c.parent_receipt_id = p.id
        WHERE p.id = ${o.parentId}::bigint AND p.kind = 'issue' FOR UPDATE OF p
      ),
      moved AS (
        UPDATE receipts r SET ${set}, updated_at = now()
        FROM prev, receipts c
        WHERE r.id = prev.id AND c.id = ${o.item.receiptId}::bigint AND prev.state = ANY(${from}::text[])
        RETURNING r.id, prev.state AS from_state, r.state AS to_state
      ),
      logged AS (
        INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, job_id, worker_id)
        SELECT id, from_state, to_state, ${state === 'issued' ? 'cancel' : 'cancel_failed'}::text, ${o.item.attempts.jobId ?? null}::text, ${o.item.workerId}::text FROM moved
      )
      SELECT id FROM moved`.execute(trx)
    const parentMoved = res.rows.length === 1
    // A partial refund at a full-cancel-only provider: the receipt is now cancelled at the provider,
    // so the new receipt for what is still paid exists from this commit on (pending, its own keys).
    const reissuedId = parentMoved && state === 'issued' && o.full && o.reissue ? await insertReissue(trx, o.item.receiptId, o.parentId, o.reissue) : null
    return { owned, parentMoved, reissuedId }
  })
}

/**
 * The re-issue row for an accepted full cancel whose row carries `reissue_amount`: kind issue, the
 * given seq and keys, pending, `replaces_receipt_id` = the cancelled receipt; everything else copied
 * from it. Once per replaced receipt (unique index): a repeated record creates nothing.
 */
async function insertReissue(db: Db, cancelId: number, parentId: number, r: NonNullable<CancelOutcome['reissue']>): Promise<number | null> {
  const res = await sql<{ id: number }>`
    WITH ins AS (
    INSERT INTO receipts (transaction_id, kind, seq, merchant_id, provider, state, provider_key, idempotency_key, portone_payment, purpose, self_issued,
      trade_date, deadline, total_amount, supply_amount, vat_amount, tax_free_amount, service_fee, replaces_receipt_id, run_id, last_run_id)
    SELECT p.transaction_id, 'issue', ${r.seq}::int, p.merchant_id, p.provider, 'pending', ${r.providerKey}::text, ${r.idempotencyKey}::text, p.portone_payment,
      p.purpose, p.self_issued, p.trade_date, p.deadline, ${r.amounts.total}::bigint, ${r.amounts.supply}::bigint, ${r.amounts.vat}::bigint,
      ${r.amounts.taxFree}::bigint, ${r.amounts.serviceFee}::bigint, p.id, p.run_id, p.last_run_id
    FROM receipts p JOIN receipts c ON c.id = ${cancelId}::bigint AND c.parent_receipt_id = p.id AND c.reissue_amount = ${r.amounts.total}::bigint
    WHERE p.id = ${parentId}::bigint AND p.kind = 'issue' AND p.state = 'cancelled'
    ON CONFLICT DO NOTHING
    RETURNING id
    ),
    logged AS (INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause) SELECT id, NULL, 'pending', 'reissue' FROM ins)
    SELECT id FROM ins`.execute(db)
  return res.rows[0] ? Number(res.rows[0].id) : null
}

// ---------------------------------------------------------------------------------------------
// Re-drive

/** Which failed rows a re-drive takes. */
export interface FailedFilter {
  readonly runId?: number
  readonly date?: string
  readonly provider?: string
  readonly code?: string
  readonly errorClass?: string
}

function failedWhere(filter: FailedFilter) {
  return sql.join(
    [
      sql`state = 'failed'`,
      // A failed cancel that a later cancel of the same receipt followed is superseded: the operator
      // (or an import's refund) asked again knowing it had failed, and a cancel is created only while
      // no earlier one is open or of unknown outcome, so this one surely did not take effect.
      // Re-driving it would cancel the amount a second time.
      sql`NOT (kind = 'cancel' AND EXISTS (SELECT 1 FROM receipts later WHERE later.parent_receipt_id = receipts.parent_receipt_id AND later.kind = 'cancel' AND later.seq > receipts.seq))`,
      ...(filter.runId !== undefined ? [sql`(run_id = ${filter.runId} OR last_run_id = ${filter.runId})`] : []),
      ...(filter.date ? [sql`trade_date = ${filter.date}`] : []),
      ...(filter.provider ? [sql`provider = ${filter.provider}`] : []),
      ...(filter.code ? [sql`error_code = ${filter.code}`] : []),
      ...(filter.errorClass ? [sql`error_class = ${filter.errorClass}`] : []),
    ],
    sql` AND `,
  )
}

/** What a re-drive would take, by error class (the dry run). */
export async function countFailed(db: Db, filter: FailedFilter): Promise<{ errorClass: string; count: number; firstTradeDate: string | null }[]> {
  const rows = await sql<{ cls: string; n: number; d: string | null }>`
    SELECT coalesce(error_class, 'unknown') AS cls, count(*)::int AS n, min(trade_date)::text AS d
    FROM receipts WHERE ${failedWhere(filter)} GROUP BY 1`.execute(db)
  return rows.rows.map((r) => ({ errorClass: r.cls, count: r.n, firstTradeDate: r.d }))
}

export interface Redriven {
  readonly id: number
  readonly kind: ReceiptKind
  readonly redrive_count: number
  readonly requeue_count: number
  readonly trade_date: string
  /** The row's credential (merchant, provider): the re-drive ranks its jobs by it. */
  readonly merchant_id: string
  readonly provider: string
  /** The error class the row failed with (cleared by the re-drive). */
  readonly error_class: string | null
  readonly idempotency_key: string
}

/**
 * failed → pending for every row the filter selects, under re-drive run `runId`: errors cleared,
 * redrive_count + 1, and issue rows get the idempotency key `freshKey` derives (a provider may replay
 * its first answer to a key for hours). Both updates run in ONE transaction, so no row is ever
 * pending again under its old key. Rows locked by a concurrent re-drive are skipped: two re-drives
 * split the rows and none is taken twice. needs_lookup is kept: an unknown outcome is looked up first.
 */
export async function redriveFailed(
  db: Db,
  filter: FailedFilter,
  runId: number,
  freshKey: (r: { readonly idempotencyKey: string; readonly redriveCount: number }) => string,
): Promise<Redriven[]> {
  return db.transaction().execute(async (trx) => {
    // The receipts the failed cancels belong to are locked first, as a new cancel request locks its
    // receipt before it checks for earlier cancels (requestCancellation). So a failed cancel is either
    // re-driven or followed by a new cancel of its receipt, never both: a request that got the lock
    // first has created its cancel by the time the selection below runs (READ COMMITTED: each
    // statement sees what committed before it began), which then supersedes the failed one; one that
    // comes after sees the re-driven cancel open and refuses. Ordered by id, as every other taker of
    // several receipt locks orders them.
    await sql`
      SELECT p.id FROM receipts p
      WHERE p.id IN (SELECT receipts.parent_receipt_id FROM receipts WHERE ${failedWhere(filter)} AND receipts.kind = 'cancel')
      ORDER BY p.id FOR UPDATE OF p`.execute(trx)
    const claimed = await sql<Redriven>`
      WITH old AS (SELECT id, error_class FROM receipts WHERE ${failedWhere(filter)} FOR UPDATE SKIP LOCKED),
      moved AS (
      UPDATE receipts r SET
        state = 'pending',
        redrive_count = r.redrive_count + 1,
        last_run_id = ${runId},
        error_class = NULL, error_code = NULL, error_message = NULL,
        finished_at = NULL,
        updated_at = now()
      FROM old WHERE r.id = old.id AND r.state = 'failed'
      RETURNING r.id, r.kind, r.redrive_count, r.requeue_count, r.trade_date::text AS trade_date, r.merchant_id, r.provider, old.error_class, r.idempotency_key
      ),
      logged AS (
        INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, run_id) SELECT id, 'failed', 'pending', 'redrive', ${runId}::bigint FROM moved
      )
      SELECT id, kind, redrive_count, requeue_count, trade_date, merchant_id, provider, error_class, idempotency_key FROM moved`.execute(trx)
    const issueRows = claimed.rows.filter((r) => r.kind === 'issue')
    if (!issueRows.length) return claimed.rows
    const keys = issueRows.map((r) => freshKey({ idempotencyKey: r.idempotency_key, redriveCount: r.redrive_count }))
    await sql`
      UPDATE receipts r SET idempotency_key = v.key
      FROM unnest(${issueRows.map((r) => r.id)}::bigint[], ${keys}::text[]) AS v(id, key)
      WHERE r.id = v.id AND r.state = 'pending' AND r.kind = 'issue'`.execute(trx)
    const byId = new Map(issueRows.map((r, i) => [r.id, keys[i]!]))
    return claimed.rows.map((r) => (byId.has(r.id) ? { ...r, idempotency_key: byId.get(r.id)! } : r))
  })
}

// ---------------------------------------------------------------------------------------------
// Reconcile (what the provider holds, read back a day later)

/**
 * Records what the provider holds for an issue row nobody is working on: failed or pending →
 * issued or cancelled, issued → cancelled. `from` is the state the caller read; the row must still
 * be in it.
 */
export async function repairFromProvider(db: Db, receiptId: number, from: ReceiptState, to: 'issued' | 'cancelled', held: ProviderReceipt): Promise<boolean> {
  const allowed: ReceiptState[] = to === 'issued' ? ['failed', 'pending'] : ['failed', 'pending', 'issued']
  if (!allowed.includes(from)) return false
  const issuedAt = validDate(held.issuedAt)
  const moved = db
    .updateTable('receipts')
    .set({
      state: to,
      approval_number: held.approvalNumber,
      provider_receipt_id: held.providerReceiptId,
      receipt_url: held.receiptUrl,
      provisional: to === 'issued' && held.provisional === true,
      issued_at: issuedAt ?? sql`coalesce(issued_at, now())`,
      needs_lookup: false,
      error_class: null,
      error_code: null,
      error_message: null,
      reconciled_at: sql`now()`,
      finished_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', receiptId)
    .where('kind', '=', 'issue')
    .where('state', '=', from)
    .where('state', 'in', allowed)
    .returning('id')
  return logTransition(db, moved, from, to, 'reconcile')
}

// ---------------------------------------------------------------------------------------------
// Deferred results (Toss): an issued receipt whose tax-authority result was still to come

/**
 * The tax authority accepted a provisional receipt: issued, provisional → issued, final (the
 * approval number and URL as the provider now gives them, when it does). False when the row is no
 * longer issued and provisional (cancelled meanwhile, already finalised). Clearing `provisional` on
 * an issued row is the receipt's buyer-notification event `issued` (trigger receipts_notify,
 * migrations/2026_12_05_0620_notify_final_receipts.ts): buyers are told of final receipts only.
 */
export async function finalizeProvisional(db: Db, receiptId: number, held: Pick<ProviderReceipt, 'approvalNumber' | 'receiptUrl'>): Promise<boolean> {
  const res = await db
    .updateTable('receipts')
    .set({
      provisional: false,
      approval_number: sql`coalesce(${held.approvalNumber}::text, approval_number)`,
      receipt_url: sql`coalesce(${held.receiptUrl}::text, receipt_url)`,
      reconcile_flag: null,
      reconciled_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', receiptId)
    .where('kind', '=', 'issue')
    .where('state', '=', 'issued')
    .where('provisional', '=', true)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * The tax authority refused a provisional receipt (Toss FAILED, NTS_ERROR "[TSx] …"): issued,
 * provisional, nothing cancelled and no cancel open → failed with class `tax_authority`, the TSx code
 * and the message, so reports, metrics and re-drive (`--class tax_authority`, `--code TS1`) see it.
 * needs_lookup false: the provider holds no live receipt, so a re-drive issues again. False when the
 * guard does not hold (the caller flags the row instead).
 */
export async function failProvisional(db: Db, receiptId: number, error: { readonly code: string; readonly message: string }): Promise<boolean> {
  const moved = db
    .updateTable('receipts')
    .set({
      state: 'failed',
      provisional: false,
      needs_lookup: false,
      error_class: TAX_AUTHORITY_ERROR_CLASS,
      error_code: error.code.slice(0, 100),
      error_message: error.message.slice(0, 1000),
      reconciled_at: sql`now()`,
      finished_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', receiptId)
    .where('kind', '=', 'issue')
    .where('state', '=', 'issued')
    .where('provisional', '=', true)
    .where('cancelled_amount', '=', 0)
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('receipts as c').select('c.id').where('c.parent_receipt_id', '=', receiptId).where('c.state', 'in', ['pending', 'issuing']))),
    )
    .returning('id')
  return logTransition(db, moved, 'issued', 'failed', 'reconcile')
}

/** error_class of a receipt the tax authority refused after the provider had accepted it. */
export const TAX_AUTHORITY_ERROR_CLASS = 'tax_authority'

/**
 * Reconcile found the ledger's amount for an issued receipt provably wrong: the provider holds the
 * same receipt (approval number) for another amount and nothing was partly cancelled. The row takes
 * the provider's amounts, guarded by the total the caller read (still issued, never partly cancelled);
 * reconciled, flag cleared. False when the row moved meanwhile.
 */
export async function correctAmountsFromProvider(db: Db, receiptId: number, readTotal: number, a: ReceiptAmounts): Promise<boolean> {
  const res = await db
    .updateTable('receipts')
    .set({
      total_amount: a.total,
      supply_amount: a.supply,
      vat_amount: a.vat,
      tax_free_amount: a.taxFree,
      service_fee: a.serviceFee,
      reconcile_flag: null,
      reconciled_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', receiptId)
    .where('kind', '=', 'issue')
    .where('state', '=', 'issued')
    .where('cancelled_amount', '=', 0)
    .where('total_amount', '=', readTotal)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/** The provider agrees with an issued or cancelled row (still in `state`, as read): reconciled, flag cleared. */
export async function markReconciled(db: Db, receiptId: number, state: ReceiptState): Promise<boolean> {
  return reconcileMark(db, receiptId, state, null)
}

/** The provider disagrees with an issued or cancelled row (still in `state`): flagged for a person, never changed. */
export async function flagReconcile(db: Db, receiptId: number, state: ReceiptState, flag: string): Promise<boolean> {
  return reconcileMark(db, receiptId, state, flag)
}

async function reconcileMark(db: Db, receiptId: number, state: ReceiptState, flag: string | null): Promise<boolean> {
  const res = await db
    .updateTable('receipts')
    .set({ reconcile_flag: flag, reconciled_at: sql`now()` })
    .where('id', '=', receiptId)
    .where('kind', '=', 'issue')
    .where('state', '=', state)
    .where('state', 'in', ['issued', 'cancelled'])
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * Runs a guarded single-row update whose from state the guard fixes, and records its transition in
 * the same statement (a data-modifying CTE): the history row exists exactly when the update applied.
 */
async function logTransition(
  db: Db,
  moved: UpdateQueryBuilder<Database, 'receipts', 'receipts', { id: number }>,
  from: ReceiptState,
  to: ReceiptState,
  cause: string,
): Promise<boolean> {
  const res = await db
    .with('moved', () => moved)
    .insertInto('receipt_transitions')
    .columns(['receipt_id', 'from_state', 'to_state', 'cause'])
    .expression((eb) => eb.selectFrom('moved').select(['moved.id', sql.lit(from).as('f'), sql.lit(to).as('t'), sql.lit(cause).as('c')]))
    .executeTakeFirst()
  return Number(res.numInsertedOrUpdatedRows) === 1
}

function validDate(iso: string | null): Date | null {
  if (!iso) return null
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? null : d
}

// ---------------------------------------------------------------------------------------------
// Provider duplicates (reconcile at a provider that does not deduplicate by our key)
//
//   operation               table                from                          to
//   recordDuplicates        provider_duplicates  no row for (receipt, provider receipt)  open (repaired_at NULL)
//   claimDuplicateCancel    provider_duplicates  open, no live claim           open, claimed (cancel_started_at = now(), cancel_claimed_by)
//   fenceDuplicateCancel    provider_duplicates  open, claimed by the caller   open, claim renewed (cancel_started_at = now())
//   finishDuplicateRepair   provider_duplicates  open                          repaired (repaired_at, outcome), claim cleared
//   releaseDuplicateCancel  provider_duplicates  open (claimed by the caller)  open, claim cleared, outcome noted

/** One further live receipt the provider holds for a receipt (never the one the ledger recorded). */
export interface FoundDuplicate {
  readonly providerReceiptId: string
  readonly approvalNumber: string | null
  readonly amount: number | null
}

/**
 * Records further receipts found for an issue row; one row per provider receipt, so a repeated
 * reconcile records nothing new. Refuses (records nothing) a provider receipt that is the one the
 * ledger recorded for the row: that one is kept, never a duplicate. Returns every open (unrepaired)
 * duplicate row of the receipt among `found`.
 */
export async function recordDuplicates(
  db: Db,
  receiptId: number,
  provider: string,
  found: readonly FoundDuplicate[],
): Promise<{ id: number; provider_receipt_id: string; approval_number: string | null; amount: number | null }[]> {
  if (!found.length) return []
  await sql`
    INSERT INTO provider_duplicates (receipt_id, provider, provider_receipt_id, approval_number, amount)
    SELECT ${receiptId}::bigint, ${provider}::text, d.prid, d.appr, d.amount
    FROM unnest(${found.map((f) => f.providerReceiptId)}::text[], ${found.map((f) => f.approvalNumber)}::text[],
                ${found.map((f) => f.amount)}::bigint[]) AS d(prid, appr, amount)
    JOIN receipts r ON r.id = ${receiptId}::bigint AND r.kind = 'issue'
    WHERE r.provider_receipt_id IS DISTINCT FROM d.prid AND r.approval_number IS DISTINCT FROM d.appr
    ON CONFLICT (receipt_id, provider_receipt_id) DO NOTHING`.execute(db)
  const rows = await db
    .selectFrom('provider_duplicates')
    .select(['id', 'provider_receipt_id', 'approval_number', 'amount'])
    .where('receipt_id', '=', receiptId)
    .where(
      'provider_receipt_id',
      'in',
      found.map((f) => f.providerReceiptId),
    )
    .where('repaired_at', 'is', null)
    .orderBy('id')
    .execute()
  return rows.map((r) => ({ ...r, id: Number(r.id), amount: r.amount === null ? null : Number(r.amount) }))
}

/**
 * Takes the cancel of an open duplicate for `owner`: true for exactly one caller while the claim is
 * live (`staleMs`), so two reconciles never both send it. A claim older than that belongs to a
 * reconcile that died (or froze) mid-call and may be taken over; the old owner's send fence
 * (fenceDuplicateCancel) then refuses it, and the provider refuses a second full cancel of one
 * receipt anyway.
 */
export async function claimDuplicateCancel(db: Db, duplicateId: number, staleMs: number, owner: string): Promise<boolean> {
  const res = await db
    .updateTable('provider_duplicates')
    .set({ cancel_started_at: sql`now()`, cancel_claimed_by: owner })
    .where('id', '=', duplicateId)
    .where('repaired_at', 'is', null)
    .where((eb) => eb.or([eb('cancel_started_at', 'is', null), eb('cancel_started_at', '<', sql<Date>`now() - make_interval(secs => ${staleMs / 1000})`)]))
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * The send fence of a duplicate's cancel (src/jobs/lease.ts sendFence), before every cancel request:
 * the duplicate is still open and its claim still `owner`'s; the claim is renewed, so it stays live
 * for the claim's staleness from now (which must exceed the call). False: another reconcile took it
 * over (or it was repaired) and the request must not be sent.
 */
export async function fenceDuplicateCancel(db: Db, duplicateId: number, owner: string): Promise<boolean> {
  const res = await db
    .updateTable('provider_duplicates')
    .set({ cancel_started_at: sql`now()` })
    .where('id', '=', duplicateId)
    .where('repaired_at', 'is', null)
    .where('cancel_claimed_by', '=', owner)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/** The duplicate is cancelled at the provider (by us, or found cancelled): repaired, with how. */
export async function finishDuplicateRepair(db: Db, duplicateId: number, outcome: string): Promise<boolean> {
  const res = await db
    .updateTable('provider_duplicates')
    .set({ repaired_at: sql`now()`, repair_outcome: outcome.slice(0, 200), cancel_started_at: null, cancel_claimed_by: null })
    .where('id', '=', duplicateId)
    .where('repaired_at', 'is', null)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * The duplicate stays open (cancel refused, failed, or switched off): the claim is dropped, the
 * reason noted. With `owner`, only while the claim is still that reconcile's (one that lost it to
 * another leaves the new owner's claim alone).
 */
export async function releaseDuplicateCancel(db: Db, duplicateId: number, outcome: string, owner?: string): Promise<boolean> {
  let q = db
    .updateTable('provider_duplicates')
    .set({ repair_outcome: outcome.slice(0, 200), cancel_started_at: null, cancel_claimed_by: null })
    .where('id', '=', duplicateId)
    .where('repaired_at', 'is', null)
  if (owner !== undefined) q = q.where('cancel_claimed_by', '=', owner)
  const res = await q.executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/** Open duplicates of a receipt that the provider now shows cancelled (a cancel that landed unseen, or someone else's): repaired. */
export async function closeCancelledDuplicates(db: Db, receiptId: number, providerReceiptIds: readonly string[]): Promise<number> {
  if (!providerReceiptIds.length) return 0
  const res = await db
    .updateTable('provider_duplicates')
    .set({ repaired_at: sql`now()`, repair_outcome: 'found cancelled at provider', cancel_started_at: null, cancel_claimed_by: null })
    .where('receipt_id', '=', receiptId)
    .where('provider_receipt_id', 'in', providerReceiptIds)
    .where('repaired_at', 'is', null)
    .executeTakeFirst()
  return Number(res.numUpdatedRows)
}

// ---------------------------------------------------------------------------------------------
// Bulk issuance (docs/exactly-once.md, "Bulk issuance")
//
// A batch (provider_batches) is one bulk submission of up to the provider's maxItems receipts of
// one credential. While a batch holds its members they are `issuing` under the batch's own owner
// name (batchOwner), with the lease the batch's worker keeps for them; the worker itself holds the
// batch row's lease. So one worker at a time runs a batch, every member write below is guarded by
// both (member owned by the batch, batch owned by the worker), and the single path's claim takes a
// member over only once its lease has expired — with needs_lookup, as from any vanished worker.

/** The lease owner of a batch's member rows while the batch holds them (never a worker id). */
export const batchOwner = (batchId: number): string => `batch:${batchId}`

export interface NewBatch {
  readonly merchantId: string
  readonly provider: string
  readonly runId: number | null
  readonly tradeDate: string
  readonly receiptIds: readonly number[]
}

/**
 * Settlement: one provider_batches row per batch, state `open`, and its members. A receipt already
 * an active member of another batch is not added (the partial unique index); the members added are
 * returned. Receipt rows are not touched: they stay `pending` until the batch's job claims them.
 */
export async function createBatches(db: Db, batches: readonly NewBatch[]): Promise<{ id: number; receiptIds: number[] }[]> {
  const out: { id: number; receiptIds: number[] }[] = []
  for (const b of batches) {
    if (!b.receiptIds.length) continue
    const res = await sql<{ id: number; ids: number[] }>`
      WITH b AS (
        INSERT INTO provider_batches (merchant_id, provider, run_id, trade_date, item_count)
        VALUES (${b.merchantId}, ${b.provider}, ${b.runId}, ${b.tradeDate}, ${b.receiptIds.length}) RETURNING id
      ),
      i AS (
        INSERT INTO provider_batch_items (batch_id, receipt_id)
        SELECT b.id, x FROM b, unnest(${b.receiptIds}::bigint[]) AS x
        ON CONFLICT (receipt_id) WHERE active DO NOTHING
        RETURNING receipt_id
      )
      SELECT (SELECT id FROM b) AS id, array(SELECT receipt_id FROM i ORDER BY receipt_id) AS ids`.execute(db)
    const row = res.rows[0]!
    out.push({ id: Number(row.id), receiptIds: row.ids.map(Number) })
  }
  return out
}

export interface BatchMember {
  readonly receipt: Receipt
  readonly tx: CashTransaction
  /** The member's issue attempt row written by the batch's first fenced send (null before it). */
  readonly attemptId: number | null
}

export type BatchClaim =
  | {
      readonly status: 'claimed'
      readonly batch: import('./schema.ts').ProviderBatch
      /** The members this run holds, id order. */
      readonly members: readonly BatchMember[]
      /** Members that left the batch (terminal, or another worker's): their items were deactivated. */
      readonly left: readonly number[]
    }
  | { readonly status: 'done'; readonly state: string }
  | { readonly status: 'leased'; readonly retryInMs: number }
  | { readonly status: 'missing' }

/**
 * Takes a batch for one run of its job: the batch row (`open` or `submitted`, lease free or expired)
 * gets this worker's lease, and every active member that is pending, or issuing under the batch's
 * owner, or issuing under an expired lease, becomes issuing under the batch's owner with the same
 * lease (attempts + 1 when it was not the batch's already; needs_lookup when taken from another
 * owner). An active member that cannot be taken (terminal, or live under another worker: a single
 * job or a re-drive has it) leaves the batch: its item is deactivated, so the batch never records
 * its outcome and the recovery pass treats it as any other receipt. One transaction; a member whose
 * state or owner changed gets its receipt_transitions row in the same statement.
 */
export async function claimBatch(db: Db, batchId: number, workerId: string, leaseMs: number, jobId: string | null = null): Promise<BatchClaim> {
  const owner = batchOwner(batchId)
  return db.transaction().execute(async (trx) => {
    const taken = await sql<import('./schema.ts').ProviderBatch>`
      UPDATE provider_batches SET locked_by = ${workerId}, locked_until = now() + make_interval(secs => ${leaseMs / 1000}),
        attempts = attempts + 1, updated_at = now()
      WHERE id = ${batchId} AND state IN ('open', 'submitted') AND (locked_until IS NULL OR locked_until < now())
      RETURNING *`.execute(trx)
    const batch = taken.rows[0]
    if (!batch) {
      const cur = await sql<{ state: string; left_ms: number | null }>`
        SELECT state, extract(epoch from (locked_until - now())) * 1000 AS left_ms FROM provider_batches WHERE id = ${batchId}`.execute(trx)
      const c = cur.rows[0]
      if (!c) return { status: 'missing' as const }
      if (c.state === 'open' || c.state === 'submitted') return { status: 'leased' as const, retryInMs: Math.max(250, Number(c.left_ms ?? 0) + 50) }
      return { status: 'done' as const, state: c.state }
    }
    const claimed = await sql<Receipt & { attempt_id: number | null; prev_state: ReceiptState; prev_owner: string | null; tx: Record<string, unknown> }>`
      WITH m AS MATERIALIZED (
        SELECT r.id, r.state AS prev_state, r.locked_by AS prev_owner, i.attempt_id FROM receipts r
        JOIN provider_batch_items i ON i.receipt_id = r.id AND i.batch_id = ${batchId} AND i.active
        ORDER BY r.id FOR UPDATE OF r
      ),
      claimed AS (
        UPDATE receipts r SET
          state = 'issuing',
          needs_lookup = r.needs_lookup OR (m.prev_state = 'issuing' AND m.prev_owner IS DISTINCT FROM ${owner}),
          attempts = r.attempts + CASE WHEN m.prev_state = 'issuing' AND m.prev_owner = ${owner} THEN 0 ELSE 1 END,
          locked_by = ${owner},
          locked_until = ${batch.locked_until},
          updated_at = now()
        FROM m
        WHERE r.id = m.id
          AND (m.prev_state = 'pending' OR (m.prev_state = 'issuing' AND (m.prev_owner = ${owner} OR r.locked_until IS NULL OR r.locked_until < now())))
        RETURNING ${RETURNING_RECEIPT}, m.attempt_id, m.prev_state, m.prev_owner
      ),
      logged AS (
        -- a history row when the state or the owner changed (a member the batch already held: none)
        INSERT INTO receipt_transitions (receipt_id, from_state, to_state, cause, job_id, worker_id)
        SELECT c.id, c.prev_state, 'issuing', CASE WHEN c.prev_state = 'issuing' THEN 'lease_takeover' ELSE 'attempt:' || c.attempts END, ${jobId}::text, ${owner}::text
        FROM claimed c WHERE c.prev_state <> 'issuing' OR c.prev_owner IS DISTINCT FROM ${owner}
      )
      SELECT c.*, to_jsonb(t) AS tx FROM claimed c JOIN cash_transactions t ON t.transaction_id = c.transaction_id ORDER BY c.id`.execute(trx)
    const members = claimed.rows.map(({ attempt_id, tx, prev_state: _p, prev_owner: _o, ...receipt }) => ({
      receipt: { ...(receipt as Receipt), id: Number(receipt.id) },
      tx: transactionFromJson(tx),
      attemptId: attempt_id === null ? null : Number(attempt_id),
    }))
    const left = await sql<{ receipt_id: number }>`
      UPDATE provider_batch_items SET active = false, outcome = 'left'
      WHERE batch_id = ${batchId} AND active AND NOT (receipt_id = ANY(${members.map((m) => m.receipt.id)}::bigint[]))
      RETURNING receipt_id`.execute(trx)
    return { status: 'claimed' as const, batch, members, left: left.rows.map((r) => Number(r.receipt_id)) }
  })
}

export interface BatchFence {
  readonly submitId: string
  readonly contentHash: string
  readonly itemCount: number
  /** What the leases must still cover: one bulk call. */
  readonly coverMs: number
  readonly jobId: string | null
}

/**
 * The fence before every bulk submit request (each p-retry try): all or nothing, in one statement
 * that commits before the request leaves. It requires the batch to be this worker's (lease) and
 * `open` or `submitted` under this very submit id (a batch's submit id is bound to its content by
 * the first send and never changes), and EVERY active member to be issuing under the batch's owner.
 * Then: the batch becomes `submitted` (submit id, content hash, first and last send time), every
 * member's lease covers the call, its `last_sent_at` is now (the single path's commit window counts
 * from it), and a member that has no issue attempt row for this batch yet gets one ('sent').
 * Returns the members' attempt row ids, or null when anything is no longer this worker's: then
 * nothing was written and the request must not be sent.
 */
export async function fenceBatchSend(db: Db, batchId: number, workerId: string, f: BatchFence): Promise<Map<number, number> | null> {
  const owner = batchOwner(batchId)
  return db
    .transaction()
    .execute(async (trx) => {
      const b = await sql<{ id: number; attempts: number }>`
      UPDATE provider_batches SET state = 'submitted', submit_id = ${f.submitId}, content_hash = ${f.contentHash}, item_count = ${f.itemCount},
        submitted_at = COALESCE(submitted_at, clock_timestamp()), last_sent_at = clock_timestamp(),
        locked_until = GREATEST(locked_until, now() + make_interval(secs => ${f.coverMs / 1000})), updated_at = now()
      WHERE id = ${batchId} AND locked_by = ${workerId} AND locked_until > now() AND state IN ('open', 'submitted')
        AND (submit_id IS NULL OR submit_id = ${f.submitId})
      RETURNING id, attempts`.execute(trx)
      if (!b.rows[0]) return null
      const members = await sql<{ id: number; attempts: number; owned: boolean; attempt_id: number | null }>`
      SELECT r.id, r.attempts, (r.state = 'issuing' AND r.locked_by = ${owner}) AS owned, i.attempt_id
      FROM provider_batch_items i JOIN receipts r ON r.id = i.receipt_id
      WHERE i.batch_id = ${batchId} AND i.active ORDER BY r.id FOR UPDATE OF r, i`.execute(trx)
      if (members.rows.length !== f.itemCount || members.rows.some((m) => !m.owned)) {
        // Rolled back: a member left since the claim (the content the submit id names is not ours to send).
        throw new BatchFenceRefused()
      }
      await sql`
      UPDATE receipts r SET locked_until = GREATEST(r.locked_until, now() + make_interval(secs => ${f.coverMs / 1000})), last_sent_at = clock_timestamp()
      WHERE r.id = ANY(${members.rows.map((m) => m.id)}::bigint[]) AND r.state = 'issuing' AND r.locked_by = ${owner}`.execute(trx)
      const fresh = members.rows.filter((m) => m.attempt_id === null)
      const ids = new Map(members.rows.filter((m) => m.attempt_id !== null).map((m) => [Number(m.id), Number(m.attempt_id)]))
      if (fresh.length) {
        const ins = await sql<{ receipt_id: number; id: number }>`
        INSERT INTO issuance_attempts (receipt_id, attempt_no, operation, started_at, outcome, worker_id, job_id)
        SELECT v.id, v.n, 'issue', clock_timestamp(), 'sent', ${workerId}, ${f.jobId}
        FROM unnest(${fresh.map((m) => m.id)}::bigint[], ${fresh.map((m) => m.attempts)}::int[]) AS v(id, n)
        RETURNING receipt_id, id`.execute(trx)
        await sql`
        UPDATE provider_batch_items i SET attempt_id = v.attempt_id
        FROM unnest(${ins.rows.map((r) => r.receipt_id)}::bigint[], ${ins.rows.map((r) => r.id)}::bigint[]) AS v(receipt_id, attempt_id)
        WHERE i.batch_id = ${batchId} AND i.receipt_id = v.receipt_id`.execute(trx)
        for (const r of ins.rows) ids.set(Number(r.receipt_id), Number(r.id))
      }
      return ids
    })
    .catch((err: unknown) => {
      if (err instanceof BatchFenceRefused) return null
      throw err
    })
}

class BatchFenceRefused extends Error {}

/** What becomes of one member in a batch's recording step. */
export interface BatchItemOutcome {
  readonly receiptId: number
  readonly transition: Transition
  /** The item's outcome: issued, cancelled, failed, single (handed to the single path), dropped. */
  readonly item: string
  /** Attempt rows of the member (its submit row, completed by id; lookups inserted). */
  readonly attempts: { readonly receipt: Pick<Receipt, 'id' | 'attempts'>; readonly jobId?: string; readonly rows: readonly AttemptRecord[] }
}

export interface BatchCallRecord {
  readonly operation: 'bulk_submit' | 'bulk_result' | 'lookup_many'
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly outcome: string
  readonly httpStatus: number | null
  readonly providerCode: string | null
  readonly message: string | null
  readonly latencyMs: number
}

export interface BatchStep {
  /** Members whose outcome this step records (their items are deactivated). */
  readonly items?: readonly BatchItemOutcome[]
  /** The bulk calls this run made (one provider_batch_calls row each). */
  readonly calls?: readonly BatchCallRecord[]
  readonly jobId?: string | null
  /** Polls of the result made in this run. */
  readonly polls?: number
  /** The batch ends: `done` (every member decided or handed on) or `abandoned` (never sent). */
  readonly finish?: 'done' | 'abandoned'
  /**
   * The batch goes on later (a poll, a deferral): its lease is released and the members it still
   * holds keep theirs for `holdMs`, so nothing else takes them while its job waits.
   */
  readonly holdMs?: number
  readonly error?: { readonly code: string | null; readonly message: string | null }
}

/**
 * Records one step of a batch run, in ONE transaction guarded by the batch's lease (this worker's):
 * the members' transitions (applyTransitions, guarded per row by the batch's owner), their items
 * deactivated with their outcome, the run's bulk calls, and the batch's own state — finished, or
 * its lease released with the remaining members held for `holdMs`. Returns the receipt ids whose
 * transition applied, or null when the batch is no longer this worker's (nothing was written; the
 * new owner finishes the batch).
 */
export async function recordBatchStep(db: Db, batchId: number, workerId: string, step: BatchStep): Promise<Set<number> | null> {
  const owner = batchOwner(batchId)
  return db.transaction().execute(async (trx) => {
    const own = await sql<{ id: number }>`
      SELECT id FROM provider_batches WHERE id = ${batchId} AND locked_by = ${workerId} AND state IN ('open', 'submitted') FOR UPDATE`.execute(trx)
    if (!own.rows[0]) return null
    const items = step.items ?? []
    const applied = await applyTransitions(
      trx,
      items.map((i) => ({ receiptId: i.receiptId, workerId: owner, transition: i.transition, attempts: { ...i.attempts, rows: i.attempts.rows } })),
    )
    if (items.length) {
      await sql`
        UPDATE provider_batch_items i SET active = false, outcome = v.outcome
        FROM unnest(${items.map((i) => i.receiptId)}::bigint[], ${items.map((i) => i.item)}::text[]) AS v(receipt_id, outcome)
        WHERE i.batch_id = ${batchId} AND i.receipt_id = v.receipt_id AND i.active`.execute(trx)
    }
    const calls = step.calls ?? []
    if (calls.length) {
      await sql`
        INSERT INTO provider_batch_calls (batch_id, operation, started_at, finished_at, outcome, http_status, provider_code, message, latency_ms, worker_id, job_id)
        SELECT ${batchId}, v.op, v.started, v.finished, v.outcome, v.status, v.code, v.message, v.latency, ${workerId}, ${step.jobId ?? null}
        FROM unnest(${calls.map((c) => c.operation)}::text[], ${calls.map((c) => c.startedAt.toISOString())}::timestamptz[],
          ${calls.map((c) => c.finishedAt.toISOString())}::timestamptz[], ${calls.map((c) => c.outcome)}::text[], ${calls.map((c) => c.httpStatus)}::smallint[],
          ${calls.map((c) => c.providerCode?.slice(0, 100) ?? null)}::text[], ${calls.map((c) => c.message?.slice(0, 500) ?? null)}::text[],
          ${calls.map((c) => Math.round(c.latencyMs))}::int[]) AS v(op, started, finished, outcome, status, code, message, latency)`.execute(trx)
    }
    if (step.finish) {
      // Whatever the batch still holds is handed on by the caller in `items`; an item left active
      // here (a member taken over meanwhile) no longer belongs to a live batch.
      await sql`UPDATE provider_batch_items SET active = false, outcome = coalesce(outcome, 'left') WHERE batch_id = ${batchId} AND active`.execute(trx)
    } else if (step.holdMs !== undefined) {
      await sql`
        UPDATE receipts r SET locked_until = now() + make_interval(secs => ${step.holdMs / 1000})
        FROM provider_batch_items i
        WHERE i.batch_id = ${batchId} AND i.active AND r.id = i.receipt_id AND r.state = 'issuing' AND r.locked_by = ${owner}`.execute(trx)
    }
    await sql`
      UPDATE provider_batches SET
        polls = polls + ${step.polls ?? 0},
        state = COALESCE(${step.finish ?? null}::text, state),
        finished_at = CASE WHEN ${step.finish ?? null}::text IS NULL THEN finished_at ELSE now() END,
        locked_by = CASE WHEN ${step.finish !== undefined || step.holdMs !== undefined} THEN NULL ELSE locked_by END,
        locked_until = CASE WHEN ${step.finish !== undefined || step.holdMs !== undefined} THEN NULL ELSE locked_until END,
        error_code = CASE WHEN ${step.error !== undefined} THEN ${step.error?.code ?? null} ELSE error_code END,
        error_message = CASE WHEN ${step.error !== undefined} THEN ${step.error?.message?.slice(0, 1000) ?? null} ELSE error_message END,
        updated_at = now()
      WHERE id = ${batchId}`.execute(trx)
    return applied
  })
}

/**
 * A batch whose job is gone or finished while the batch is still open or submitted starts a new
 * job generation (requeue_count + 1, part of its job id), guarded by the count the caller read: of
 * two racing recovery callers one wins and enqueues. Returns the batches that moved.
 */
export async function bumpBatchRequeue(db: Db, items: readonly RequeueItem[]): Promise<{ id: number; requeue_count: number }[]> {
  if (items.length === 0) return []
  const res = await sql<{ id: number; requeue_count: number }>`
    UPDATE provider_batches b SET requeue_count = b.requeue_count + 1, updated_at = now()
    FROM unnest(${items.map((i) => i.id)}::bigint[], ${items.map((i) => i.requeueCount)}::int[]) AS v(id, n)
    WHERE b.id = v.id AND b.requeue_count = v.n AND b.state IN ('open', 'submitted')
      AND (b.locked_until IS NULL OR b.locked_until < now())
    RETURNING b.id, b.requeue_count`.execute(db)
  return res.rows.map((r) => ({ id: Number(r.id), requeue_count: r.requeue_count }))
}
