/**
 * The ONE place PaySsam V1 answers become outcomes (docs/providers.md §3). Errors usually come
 * as HTTP 200 with a code; judge success by code 0000 only and read `message` or `msg`.
 *
 * | code / answer                          | issue           | read (lookup)   | cancel          |
 * |----------------------------------------|-----------------|-----------------|-----------------|
 * | 0000                                   | issued          | issued/cancelled from info[] | cancelled |
 * | 9800 bill_id already used              | already_issued  | —               | —               |
 * | 9980 bill not found                    | permanent       | not_found       | not_found       |
 * | 9970 already cancelled                 | permanent       | —               | cancelled       |
 * | 9971 already paid, 1003 no access, HTTP 400 (bad parameter) | permanent | permanent | permanent |
 * | 9999 processing error (HTTP 200)       | unknown_outcome (the processing state is unknown) | retryable | unknown_outcome |
 * | 5000 SYSTEM ERROR / 5xx, garbage body  | unknown_outcome | retryable       | unknown_outcome |
 * | HTTP 429                               | rate_limited (Retry-After)                          |
 * | any other code                         | permanent (documented codes only are trusted)       |
 */
import { retryAfterMs, type HttpResult } from '../http.ts'
import { asObject, body, meta, num, str } from '../common.ts'
import type { ProviderOutcome } from '../../domain/index.ts'

export function classifyPayssam(op: 'issue' | 'lookup' | 'cancel', r: Extract<HttpResult, { ok: true }>): ProviderOutcome {
  const b = body(r)
  const code = b ? str(b.code) : null
  const m = meta(r, code, b ? (str(b.message) ?? str(b.msg)) : null)
  const unknown: ProviderOutcome = op === 'lookup' ? { kind: 'retryable', meta: m } : { kind: 'unknown_outcome', meta: m }
  if (r.status === 429) return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers) }
  if (!b || !code) return unknown
  if (r.status === 400) return { kind: 'permanent', meta: m }
  if (r.status >= 500 || code === '5000') return unknown
  switch (code) {
    case '0000':
      if (op === 'issue') {
        const appr = str(b.appr_cash_num)
        return appr
          ? {
              kind: 'issued',
              meta: m,
              receipt: {
                status: 'issued',
                approvalNumber: appr,
                providerReceiptId: str(b.bill_id),
                receiptUrl: null,
                amount: null,
                issuedAt: new Date().toISOString(),
                cancelledAt: null,
              },
            }
          : unknown
      }
      if (op === 'cancel') {
        return {
          kind: 'cancelled',
          meta: m,
          receipt: {
            status: 'cancelled',
            approvalNumber: str(b.appr_cash_num),
            providerReceiptId: str(b.bill_id),
            receiptUrl: null,
            amount: null,
            issuedAt: null,
            cancelledAt: new Date().toISOString(),
          },
        }
      }
      return fromInfo(b, m)
    case '9800':
      return op === 'issue' ? { kind: 'already_issued', meta: m } : { kind: 'permanent', meta: m }
    case '9980':
      return op === 'issue' ? { kind: 'permanent', meta: m } : { kind: 'not_found', meta: m }
    case '9970':
      return op === 'cancel'
        ? {
            kind: 'cancelled',
            meta: m,
            receipt: { status: 'cancelled', approvalNumber: null, providerReceiptId: str(b.bill_id), receiptUrl: null, amount: null, issuedAt: null, cancelledAt: null },
          }
        : { kind: 'permanent', meta: m }
    case '9999':
      return unknown
    default:
      return { kind: 'permanent', meta: m }
  }
}

/** read: info[] holds the issue (F) and cancel (C) rows; live when approved exceeds cancelled. */
function fromInfo(b: Record<string, unknown>, m: ReturnType<typeof meta>): ProviderOutcome {
  const info = Array.isArray(b.info) ? b.info.map(asObject).filter((i) => i !== null) : []
  const approved = info.filter((i) => i.appr_state === 'F')
  if (!approved.length) return { kind: 'not_found', meta: m }
  const sum = (rows: Record<string, unknown>[]) => rows.reduce((n, i) => n + (num(i.appr_price) ?? 0), 0)
  const remaining = sum(approved) - sum(info.filter((i) => i.appr_state === 'C'))
  const first = approved[0]!
  const receipt = {
    status: remaining > 0 ? ('issued' as const) : ('cancelled' as const),
    approvalNumber: str(first.appr_num),
    providerReceiptId: str(b.bill_id),
    receiptUrl: null,
    amount: remaining,
    issuedAt: kstStampToIso(str(first.appr_dt)),
    cancelledAt: null,
  }
  return remaining > 0 ? { kind: 'issued', receipt, meta: m } : { kind: 'cancelled', receipt, meta: m }
}

/** appr_dt is KST `YYYYMMDDhhmmss` (a 3P note says the V2 sandbox may send a 2-digit year: `YYMMDDhhmmss`). */
export function kstStampToIso(stamp: string | null): string | null {
  const m = stamp ? /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(stamp) : null
  if (!m) return null
  const year = m[1]!.length === 2 ? `20${m[1]}` : m[1]!
  const d = new Date(`${year}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}+09:00`)
  return Number.isNaN(d.getTime()) ? null : d.toISOString()
}
