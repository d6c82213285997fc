/**
 * One transaction and everything the ledger knows about its receipts, found by transaction id,
 * order id or approval number (`cash-receipts show`, the dashboard's search and receipt page).
 *
 * The history of a receipt is read from what the ledger records: its creation (with the run), every
 * provider call (issuance_attempts: time, operation, outcome, code, message, job), re-drives, the
 * issue and finish times, and its cancellation rows. Its transitions are the ledger's own record of
 * every change of state (receipt_transitions, written with each change). No personal identifier is read beyond its
 * masked form; nothing is decrypted.
 *
 * A buyer identifier (phone, business number, card number) is found through its keyed search hash
 * (cash_transactions.identifier_search), computed under every configured data key: the identifier
 * is never compared, stored or returned in plaintext, and the lookup's `query` comes back masked.
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { searchHashesAllKeys, type DataKeys } from '../crypto/pii.ts'
import { maskIdentifier, maskUnknown, parseIdentifier, searchableIdentifier } from '../domain/index.ts'
import { keysetPage } from '../db/keyset.ts'

export interface HistoryEvent {
  /** ISO instant. */
  at: string
  /** created, attempt, issued, cancelled, failed, skipped, redriven, … */
  event: string
  detail: string
}

export interface ReceiptView {
  id: number
  kind: 'issue' | 'cancel'
  state: string
  provider: string
  amounts: { total: number; supply: number; vat: number; tax_free: number; service_fee: number; cancelled: number }
  purpose: string
  self_issued: boolean
  trade_date: string
  deadline: string
  approval_number: string | null
  provider_receipt_id: string | null
  receipt_url: string | null
  skip_reason: string | null
  error: { class: string | null; code: string | null; message: string | null } | null
  cancel_reason: number | null
  parent_receipt_id: number | null
  run_id: string | null
  last_run_id: string | null
  redrive_count: number
  attempts: number
  created_at: string
  issued_at: string | null
  finished_at: string | null
  calls: {
    no: number
    operation: string
    outcome: string
    http_status: number | null
    code: string | null
    message: string | null
    started_at: string
    latency_ms: number | null
    job_id: string | null
  }[]
  history: HistoryEvent[]
  /**
   * Every change of state or owner as the ledger recorded it with the change (receipt_transitions),
   * oldest first; empty for receipts created before the ledger kept it (see `history`).
   */
  transitions: TransitionView[]
}

/** One recorded transition: from (null at creation), to, when, why, and the run/job/worker behind it. */
export interface TransitionView {
  from_state: string | null
  to_state: string
  at: string
  cause: string
  run_id: string | null
  job_id: string | null
  worker_id: string | null
}

export interface TransactionView {
  transaction_id: string
  merchant: { id: string; name: string | null; business_number: string | null }
  provider: string
  payment_ref: string | null
  order_id: string | null
  order_name: string | null
  method: string
  amount: number
  tax_free_amount: number
  service_fee: number
  paid_at: string
  business_date: string
  identifier_type: string | null
  identifier_masked: string | null
  purpose: string
  status: string
  refunded_amount: number
  receipts: ReceiptView[]
}

export type MatchedBy = 'transaction_id' | 'order_id' | 'approval_number' | 'buyer_identifier'

export interface ReceiptLookup {
  /** What was searched for; masked when it is shaped like a buyer identifier. */
  query: string
  transactions: (TransactionView & { matched_by: MatchedBy })[]
}

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString())

/** A buyer identifier's masked form, as the transaction page shows stored ones. */
function maskedQuery(digits: string): string {
  const parsed = parseIdentifier(digits)
  return parsed.ok ? maskIdentifier(parsed.value.digits, parsed.value.type) : maskUnknown(digits)
}

export interface FindOptions {
  readonly limit?: number
  /** To search buyer identifiers by their keyed hash; without keys, identifiers are not searched. */
  readonly dataKeys?: DataKeys
}

/** The transactions a query names (at most `limit`), each with its receipts and their history. */
export async function findReceipts(db: Db, query: string, opts: FindOptions = {}): Promise<ReceiptLookup> {
  const { next: _next, previous: _previous, ...found } = await searchReceipts(db, query, { size: opts.limit ?? 20, dataKeys: opts.dataKeys })
  return found
}

/** Which page of a search: by merchant, the transactions after / before a transaction id (keyset). */
export interface SearchPage {
  readonly merchantId?: string
  readonly after?: string
  readonly before?: string
  readonly size: number
  /** To search buyer identifiers by their keyed hash; without keys, identifiers are not searched. */
  readonly dataKeys?: DataKeys
}

/**
 * {@link findReceipts} a page at a time (the dashboard's search): the matches ordered by transaction
 * id, only the merchant's when one is given; `next` / `previous` are the cursors of the pages around.
 */
export async function searchReceipts(db: Db, query: string, page: SearchPage): Promise<ReceiptLookup & { next: string | null; previous: string | null }> {
  const trimmed = query.trim()
  if (!trimmed) return { query: trimmed, transactions: [], next: null, previous: null }
  const identifier = searchableIdentifier(trimmed)
  // The identifier never leaves this function as typed; ids, order ids and approval numbers do.
  const q = identifier === undefined ? trimmed : maskedQuery(identifier)
  const got = await keysetPage<{ id: string; by: MatchedBy }, string>(
    page,
    (m) => m.id,
    async (cursor, limit) => {
      const dir = cursor && !cursor.forward ? 'desc' : 'asc'
      const around = (col: 't.transaction_id' | 'r.transaction_id') =>
        cursor ? sql<boolean>`${sql.ref(col)} ${sql.raw(cursor.forward ? '>' : '<')} ${cursor.key}` : sql<boolean>`true`
      const merchant = (col: 't.merchant_id' | 'r.merchant_id') => (page.merchantId ? sql<boolean>`${sql.ref(col)} = ${page.merchantId}` : sql<boolean>`true`)
      const matches = new Map<string, MatchedBy>()
      const byId = await db
        .selectFrom('cash_transactions as t')
        .select('t.transaction_id')
        .where('t.transaction_id', '=', trimmed)
        .where(around('t.transaction_id'))
        .where(merchant('t.merchant_id'))
        .execute()
      for (const r of byId) matches.set(r.transaction_id, 'transaction_id')
      const byApproval = await db
        .selectFrom('receipts as r')
        .select('r.transaction_id')
        .distinct()
        .where('r.approval_number', '=', trimmed)
        .where(around('r.transaction_id'))
        .where(merchant('r.merchant_id'))
        .orderBy('r.transaction_id', dir)
        .limit(limit)
        .execute()
      for (const r of byApproval) if (!matches.has(r.transaction_id)) matches.set(r.transaction_id, 'approval_number')
      const byOrder = await db
        .selectFrom('cash_transactions as t')
        .select('t.transaction_id')
        .where('t.order_id', '=', trimmed)
        .where(around('t.transaction_id'))
        .where(merchant('t.merchant_id'))
        .orderBy('t.transaction_id', dir)
        .limit(limit)
        .execute()
      for (const r of byOrder) if (!matches.has(r.transaction_id)) matches.set(r.transaction_id, 'order_id')
      if (identifier !== undefined && page.dataKeys) {
        const byBuyer = await db
          .selectFrom('cash_transactions as t')
          .select('t.transaction_id')
          .where('t.identifier_search', 'in', searchHashesAllKeys(identifier, page.dataKeys))
          .where(around('t.transaction_id'))
          .where(merchant('t.merchant_id'))
          .orderBy('t.transaction_id', dir)
          .limit(limit)
          .execute()
        for (const r of byBuyer) if (!matches.has(r.transaction_id)) matches.set(r.transaction_id, 'buyer_identifier')
      }
      const ids = [...matches.keys()].sort()
      if (dir === 'desc') ids.reverse()
      return ids.slice(0, limit).map((id) => ({ id, by: matches.get(id)! }))
    },
  )
  const views = await Promise.all(got.rows.map((m) => transactionView(db, m.id)))
  const by = new Map(got.rows.map((m) => [m.id, m.by]))
  return {
    query: q,
    transactions: views.filter((v): v is TransactionView => v !== undefined).map((v) => ({ ...v, matched_by: by.get(v.transaction_id)! })),
    next: got.next,
    previous: got.previous,
  }
}

export async function transactionView(db: Db, transactionId: string): Promise<TransactionView | undefined> {
  const t = await db
    .selectFrom('cash_transactions as t')
    .leftJoin('merchants as m', 'm.id', 't.merchant_id')
    .select([
      't.transaction_id',
      't.merchant_id',
      'm.name as merchant_name',
      'm.business_number_masked',
      't.provider',
      't.payment_ref',
      't.order_id',
      't.order_name',
      't.method',
      't.amount',
      't.tax_free_amount',
      't.service_fee',
      't.paid_at',
      't.business_date',
      't.identifier_type',
      't.identifier_masked',
      't.purpose',
      't.status',
      't.refunded_amount',
    ])
    .where('t.transaction_id', '=', transactionId)
    .executeTakeFirst()
  if (!t) return undefined
  const receipts = await db.selectFrom('receipts').selectAll().where('transaction_id', '=', transactionId).orderBy('id').execute()
  const ids = receipts.map((r) => r.id)
  const calls = ids.length
    ? await db.selectFrom('issuance_attempts').selectAll().where('receipt_id', 'in', ids).orderBy('receipt_id').orderBy('started_at').orderBy('id').execute()
    : []
  const steps = ids.length
    ? await db
        .selectFrom('receipt_transitions')
        .select(['receipt_id', 'from_state', 'to_state', 'at', 'cause', 'run_id', 'job_id', 'worker_id'])
        .where('receipt_id', 'in', ids)
        .orderBy('id')
        .execute()
    : []
  const runs = new Map<number, { trigger: string; business_date: string; started_at: Date }>()
  const runIds = [...new Set(receipts.flatMap((r) => [r.run_id, r.last_run_id]).filter((v): v is number => v !== null))]
  if (runIds.length) {
    for (const r of await db.selectFrom('settlement_runs').select(['id', 'trigger', 'business_date', 'started_at']).where('id', 'in', runIds).execute()) {
      runs.set(Number(r.id), { trigger: r.trigger, business_date: r.business_date, started_at: r.started_at })
    }
  }
  return {
    transaction_id: t.transaction_id,
    merchant: { id: t.merchant_id, name: t.merchant_name ?? null, business_number: t.business_number_masked ?? null },
    provider: t.provider,
    payment_ref: t.payment_ref,
    order_id: t.order_id,
    order_name: t.order_name,
    method: t.method,
    amount: Number(t.amount),
    tax_free_amount: Number(t.tax_free_amount),
    service_fee: Number(t.service_fee),
    paid_at: iso(t.paid_at)!,
    business_date: t.business_date,
    identifier_type: t.identifier_type,
    identifier_masked: t.identifier_masked,
    purpose: t.purpose,
    status: t.status,
    refunded_amount: Number(t.refunded_amount),
    receipts: receipts.map((r) => {
      const own = calls.filter((c) => c.receipt_id === r.id)
      const history: HistoryEvent[] = []
      const run = r.run_id !== null ? runs.get(Number(r.run_id)) : undefined
      history.push({
        at: iso(r.created_at)!,
        event: 'created',
        detail:
          r.kind === 'cancel'
            ? `cancellation of receipt ${r.parent_receipt_id} requested (reason ${r.cancel_reason ?? '-'})`
            : `by ${run?.trigger ?? 'settlement'} run ${r.run_id ?? '-'}${r.state === 'skipped' ? `, skipped: ${r.skip_reason ?? ''}` : ''}`,
      })
      for (const c of own) {
        history.push({
          at: iso(c.started_at)!,
          event: c.operation,
          detail: `${c.outcome}${c.http_status ? ` (HTTP ${c.http_status}` : ''}${c.provider_code ? `${c.http_status ? ', ' : ' ('}${c.provider_code}` : ''}${c.http_status || c.provider_code ? ')' : ''}${c.message ? `: ${c.message}` : ''}`,
        })
      }
      if (r.redrive_count > 0 && r.last_run_id !== null && r.last_run_id !== r.run_id) {
        // The latest re-drive's time is its run's start (earlier re-drives show as their calls).
        const by = runs.get(Number(r.last_run_id))
        history.push({ at: iso(by?.started_at ?? r.updated_at)!, event: 'redriven', detail: `re-drive ${r.redrive_count}, run ${r.last_run_id}` })
      }
      if (r.issued_at) history.push({ at: iso(r.issued_at)!, event: r.kind === 'cancel' ? 'accepted' : 'issued', detail: r.approval_number ? `approval ${r.approval_number}` : '' })
      if (r.finished_at && r.state !== 'issued') {
        history.push({ at: iso(r.finished_at)!, event: r.state, detail: r.error_message ?? r.skip_reason ?? '' })
      }
      history.sort((a, b) => a.at.localeCompare(b.at))
      return {
        id: Number(r.id),
        kind: r.kind,
        state: r.state,
        provider: r.provider,
        amounts: {
          total: Number(r.total_amount),
          supply: Number(r.supply_amount),
          vat: Number(r.vat_amount),
          tax_free: Number(r.tax_free_amount),
          service_fee: Number(r.service_fee),
          cancelled: Number(r.cancelled_amount),
        },
        purpose: r.purpose,
        self_issued: r.self_issued,
        trade_date: r.trade_date,
        deadline: r.deadline,
        approval_number: r.approval_number,
        provider_receipt_id: r.provider_receipt_id,
        receipt_url: r.receipt_url,
        skip_reason: r.skip_reason,
        error: r.error_class || r.error_code || r.error_message ? { class: r.error_class, code: r.error_code, message: r.error_message } : null,
        cancel_reason: r.cancel_reason,
        parent_receipt_id: r.parent_receipt_id === null ? null : Number(r.parent_receipt_id),
        run_id: r.run_id === null ? null : String(r.run_id),
        last_run_id: r.last_run_id === null ? null : String(r.last_run_id),
        redrive_count: r.redrive_count,
        attempts: r.attempts,
        created_at: iso(r.created_at)!,
        issued_at: iso(r.issued_at),
        finished_at: iso(r.finished_at),
        calls: own.map((c) => ({
          no: c.attempt_no,
          operation: c.operation,
          outcome: c.outcome,
          http_status: c.http_status,
          code: c.provider_code,
          message: c.message,
          started_at: iso(c.started_at)!,
          latency_ms: c.latency_ms,
          job_id: c.job_id,
        })),
        history,
        transitions: steps
          .filter((s) => s.receipt_id === r.id)
          .map((s) => ({
            from_state: s.from_state,
            to_state: s.to_state,
            at: iso(s.at)!,
            cause: s.cause,
            run_id: s.run_id === null ? null : String(s.run_id),
            job_id: s.job_id,
            worker_id: s.worker_id,
          })),
      }
    }),
  }
}
