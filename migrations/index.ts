import type { Migration } from 'kysely'
import * as initial from './2026_11_22_0001_initial.ts'
import * as settleKeyset from './2026_11_23_0002_settle_keyset.ts'
import * as metricsIndexes from './2026_11_23_0101_metrics_indexes.ts'
import * as redundantFks from './2026_11_23_0102_receipts_redundant_fks.ts'
import * as runFk from './2026_11_24_0103_receipts_run_fk.ts'
import * as settleRejections from './2026_12_05_0104_settle_rejections.ts'
import * as transactionsUniqueRef from './2026_12_05_0105_transactions_unique_ref.ts'
import * as providerDuplicates from './2026_12_05_0106_provider_duplicates.ts'
import * as deployment from './2026_12_05_0107_deployment.ts'
import * as lastSentAt from './2026_12_05_0108_receipts_last_sent_at.ts'
import * as requeueCount from './2026_12_05_0109_receipts_requeue_count.ts'
import * as duplicateCancelOwner from './2026_12_05_0200_duplicate_cancel_owner.ts'
import * as attemptsSent from './2026_12_05_0260_attempts_sent.ts'
import * as remaskIdentifiers from './2026_12_05_0280_remask_identifiers.ts'
import * as auditLog from './2026_12_05_0281_audit_log.ts'
import * as tossProvisional from './2026_12_05_0300_toss_provisional.ts'
import * as receiptTransitions from './2026_12_05_0480_receipt_transitions.ts'
import * as notifyFinalReceipts from './2026_12_05_0620_notify_final_receipts.ts'
import * as receiptsReissue from './2026_12_05_0261_receipts_reissue.ts'
import * as popbillProvider from './2026_12_05_0400_popbill_provider.ts'
import * as providerBatches from './2026_12_05_0420_provider_batches.ts'
import * as notifications from './2026_12_05_0440_notifications.ts'
import * as identifierSearch from './2026_12_05_0460_transactions_identifier_search.ts'

/** Every migration, in order. Static imports so the set is the same under tsx and compiled JS. */
export const migrations: Record<string, Migration> = {
  '2026_11_22_0001_initial': initial,
  '2026_11_23_0002_settle_keyset': settleKeyset,
  '2026_11_23_0101_metrics_indexes': metricsIndexes,
  '2026_11_23_0102_receipts_redundant_fks': redundantFks,
  '2026_11_24_0103_receipts_run_fk': runFk,
  '2026_12_05_0104_settle_rejections': settleRejections,
  '2026_12_05_0105_transactions_unique_ref': transactionsUniqueRef,
  '2026_12_05_0106_provider_duplicates': providerDuplicates,
  '2026_12_05_0107_deployment': deployment,
  '2026_12_05_0108_receipts_last_sent_at': lastSentAt,
  '2026_12_05_0109_receipts_requeue_count': requeueCount,
  '2026_12_05_0200_duplicate_cancel_owner': duplicateCancelOwner,
  '2026_12_05_0260_attempts_sent': attemptsSent,
  '2026_12_05_0261_receipts_reissue': receiptsReissue,
  '2026_12_05_0280_remask_identifiers': remaskIdentifiers,
  '2026_12_05_0281_audit_log': auditLog,
  '2026_12_05_0300_toss_provisional': tossProvisional,
  '2026_12_05_0400_popbill_provider': popbillProvider,
  '2026_12_05_0420_provider_batches': providerBatches,
  '2026_12_05_0440_notifications': notifications,
  '2026_12_05_0460_transactions_identifier_search': identifierSearch,
  '2026_12_05_0480_receipt_transitions': receiptTransitions,
  '2026_12_05_0620_notify_final_receipts': notifyFinalReceipts,
}
