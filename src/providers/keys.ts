/**
 * Deterministic provider keys, derived from the transaction so every retry, redelivery and re-drive
 * of one receipt presents the same key to the provider (which rejects a second issue under it).
 */
import { createHash } from 'node:crypto'
import type { ProviderName } from '../domain/index.ts'

export interface ProviderKeys {
  /** imp_uid / merchant_uid (PortOne V1), paymentId (V2), bill_id (PaySsam), clientReference (NTS). */
  readonly providerKey: string
  /** Idempotency-Key for the issue call (PortOne V2 honours it; others ignore it). */
  readonly idempotencyKey: string
  /** PortOne V1: key is an imp_uid of a PortOne payment (true) or an external merchant_uid (false). */
  readonly portonePayment: boolean
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')

export function deriveProviderKeys(tx: {
  readonly provider: ProviderName
  readonly merchantId: string
  readonly transactionId: string
  readonly paymentRef: string | null
  readonly orderId: string | null
}): ProviderKeys {
  const h = digest(`${tx.merchantId}\u0000${tx.transactionId}`)
  const idempotencyKey = `cr-issue-${h.slice(0, 40)}`
  switch (tx.provider) {
    case 'portone':
      return tx.paymentRef
        ? { providerKey: tx.paymentRef, idempotencyKey, portonePayment: true }
        : { providerKey: tx.orderId ?? tx.transactionId, idempotencyKey, portonePayment: false }
    case 'portone-v2':
      return { providerKey: tx.paymentRef ?? tx.transactionId, idempotencyKey, portonePayment: false }
    case 'payssam':
      // bill_id: at most 20 alphanumerics, unique per partner.
      return { providerKey: `CR${h.slice(0, 18).toUpperCase()}`, idempotencyKey, portonePayment: false }
    case 'nts':
      return { providerKey: `CR${h.slice(0, 30).toUpperCase()}`, idempotencyKey, portonePayment: false }
  }
}

/** A re-drive gets a fresh Idempotency-Key: PortOne V2 replays the first answer (even an error) for 3 h. */
export function redriveIdempotencyKey(base: string, redriveCount: number): string {
  return `${base.replace(/-r\d+$/, '')}-r${redriveCount}`
}

export function cancelIdempotencyKey(issueKey: string, seq: number): string {
  return `${issueKey.replace(/-r\d+$/, '').replace('cr-issue-', 'cr-cancel-')}-${seq}`
}
