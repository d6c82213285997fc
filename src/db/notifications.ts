/**
 * The notification outbox (migration 0440, docs/notifications.md). Rows are created by a trigger in
 * the ledger's own transaction when a receipt reaches issued; this module moves them:
 *
 *   pending → sending (claimed, with a lease) → sent | failed | skipped, and sending → pending (a
 *   retryable failure hands the row back for the queue's next attempt); failed → pending (re-drive).
 *
 * A send is fenced: `send_started_at` and `sends` are written (and committed) before the message
 * leaves, and only by the worker that holds the claim. Nothing here holds a buyer's address: the
 * sender decrypts it from the transaction at send time.
 */
import { sql } from 'kysely'
import type { Db } from './database.ts'
import type { NotificationChannel, NotificationEvent, NotificationState } from './schema.ts'

export interface ClaimedNotification {
  readonly id: number
  readonly receiptId: number
  readonly event: NotificationEvent
  readonly channel: NotificationChannel
  readonly merchantId: string
  readonly attempts: number
  /** Earlier sends that left before this claim (a crash or lost answer after the fence): the message may be out already. */
  readonly priorSends: number
}

export type ClaimNotificationResult =
  | { readonly claimed: true; readonly row: ClaimedNotification }
  /** Finished already (sent, failed for good, skipped): nothing to do. */
  | { readonly claimed: false; readonly state: NotificationState; readonly busy: false }
  /** Another worker holds a live claim: try again later. */
  | { readonly claimed: false; readonly state: 'sending'; readonly busy: true }
  | { readonly claimed: false; readonly state: 'missing'; readonly busy: false }

/** Claims a pending row, or a sending one whose lease ran out (its worker died). */
export async function claimNotification(db: Db, id: number, workerId: string, leaseMs: number): Promise<ClaimNotificationResult> {
  const res = await sql<{
    id: string
    receipt_id: string
    event: NotificationEvent
    channel: NotificationChannel
    merchant_id: string
    attempts: number
    sends: number
  }>`
    UPDATE notifications SET state = 'sending', locked_by = ${workerId}, locked_until = now() + ${leaseMs} * interval '1 millisecond',
      attempts = attempts + 1, updated_at = now()
    WHERE id = ${id} AND (state = 'pending' OR (state = 'sending' AND locked_until < now()))
    RETURNING id, receipt_id, event, channel, merchant_id, attempts, sends`.execute(db)
  const r = res.rows[0]
  if (r) {
    return {
      claimed: true,
      row: {
        id: Number(r.id),
        receiptId: Number(r.receipt_id),
        event: r.event,
        channel: r.channel,
        merchantId: r.merchant_id,
        attempts: r.attempts,
        priorSends: r.sends,
      },
    }
  }
  const now = await db.selectFrom('notifications').select('state').where('id', '=', id).executeTakeFirst()
  if (!now) return { claimed: false, state: 'missing', busy: false }
  if (now.state === 'sending') return { claimed: false, state: 'sending', busy: true }
  return { claimed: false, state: now.state, busy: false }
}

/**
 * The send fence: records that a send is about to leave, only while this worker holds the claim (and
 * extends the lease over the send). False: the claim was taken over; the caller must not send.
 */
export async function fenceNotificationSend(db: Db, id: number, workerId: string, leaseMs: number): Promise<boolean> {
  const res = await db
    .updateTable('notifications')
    .set({
      send_started_at: sql`now()`,
      sends: sql`sends + 1`,
      locked_until: sql`now() + ${leaseMs} * interval '1 millisecond'`,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('locked_by', '=', workerId)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

export type NotificationFinish =
  | { readonly state: 'sent'; readonly messageId: string | null }
  | { readonly state: 'skipped'; readonly reason: string }
  | { readonly state: 'failed'; readonly errorClass: string; readonly code: string | null }
  /** Retryable: back to pending for the queue's next attempt (error kept for display). */
  | { readonly state: 'pending'; readonly errorClass: string; readonly code: string | null }

/** Ends this worker's claim. False when it was taken over meanwhile (the row is left alone). */
export async function finishNotification(db: Db, id: number, workerId: string, f: NotificationFinish): Promise<boolean> {
  const res = await db
    .updateTable('notifications')
    .set({
      state: f.state,
      locked_by: null,
      locked_until: null,
      updated_at: sql`now()`,
      ...(f.state === 'sent' ? { sent_at: sql`now()`, message_id: f.messageId, error_class: null, error_code: null } : {}),
      ...(f.state === 'skipped' ? { skip_reason: f.reason.slice(0, 100) } : {}),
      ...(f.state === 'failed' || f.state === 'pending' ? { error_class: f.errorClass.slice(0, 50), error_code: f.code?.slice(0, 100) ?? null } : {}),
    })
    .where('id', '=', id)
    .where('state', '=', 'sending')
    .where('locked_by', '=', workerId)
    .executeTakeFirst()
  return Number(res.numUpdatedRows) === 1
}

/**
 * Rows to put on the queue: pending and never offered, or offered longer than `staleMs` ago and still
 * pending (the add may have been lost with a crash, or Redis lost its data), or claimed by a worker
 * whose lease ran out (it died; its job's next claim takes the row over, and when that job is gone
 * too the new one does). The queue's job id
 * makes a second offer of a row still held there a no-op.
 */
export async function notificationsToEnqueue(db: Db, staleMs: number, limit: number): Promise<{ id: number; redriveCount: number }[]> {
  const rows = await db
    .selectFrom('notifications')
    .select(['id', 'redrive_count'])
    .where((eb) =>
      eb.or([
        eb.and([eb('state', '=', 'pending'), eb.or([eb('enqueued_at', 'is', null), eb('enqueued_at', '<', sql<Date>`now() - ${staleMs} * interval '1 millisecond'`)])]),
        // a claim whose worker died and whose job is gone too
        eb.and([eb('state', '=', 'sending'), eb('locked_until', '<', sql<Date>`now()`)]),
      ]),
    )
    .orderBy('id')
    .limit(limit)
    .execute()
  return rows.map((r) => ({ id: Number(r.id), redriveCount: r.redrive_count }))
}

export async function markEnqueued(db: Db, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return
  await db
    .updateTable('notifications')
    .set({ enqueued_at: sql`now()` })
    .where('id', 'in', ids)
    .execute()
}

/** Everything a message says, read at send time (ids, amounts, dates; the address stays encrypted in pii_enc). */
export interface NotificationContext {
  readonly kind: 'issue' | 'cancel'
  readonly transactionId: string
  readonly merchantName: string
  readonly orderName: string | null
  readonly approvalNumber: string | null
  /** The issue row's approval number (a cancellation names the receipt it cancels). */
  readonly originalApprovalNumber: string | null
  readonly amount: number
  readonly purpose: 'deduction' | 'expense'
  readonly tradedAt: Date
  readonly receiptUrl: string | null
  readonly identifierMasked: string | null
  readonly piiEnc: string | null
  readonly fullCancel: boolean
}

export async function notificationContext(db: Db, receiptId: number): Promise<NotificationContext | undefined> {
  const r = await db
    .selectFrom('receipts as r')
    .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
    .innerJoin('merchants as m', 'm.id', 'r.merchant_id')
    .leftJoin('receipts as p', 'p.id', 'r.parent_receipt_id')
    .select([
      'r.kind',
      'r.transaction_id',
      'm.name as merchant_name',
      't.order_name',
      'r.approval_number',
      'p.approval_number as parent_approval_number',
      'r.total_amount',
      'r.purpose',
      't.paid_at',
      'r.issued_at',
      'r.receipt_url',
      'p.receipt_url as parent_receipt_url',
      't.identifier_masked',
      't.pii_enc',
      'p.state as parent_state',
    ])
    .where('r.id', '=', receiptId)
    .executeTakeFirst()
  if (!r) return undefined
  return {
    kind: r.kind,
    transactionId: r.transaction_id,
    merchantName: r.merchant_name,
    orderName: r.order_name,
    approvalNumber: r.approval_number,
    originalApprovalNumber: r.kind === 'cancel' ? r.parent_approval_number : r.approval_number,
    amount: Number(r.total_amount),
    purpose: r.purpose,
    tradedAt: new Date(r.kind === 'cancel' ? (r.issued_at ?? new Date()) : r.paid_at),
    receiptUrl: r.receipt_url ?? (r.kind === 'cancel' ? r.parent_receipt_url : null) ?? null,
    identifierMasked: r.identifier_masked,
    piiEnc: r.pii_enc,
    fullCancel: r.kind === 'cancel' && r.parent_state === 'cancelled',
  }
}

export interface NotificationCounts {
  readonly pending: number
  readonly sending: number
  readonly sent: number
  readonly failed: number
  readonly skipped: number
}

const zero = (): { -readonly [K in keyof NotificationCounts]: number } => ({
  pending: 0,
  sending: 0,
  sent: 0,
  failed: 0,
  skipped: 0,
})

/** Counts per state and channel, optionally only for the notifications of some receipts' events (a run's). */
export async function countNotifications(
  db: Db,
  scope?: { readonly column: 'run_id' | 'last_run_id'; readonly runIds: readonly number[] },
): Promise<{ total: NotificationCounts; byChannel: Record<string, NotificationCounts> }> {
  let q = db
    .selectFrom('notifications as n')
    .select(['n.channel', 'n.state', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy(['n.channel', 'n.state'])
  if (scope) {
    if (scope.runIds.length === 0) return { total: zero(), byChannel: {} }
    // A cancellation's event belongs to the run of the receipt it cancels.
    q = q
      .innerJoin('receipts as e', 'e.id', 'n.receipt_id')
      .innerJoin('receipts as r', (j) => j.on((eb) => eb('r.id', '=', eb.fn.coalesce('e.parent_receipt_id', 'e.id'))))
      .where(`r.${scope.column}`, 'in', scope.runIds)
  }
  const total = zero()
  const byChannel: Record<string, ReturnType<typeof zero>> = {}
  for (const g of await q.execute()) {
    const n = Number(g.n)
    total[g.state] += n
    ;(byChannel[g.channel] ??= zero())[g.state] += n
  }
  return { total, byChannel }
}

export interface NotificationFilter {
  readonly merchantId?: string
  readonly channel?: NotificationChannel
}

/** Failed rows back to pending under a fresh job generation; returns how many per channel. */
export async function redriveFailedNotifications(db: Db, filter: NotificationFilter, opts: { readonly dryRun?: boolean } = {}): Promise<{ channel: string; count: number }[]> {
  let sel = db
    .selectFrom('notifications')
    .select(['channel', (eb) => eb.fn.countAll<number>().as('n')])
    .where('state', '=', 'failed')
    .groupBy('channel')
  if (filter.merchantId) sel = sel.where('merchant_id', '=', filter.merchantId)
  if (filter.channel) sel = sel.where('channel', '=', filter.channel)
  if (opts.dryRun) {
    return (await sel.orderBy('channel').execute()).map((r) => ({ channel: r.channel, count: Number(r.n) }))
  }
  let upd = db
    .updateTable('notifications')
    .set({
      state: 'pending',
      redrive_count: sql`redrive_count + 1`,
      enqueued_at: null,
      attempts: 0,
      updated_at: sql`now()`,
    })
    .where('state', '=', 'failed')
  if (filter.merchantId) upd = upd.where('merchant_id', '=', filter.merchantId)
  if (filter.channel) upd = upd.where('channel', '=', filter.channel)
  const rows = await upd.returning('channel').execute()
  const by = new Map<string, number>()
  for (const r of rows) by.set(r.channel, (by.get(r.channel) ?? 0) + 1)
  return [...by].sort(([a], [b]) => a.localeCompare(b)).map(([channel, count]) => ({ channel, count }))
}
