/**
 * The ONE place Popbill answers become outcomes (docs/providers.md, Popbill). Success is HTTP 200 with
 * `code: 1` (or the requested object); a failure is a non-200 status with `{code: <negative>, message}`
 * (node SDK lib/BaseService.js `_makeRequest`: anything but 200 goes to the error callback).
 *
 * | answer                                             | issue / bulk submit | lookup / bulk result | cancel        |
 * |----------------------------------------------------|---------------------|----------------------|---------------|
 * | 200                                                | (parsed by the caller: issued, accepted, infos, …)                  |
 * | -14001019 / -14000004 (mgtKey in use)              | already_issued      | permanent            | read back     |
 * | -14000003 (no receipt for the mgtKey)              | permanent           | not_found            | not_found     |
 * | -14001020 (original not found)                     | permanent           | permanent            | not_found     |
 * | -14001031 (SubmitID already used)                  | already_submitted   | permanent            | permanent     |
 * | -14000000 (no such submission, GetBulkResult)      | permanent           | not_found            | permanent     |
 * | 429                                                | rate_limited (Retry-After, else 1 s)                                |
 * | 401 (the token, after one refresh), other 4xx      | permanent (code and message kept)                                   |
 * | 5xx, garbage body, 200 that is not the answer      | unknown_outcome     | retryable            | unknown_outcome |
 *
 * Popbill does not document a 5xx as "not processed": an issue, submission or cancel answered with one
 * is read back before anything else. The -1400xxxx validation codes are permanent by their meaning.
 */
import { retryAfterMs, type HttpResult } from '../http.ts'
import { asObject, body, codeText, meta, num, str } from '../common.ts'
import type { CallMeta, ProviderOutcome, ProviderReceipt } from '../../domain/index.ts'

/** Documented (docs.popbill.com/en/cashbill/exception): the mgtKey is in use — a second issue under it. */
export const DUPLICATE_CODES: ReadonlySet<string> = new Set(['-14001019', '-14000004'])
/** Documented: no cash receipt for the mgtKey. */
export const NOT_FOUND_CODE = '-14000003'
/** Documented: the original of a revocation does not exist. */
export const ORIGINAL_NOT_FOUND_CODE = '-14001020'
/** Documented: a revocation is refused while the original is not yet filed with the NTS. */
export const NOT_FILED_CODE = '-14001021'
/**
 * Not in the published table (it stops at -14001023): the codes the sandbox gives, which the adapter
 * reads the same way. A real answer with another code for these cases falls to `permanent` — safe,
 * as the batch is then read back with GetBulkResult / GetInfos rather than submitted again.
 */
export const SUBMIT_ID_USED_CODE = '-14001031'
export const SUBMIT_NOT_FOUND_CODE = '-14000000'
/** CancelIssue refused because the receipt was already filed (sandbox's code; unconfirmed). */
export const ALREADY_FILED_CODE = '-14001025'

/** Popbill's stateCode: 300 issued (filing pending), 304 filed, 305 filing failed; 4xx withdrawn (CancelIssue). */
export const STATE_ISSUED = 300
export const STATE_FILED = 304
export const STATE_FILING_FAILED = 305

export type PopbillOperation = 'issue' | 'lookup' | 'cancel' | 'bulk_submit' | 'bulk_result'

/** The code and message of an answer (codes are numbers on the wire; kept as text). */
export function popbillCode(r: Extract<HttpResult, { ok: true }>): { code: string | null; message: string | null } {
  const b = body(r)
  return { code: b ? codeText(b.code) : null, message: b ? str(b.message) : null }
}

/**
 * A non-success answer as an outcome. `ok` is how the caller recognised success (never called for
 * one): a 200 reaching here is one that did not carry the expected answer.
 */
export function classifyPopbill(op: PopbillOperation, r: Extract<HttpResult, { ok: true }>): ProviderOutcome {
  const { code, message } = popbillCode(r)
  const m = meta(r, code, message)
  const read = op === 'lookup' || op === 'bulk_result'
  const unknown: ProviderOutcome = read ? { kind: 'retryable', meta: m } : { kind: 'unknown_outcome', meta: m }
  if (r.status === 429) return { kind: 'rate_limited', meta: m, retryAfterMs: retryAfterMs(r.headers) }
  if (r.status === 200 || r.status >= 500 || code === null || !/^-\d{8}$/.test(code)) return unknown
  if (DUPLICATE_CODES.has(code) && op === 'issue') return { kind: 'already_issued', meta: m }
  if (code === NOT_FOUND_CODE && (op === 'lookup' || op === 'cancel')) return { kind: 'not_found', meta: m }
  if (code === ORIGINAL_NOT_FOUND_CODE && op === 'cancel') return { kind: 'not_found', meta: m }
  if (code === SUBMIT_NOT_FOUND_CODE && op === 'bulk_result') return { kind: 'not_found', meta: m }
  return { kind: 'permanent', meta: m }
}

/** One CashbillInfo (GetInfo, GetInfos), as far as we read it. Amounts are strings on the wire. */
export interface CashbillInfo {
  readonly mgtKey: string
  readonly itemKey: string | null
  readonly stateCode: number | null
  readonly confirmNum: string | null
  readonly tradeDate: string | null
  readonly tradeType: string | null
  readonly totalAmount: number | null
  readonly orgConfirmNum: string | null
  readonly issueDT: string | null
  readonly stateDT: string | null
  readonly ntsresultCode: string | null
  readonly ntsresultMessage: string | null
}

export function cashbillInfoOf(v: unknown): CashbillInfo | null {
  const o = asObject(v)
  const mgtKey = o ? str(o.mgtKey) : null
  // GetInfos may list a key it does not hold with empty fields: no itemKey and no state = not held.
  if (!o || !mgtKey || (str(o.itemKey) === null && num(o.stateCode) === null)) return null
  return {
    mgtKey,
    itemKey: str(o.itemKey),
    stateCode: num(o.stateCode),
    confirmNum: str(o.confirmNum),
    tradeDate: str(o.tradeDate),
    tradeType: str(o.tradeType),
    totalAmount: num(o.totalAmount),
    orgConfirmNum: str(o.orgConfirmNum),
    issueDT: str(o.issueDT),
    stateDT: str(o.stateDT),
    ntsresultCode: str(o.ntsresultCode),
    ntsresultMessage: str(o.ntsresultMessage),
  }
}

/** `yyyyMMddHHmmss` (KST, Popbill's times) → ISO 8601; null when it is not one. */
export function isoFromKst(stamp: string | null): string | null {
  const m = stamp ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(stamp) : null
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}+09:00` : null
}

const withdrawn = (s: number | null) => s !== null && s >= 400 && s < 500
const refused = (i: CashbillInfo) => i.stateCode === STATE_FILING_FAILED

/** The outcome of a receipt the NTS refused at filing (305), with its NTS result code. */
export function rejected(i: CashbillInfo, m: CallMeta): ProviderOutcome {
  return {
    kind: 'permanent',
    taxAuthorityRejected: true,
    meta: { ...m, providerCode: i.ntsresultCode ?? 'XXX', message: (i.ntsresultMessage ?? 'NTS filing failed (305)').slice(0, 500) },
  }
}

/**
 * What Popbill holds for one receipt, from its own CashbillInfo and those of its revocations (each a
 * separate 취소거래 receipt under its own mgtKey, naming the original's confirmNum):
 * - nothing under the key → not_found;
 * - withdrawn before filing (CancelIssue, state 4xx) → cancelled;
 * - filing failed (305) → permanent, taxAuthorityRejected, with the ntsresultCode;
 * - else issued with what is left after the revocations (cancelled once nothing is), provisional
 *   while the original awaits filing (300), final once filed (304).
 */
export function popbillReceiptOutcome(original: CashbillInfo | null, revocations: readonly CashbillInfo[], m: CallMeta): ProviderOutcome {
  if (!original) return { kind: 'not_found', meta: m }
  const base: ProviderReceipt = {
    status: 'issued',
    approvalNumber: original.confirmNum,
    providerReceiptId: original.mgtKey,
    receiptUrl: null,
    amount: original.totalAmount,
    issuedAt: isoFromKst(original.issueDT),
    cancelledAt: null,
    provisional: original.stateCode === STATE_ISSUED,
  }
  if (withdrawn(original.stateCode)) {
    return { kind: 'cancelled', meta: m, receipt: { ...base, status: 'cancelled', amount: 0, provisional: false, cancelledAt: isoFromKst(original.stateDT) } }
  }
  if (refused(original)) return rejected(original, m)
  const live = revocations.filter((c) => c.tradeType === '취소거래' && c.orgConfirmNum === original.confirmNum && !withdrawn(c.stateCode) && !refused(c))
  const cancelled = live.reduce((n, c) => n + (c.totalAmount ?? 0), 0)
  const left = original.totalAmount === null ? null : original.totalAmount - cancelled
  if (left !== null && left <= 0) {
    const last = live.at(-1)
    return {
      kind: 'cancelled',
      meta: m,
      receipt: { ...base, status: 'cancelled', amount: 0, provisional: false, cancelledAt: isoFromKst(last?.issueDT ?? null), cancelledAmount: cancelled },
    }
  }
  return { kind: 'issued', meta: m, receipt: { ...base, amount: left, cancelledAmount: cancelled } }
}
