/**
 * The ONE place Toss Payments answers become outcomes (docs/providers.md §5). Errors are
 * `{code, message}` with the HTTP status; the Korean message is kept.
 *
 * | answer                                         | issue            | list (lookup)   | cancel          |
 * |------------------------------------------------|------------------|-----------------|-----------------|
 * | 200 CashReceipt IN_PROGRESS / COMPLETED        | issued (provisional while IN_PROGRESS) | see tossOrderOutcome | cancelled |
 * | 200 CashReceipt FAILED (NTS_ERROR "[TSx] …")   | permanent, taxAuthorityRejected      |                 |                 |
 * | 400 DUPLICATED_CASH_RECEIPT                    | already_issued (read back)           |                 |                 |
 * | 409 IDEMPOTENT_REQUEST_PROCESSING              | retryable: the same key, later       | —               | retryable       |
 * | 403 FORBIDDEN_CONSECUTIVE_REQUEST, 429         | rate_limited (Retry-After, else 1 s)                                     |
 * | 404 NOT_FOUND / NOT_FOUND_*                    | permanent        | permanent       | not_found       |
 * | 401, other 400/403/404                         | permanent (message kept)                                                 |
 * | 5xx, garbage body, 200 without a receipt       | unknown_outcome  | retryable       | unknown_outcome |
 *
 * Toss does not document a 5xx as "not processed", so an issue or cancel answered with one is looked
 * up before anything else (the Idempotency-Key makes the repeat safe either way).
 */
import { retryAfterMs, type HttpResult } from '../http.ts'
import { asObject, body, meta, num, str } from '../common.ts'
import type { CallMeta, ProviderOutcome, ProviderReceipt } from '../../domain/index.ts'

/** One CashReceipt object of Toss, as far as we read it. */
export interface TossReceipt {
  readonly receiptKey: string
  readonly orderId: string | null
  readonly transactionType: 'CONFIRM' | 'CANCEL'
  readonly issueStatus: string | null
  readonly issueNumber: string | null
  readonly amount: number | null
  readonly receiptUrl: string | null
  readonly requestedAt: string | null
  readonly canceledAt: string | null
  readonly failure: { readonly code: string | null; readonly message: string | null } | null
}

export function tossReceiptOf(v: unknown): TossReceipt | null {
  const o = asObject(v)
  const key = o ? str(o.receiptKey) : null
  if (!o || !key) return null
  const f = asObject(o.failure)
  return {
    receiptKey: key,
    orderId: str(o.orderId),
    transactionType: o.transactionType === 'CANCEL' || (o.transactionType === undefined && key.startsWith('c_')) ? 'CANCEL' : 'CONFIRM',
    issueStatus: str(o.issueStatus),
    issueNumber: str(o.issueNumber) ?? str(o.approvalNumber),
    amount: num(o.amount),
    receiptUrl: str(o.receiptUrl),
    requestedAt: str(o.requestedAt),
    canceledAt: str(o.canceledAt),
    failure: f ? { code: str(f.code), message: str(f.message) } : null,
  }
}

/** `[TS1] 신분확인정보 자릿수 오류` → TS1 (XXX when the message carries no bracketed code). */
export function ntsResultCode(message: string | null): string {
  return (message && /^\s*\[([A-Z0-9]{2,4})\]/.exec(message)?.[1]) ?? 'XXX'
}

/** The outcome of a receipt Toss says the tax authority refused. */
export function rejected(t: TossReceipt, m: CallMeta): ProviderOutcome {
  const message = t.failure?.message ?? null
  return { kind: 'permanent', taxAuthorityRejected: true, meta: { ...m, providerCode: ntsResultCode(message), message: (message ?? 'NTS_ERROR').slice(0, 500) } }
}

function receiptOf(t: TossReceipt, amount: number | null): ProviderReceipt {
  return {
    status: 'issued',
    approvalNumber: t.issueNumber,
    providerReceiptId: t.receiptKey,
    receiptUrl: t.receiptUrl,
    amount,
    issuedAt: t.requestedAt,
    cancelledAt: null,
    provisional: t.issueStatus === 'IN_PROGRESS',
  }
}

export function classifyToss(op: 'issue' | 'lookup' | 'cancel', r: Extract<HttpResult, { ok: true }>, issuedAmount?: number): ProviderOutcome {
  const b = body(r)
  const code = b ? str(b.code) : null
  const m = meta(r, code, b ? str(b.message) : null)
  const unknown: ProviderOutcome = op === 'lookup' ? { kind: 'retryable', meta: m } : { kind: 'unknown_outcome', meta: m }
  if (r.status === 429 || (r.status === 403 && code === 'FORBIDDEN_CONSECUTIVE_REQUEST')) {
    return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers) }
  }
  if (r.status === 200) {
    const t = tossReceiptOf(b)
    if (!t || op === 'lookup') return unknown
    if (op === 'issue') {
      if (t.transactionType !== 'CONFIRM') return unknown
      if (t.issueStatus === 'FAILED') return rejected(t, m)
      if (t.issueStatus !== 'IN_PROGRESS' && t.issueStatus !== 'COMPLETED') return unknown
      return { kind: 'issued', meta: meta(r, t.issueStatus, null), receipt: receiptOf(t, issuedAmount ?? t.amount) }
    }
    if (t.transactionType !== 'CANCEL') return unknown
    return {
      kind: 'cancelled',
      meta: meta(r, t.issueStatus, null),
      receipt: {
        status: 'cancelled',
        approvalNumber: t.issueNumber,
        providerReceiptId: t.receiptKey,
        receiptUrl: t.receiptUrl,
        amount: t.amount,
        issuedAt: null,
        cancelledAt: t.canceledAt ?? t.requestedAt,
      },
    }
  }
  if (r.status === 400 && code === 'DUPLICATED_CASH_RECEIPT' && op === 'issue') return { kind: 'already_issued', meta: m }
  if (r.status === 409 && code === 'IDEMPOTENT_REQUEST_PROCESSING') return { kind: 'retryable', meta: m, retryAfterMs: 1_000 }
  if (r.status === 404 && op === 'cancel' && b) return { kind: 'not_found', meta: m }
  if (r.status >= 400 && r.status < 500 && b && code) return { kind: 'permanent', meta: m }
  return unknown
}

/** One page of the list API. */
export interface TossPage {
  readonly data: TossReceipt[]
  readonly hasNext: boolean
  readonly lastCursor: number | null
}

/** One page of the list API, or the outcome when the answer is not one. */
export function tossListPage(r: Extract<HttpResult, { ok: true }>): TossPage | ProviderOutcome {
  const b = body(r)
  if (r.status !== 200 || !b || !Array.isArray(b.data)) return classifyToss('lookup', r)
  const data = (b.data as unknown[]).map(tossReceiptOf).filter((x): x is TossReceipt => x !== null)
  return { data, hasNext: b.hasNext === true, lastCursor: num(b.lastCursor) }
}

/**
 * What Toss holds for one orderId, from every list entry of it: the receipt that is not FAILED (a
 * FAILED one may be followed by a new issue after a re-drive) with its cancels (`c_<receiptKey>`).
 * issued (the amount still receipted; provisional while IN_PROGRESS) · cancelled (nothing left) ·
 * permanent taxAuthorityRejected (only FAILED receipts) · not_found.
 */
export function tossOrderOutcome(entries: readonly TossReceipt[], m: CallMeta): ProviderOutcome {
  const confirms = entries.filter((e) => e.transactionType === 'CONFIRM')
  const live = [...confirms].reverse().find((e) => e.issueStatus !== 'FAILED')
  if (!live) {
    const failed = confirms.at(-1)
    return failed ? rejected(failed, m) : { kind: 'not_found', meta: m }
  }
  const cancelled = entries.filter((e) => e.transactionType === 'CANCEL' && e.receiptKey === `c_${live.receiptKey}`).reduce((n, e) => n + (e.amount ?? 0), 0)
  const left = live.amount === null ? null : live.amount - cancelled
  if (left !== null && left <= 0) {
    const last = entries.filter((e) => e.transactionType === 'CANCEL' && e.receiptKey === `c_${live.receiptKey}`).at(-1)
    return { kind: 'cancelled', meta: m, receipt: { ...receiptOf(live, 0), status: 'cancelled', cancelledAt: last?.canceledAt ?? last?.requestedAt ?? null } }
  }
  return { kind: 'issued', meta: m, receipt: { ...receiptOf(live, left), cancelledAmount: cancelled } }
}

/**
 * What a listing of request dates says for one orderId (its entries on those dates): the answer
 * tossOrderOutcome gives, when the entries make it one receipt's; `unsettled` when they do not — more
 * than one CONFIRM that is not FAILED (Toss refuses a second issue of an order, so this is not a
 * state the lookup's rule was made for), or CANCEL entries whose CONFIRM is not among them (sent
 * before the dates read). The caller then looks the order up on its own.
 */
export function tossListedOutcome(entries: readonly TossReceipt[], m: CallMeta): ProviderOutcome | { readonly kind: 'unsettled' } {
  const confirms = entries.filter((e) => e.transactionType === 'CONFIRM')
  if (!confirms.length || confirms.filter((e) => e.issueStatus !== 'FAILED').length > 1) return { kind: 'unsettled' }
  const keys = new Set(confirms.map((e) => `c_${e.receiptKey}`))
  if (entries.some((e) => e.transactionType === 'CANCEL' && !keys.has(e.receiptKey))) return { kind: 'unsettled' }
  return tossOrderOutcome(entries, m)
}
