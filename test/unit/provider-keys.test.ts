import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { cancelIdempotencyKey, deriveProviderKeys, redriveIdempotencyKey, reissueKeys } from '../../src/providers/keys.ts'
import { PROVIDERS } from '../../src/domain/index.ts'

const tx = fc.record({
  provider: fc.constantFrom(...PROVIDERS),
  merchantId: fc.stringMatching(/^[a-z0-9-]{1,20}$/),
  transactionId: fc.string({ minLength: 1, maxLength: 64 }),
  paymentRef: fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/), { nil: null }),
  orderId: fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/), { nil: null }),
})

describe('deterministic provider keys', () => {
  it('are the same for the same transaction, every time', () => {
    fc.assert(
      fc.property(tx, (t) => {
        expect(deriveProviderKeys(t)).toEqual(deriveProviderKeys({ ...t }))
      }),
    )
  })

  it('fit each provider: PaySsam bill_id ≤ 20 alphanumerics, Popbill mgtKey ≤ 24, V2 Idempotency-Key 16–256 ASCII', () => {
    fc.assert(
      fc.property(tx, (t) => {
        const k = deriveProviderKeys(t)
        expect(k.idempotencyKey.length).toBeGreaterThanOrEqual(16)
        expect(k.idempotencyKey.length).toBeLessThanOrEqual(256)
        expect(k.idempotencyKey).toMatch(/^[\x21-\x7e]+$/)
        if (t.provider === 'payssam') expect(k.providerKey).toMatch(/^[A-Za-z0-9]{1,20}$/)
        // Popbill mgtKey: ≤ 24 of [A-Za-z0-9_-]; without '-', so no original key is a revocation's.
        if (t.provider === 'popbill') expect(k.providerKey).toMatch(/^[A-Za-z0-9_]{1,24}$/)
      }),
    )
  })

  it('re-issue a Popbill receipt under a mgtKey of its own per seq, which fits and is no revocation key', () => {
    fc.assert(
      fc.property(tx, fc.integer({ min: 1, max: 50 }), (t, seq) => {
        const k = deriveProviderKeys({ ...t, provider: 'popbill' })
        const r = reissueKeys({ provider: 'popbill', ...k }, seq)!
        expect(r.providerKey).toMatch(/^[A-Za-z0-9_]{1,24}$/)
        expect(r.providerKey).not.toBe(k.providerKey)
        expect(r).toEqual(reissueKeys({ provider: 'popbill', ...k }, seq))
        expect(reissueKeys({ provider: 'popbill', ...r, portonePayment: false }, seq + 1)!.providerKey).not.toBe(r.providerKey)
      }),
    )
  })

  it('differ between transactions of one merchant', () => {
    const a = deriveProviderKeys({ provider: 'payssam', merchantId: 'm', transactionId: 'T1', paymentRef: null, orderId: null })
    const b = deriveProviderKeys({ provider: 'payssam', merchantId: 'm', transactionId: 'T2', paymentRef: null, orderId: null })
    expect(a.providerKey).not.toBe(b.providerKey)
    expect(a.idempotencyKey).not.toBe(b.idempotencyKey)
  })

  it('PortOne V1 uses imp_uid for PortOne payments and merchant_uid (order id) for cash taken outside', () => {
    expect(deriveProviderKeys({ provider: 'portone', merchantId: 'm', transactionId: 'T', paymentRef: 'imp_1', orderId: 'O' })).toMatchObject({
      providerKey: 'imp_1',
      portonePayment: true,
    })
    expect(deriveProviderKeys({ provider: 'portone', merchantId: 'm', transactionId: 'T', paymentRef: null, orderId: 'O' })).toMatchObject({
      providerKey: 'O',
      portonePayment: false,
    })
    // Naver Pay: the imp_uid route does not take naverpay; the cash part goes external, keyed by the imp_uid.
    expect(deriveProviderKeys({ provider: 'portone', merchantId: 'm', transactionId: 'T', paymentRef: 'imp_1', orderId: 'O', method: 'naverpay' })).toMatchObject({
      providerKey: 'imp_1',
      portonePayment: false,
    })
  })

  it('re-drives get a fresh idempotency key; cancels get their own per sequence', () => {
    const base = deriveProviderKeys({ provider: 'portone-v2', merchantId: 'm', transactionId: 'T', paymentRef: 'p', orderId: null }).idempotencyKey
    expect(redriveIdempotencyKey(base, 1)).toBe(`${base}-r1`)
    expect(redriveIdempotencyKey(`${base}-r1`, 2)).toBe(`${base}-r2`)
    expect(cancelIdempotencyKey(base, 1)).not.toBe(cancelIdempotencyKey(base, 2))
    expect(cancelIdempotencyKey(`${base}-r3`, 1)).toBe(cancelIdempotencyKey(base, 1))
  })
})
