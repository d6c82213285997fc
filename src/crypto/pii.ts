/**
 * Personal data at rest: AES-256-GCM with a random 96-bit IV per value and the key id in the
 * envelope so keys can rotate. Format: `v2.<keyId>.<iv b64url>.<tag b64url>.<ciphertext b64url>`.
 *
 * Each configured data key is never used directly: HKDF-SHA-256 derives one key per purpose from it
 * (encryption, the content fingerprint's HMAC, a search hash), so a leak or misuse of one purpose's
 * key says nothing about the others. The envelope's version is the marker: `v1` values (written
 * before the derivation) were encrypted with the data key itself and stay readable until
 * `cash-receipts rekey` rewrites them as `v2`.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'

export interface DataKeys {
  readonly activeKeyId: string
  readonly keys: ReadonlyMap<string, Buffer>
}

export class DecryptError extends Error {
  override name = 'DecryptError'
}

export type KeyPurpose = 'encryption' | 'fingerprint' | 'search'

const derived = new WeakMap<Buffer, Map<KeyPurpose, Buffer>>()

/** The key for one purpose, derived from a data key with HKDF-SHA-256 (cached per key). */
export function purposeKey(dataKey: Buffer, purpose: KeyPurpose): Buffer {
  let perKey = derived.get(dataKey)
  if (!perKey) derived.set(dataKey, (perKey = new Map()))
  let k = perKey.get(purpose)
  if (!k) {
    k = Buffer.from(hkdfSync('sha256', dataKey, 'cash-receipts', `cash-receipts/${purpose}/v2`, 32))
    perKey.set(purpose, k)
  }
  return k
}

export const ENVELOPE_VERSION = 'v2'

export function encryptText(plaintext: string, keys: DataKeys, aad = ''): { value: string; keyId: string } {
  const dataKey = keys.keys.get(keys.activeKeyId)
  if (!dataKey) throw new Error(`data key "${keys.activeKeyId}" is not configured`)
  const key = purposeKey(dataKey, 'encryption')
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  if (aad) cipher.setAAD(Buffer.from(aad, 'utf8'))
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  const tag = cipher.getAuthTag()
  const value = [ENVELOPE_VERSION, keys.activeKeyId, iv.toString('base64url'), tag.toString('base64url'), ct.toString('base64url')].join('.')
  return { value, keyId: keys.activeKeyId }
}

const isEnvelope = (parts: string[]) => parts.length === 5 && (parts[0] === 'v1' || parts[0] === 'v2')

export function keyIdOf(envelope: string): string {
  const parts = envelope.split('.')
  if (!isEnvelope(parts)) throw new DecryptError('not a ciphertext envelope')
  return parts[1]!
}

/** HMAC-SHA-256 under the search key: equal values give equal hashes, for lookups without decrypting. */
export function searchHash(value: string, keys: DataKeys): string {
  const dataKey = keys.keys.get(keys.activeKeyId)
  if (!dataKey) throw new Error(`data key "${keys.activeKeyId}" is not configured`)
  return `${keys.activeKeyId}.${createHmac('sha256', purposeKey(dataKey, 'search')).update(value, 'utf8').digest('base64url')}`
}

/**
 * The value's search hash under every configured key, the active one first: a lookup matches rows
 * hashed before a key rotation too, until `rekey` has rehashed them under the active key.
 */
export function searchHashesAllKeys(value: string, keys: DataKeys): string[] {
  const ids = [keys.activeKeyId, ...[...keys.keys.keys()].filter((id) => id !== keys.activeKeyId)]
  return ids.map((id) => searchHash(value, { activeKeyId: id, keys: keys.keys }))
}

export function decryptText(envelope: string, keys: DataKeys, aad = ''): string {
  const parts = envelope.split('.')
  if (!isEnvelope(parts)) throw new DecryptError('not a ciphertext envelope')
  const [version, keyId, ivB64, tagB64, ctB64] = parts as [string, string, string, string, string]
  const dataKey = keys.keys.get(keyId)
  if (!dataKey) throw new DecryptError(`data key "${keyId}" is not configured (needed to decrypt)`)
  // v1: written before per-purpose keys, with the data key itself (until `rekey` rewrites it).
  const key = version === 'v1' ? dataKey : purposeKey(dataKey, 'encryption')
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivB64, 'base64url'))
    if (aad) decipher.setAAD(Buffer.from(aad, 'utf8'))
    decipher.setAuthTag(Buffer.from(tagB64, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(ctB64, 'base64url')), decipher.final()]).toString('utf8')
  } catch {
    throw new DecryptError(`ciphertext failed authentication with key "${keyId}"`)
  }
}

/** The personal fields of one transaction, encrypted together. */
export interface TransactionPii {
  readonly identifier?: string
  readonly buyerName?: string
  readonly buyerEmail?: string
  readonly buyerTel?: string
}

export function encryptPii(pii: TransactionPii, keys: DataKeys, transactionId: string) {
  // The transaction id is bound as AAD so a ciphertext cannot be moved to another row.
  return encryptText(JSON.stringify(pii), keys, transactionId)
}

export function decryptPii(envelope: string, keys: DataKeys, transactionId: string): TransactionPii {
  return JSON.parse(decryptText(envelope, keys, transactionId)) as TransactionPii
}
