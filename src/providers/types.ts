/**
 * The one small interface every provider adapter implements (issue, lookup, cancel). The outcomes it
 * answers with are the domain's closed set (src/domain/provider.ts). Nothing outside
 * src/providers/<name>/ knows a vendor's URL, auth scheme, envelope or error codes.
 */
import type { Logger } from 'pino'
import type { CallMeta, IdentifierType, Method, ProviderName, ProviderOutcome, ProviderReceipt, Purpose, ReceiptAmounts } from '../domain/index.ts'
import type { HttpClient, RetryBudget } from './http.ts'

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
  /**
   * How the transaction was paid (its import `method`). PortOne V1 sends it as `pay_method` where the
   * merchant's PG requires one (welcome, external receipts); absent: not known.
   */
  readonly paymentMethod?: Method
  /** The merchant's own 사업자등록번호 (10 digits), needed by NTS-style APIs. */
  readonly merchantBusinessNumber: string
}

export interface LookupRequest {
  readonly providerKey: string
  readonly portonePayment: boolean
  /** PaySsam hashes the price; lookups must send the issued total. */
  readonly amounts: ReceiptAmounts
  /**
   * KST date (YYYY-MM-DD) on or after which every request for this key was sent (the receipt row's
   * creation). Toss lists receipts only by request date: its lookup reads the dates from here to
   * today. Absent: yesterday and today.
   */
  readonly sentSince?: string
}

export interface ListRequest {
  /**
   * KST date (YYYY-MM-DD) on or after which every request for the keys was sent (the earliest receipt
   * row's creation): the dates from here to today are read, as `lookup` reads them for one key.
   */
  readonly sentSince: string
  /** The keys whose entries are kept; every other entry of a page is dropped as it is read. */
  readonly keys: ReadonlySet<string>
}

export interface ListContext {
  /** Runs one list request (reconcile: through the credential's throttle, like every other call). */
  readonly schedule: <T>(call: () => Promise<T>) => Promise<T>
  readonly signal?: AbortSignal
}

/**
 * What a listing holds for one key: the answer `lookup` gives for it (issued/cancelled with the
 * receipt, permanent `taxAuthorityRejected`), or `unsettled` when the entries do not make one receipt
 * the answer (more than one live receipt, a cancel without its receipt): the key is then looked up.
 */
export type ListedOutcome = ProviderOutcome | { readonly kind: 'unsettled' }

export interface ReceiptListing {
  /** Per key of the request that has entries in the listing; a key absent has none on the dates read. */
  readonly held: ReadonlyMap<string, ListedOutcome>
  /** List requests the listing made (pages, over every date read). */
  readonly requests: number
}

export interface CancelRequest {
  readonly providerKey: string
  readonly portonePayment: boolean
  readonly idempotencyKey: string
  /** Original receipt (needed by providers that reference approval number and trade date). */
  readonly original: {
    readonly approvalNumber: string | null
    readonly tradeDate: string
    readonly amounts: ReceiptAmounts
    /** The provider's own id of the original receipt (Toss cancels by its `receiptKey`). */
    readonly providerReceiptId?: string | null
  }
  /** Amounts cancelled now; equal to original.amounts for a full cancel. */
  readonly amounts: ReceiptAmounts
  readonly partial: boolean
  /** 1 = 거래취소, 2 = 오류발급취소, 3 = 기타 */
  readonly reason: 1 | 2 | 3
  readonly purpose: Purpose
  /**
   * The cancel row's attempt number in the ledger (one claim per number). PortOne V2 derives the key
   * of a repeated cancel from it after a replayed PG failure; absent: no repeat.
   */
  readonly attemptNo?: number
}

export interface CallContext {
  /** Aborts the call (job cancelled, worker shutting down). */
  readonly signal?: AbortSignal
  /**
   * Called once per HTTP exchange that carried the operation (each p-retry try), so the caller can
   * record one issuance_attempts row per provider call. Token fetches are not reported.
   */
  readonly onCall?: (operation: 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount', outcome: ProviderOutcome) => void
  /**
   * The fence of a request that can issue or cancel: the adapter hands it to the HTTP layer, which
   * awaits it before EVERY such request — each p-retry try and the repeat after a token refresh —
   * and sends nothing when it throws (the caller's lease was taken over). Lookups and token fetches
   * change nothing at the provider and are not fenced.
   */
  readonly beforeSend?: () => Promise<void>
}

export interface ProviderCapabilities {
  /** Can cancel part of a receipt (the cancel request carries the amount): NTS, Toss. */
  readonly partialCancel: boolean
  /**
   * The provider's answer to an issue can be provisional: the tax authority's result comes later
   * (Toss, one to two days), and reconcile reads it (docs/exactly-once.md, deferred results).
   */
  readonly deferredResults?: boolean
  /**
   * Part of a receipt can be cancelled only once the tax authority has its final result (Popbill: a
   * revocation needs the original filed, state 304; before the midnight filing only a withdrawal of
   * the whole receipt is possible). While the ledger holds the receipt provisional, a partial refund
   * is a full cancel followed by a re-issue of what is still paid.
   */
  readonly partialCancelOnlyFinal?: boolean
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
  /**
   * Every receipt the provider holds for the key, cancelled ones included (empty = none), or a
   * failure outcome. Only adapters whose API can hold more than one receipt per key have it (NTS:
   * it does not deduplicate by our key); a provider that refuses a second issue for a key (PortOne
   * V1/V2, PaySsam) holds at most one, which `lookup` returns.
   */
  lookupAll?(req: LookupRequest, ctx?: CallContext): Promise<readonly ProviderReceipt[] | ProviderOutcome>
  /**
   * Every receipt the credential's requests of some KST dates hold, read page by page, kept only for
   * the given keys: what `lookup` would answer for each of them, from one read of the list instead of
   * one per key. Only adapters whose API lists receipts by date have it (Toss: by request date).
   */
  listReceipts?(req: ListRequest, ctx: ListContext): Promise<ReceiptListing | ProviderOutcome>
  /** cancelled on success; not_found when nothing was issued; or a failure kind. */
  cancel(req: CancelRequest, ctx?: CallContext): Promise<ProviderOutcome>
  /**
   * Naver Pay: cash-funded part receiptable for a payment (PortOne V1 only).
   * Returns the amount, or a failure outcome.
   */
  naverCashAmount?(paymentRef: string, ctx?: CallContext): Promise<NaverCashAmount | ProviderOutcome>
  /** Bulk issuance where the provider has it (Popbill); absent: one receipt per call. */
  readonly bulk?: BulkIssuer
}

/**
 * One bulk submission (Popbill BulkSubmit): up to `BulkIssuer.maxItems` receipts of one credential
 * under one submit id. The submit id is deterministic for the batch's content and never reused for
 * different content; each item's `providerKey` is the receipt's own key (Popbill mgtKey), so a
 * receipt issued in bulk is found again one by one.
 */
export interface BulkIssueRequest {
  readonly submitId: string
  readonly items: readonly IssueRequest[]
}

/** The answer to a bulk submission: accepted for background processing, or a failure kind. */
export type BulkSubmitOutcome =
  | { readonly kind: 'accepted'; readonly meta: CallMeta }
  /**
   * The provider already holds a submission under this id (sent before, possibly with an unknown
   * outcome): its result is read with `bulkResult`, never submitted again.
   */
  | { readonly kind: 'already_submitted'; readonly meta: CallMeta }
  | Extract<ProviderOutcome, { kind: 'retryable' | 'rate_limited' | 'permanent' | 'unknown_outcome' }>

/** The state of a bulk submission as read back (Popbill GetBulkResult). */
export type BulkResultOutcome =
  /** Accepted and still being processed: ask again later. */
  | { readonly kind: 'processing'; readonly meta: CallMeta }
  /**
   * Processing finished: one outcome per item, keyed by providerKey (issued with the receipt,
   * already_issued for a duplicate key, permanent for a refused item, ...). An item of the request
   * that is missing from the map was not processed.
   */
  | { readonly kind: 'done'; readonly items: ReadonlyMap<string, ProviderOutcome>; readonly meta: CallMeta }
  /** The provider holds no submission under this id: it never arrived. */
  | { readonly kind: 'not_found'; readonly meta: CallMeta }
  | Extract<ProviderOutcome, { kind: 'retryable' | 'rate_limited' | 'permanent' | 'unknown_outcome' }>

/** Bulk issuance, for adapters whose API has it (Popbill). Every method is one HTTP exchange. */
export interface BulkIssuer {
  /** Most items one submission may carry (Popbill: 100). */
  readonly maxItems: number
  /** Fenced like `issue`: `ctx.beforeSend` is awaited before every request that can issue. */
  submitBulk(req: BulkIssueRequest, ctx?: BulkCallContext): Promise<BulkSubmitOutcome>
  bulkResult(submitId: string, ctx?: BulkCallContext): Promise<BulkResultOutcome>
  /**
   * Looks up many keys in one call (Popbill GetInfos): per key the same answer `lookup` gives
   * (issued/cancelled with the receipt, or not_found), or one failure outcome for the whole call.
   */
  lookupMany(reqs: readonly LookupRequest[], ctx?: BulkCallContext): Promise<ReadonlyMap<string, ProviderOutcome> | ProviderOutcome>
}

/** Like CallContext, but a bulk exchange reports its own operation names. */
export interface BulkCallContext extends Omit<CallContext, 'onCall'> {
  readonly onCall?: (operation: 'bulk_submit' | 'bulk_result' | 'lookup_many', meta: CallMeta) => void
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
  readonly retry?: RetryBudget
}
