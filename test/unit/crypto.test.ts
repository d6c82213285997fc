import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { decryptPii, decryptText, encryptPii, encryptText, keyIdOf, DecryptError } from '../../src/crypto/pii.ts'

const k1 = randomBytes(32)
const k2 = randomBytes(32)
const keys = { activeKeyId: 'k1', keys: new Map([['k1', k1]]) }
const rotated = {
  activeKeyId: 'k2',
  keys: new Map([
    ['k1', k1],
    ['k2', k2],
  ]),
}

describe('AES-256-GCM envelopes', () => {
  it('round-trips any text and never contains the plaintext', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 4 }), fc.string(), (plain, aad) => {
        const { value } = encryptText(plain, keys, aad)
        expect(decryptText(value, keys, aad)).toBe(plain)
        if (plain.length >= 8) expect(value.includes(plain)).toBe(false)
      }),
    )
  })

  it('uses a fresh IV each time', () => {
    expect(encryptText('01012345678', keys).value).not.toBe(encryptText('01012345678', keys).value)
  })

  it('rejects a tampered ciphertext, a wrong AAD, and an unknown key', () => {
    const { value } = encryptText('01012345678', keys, 'T1')
    const parts = value.split('.')
    const ct = Buffer.from(parts[4]!, 'base64url')
    ct[0] = ct[0]! ^ 1
    parts[4] = ct.toString('base64url')
    expect(() => decryptText(parts.join('.'), keys, 'T1')).toThrow(DecryptError)
    expect(() => decryptText(value, keys, 'T2')).toThrow(DecryptError)
    expect(() => decryptText(value, { activeKeyId: 'k2', keys: new Map([['k2', k2]]) }, 'T1')).toThrow(/"k1" is not configured/)
  })

  it('keeps old data readable after rotation and encrypts new data with the active key', () => {
    const old = encryptPii({ identifier: '01012345678' }, keys, 'T1')
    const fresh = encryptPii({ identifier: '01087654321', buyerName: '홍길동' }, rotated, 'T2')
    expect(keyIdOf(old.value)).toBe('k1')
    expect(keyIdOf(fresh.value)).toBe('k2')
    expect(decryptPii(old.value, rotated, 'T1')).toEqual({ identifier: '01012345678' })
    expect(decryptPii(fresh.value, rotated, 'T2')).toEqual({ identifier: '01087654321', buyerName: '홍길동' })
  })
})

describe('per-purpose keys (HKDF) and the version marker', () => {
  it('derives distinct keys per purpose, none equal to the data key', async () => {
    const { purposeKey } = await import('../../src/crypto/pii.ts')
    const ks = (['encryption', 'fingerprint', 'search'] as const).map((p) => purposeKey(k1, p))
    expect(new Set([k1, ...ks].map((k) => k.toString('hex'))).size).toBe(4)
    expect(purposeKey(k1, 'encryption').equals(purposeKey(Buffer.from(k1), 'encryption'))).toBe(true)
  })

  it('writes v2 envelopes under the encryption key; v1 envelopes (the data key itself) stay readable', async () => {
    const { createCipheriv } = await import('node:crypto')
    const v2 = encryptText('01012345678', keys, 'T1').value
    expect(v2.startsWith('v2.k1.')).toBe(true)
    // A value written before the derivation: AES-GCM directly under the data key.
    const iv = randomBytes(12)
    const c = createCipheriv('aes-256-gcm', k1, iv)
    c.setAAD(Buffer.from('T1'))
    const ct = Buffer.concat([c.update('01012345678', 'utf8'), c.final()])
    const v1 = ['v1', 'k1', iv.toString('base64url'), c.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.')
    expect(decryptText(v1, keys, 'T1')).toBe('01012345678')
    // The two versions are not interchangeable: a v2 body labelled v1 fails authentication.
    expect(() => decryptText(v2.replace(/^v2/, 'v1'), keys, 'T1')).toThrow(DecryptError)
  })

  it('fingerprints under the fingerprint key with a marker, and still matches the older form', async () => {
    const { createHmac } = await import('node:crypto')
    const { contentHash, contentHashes } = await import('../../src/crypto/content-hash.ts')
    const content = {
      merchantId: 'm',
      provider: 'nts',
      paymentRef: null,
      orderId: null,
      orderName: null,
      method: 'cash',
      amount: 1000,
      taxFreeAmount: 0,
      serviceFee: 0,
      paidAt: new Date(0),
      identifierDigits: '01012345678',
      identifierType: 'phone',
      purpose: 'deduction',
      buyerName: null,
      buyerEmail: null,
      buyerTel: null,
    }
    const h = contentHash(content, keys)
    expect(h).toMatch(/^k1\.f2\./)
    const all = contentHashes(content, rotated)
    expect(all).toContain(h)
    const legacy = `k1.${createHmac('sha256', k1)
      .update(JSON.stringify(['m', 'nts', null, null, null, 'cash', 1000, 0, 0, new Date(0).toISOString(), '01012345678', 'phone', 'deduction', null, null, null]))
      .digest('base64url')}`
    expect(all).toContain(legacy)
    expect(h).not.toBe(legacy)
  })

  it('hashes search values under the search key, deterministic and distinct from the fingerprint', async () => {
    const { searchHash } = await import('../../src/crypto/pii.ts')
    expect(searchHash('01012345678', keys)).toBe(searchHash('01012345678', keys))
    expect(searchHash('01012345678', keys)).not.toBe(searchHash('01012345679', keys))
    expect(searchHash('01012345678', keys)).not.toContain('01012345678')
  })
})
