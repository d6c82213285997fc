/**
 * The ONE place NTS-style answers become outcomes. NTS does not deduplicate, so nothing that might
 * have been processed is ever called retryable: after sending, only a lookup can tell.
 *
 * | answer                                    | issue            | lookup      | cancel          |
 * |-------------------------------------------|------------------|-------------|-----------------|
 * | 200 resultCode 0000                       | issued           | issued / cancelled / not_found (empty list) | cancelled |
 * | 400 (E0xx, TS1–TS8 validation)            | permanent        | permanent   | permanent       |
 * | 401                                       | permanent (after one token refresh)               |
 * | 404 TSC (original not found)              | permanent        | —           | not_found       |
 * | 429 QUOTA_EXCEEDED / RATE_LIMITED         | rate_limited (Retry-After; the quota resets at 00:00 KST) |
 * | 5xx, garbage body, 200 without 0000       | unknown_outcome  | retryable   | unknown_outcome |
 */
import { retryAfterMs, type HttpResult } from '../http.ts'
import { body, meta, num, str } from '../common.ts'
import type { ProviderOutcome, ProviderReceipt } from '../../domain/index.ts'

export function classifyNts(op: 'issue' | 'lookup' | 'cancel', r: Extract<HttpResult, { ok: true }>): ProviderOutcome {
  const b = body(r)
  const code = b ? str(b.resultCode) : null
  const m = meta(r, code, b ? str(b.resultMessage) : null)
  const unknown: ProviderOutcome = op === 'lookup' ? { kind: 'retryable', meta: m } : { kind: 'unknown_outcome', meta: m }
  if (r.status === 429) return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers, 60_000) }
  if (!b || !code) return unknown
  if (r.status === 200 && code === '0000') {
    if (op === 'issue') {
      const appr = str(b.approvalNumber)
      return appr
        ? {
            kind: 'issued',
            meta: m,
            receipt: { status: 'issued', approvalNumber: appr, providerReceiptId: appr, receiptUrl: null, amount: null, issuedAt: str(b.issuedAt), cancelledAt: null },
          }
        : unknown
    }
    if (op === 'cancel') {
      const rec = b.receipt as Record<string, unknown> | undefined
      return { kind: 'cancelled', meta: m, receipt: { ...(rec ? receiptOf(rec) : emptyReceipt()), status: rec?.status === 'ISSUED' ? 'issued' : 'cancelled' } }
    }
    const list = Array.isArray(b.receipts) ? (b.receipts as Record<string, unknown>[]) : []
    if (!list.length) return { kind: 'not_found', meta: m }
    const live = list.find((x) => x.status === 'ISSUED')
    return live ? { kind: 'issued', receipt: receiptOf(live), meta: m } : { kind: 'cancelled', receipt: receiptOf(list[0]!), meta: m }
  }
  if (r.status === 404 && code === 'TSC' && op === 'cancel') return { kind: 'not_found', meta: m }
  if (r.status >= 400 && r.status < 500) return { kind: 'permanent', meta: m }
  return unknown
}

/** Every receipt in a successful lookup answer (classifyNts said issued, cancelled or not_found). */
export function ntsReceiptList(r: Extract<HttpResult, { ok: true }>): ProviderReceipt[] {
  const b = body(r)
  const list = b && Array.isArray(b.receipts) ? (b.receipts as unknown[]) : []
  return list.filter((x): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x)).map(receiptOf)
}

function receiptOf(x: Record<string, unknown>): ProviderReceipt {
  return {
    status: x.status === 'CANCELLED' ? 'cancelled' : 'issued',
    approvalNumber: str(x.approvalNumber),
    providerReceiptId: str(x.approvalNumber),
    receiptUrl: null,
    amount: typeof x.transactionAmount === 'number' ? x.transactionAmount - (num(x.cancelledAmount) ?? 0) : null,
    cancelledAmount: num(x.cancelledAmount),
    issuedAt: str(x.issuedAt),
    cancelledAt: str(x.cancelledAt),
  }
}

const emptyReceipt = (): ProviderReceipt => ({
  status: 'cancelled',
  approvalNumber: null,
  providerReceiptId: null,
  receiptUrl: null,
  amount: null,
  issuedAt: null,
  cancelledAt: null,
})
