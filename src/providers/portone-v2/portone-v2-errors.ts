/**
 * The ONE place PortOne V2 answers become outcomes (docs/providers.md §2). Errors are
 * {type, message}; the status follows the type.
 *
 * | answer                                      | issue           | lookup          | cancel         |
 * |---------------------------------------------|-----------------|-----------------|----------------|
 * | 200                                         | issued          | issued/cancelled (ISSUE_FAILED → not_found) | cancelled |
 * | 409 CASH_RECEIPT_ALREADY_ISSUED             | already_issued  |                 |                |
 * | 409 IDEMPOTENCY_OUTSTANDING_REQUEST         | retryable (same key is safe) | | retryable |
 * | 404 CASH_RECEIPT_NOT_FOUND / _NOT_ISSUED    | permanent       | not_found       | not_found      |
 * | 400 / 401 / 403 / other 404                 | permanent       | permanent       | permanent      |
 * | 429                                         | rate_limited (Retry-After)                         |
 * | 502 PG_PROVIDER, other 5xx, garbage body    | unknown_outcome | retryable       | unknown_outcome |
 */
import { retryAfterMs, type HttpResult } from '../http.ts'
import { body, meta, str } from '../common.ts'
import type { ProviderOutcome, ProviderReceipt } from '../../domain/index.ts'

export function receiptOfV2(b: Record<string, unknown>): ProviderReceipt {
  return {
    status: b.status === 'CANCELLED' ? 'cancelled' : 'issued',
    approvalNumber: str(b.issueNumber),
    providerReceiptId: str(b.pgReceiptId),
    receiptUrl: str(b.url),
    amount: typeof b.amount === 'number' ? b.amount : null,
    issuedAt: str(b.issuedAt),
    cancelledAt: str(b.cancelledAt),
  }
}

export function classifyPortoneV2(op: 'issue' | 'lookup' | 'cancel', r: Extract<HttpResult, { ok: true }>, issuedAmount?: number): ProviderOutcome {
  const b = body(r)
  const type = b ? str(b.type) : null
  const m = meta(r, type ?? (b && str(b.pgCode)) ?? null, b ? (str(b.message) ?? str(b.pgMessage)) : null)
  const sideEffect = op !== 'lookup'
  if (r.status === 429) return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers) }
  if (r.status === 200 && b) {
    if (op === 'issue') {
      const c = b.cashReceipt as Record<string, unknown> | undefined
      if (!c || !str(c.issueNumber)) return { kind: 'unknown_outcome', meta: m }
      return {
        kind: 'issued',
        meta: m,
        receipt: {
          status: 'issued',
          approvalNumber: str(c.issueNumber),
          providerReceiptId: str(c.pgReceiptId),
          receiptUrl: str(c.url),
          amount: issuedAmount ?? null,
          issuedAt: new Date().toISOString(),
          cancelledAt: null,
        },
      }
    }
    if (op === 'cancel') {
      return {
        kind: 'cancelled',
        meta: m,
        receipt: {
          status: 'cancelled',
          approvalNumber: null,
          providerReceiptId: null,
          receiptUrl: null,
          amount: typeof b.cancelledAmount === 'number' ? b.cancelledAmount : null,
          issuedAt: null,
          cancelledAt: str(b.cancelledAt),
        },
      }
    }
    if (b.status === 'ISSUE_FAILED') return { kind: 'not_found', meta: m }
    if (b.status !== 'ISSUED' && b.status !== 'CANCELLED') return { kind: 'retryable', meta: m }
    const receipt = receiptOfV2(b)
    return receipt.status === 'cancelled' ? { kind: 'cancelled', receipt, meta: m } : { kind: 'issued', receipt, meta: m }
  }
  if (r.status === 409 && type === 'CASH_RECEIPT_ALREADY_ISSUED') return { kind: 'already_issued', meta: m }
  if (r.status === 409 && type === 'IDEMPOTENCY_OUTSTANDING_REQUEST') return { kind: 'retryable', meta: m, retryAfterMs: 1_000 }
  if (r.status === 404 && (type === 'CASH_RECEIPT_NOT_FOUND' || type === 'CASH_RECEIPT_NOT_ISSUED') && op !== 'issue') return { kind: 'not_found', meta: m }
  if (r.status >= 400 && r.status < 500 && b) return { kind: 'permanent', meta: m }
  return sideEffect ? { kind: 'unknown_outcome', meta: m } : { kind: 'retryable', meta: m }
}
