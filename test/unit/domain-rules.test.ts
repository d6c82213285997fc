/** Korean cash-receipt rules (docs/tax-law.md) with its concrete vectors, plus property tests. */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  addDays,
  brnCheckDigit,
  businessDateOf,
  kstWallClock,
  carryOverFrom,
  checkPurposeIdentifier,
  decideIssuance,
  isOverdue,
  isValidBrn,
  isValidDate,
  kstYesterday,
  legalDeadline,
  maskBusinessNumber,
  maskEmail,
  maskIdentifier,
  maskName,
  maskUnknown,
  MAX_KRW,
  msUntilKstMidnight,
  parseIdentifier,
  parseKrw,
  parsePaidAt,
  parsePurpose,
  splitAmounts,
  validateTransaction,
  vatOf,
  SELF_ISSUE_NUMBER,
} from '../../src/domain/index.ts'

const NOW = Date.parse('2026-11-22T03:00:00Z')

describe('VAT and amount split (docs/tax-law.md §5)', () => {
  it.each([
    [1, 0, 1],
    [10, 1, 9],
    [1_000, 91, 909],
    [9_026, 821, 8_205],
    [30_000, 2_727, 27_273],
    [100_000, 9_091, 90_909],
  ])('T=%i → VAT %i, supply %i', (t, vat, supply) => {
    expect(vatOf(t)).toBe(vat)
    const s = splitAmounts({ total: t, taxFree: 0, serviceFee: 0 })
    expect(s.ok && s.value).toEqual({ total: t, supply, vat, taxFree: 0, serviceFee: 0 })
  })

  it('vatOf is round-half-up of T/11 for every T up to the maximum (exact rational check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_KRW }), (t) => {
        const exact = BigInt(t)
        // round half up of t/11 = floor((2t + 11) / 22)
        const expected = (2n * exact + 11n) / 22n
        const remainder = exact * 2n - expected * 22n // 2t - 22·vat ∈ [-11, 11)
        expect(BigInt(vatOf(t))).toBe(expected)
        expect(remainder >= -11n && remainder < 11n).toBe(true)
      }),
      { numRuns: 2_000 },
    )
  })

  it('keeps the NTS identity total = supply + vat + serviceFee, supply ≥ vat, all non-negative', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_KRW }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (total, a, b) => {
        const taxFree = Math.floor(total * a * 0.5)
        const serviceFee = Math.floor((total - taxFree) * b * 0.5)
        const r = splitAmounts({ total, taxFree, serviceFee })
        expect(r.ok).toBe(true)
        if (!r.ok) return
        const v = r.value
        expect(v.supply + v.vat + v.serviceFee).toBe(total)
        expect(v.supply).toBeGreaterThanOrEqual(v.vat)
        for (const x of Object.values(v)) expect(Number.isInteger(x) && x >= 0).toBe(true)
      }),
    )
  })

  it('rejects impossible splits and bad amounts with their own messages', () => {
    expect(splitAmounts({ total: 1000, taxFree: 800, serviceFee: 300 })).toMatchObject({ ok: false, error: { field: 'tax_free_amount' } })
    expect(parseKrw('12.5', 'amount', { min: 1 })).toMatchObject({ ok: false, error: { rule: 'integer' } })
    expect(parseKrw('-5', 'amount', { min: 1 })).toMatchObject({ ok: false, error: { message: 'is negative' } })
    expect(parseKrw('0', 'amount', { min: 1 })).toMatchObject({ ok: false, error: { message: 'must be at least 1' } })
    expect(parseKrw('1,000', 'amount', { min: 1 })).toMatchObject({ ok: false, error: { rule: 'format' } })
    expect(parseKrw('1e5', 'amount', { min: 1 })).toMatchObject({ ok: false, error: { rule: 'format' } })
    expect(parseKrw(String(MAX_KRW + 1), 'amount', { min: 1 })).toMatchObject({ ok: false, error: { rule: 'range' } })
    expect(parseKrw('', 'tax_free_amount', { min: 0, default: 0 })).toEqual({ ok: true, value: 0 })
  })
})

describe('identifiers (docs/tax-law.md §3)', () => {
  it('validates business numbers with the exact checksum', () => {
    expect(isValidBrn('2208162517')).toBe(true)
    expect(isValidBrn('1248100998')).toBe(true)
    expect(isValidBrn('1234567890')).toBe(false)
    expect(parseIdentifier('220-81-62517')).toEqual({ ok: true, value: { digits: '2208162517', type: 'business' } })
    const bad = parseIdentifier('123-45-67890')
    expect(bad.ok).toBe(false)
    if (!bad.ok) {
      expect(bad.error.message).toBe('the business number fails its check digit (사업자등록번호 검증 실패)')
      expect(bad.error.message).not.toContain('1234567890')
    }
  })

  it('accepts check digit 0, and exactly one check digit per 9-digit prefix', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[1-9]\d{8}$/), (nine) => {
        const valid = Array.from({ length: 10 }, (_, c) => isValidBrn(nine + c)).filter(Boolean)
        expect(valid).toHaveLength(1)
        expect(isValidBrn(nine + brnCheckDigit(nine))).toBe(true)
      }),
    )
    const zero = fc.sample(fc.stringMatching(/^[1-9]\d{8}$/), 500).find((n) => brnCheckDigit(n) === 0)!
    expect(parseIdentifier(`${zero}0`)).toMatchObject({ ok: true, value: { type: 'business' } })
  })

  it('dispatches phones: 010 needs 11 digits, legacy 01X has 10 or 11', () => {
    expect(parseIdentifier('010-1234-5678')).toEqual({ ok: true, value: { digits: '01012345678', type: 'phone' } })
    expect(parseIdentifier('0111234567')).toMatchObject({ ok: true, value: { type: 'phone' } })
    expect(parseIdentifier('0101234567')).toMatchObject({ ok: false, error: { field: 'identifier', rule: 'phone' } })
    expect(parseIdentifier('01512345678').ok).toBe(false)
    expect(parseIdentifier('010-000-1234')).toEqual({ ok: true, value: { digits: SELF_ISSUE_NUMBER, type: 'self' } })
  })

  it('applies the NTS TS2 card prefix rules', () => {
    expect(parseIdentifier('154420201234567890')).toMatchObject({ ok: true, value: { type: 'card' } })
    expect(parseIdentifier('999920201234567890')).toMatchObject({ ok: false, error: { rule: 'card' } })
    expect(parseIdentifier('126123456789', 'card')).toMatchObject({ ok: true, value: { type: 'card' } })
    expect(parseIdentifier('127123456789', 'card').ok).toBe(false)
    expect(parseIdentifier('4111111111111111')).toMatchObject({ ok: true, value: { type: 'card' } })
  })

  it('accepts resident numbers with random tails (no checksum) and rejects impossible dates', () => {
    expect(parseIdentifier('9001011999999')).toMatchObject({ ok: true, value: { type: 'rrn' } })
    expect(parseIdentifier('0502294123456', 'rrn')).toMatchObject({ ok: false }) // 2005-02-29 does not exist
    expect(parseIdentifier('0402293123456', 'rrn')).toMatchObject({ ok: true }) // 2004 is a leap year
    expect(parseIdentifier('9913321234567', 'rrn')).toMatchObject({ ok: false, error: { rule: 'rrn' } })
    expect(parseIdentifier('8501015123456', 'rrn')).toMatchObject({ ok: true }) // foreigner, 7th digit 5
  })

  it('rejects letters, wrong lengths and declared-type mismatches', () => {
    expect(parseIdentifier('010-ABCD-5678')).toMatchObject({ ok: false, error: { rule: 'format' } })
    expect(parseIdentifier('12345')).toMatchObject({ ok: false, error: { rule: 'length' } })
    expect(parseIdentifier('01012345678', 'business')).toMatchObject({ ok: false, error: { rule: 'business' } })
  })

  it('masks never reveal more than four consecutive digits of a phone, card or resident number', () => {
    const maxRun = (s: string) => Math.max(0, ...(s.match(/\d+/g) ?? []).map((r) => r.length))
    fc.assert(
      fc.property(fc.stringMatching(/^010\d{8}$/), fc.stringMatching(/^\d{16}$/), fc.stringMatching(/^\d{13}$/), (phone, card, rrn) => {
        expect(maxRun(maskIdentifier(phone, 'phone'))).toBeLessThanOrEqual(4)
        expect(maxRun(maskIdentifier(card, 'card'))).toBeLessThanOrEqual(4)
        expect(maskIdentifier(rrn, 'rrn')).not.toContain(rrn.slice(7))
      }),
    )
  })

  it('masks by the documented convention (docs/security.md): one module for every identifier', () => {
    expect(maskIdentifier('2208162517', 'business')).toBe('220-**-*****')
    expect(maskBusinessNumber('220-81-62517')).toBe('220-**-*****')
    expect(maskIdentifier('01098765678', 'phone')).toBe('010-****-5678')
    expect(maskIdentifier('1234567890123456', 'card')).toBe('1234-****-****-3456')
    expect(maskIdentifier('9001011234567', 'rrn')).toBe('900101-*******')
    expect(maskIdentifier('0100001234', 'self')).toBe('010-000-1234')
    expect(maskEmail('hong.gildong@example.com')).toBe('ho***@example.com')
    expect(maskEmail('a@example.com')).toBe('***@example.com')
    expect(maskName('홍길동')).toBe('홍*동')
    expect(maskName('남궁민수')).toBe('남**수')
    expect(maskName('김수')).toBe('김*')
    expect(maskUnknown('010-9876-5432')).toBe('***5432')
    // A business number's mask keeps 3 of its 10 digits: 10^6 candidates, 10^5 with the check digit.
    fc.assert(
      fc.property(fc.stringMatching(/^\d{10}$/), (brn) => {
        expect(maskIdentifier(brn, 'business').replace(/\D/g, '')).toBe(brn.slice(0, 3))
      }),
    )
  })
})

describe('purposes (docs/tax-law.md §4)', () => {
  it('parses English and Korean names and refuses self-issue with expense', () => {
    expect(parsePurpose(undefined)).toEqual({ ok: true, value: 'deduction' })
    expect(parsePurpose('지출증빙')).toEqual({ ok: true, value: 'expense' })
    expect(parsePurpose('gift')).toMatchObject({ ok: false, error: { field: 'purpose' } })
    expect(checkPurposeIdentifier('expense', 'self')?.rule).toBe('self-issue')
    expect(checkPurposeIdentifier('deduction', 'self')).toBeNull()
    expect(checkPurposeIdentifier('expense', 'phone')).toBeNull()
  })
})

describe('KST business dates (docs/tax-law.md §6)', () => {
  it('takes the KST date of the payment', () => {
    expect(businessDateOf(new Date('2026-11-21T15:30:00Z'))).toBe('2026-11-22')
    expect(businessDateOf(new Date('2026-11-21T14:59:59Z'))).toBe('2026-11-21')
    expect(kstYesterday(Date.parse('2026-11-21T15:30:00Z'))).toBe('2026-11-21')
  })

  it('counts across month, year and leap-day ends', () => {
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01')
    expect(addDays('2028-02-28', 1)).toBe('2028-02-29')
    expect(addDays('2027-03-01', -1)).toBe('2027-02-28')
    expect(legalDeadline('2026-12-29')).toBe('2027-01-02')
    expect(carryOverFrom('2027-01-02')).toBe('2026-12-29')
    expect(isOverdue('2026-11-01', '2026-11-05')).toBe(false)
    expect(isOverdue('2026-11-01', '2026-11-06')).toBe(true)
    expect(isValidDate('2026-02-30')).toBe(false)
  })

  it('addDays round-trips and the KST midnight countdown is within a day', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.parse('2000-01-01'), max: Date.parse('2099-12-31') }), fc.integer({ min: -800, max: 800 }), (ms, n) => {
        const d = businessDateOf(ms)
        expect(addDays(addDays(d, n), -n)).toBe(d)
        const left = msUntilKstMidnight(ms)
        expect(left).toBeGreaterThan(0)
        expect(left).toBeLessThanOrEqual(86_400_000)
        expect(businessDateOf(ms + left)).toBe(addDays(d, 1))
      }),
    )
  })

  it('requires an offset and rejects future or impossible instants', () => {
    expect(parsePaidAt('2026-11-21T10:00:00+09:00', NOW).ok).toBe(true)
    expect(parsePaidAt('2026-11-21T10:00:00', NOW)).toMatchObject({ ok: false, error: { rule: 'offset' } })
    expect(parsePaidAt('2026-11-21', NOW)).toMatchObject({ ok: false, error: { rule: 'offset' } })
    expect(parsePaidAt('2026-02-30T10:00:00+09:00', NOW)).toMatchObject({ ok: false, error: { rule: 'date' } })
    expect(parsePaidAt('2027-01-01T00:00:00+09:00', NOW)).toMatchObject({ ok: false, error: { rule: 'future' } })
  })
})

describe('eligibility (docs/tax-law.md §1, §2)', () => {
  const base = { method: 'cash' as const, receiptableAmount: 50_000, mandatoryIssuer: false, status: 'completed' as const }
  it('issues with an identifier, self-issues at mandatory issuers, skips otherwise', () => {
    expect(decideIssuance({ ...base, identifier: { digits: '01012345678', type: 'phone' } })).toMatchObject({ action: 'issue', selfIssued: false })
    expect(decideIssuance({ ...base, identifier: null, mandatoryIssuer: true, receiptableAmount: 150_000 })).toMatchObject({
      action: 'issue',
      selfIssued: true,
      identifier: { digits: SELF_ISSUE_NUMBER },
    })
    expect(decideIssuance({ ...base, identifier: null })).toMatchObject({ action: 'skip' })
    expect(decideIssuance({ ...base, identifier: null, status: 'cancelled', mandatoryIssuer: true })).toMatchObject({ action: 'skip', reason: 'cancelled before issuance' })
    expect(decideIssuance({ ...base, identifier: { digits: '01012345678', type: 'phone' }, receiptableAmount: 0 })).toMatchObject({ action: 'skip' })
  })
})

describe('import rows (README, Import format)', () => {
  const row = {
    transaction_id: 'T-1',
    merchant_id: 'm-clinic',
    provider: 'nts',
    method: 'bank_transfer',
    amount: '110000',
    paid_at: '2026-11-21T10:00:00+09:00',
    identifier: '010-1234-5678',
  }
  it('normalises a valid row', () => {
    const r = validateTransaction(row, { nowMs: NOW })
    expect(r.ok).toBe(true)
    if (r.ok) {
      expect(r.value).toMatchObject({
        amount: 110_000,
        businessDate: '2026-11-21',
        identifier: { digits: '01012345678', type: 'phone' },
        purpose: 'deduction',
        status: 'completed',
      })
    }
  })
  it('reports every bad field of a row, each with its own message', () => {
    const r = validateTransaction({ ...row, provider: 'barobill', amount: '-1', paid_at: '2026-11-21 10:00', identifier: '123-45-67890', purpose: 'expense' }, { nowMs: NOW })
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.errors.map((e) => e.field).sort()).toEqual(['amount', 'identifier', 'paid_at', 'provider'])
  })
  it('refuses the self-issue number with expense, and naverpay outside PortOne', () => {
    const self = validateTransaction({ ...row, identifier: '010-000-1234', purpose: 'expense' }, { nowMs: NOW })
    expect(!self.ok && self.errors[0]!.rule).toBe('self-issue')
    const naver = validateTransaction({ ...row, method: 'naverpay' }, { nowMs: NOW })
    expect(!naver.ok && naver.errors.map((e) => e.field).sort()).toEqual(['payment_ref', 'provider'])
  })
  const errorsOf = (patch: Record<string, unknown>) => {
    const r = validateTransaction({ ...row, ...patch }, { nowMs: NOW })
    return r.ok ? [] : r.errors.map((e) => `${e.field}: ${e.rule}: ${e.message}`)
  }
  it('takes text as strings and amounts as numbers or strings; anything else JSON holds is a type error', () => {
    expect(errorsOf({ amount: 110000, tax_free_amount: 0, order_name: null })).toEqual([])
    expect(errorsOf({ order_name: ['a'], buyer_name: { a: 1 }, status: true, amount: false })).toEqual([
      'order_name: type: is an array; it must be text (a JSON string)',
      'amount: type: is a boolean; it must be a whole number of won (a JSON number or string)',
      'buyer_name: type: is an object; it must be text (a JSON string)',
      'status: type: is a boolean; it must be text (a JSON string)',
    ])
    const lost = errorsOf({ identifier: 1012345678 })
    expect(lost).toEqual(['identifier: type: is a number; it must be text (a JSON string)'])
    expect(lost.join()).not.toContain('1012345678')
  })
  it('refuses control characters and broken surrogates at their position, never echoing the value', () => {
    expect(errorsOf({ order_name: ' 꽃다발 🌷 \t' })).toEqual([])
    expect(errorsOf({ order_name: '꽃\u0000' })).toEqual(['order_name: character: contains a NUL byte at position 2; remove it'])
    expect(errorsOf({ buyer_name: '홍\t길동' })).toEqual(['buyer_name: character: contains the control character U+0009 at position 2; remove it'])
    expect(errorsOf({ buyer_tel: '010\u007f' })).toEqual(['buyer_tel: character: contains the control character U+007F at position 4; remove it'])
    expect(errorsOf({ order_id: 'O\u0085' })).toEqual(['order_id: character: contains the control character U+0085 at position 2; remove it'])
    expect(errorsOf({ order_name: 'a\ud83c' })).toEqual(['order_name: character: contains a broken UTF-16 surrogate at position 2; remove it'])
    const id = errorsOf({ identifier: '010-1234\u00005678' })
    expect(id).toEqual(['identifier: character: contains a NUL byte at position 9; remove it'])
  })
  it('holds ids that become a PortOne key to the transaction id rule; other providers keep payment_ref free', () => {
    const rule = '1–64 characters of letters, digits and . _ : @ # -'
    expect(errorsOf({ provider: 'portone-v2', payment_ref: 'p'.repeat(64) })).toEqual([])
    expect(errorsOf({ provider: 'portone-v2', payment_ref: 'p'.repeat(65) })).toEqual([`payment_ref: key: is 65 characters long; it must be ${rule} (the PortOne V2 paymentId)`])
    expect(errorsOf({ provider: 'portone', payment_ref: 'imp 1' })).toEqual([
      `payment_ref: key: has a character other than letters, digits and . _ : @ # - at position 4; it must be ${rule} (the PortOne imp_uid)`,
    ])
    expect(errorsOf({ provider: 'portone', order_id: '주문-1' })).toEqual([
      `order_id: key: has a character other than letters, digits and . _ : @ # - at position 1; it must be ${rule} (without payment_ref it is the PortOne merchant_uid)`,
    ])
    expect(errorsOf({ provider: 'portone', payment_ref: 'imp_1', order_id: '주문-1' })).toEqual([])
    expect(errorsOf({ provider: 'payssam', payment_ref: 'B'.repeat(100), order_id: '주문 1' })).toEqual([])
  })
})

describe('kstWallClock', () => {
  it('shows an instant at UTC+9 whatever the machine zone, across the KST date line', () => {
    expect(kstWallClock(Date.parse('2026-11-20T14:59:59.123Z'))).toBe('2026-11-20T23:59:59.123')
    expect(kstWallClock(new Date('2026-11-20T15:00:00Z'))).toBe('2026-11-21T00:00:00.000')
    expect(kstWallClock(Date.parse('2026-11-21T09:30:00+09:00')).slice(0, 10)).toBe(businessDateOf(Date.parse('2026-11-21T09:30:00+09:00')))
  })
})
