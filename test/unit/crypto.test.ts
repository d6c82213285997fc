import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { decryptPii, decryptText, encryptPii, encryptText, keyIdOf, DecryptError } from '../../src/crypto/pii.ts'

const k1 = randomBytes(32)
const k2 = randomBytes(32)
const keys = { activeKeyId: 'k1', keys: new Map([['k1', k1]]) }
const rotated = { activeKeyId: 'k2', keys: new Map([['k1', k1], ['k2', k2]]) }

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
