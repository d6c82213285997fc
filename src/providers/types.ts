/**
 * The one small interface every provider adapter implements (issue, lookup, cancel), and the closed
 * set of outcomes every provider answer is mapped to. Nothing outside src/providers/<name>/ knows a
 * vendor's URL, auth scheme, envelope or error codes.
 */
import type { ProviderName } from '../config.ts'
import type { Logger } from 'pino'
import type { HttpClient } from './http.ts'

export type { ProviderName }

export type Purpose = 'deduction' | 'expense'
/** Kind of buyer identifier after domain validation. `self` is the NTS self-issue number 0100001234. */
export type IdentifierType = 'phone' | 'business' | 'card' | 'rrn' | 'self'

export interface ReceiptAmounts {
  /** Total receipted, KRW integer = supply + vat + serviceFee + taxFree. */
  readonly total: number
  readonly supply: number
  readonly vat: number
  readonly taxFree: number
  readonly serviceFee: number
}

/** What the adapter needs to issue one receipt. Built by the worker just before the call. */
export interface IssueRequest {
  /**
   * Deterministic provider key derived from the transaction (never random): PortOne V1 imp_uid or
   * merchant_uid, PortOne V2 paymentId, PaySsam bill_id, NTS client reference. The provider rejects
   * a second issue under the same key; lookups use it.
   */
  readonly providerKey: string
  /** Idempotency-Key for providers that support one (PortOne V2): stable for one receipt and re-drive. */
  readonly idempotencyKey: string
  /** PortOne V1: true when providerKey is an imp_uid (payment processed by PortOne), false for external. */
  readonly portonePayment: boolean
  readonly orderName: string
  readonly identifier: string
  readonly identifierType: IdentifierType
  readonly purpose: Purpose
  readonly amounts: ReceiptAmounts
  /** Business date of the payment in KST, YYYY-MM-DD. */
  readonly tradeDate: string
  /** ISO 8601 instant the payment was received. */
  readonly paidAt: string
  readonly buyer?: { readonly name?: string; readonly email?: string; readonly tel?: string }
  /** The merchant's own 사업자등록번호 (10 digits), needed by NTS-style APIs. */
  readonly merchantBusinessNumber: string
}

export interface LookupRequest {
  readonly providerKey: string
  readonly portonePayment: boolean
  /** PaySsam hashes the price; lookups must send the issued total. */
  readonly amounts: ReceiptAmounts
}

export interface CancelRequest {
  readonly providerKey: string
  readonly portonePayment: boolean
  readonly idempotencyKey: string
  /** Original receipt (needed by providers that reference approval number and trade date). */
  readonly original: { readonly approvalNumber: string | null; readonly tradeDate: string; readonly amounts: ReceiptAmounts }
  /** Amounts cancelled now; equal to original.amounts for a full cancel. */
  readonly amounts: ReceiptAmounts
  readonly partial: boolean
  /** 1 = 거래취소, 2 = 오류발급취소, 3 = 기타 */
  readonly reason: 1 | 2 | 3
  readonly purpose: Purpose
}

/** What a provider holds for a key, as read back. */
export interface ProviderReceipt {
  readonly status: 'issued' | 'cancelled'
  /** NTS approval number (승인번호), kept as a string. */
  readonly approvalNumber: string | null
  readonly providerReceiptId: string | null
  readonly receiptUrl: string | null
  /** Amount the provider holds (after partial cancels where supported). */
  readonly amount: number | null
  readonly issuedAt: string | null
  readonly cancelledAt: string | null
}

/** Facts about the HTTP exchange, for the issuance_attempts row. Never personal data. */
export interface CallMeta {
  readonly httpStatus: number | null
  readonly providerCode: string | null
  readonly message: string | null
  readonly latencyMs: number
}

/**
 * The closed set every provider answer maps to, in one function per adapter.
 * - issued: the provider confirmed a live receipt for the key (issue, or lookup that found one).
 * - already_issued: the provider refused a second issue for the key; read back for details.
 * - not_found: the provider holds nothing for the key (lookup), so issuing is safe.
 * - retryable: the request surely did not take effect (connection refused, documented not-processed 5xx).
 * - rate_limited: throttled (429 or the provider's equivalent); slow down, do not burn attempts.
 * - permanent: the request is wrong and will stay wrong (validation, auth, unknown payment).
 * - unknown_outcome: sent, but we cannot tell whether it took effect (timeout after send, reset
 *   mid-response, unparseable body). Look up before any retry.
 */
export type ProviderOutcome =
  | { readonly kind: 'issued'; readonly receipt: ProviderReceipt; readonly meta: CallMeta }
  | { readonly kind: 'cancelled'; readonly receipt: ProviderReceipt; readonly meta: CallMeta }
  | { readonly kind: 'already_issued'; readonly meta: CallMeta }
  | { readonly kind: 'not_found'; readonly meta: CallMeta }
  | { readonly kind: 'retryable'; readonly meta: CallMeta; readonly retryAfterMs?: number }
  | { readonly kind: 'rate_limited'; readonly meta: CallMeta; readonly retryAfterMs: number }
  | { readonly kind: 'permanent'; readonly meta: CallMeta }
  | { readonly kind: 'unknown_outcome'; readonly meta: CallMeta }

export type OutcomeKind = ProviderOutcome['kind']

export interface CallContext {
  /** Aborts the call (job cancelled, worker shutting down). */
  readonly signal?: AbortSignal
  /**
   * Called once per HTTP exchange that carried the operation (each p-retry try), so the caller can
   * record one issuance_attempts row per provider call. Token fetches are not reported.
   */
  readonly onCall?: (operation: 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount', outcome: ProviderOutcome) => void
}

export interface ProviderCapabilities {
  readonly partialCancel: boolean
  /** Can look up the cash-funded part of a Naver Pay payment (PortOne V1). */
  readonly naverCashAmount: boolean
}

export interface NaverCashAmount {
  readonly amountTotal: number
  readonly amountSupply: number
  readonly amountVat: number
}

export interface CashReceiptProvider {
  readonly name: ProviderName
  /** Stable id of the credential, for limiter keys and logs; never the secret itself. */
  readonly credentialId: string
  readonly capabilities: ProviderCapabilities
  issue(req: IssueRequest, ctx?: CallContext): Promise<ProviderOutcome>
  /** issued/cancelled with the receipt, not_found, or a failure kind. */
  lookup(req: LookupRequest, ctx?: CallContext): Promise<ProviderOutcome>
  /** cancelled on success; not_found when nothing was issued; or a failure kind. */
  cancel(req: CancelRequest, ctx?: CallContext): Promise<ProviderOutcome>
  /**
   * Naver Pay: cash-funded part receiptable for a payment (PortOne V1 only).
   * Returns the amount, or a failure outcome.
   */
  naverCashAmount?(paymentRef: string, ctx?: CallContext): Promise<NaverCashAmount | ProviderOutcome>
}

/** What every adapter factory receives. Credentials are the merchant's for that provider. */
export interface ProviderDeps<Creds> {
  readonly baseUrl: string
  readonly credentials: Creds
  /** The process's shared keep-alive transport; without it the adapter builds its own from fetch/timeouts. */
  readonly http?: HttpClient
  readonly fetch?: typeof globalThis.fetch
  readonly now?: () => number
  readonly logger?: Logger
  readonly timeouts?: { readonly connectMs: number; readonly readMs: number }
  /** p-retry budget for failures that surely did not take effect. */
  readonly retry?: { readonly retries: number; readonly minTimeoutMs: number; readonly maxRetryTimeMs: number }
}
