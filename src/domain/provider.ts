/**
 * The provider vocabulary every layer shares: which providers exist, and the closed set of outcomes
 * every provider answer is mapped to. The ledger records these outcomes and the jobs decide on them;
 * only the adapters in src/providers/<name>/ know how a vendor spells them on the wire.
 */

export const PROVIDERS = ['portone', 'portone-v2', 'payssam', 'nts', 'toss', 'popbill'] as const
export type ProviderName = (typeof PROVIDERS)[number]

/** What a provider holds for a key, as read back. */
export interface ProviderReceipt {
  readonly status: 'issued' | 'cancelled'
  /** NTS approval number (승인번호), kept as a string. */
  readonly approvalNumber: string | null
  readonly providerReceiptId: string | null
  readonly receiptUrl: string | null
  /** Amount the provider holds (after partial cancels where supported). */
  readonly amount: number | null
  /**
   * What the provider's answer says was already cancelled of it (partial cancels), where it says;
   * absent or null: not stated. A receipt with cancels at the provider the ledger does not know of is
   * not one whose amount reconcile may take over.
   */
  readonly cancelledAmount?: number | null
  /** VAT the provider holds for it, where its answer says (PortOne V1 `vat`); else absent or null. */
  readonly vat?: number | null
  readonly issuedAt: string | null
  readonly cancelledAt: string | null
  /**
   * The provider accepted the receipt but the tax authority's result is still to come (Toss
   * `IN_PROGRESS`, known one to two days later): recorded as issued and provisional until reconcile
   * reads the final result. Absent or false: final.
   */
  readonly provisional?: boolean
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
 * - permanent: the request is wrong and will stay wrong (validation, auth, unknown payment), or the
 *   tax authority refused a receipt the provider had accepted (`taxAuthorityRejected`).
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
  /**
   * `taxAuthorityRejected`: the provider accepted the receipt earlier, but the tax authority refused
   * it (Toss `FAILED` with `NTS_ERROR` "[TSx] …"); meta carries the TSx code and the message.
   */
  | { readonly kind: 'permanent'; readonly meta: CallMeta; readonly taxAuthorityRejected?: boolean }
  | { readonly kind: 'unknown_outcome'; readonly meta: CallMeta }

export type OutcomeKind = ProviderOutcome['kind']

/**
 * The error classes a failed receipt can carry (receipts.error_class): an outcome kind that ended
 * in failure, `tax_authority` (a receipt the tax authority refused), `internal` (our own error around a call), `queue` (a job BullMQ gave up on).
 */
export const FAILURE_CLASSES = ['permanent', 'retryable', 'rate_limited', 'unknown_outcome', 'not_found', 'already_issued', 'tax_authority', 'internal', 'queue'] as const
