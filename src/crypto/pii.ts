/**
 * Personal data at rest: AES-256-GCM with a random 96-bit IV per value and the key id in the
 * envelope so keys can rotate. Format: `v1.<keyId>.<iv b64url>.<tag b64url>.<ciphertext b64url>`.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

export interface DataKeys {
  readonly activeKeyId: string
  readonly keys: ReadonlyMap<string, Buffer>
}

export class DecryptError extends Error {
  override name = 'DecryptError'
}

export function encryptText(plaintext: string, keys: DataKeys, aad = ''): { value: string; keyId: string } {
  const key = keys.keys.get(keys.activeKeyId)
  if (!key) throw new Error(`data key "${keys.activeKeyId}" is not configured`)
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  if (aad) cipher.setAAD(Buffer.from(aad, 'utf8'))
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  const tag = cipher.getAuthTag()
  const value = ['v1', keys.activeKeyId, iv.toString('base64url'), tag.toString('base64url'), ct.toString('base64url')].join('.')
  return { value, keyId: keys.activeKeyId }
}

export function keyIdOf(envelope: string): string {
  const parts = envelope.split('.')
  if (parts.length !== 5 || parts[0] !== 'v1') throw new DecryptError('not a v1 ciphertext envelope')
  return parts[1]!
}

export function decryptText(envelope: string, keys: DataKeys, aad = ''): string {
  const parts = envelope.split('.')
  if (parts.length !== 5 || parts[0] !== 'v1') throw new DecryptError('not a v1 ciphertext envelope')
  const [, keyId, ivB64, tagB64, ctB64] = parts as [string, string, string, string, string]
  const key = keys.keys.get(keyId)
  if (!key) throw new DecryptError(`data key "${keyId}" is not configured (needed to decrypt)`)
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
