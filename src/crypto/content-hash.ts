/**
 * The fingerprint a re-import is compared with: equal content ⇒ equal hash, so importing the same
 * transaction twice is a no-op and a reused id with different data is a conflict.
 *
 * Keyed (HMAC-SHA-256 with a data key), because a plain digest of a row holding a phone number is
 * brute-forced in minutes. The key id is part of the value (`<keyId>.<mac>`), and an import compares
 * against the hashes under every configured key: after DATA_KEY_ID moves to a new key, rows hashed
 * under the old one still match their re-import; `cash-receipts rekey` later rehashes them under the
 * new key so the old one can be retired.
 */
import { createHmac } from 'node:crypto'
import { purposeKey, type DataKeys } from './pii.ts'

/** What the fingerprint covers: everything a transaction is, except the status and refund (which may move forward). */
export interface HashedContent {
  readonly merchantId: string
  readonly provider: string
  readonly paymentRef: string | null
  readonly orderId: string | null
  readonly orderName: string | null
  readonly method: string
  readonly amount: number
  readonly taxFreeAmount: number
  readonly serviceFee: number
  readonly paidAt: Date
  readonly identifierDigits: string | null
  readonly identifierType: string | null
  readonly purpose: string
  readonly buyerName: string | null
  readonly buyerEmail: string | null
  readonly buyerTel: string | null
}

function mac(c: HashedContent, key: Buffer): string {
  return createHmac('sha256', key)
    .update(
      JSON.stringify([
        c.merchantId,
        c.provider,
        c.paymentRef,
        c.orderId,
        c.orderName,
        c.method,
        c.amount,
        c.taxFreeAmount,
        c.serviceFee,
        c.paidAt.toISOString(),
        c.identifierDigits,
        c.identifierType,
        c.purpose,
        c.buyerName,
        c.buyerEmail,
        c.buyerTel,
      ]),
    )
    .digest('base64url')
}

/**
 * The version marker of the current form, `<keyId>.f2.<mac>`: the MAC under the fingerprint key
 * derived from the data key (pii.ts). The older form `<keyId>.<mac>` used the data key itself; it
 * still matches a re-import until `rekey` rewrites it.
 */
export const FINGERPRINT_MARKER = 'f2'

/** The hash stored with a transaction: under the active key's fingerprint key. */
export function contentHash(c: HashedContent, keys: DataKeys): string {
  return `${keys.activeKeyId}.${FINGERPRINT_MARKER}.${mac(c, purposeKey(keys.keys.get(keys.activeKeyId)!, 'fingerprint'))}`
}

/** Every hash this content may be stored under: per configured key, the current and the older form. */
export function contentHashes(c: HashedContent, keys: DataKeys): string[] {
  return [...keys.keys].flatMap(([id, key]) => [`${id}.${FINGERPRINT_MARKER}.${mac(c, purposeKey(key, 'fingerprint'))}`, `${id}.${mac(c, key)}`])
}
