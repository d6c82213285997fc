/** Kysely table types. bigint columns come back as strings from pg unless parsed; see database.ts. */
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import type { IdentifierType, Method, ProviderName, Purpose } from '../domain/index.ts'

type Timestamp = Date
/** `date` columns are read as 'YYYY-MM-DD' strings (type parser set in database.ts). */
type DateString = ColumnType<string, string, string>

export type ReceiptState = 'pending' | 'issuing' | 'issued' | 'failed' | 'skipped' | 'cancelling' | 'cancelled'
export type ReceiptKind = 'issue' | 'cancel'
export type RunTrigger = 'schedule' | 'manual' | 'redrive'

export interface MerchantsTable {
  id: string
  name: string
  business_number_enc: string
  business_number_masked: string
  data_key_id: string
  mandatory_issuer: boolean
  providers: string[]
  /** The buyer-notification channels the merchant has switched on (synced from the merchants file). */
  notify_channels: Generated<string[]>
  created_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
}

export interface CashTransactionsTable {
  transaction_id: string
  merchant_id: string
  provider: ProviderName
  payment_ref: string | null
  order_id: string | null
  order_name: string | null
  method: Method
  amount: number
  tax_free_amount: Generated<number>
  service_fee: Generated<number>
  paid_at: Timestamp
  business_date: DateString
  identifier_type: IdentifierType | null
  identifier_masked: string | null
  pii_enc: string | null
  data_key_id: string | null
  purpose: Generated<Purpose>
  status: Generated<'completed' | 'cancelled'>
  refunded_amount: Generated<number>
  content_hash: string
  /** The buyer identifier's keyed hash for search (`<keyId>.<mac>`), never the identifier; NULL without one. */
  identifier_search: string | null
  imported_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
}

export interface SettlementRunsTable {
  id: Generated<number>
  business_date: DateString
  merchant_scope: Generated<string>
  trigger: RunTrigger
  status: Generated<'running' | 'enqueued' | 'finished'>
  started_at: Generated<Timestamp>
  enqueued_at: Timestamp | null
  finished_at: Timestamp | null
  selected_count: Generated<number>
  enqueued_count: Generated<number>
  skipped_count: Generated<number>
  filter: unknown | null
}

export interface ReceiptsTable {
  id: Generated<number>
  transaction_id: string
  kind: ReceiptKind
  seq: Generated<number>
  merchant_id: string
  provider: ProviderName
  state: ReceiptState
  provider_key: string
  idempotency_key: string
  portone_payment: Generated<boolean>
  needs_lookup: Generated<boolean>
  approval_number: string | null
  total_amount: Generated<number>
  supply_amount: Generated<number>
  vat_amount: Generated<number>
  tax_free_amount: Generated<number>
  service_fee: Generated<number>
  cancelled_amount: Generated<number>
  purpose: Purpose
  self_issued: Generated<boolean>
  trade_date: DateString
  deadline: DateString
  provider_receipt_id: string | null
  receipt_url: string | null
  skip_reason: string | null
  error_class: string | null
  error_code: string | null
  error_message: string | null
  attempts: Generated<number>
  locked_by: string | null
  locked_until: Timestamp | null
  /** When the latest issue or cancel request was about to be sent (written before it is, by the send fence). */
  last_sent_at: Timestamp | null
  run_id: number | null
  last_run_id: number | null
  redrive_count: Generated<number>
  /** Re-enqueues under a fresh job id after the previous job finished with work still due (part of the job id). */
  requeue_count: Generated<number>
  parent_receipt_id: number | null
  /** On a full cancel row: a new receipt for this amount follows once the cancel is accepted (partial refund at a full-cancel-only provider). */
  reissue_amount: number | null
  /** On an issue row that re-issues a receipt for what remains after a partial refund: the receipt it replaces. */
  replaces_receipt_id: number | null
  cancel_reason: 1 | 2 | 3 | null
  reconcile_flag: string | null
  reconciled_at: Timestamp | null
  /** Issued, but the tax authority's result is still to come (Toss IN_PROGRESS); reconcile finalises it. */
  provisional: Generated<boolean>
  created_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
  issued_at: Timestamp | null
  finished_at: Timestamp | null
}

export interface IssuanceAttemptsTable {
  id: Generated<number>
  receipt_id: number
  attempt_no: number
  operation: 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount'
  started_at: Timestamp
  /** Null while the request is out (outcome 'sent'): written before an issue or cancel request leaves. */
  finished_at: Timestamp | null
  /** 'sent' until the answer is recorded; then the outcome kind. A worker killed mid-call leaves 'sent'. */
  outcome: string
  http_status: number | null
  provider_code: string | null
  message: string | null
  latency_ms: number | null
  worker_id: string
  job_id: string | null
}

/** A transaction settlement could not turn into a receipt; one row per transaction (see settle-rejections.ts). */
export interface SettleRejectionsTable {
  transaction_id: string
  merchant_id: string
  provider: ProviderName
  trade_date: DateString
  code: SettleRejectionCode
  sqlstate: string
  message: string
  run_id: number
  last_run_id: number
  seen_count: Generated<number>
  created_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
}
export type SettleRejectionCode = 'KEY_CONFLICT' | 'KEY_INVALID' | 'ROW_INVALID'

/** A further live receipt a provider held for one of our receipts (see ledger.ts, reconcile). */
export interface ProviderDuplicatesTable {
  id: Generated<number>
  receipt_id: number
  provider: ProviderName
  provider_receipt_id: string
  approval_number: string | null
  amount: number | null
  found_at: Generated<Timestamp>
  /** Set while one reconcile holds the cancel of this duplicate (a claim, so two never both send it). */
  cancel_started_at: Timestamp | null
  /** The reconcile that holds the claim (checked by the send fence before every cancel request). */
  cancel_claimed_by: string | null
  repaired_at: Timestamp | null
  repair_outcome: string | null
}

/** One change of a receipt's state or owner, written by the ledger with the change (see ledger.ts). */
export interface ReceiptTransitionsTable {
  id: Generated<number>
  receipt_id: number
  /** Null for the row's creation. */
  from_state: ReceiptState | null
  to_state: ReceiptState
  at: Generated<Timestamp>
  /** settle, attempt:<n>, lookup, deferred, lease_takeover, recover, queue_gave_up, redrive, cancel, reissue, reconcile, operator:<command>. */
  cause: string
  run_id: number | null
  job_id: string | null
  worker_id: string | null
}

/** One bulk submission of up to `maxItems` receipts of one credential (ledger.ts, bulk issuance). */
export interface ProviderBatchesTable {
  id: Generated<number>
  merchant_id: string
  provider: ProviderName
  run_id: number | null
  trade_date: DateString
  state: BatchState
  /** Deterministic for the batch's content; set by the first fenced send, never changed after. */
  submit_id: string | null
  content_hash: string | null
  item_count: number
  locked_by: string | null
  locked_until: Timestamp | null
  attempts: Generated<number>
  requeue_count: Generated<number>
  polls: Generated<number>
  submitted_at: Timestamp | null
  last_sent_at: Timestamp | null
  error_code: string | null
  error_message: string | null
  created_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
  finished_at: Timestamp | null
}
export type BatchState = 'open' | 'submitted' | 'done' | 'abandoned'

export interface ProviderBatchItemsTable {
  batch_id: number
  receipt_id: number
  active: Generated<boolean>
  attempt_id: number | null
  outcome: string | null
}

export interface ProviderBatchCallsTable {
  id: Generated<number>
  batch_id: number
  operation: 'bulk_submit' | 'bulk_result' | 'lookup_many'
  started_at: Timestamp
  finished_at: Timestamp
  outcome: string
  http_status: number | null
  provider_code: string | null
  message: string | null
  latency_ms: number
  worker_id: string
  job_id: string | null
}

export interface AuditLogTable {
  id: Generated<string>
  at: Generated<Date>
  actor: string
  action: string
  selectors: ColumnType<Record<string, unknown>, string, string>
  counts: ColumnType<Record<string, unknown>, string, string>
}

export type NotificationChannel = 'email' | 'sms' | 'kakao'
export type NotificationEvent = 'issued' | 'cancelled'
export type NotificationState = 'pending' | 'sending' | 'sent' | 'failed' | 'skipped'

/**
 * The notification outbox: one row per (receipt event, channel), created by a trigger in the same
 * transaction that moves the receipt to issued (migration 0440; docs/notifications.md). Holds ids,
 * states and error codes only: the buyer's address is decrypted from the transaction at send time.
 */
export interface NotificationsTable {
  id: Generated<number>
  /** The issue row (event issued) or the cancel row (event cancelled). */
  receipt_id: number
  event: NotificationEvent
  channel: NotificationChannel
  merchant_id: string
  state: Generated<NotificationState>
  attempts: Generated<number>
  locked_by: string | null
  locked_until: Timestamp | null
  /** Written right before a send leaves (the fence): a row taken over with it set may have been sent. */
  send_started_at: Timestamp | null
  /** Sends that left (fenced), across attempts. */
  sends: Generated<number>
  sent_at: Timestamp | null
  /** Email: our deterministic Message-ID; SMS/Kakao: the gateway's message id. */
  message_id: string | null
  skip_reason: string | null
  error_class: string | null
  error_code: string | null
  enqueued_at: Timestamp | null
  redrive_count: Generated<number>
  created_at: Generated<Timestamp>
  updated_at: Generated<Timestamp>
}

export interface Database {
  notifications: NotificationsTable
  audit_log: AuditLogTable
  merchants: MerchantsTable
  cash_transactions: CashTransactionsTable
  settlement_runs: SettlementRunsTable
  receipts: ReceiptsTable
  issuance_attempts: IssuanceAttemptsTable
  settle_rejections: SettleRejectionsTable
  provider_duplicates: ProviderDuplicatesTable
  receipt_transitions: ReceiptTransitionsTable
  provider_batches: ProviderBatchesTable
  provider_batch_items: ProviderBatchItemsTable
  provider_batch_calls: ProviderBatchCallsTable
}

export type Receipt = Selectable<ReceiptsTable>
export type NewReceipt = Insertable<ReceiptsTable>
export type ReceiptUpdate = Updateable<ReceiptsTable>
export type CashTransaction = Selectable<CashTransactionsTable>
export type SettlementRun = Selectable<SettlementRunsTable>
export type ProviderDuplicate = Selectable<ProviderDuplicatesTable>
export type ProviderBatch = Selectable<ProviderBatchesTable>
