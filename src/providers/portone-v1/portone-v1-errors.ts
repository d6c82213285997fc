/**
 * The ONE place PortOne V1 answers become outcomes (docs/providers.md §1).
 *
 * | answer                                   | issue            | lookup     | cancel     |
 * |------------------------------------------|------------------|------------|------------|
 * | 200, code 0                              | issued           | issued / cancelled (cancelled_at) | cancelled |
 * | 200, code ≠ 0 ("a 200 with an error")    | permanent        | retryable  | permanent  |
 * | 400 (missing param, not paid, duplicate) | permanent → read back by the adapter | permanent | not_found (never issued) |
 * | 401 after one token refresh              | permanent        | permanent  | permanent  |
 * | 404                                      | permanent        | not_found  | not_found  |
 * | 429                                      | rate_limited (Retry-After)           |            |            |
 * | 500 (PG failed to issue / cancel)        | retryable (documented as not done)   | retryable  | retryable  |
 * | 501 (PG unsupported)                     | permanent        | permanent  | permanent  |
 * | other 5xx, HTML, truncated/garbage body  | unknown_outcome  | retryable  | unknown_outcome |
 */
import type { HttpResult } from '../http.ts'
import { retryAfterMs } from '../http.ts'
import { body, codeText, isoFromEpochSeconds, meta, num, str } from '../common.ts'
import type { ProviderOutcome, ProviderReceipt } from '../../domain/index.ts'
import type { NaverCashAmount } from '../types.ts'

type Op = 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount'

export function receiptOf(res: Record<string, unknown>): ProviderReceipt {
  const cancelledAt = isoFromEpochSeconds(res.cancelled_at)
  return {
    status: cancelledAt ? 'cancelled' : 'issued',
    approvalNumber: str(res.apply_num),
    providerReceiptId: str(res.receipt_tid),
    receiptUrl: str(res.receipt_url),
    amount: typeof res.amount === 'number' ? res.amount : null,
    vat: typeof res.vat === 'number' && Number.isSafeInteger(res.vat) ? res.vat : null,
    issuedAt: isoFromEpochSeconds(res.applied_at),
    cancelledAt,
  }
}

/**
 * The cash-funded part of a Naver Pay payment, or null unless all three amounts are whole won (money:
 * anything else is garbage from a read, worth asking again, never a receipt amount).
 */
export function naverCashAmountOf(res: Record<string, unknown>): NaverCashAmount | null {
  const [amountTotal, amountSupply, amountVat] = [res.amount_total, res.amount_supply, res.amount_vat].map(num)
  if (![amountTotal, amountSupply, amountVat].every((n) => n !== null && Number.isSafeInteger(n))) return null
  return { amountTotal: amountTotal!, amountSupply: amountSupply!, amountVat: amountVat! }
}

export function classifyPortoneV1(op: Op, r: Extract<HttpResult, { ok: true }>): ProviderOutcome {
  const b = body(r)
  const code = b ? codeText(b.code) : null
  const message = b ? str(b.message) : null
  const m = meta(r, code, message)
  const sideEffect = op === 'issue' || op === 'cancel'
  if (r.status === 429) return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers) }
  if (!b || b.code === undefined) {
    // HTML error page, truncated JSON, huge body: after a POST/DELETE nobody knows what happened.
    return sideEffect ? { kind: 'unknown_outcome', meta: m } : { kind: 'retryable', meta: m }
  }
  if (r.status === 200) {
    const res = b.response as Record<string, unknown> | null
    if (b.code !== 0 || !res) return op === 'lookup' ? { kind: 'retryable', meta: m } : { kind: 'permanent', meta: m }
    if (op === 'naver_cash_amount') {
      const cash = naverCashAmountOf(res)
      if (!cash) return { kind: 'retryable', meta: m }
      return {
        kind: 'issued',
        receipt: { status: 'issued', approvalNumber: null, providerReceiptId: null, receiptUrl: null, amount: cash.amountTotal, issuedAt: null, cancelledAt: null },
        meta: m,
      }
    }
    const receipt = receiptOf(res)
    if (op === 'cancel') return { kind: 'cancelled', receipt, meta: m }
    return receipt.status === 'cancelled' ? { kind: 'cancelled', receipt, meta: m } : { kind: 'issued', receipt, meta: m }
  }
  if (r.status === 404) return op === 'issue' || op === 'naver_cash_amount' ? { kind: 'permanent', meta: m } : { kind: 'not_found', meta: m }
  if (r.status === 400) return op === 'cancel' ? { kind: 'not_found', meta: m } : { kind: 'permanent', meta: m }
  if (r.status === 401 || r.status === 403 || r.status === 501) return { kind: 'permanent', meta: m }
  if (r.status === 500) return { kind: 'retryable', meta: m }
  return sideEffect ? { kind: 'unknown_outcome', meta: m } : { kind: 'retryable', meta: m }
}
