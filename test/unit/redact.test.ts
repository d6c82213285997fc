import { describe, expect, it } from 'vitest'
import { redactBody, maskValue } from '../../src/logging/redact.ts'

describe('redactBody', () => {
  it('masks every provider spelling of buyer identifiers and removes secrets', () => {
    const body = {
      imp_key: 'key',
      imp_secret: 'S3cr3tValue',
      identifier: '01012345678',
      bill: { bill_id: 'CR1', issuance_number: '9001011234567', hash: 'abc' },
      customer: { identityNumber: '2208162517', phoneNumber: '010-1234-5678', name: '홍길동' },
      consumerPhone: '01099998888',
      amount: 10000,
    }
    const out = JSON.stringify(redactBody(body))
    for (const raw of ['01012345678', '9001011234567', '2208162517', '010-1234-5678', '01099998888', '홍길동', 'S3cr3tValue']) {
      expect(out).not.toContain(raw)
    }
    expect(out).toContain('"amount":10000')
    expect(out).toContain('"bill_id":"CR1"')
  })

  it('keeps at most the last four digits', () => {
    expect(maskValue('01012345678')).toBe('***5678')
    expect(maskValue('')).toBe('')
  })
})
