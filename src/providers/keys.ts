/**
 * Deterministic provider keys, derived from the transaction so every retry, redelivery and re-drive
 * of one receipt presents the same key to the provider (which rejects a second issue under it).
 */
import { createHash } from 'node:crypto'
import type { Method, ProviderName } from '../domain/index.ts'

export interface ProviderKeys {
  /** imp_uid / merchant_uid (PortOne V1), paymentId (V2), bill_id (PaySsam), clientReference (NTS), orderId (Toss), mgtKey (Popbill). */
  readonly providerKey: string
  /** Idempotency-Key for the issue call (PortOne V2 and Toss honour it; others ignore it). Toss allows ≤ 300 characters. */
  readonly idempotencyKey: string
  /** PortOne V1: key is an imp_uid of a PortOne payment (true) or an external merchant_uid (false). */
  readonly portonePayment: boolean
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')

/**
 * Which transaction field becomes the provider key. PortOne V1: imp_uid (`payment_ref`) for a PortOne
 * payment, else merchant_uid (`order_id`, else `transaction_id`); PortOne V2: paymentId (`payment_ref`,
 * else `transaction_id`). PaySsam, NTS and Toss (orderId) keys are digests of merchant and transaction id, as unique as
 * the transaction id. The importer checks keys for uniqueness per provider with this rule.
 */
export type ProviderKeySource = 'payment_ref' | 'order_id' | 'transaction_id' | 'digest'

export function providerKeySource(tx: { readonly provider: ProviderName; readonly paymentRef: string | null; readonly orderId: string | null }): ProviderKeySource {
  switch (tx.provider) {
    case 'portone':
      return tx.paymentRef ? 'payment_ref' : (tx.orderId ?? null) !== null ? 'order_id' : 'transaction_id'
    case 'portone-v2':
      return (tx.paymentRef ?? null) !== null ? 'payment_ref' : 'transaction_id'
    case 'payssam':
    case 'nts':
    case 'toss':
    case 'popbill':
      return 'digest'
  }
}

export function deriveProviderKeys(tx: {
  readonly provider: ProviderName
  readonly merchantId: string
  readonly transactionId: string
  readonly paymentRef: string | null
  readonly orderId: string | null
  /** Naver Pay at PortOne V1: `POST /receipts/{imp_uid}` does not support it (docs/providers.md §1). */
  readonly method?: Method
}): ProviderKeys {
  const h = digest(`${tx.merchantId}\u0000${tx.transactionId}`)
  const idempotencyKey = `cr-issue-${h.slice(0, 40)}`
  const source = providerKeySource(tx)
  switch (tx.provider) {
    case 'portone':
      // A Naver Pay 결제형 payment's cash part is receipted on the external route, under its imp_uid as
      // merchant_uid: the imp_uid route is not offered for Naver Pay and would receipt the whole payment.
      return source === 'payment_ref'
        ? { providerKey: tx.paymentRef!, idempotencyKey, portonePayment: tx.method !== 'naverpay' }
        : { providerKey: source === 'order_id' ? tx.orderId! : tx.transactionId, idempotencyKey, portonePayment: false }
    case 'portone-v2':
      return { providerKey: source === 'payment_ref' ? tx.paymentRef! : tx.transactionId, idempotencyKey, portonePayment: false }
    case 'payssam':
      // bill_id: at most 20 alphanumerics, unique per partner.
      return { providerKey: `CR${h.slice(0, 18).toUpperCase()}`, idempotencyKey, portonePayment: false }
    case 'nts':
      return { providerKey: `CR${h.slice(0, 30).toUpperCase()}`, idempotencyKey, portonePayment: false }
    case 'toss':
      // orderId: 6–64 characters of [A-Za-z0-9_-], unique per merchant at Toss.
      return { providerKey: `CR${h.slice(0, 30).toUpperCase()}`, idempotencyKey, portonePayment: false }
    case 'popbill':
      // mgtKey: at most 24 characters of [A-Za-z0-9_-], unique per seller, never reusable (Popbill
      // refuses a second issue under it). 22 hex digits: 88 bits, as unique as the transaction id.
      return { providerKey: `CR${h.slice(0, 22).toUpperCase()}`, idempotencyKey, portonePayment: false }
  }
}

/** A re-drive gets a fresh Idempotency-Key: PortOne V2 replays the first answer (even an error) for 3 h. */
export function redriveIdempotencyKey(base: string, redriveCount: number): string {
  return `${base.replace(/-r\d+$/, '')}-r${redriveCount}`
}

export function cancelIdempotencyKey(issueKey: string, seq: number): string {
  return `${issueKey.replace(/-r\d+$/, '').replace('cr-issue-', 'cr-cancel-')}-${seq}`
}

/**
 * Keys of the receipt that re-issues what is still paid after a partial refund at a provider that
 * cancels only in full (the original is cancelled first): derived from the original receipt's keys
 * and the re-issue's seq (1, 2, …; the original is 0), so every retry presents the same key. Null where the provider
 * cannot take a new key for the same payment: PortOne V1's imp_uid route keys the receipt by the
 * payment itself (one receipt per imp_uid), so its remainder cannot be re-issued under a key of its
 * own; such a refund needs a person.
 */
export function reissueKeys(
  r: { readonly provider: ProviderName; readonly providerKey: string; readonly idempotencyKey: string; readonly portonePayment: boolean },
  seq: number,
): { providerKey: string; idempotencyKey: string } | null {
  const idempotencyKey = `${r.idempotencyKey.replace(/-r\d+$/, '').replace(/-R\d+$/, '')}-R${seq}`
  const base = r.providerKey.replace(/-R\d+$/, '')
  switch (r.provider) {
    case 'portone':
      return r.portonePayment ? null : { providerKey: `${base}-R${seq}`, idempotencyKey }
    case 'portone-v2':
      return { providerKey: `${base}-R${seq}`, idempotencyKey }
    case 'payssam':
      // bill_id: at most 20 alphanumerics.
      return { providerKey: `CR${digest(`${base}\u0000R${seq}`).slice(0, 18).toUpperCase()}`, idempotencyKey }
    case 'popbill':
      // mgtKey: at most 24 of [A-Za-z0-9_-]. Used when a receipt not yet filed is refunded in part:
      // it is withdrawn in full and what is still paid re-issued (partialCancelOnlyFinal).
      return { providerKey: `CR${digest(`${base}\u0000R${seq}`).slice(0, 22).toUpperCase()}`, idempotencyKey }
    default:
      // NTS and Toss cancel partially: no re-issue.
      return null
  }
}
