/**
 * Error mapping (docs/providers.md, Common to every adapter): every provider answer becomes one of a closed set of outcomes, in one
 * function per provider. Garbage answers (an HTML error page, truncated JSON, a 200 with an error code
 * inside, a huge body) are classified — never thrown — and an unreadable answer to a call that may
 * have changed something at the provider is an unknown outcome, to be looked up before any retry.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import type { HttpResult } from '../../src/providers/http.ts'
import type { OutcomeKind, ProviderOutcome } from '../../src/domain/index.ts'
import { classifyPortoneV1 } from '../../src/providers/portone-v1/portone-v1-errors.ts'
import { classifyPortoneV2 } from '../../src/providers/portone-v2/portone-v2-errors.ts'
import { classifyPayssam } from '../../src/providers/payssam/payssam-errors.ts'
import { classifyNts } from '../../src/providers/nts/nts-errors.ts'
import { classifyToss, tossOrderOutcome, tossReceiptOf, type TossReceipt } from '../../src/providers/toss/toss-errors.ts'

type Ok = Extract<HttpResult, { ok: true }>
type Op = 'issue' | 'lookup' | 'cancel'
const CLASSIFIERS: Record<string, (op: Op, r: Ok) => ProviderOutcome> = {
  portone: classifyPortoneV1,
  'portone-v2': (op, r) => classifyPortoneV2(op, r),
  payssam: classifyPayssam,
  nts: classifyNts,
  toss: (op, r) => classifyToss(op, r),
}
const KINDS: readonly OutcomeKind[] = ['issued', 'cancelled', 'already_issued', 'not_found', 'retryable', 'rate_limited', 'permanent', 'unknown_outcome']

const answer = (status: number, text: string, headers: Record<string, string> = {}): Ok => ({
  ok: true,
  status,
  text,
  latencyMs: 3,
  headers: { get: (name) => headers[name.toLowerCase()] ?? null },
})

const HTML_502 = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>'
/** Valid success bodies, as each provider sends them (the sandbox's shapes). */
const SUCCESS: Record<string, string> = {
  portone: JSON.stringify({ code: 0, message: null, response: { imp_uid: 'imp_1', apply_num: '123456789', type: 'person', amount: 11000, vat: 1000, applied_at: 1795000000 } }),
  'portone-v2': JSON.stringify({ cashReceipt: { issueNumber: '123456789', url: 'https://x', pgReceiptId: 'pg-1' } }),
  payssam: JSON.stringify({ code: '0000', message: 'Success', bill_id: 'B1', trader: '0', appr_cash_num: '123456789' }),
  nts: JSON.stringify({ resultCode: '0000', resultMessage: '정상', approvalNumber: '123456789', issuedAt: '2026-11-21T10:00:00+09:00' }),
  toss: JSON.stringify({
    receiptKey: 'cr_1',
    orderId: 'CR0001',
    transactionType: 'CONFIRM',
    issueStatus: 'IN_PROGRESS',
    issueNumber: '123456789',
    amount: 11000,
    failure: null,
    requestedAt: '2026-11-21T10:00:00+09:00',
  }),
}

describe('garbage answers are classified, never thrown', () => {
  for (const [name, classify] of Object.entries(CLASSIFIERS)) {
    describe(name, () => {
      it('an HTML error page after an issue or cancel is an unknown outcome; after a lookup, retryable', () => {
        for (const status of [200, 500, 502, 503]) {
          expect(classify('issue', answer(status, HTML_502)).kind).toBe('unknown_outcome')
          expect(classify('cancel', answer(status, HTML_502)).kind).toBe('unknown_outcome')
          expect(classify('lookup', answer(status, HTML_502)).kind).toBe('retryable')
        }
      })

      it('a truncated success body is an unknown outcome, not a success', () => {
        const truncated = SUCCESS[name]!.slice(0, Math.floor(SUCCESS[name]!.length / 2))
        expect(classify('issue', answer(200, truncated)).kind).toBe('unknown_outcome')
      })

      it('a huge body is not read as a success', () => {
        const huge = SUCCESS[name]!.replace(/}$/, `,"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`)
        expect(classify('issue', answer(200, huge)).kind).toBe('unknown_outcome')
      })

      it('reads the genuine success body as issued', () => {
        expect(classify('issue', answer(200, SUCCESS[name]!)).kind).toBe('issued')
      })
    })
  }

  it('a 200 carrying an error code is never a success', () => {
    // PortOne V1: code ≠ 0 in the envelope (e.g. a PG refusal) is an answer, so it is final.
    expect(classifyPortoneV1('issue', answer(200, JSON.stringify({ code: -1, message: '결제정보가 존재하지 않습니다', response: null }))).kind).toBe('permanent')
    // PaySsam: 9999 "처리 중에 오류" means the processing state is unknown.
    expect(classifyPayssam('issue', answer(200, JSON.stringify({ code: '9999', message: '처리 중에 오류가 발생했습니다.' }))).kind).toBe('unknown_outcome')
    // PaySsam: 9800 is its duplicate bill_id answer: issued before, to be read back.
    expect(classifyPayssam('issue', answer(200, JSON.stringify({ code: '9800', message: '이미 사용된 Bill_ID 입니다.' }))).kind).toBe('already_issued')
    // NTS-style: a 200 without resultCode 0000 is not a receipt.
    expect(classifyNts('issue', answer(200, JSON.stringify({ resultCode: 'E999', resultMessage: '오류' }))).kind).toBe('unknown_outcome')
    // PortOne V2: a 200 without the issue number is not a receipt.
    expect(classifyPortoneV2('issue', answer(200, JSON.stringify({ type: 'PG_PROVIDER', message: 'x' }))).kind).toBe('unknown_outcome')
  })

  it('429 is rate_limited with the Retry-After in ms', () => {
    for (const classify of Object.values(CLASSIFIERS)) {
      const o = classify('issue', answer(429, '{}', { 'retry-after': '3' }))
      expect(o).toMatchObject({ kind: 'rate_limited', retryAfterMs: 3_000 })
    }
  })
})

describe('hostile JSON values are classified, never thrown', () => {
  // Found by the property below in CI: String({ toString: 1 }) throws "Cannot convert object to primitive value".
  const object = { toString: 1, valueOf: 2 }
  const bodies = [
    { code: object, message: object, response: { applied_at: object, cancelled_at: object, amount_total: object } },
    { code: 0, response: { applied_at: 1e20, cancelled_at: -1e20, apply_num: '1' } },
    { code: [1, 2], resultCode: object, type: object, cashReceipt: object, info: [null, 1, object, { appr_state: 'F', appr_price: object }] },
    { code: '0000', info: [null, 'x', { appr_state: 'F', appr_price: object, appr_dt: object }] },
    { resultCode: '0000', status: 'ISSUED', transactionAmount: 1000, cancelledAmount: object },
  ]
  for (const [name, classify] of Object.entries(CLASSIFIERS)) {
    it(`${name}: every op and status gives a kind of the closed set`, () => {
      for (const b of bodies) {
        for (const op of ['issue', 'lookup', 'cancel'] as const) {
          for (const status of [200, 400, 404, 500]) expect(KINDS).toContain(classify(op, answer(status, JSON.stringify(b))).kind)
        }
      }
    })
  }

  it("PortOne V1: a time outside Date's range is no time, and the receipt is still read as issued", () => {
    const o = classifyPortoneV1('lookup', answer(200, JSON.stringify(bodies[1])))
    expect(o).toMatchObject({ kind: 'issued', receipt: { approvalNumber: '1', issuedAt: null, cancelledAt: null } })
  })

  it('PortOne V1: a Naver Pay cash amount that is not whole won is asked again, never used', () => {
    const amounts = (total: unknown) => JSON.stringify({ code: 0, response: { amount_total: total, amount_supply: 1000, amount_vat: 100 } })
    for (const bad of [{ toString: 1 }, 1100.5, 'abc', null, '']) expect(classifyPortoneV1('naver_cash_amount', answer(200, amounts(bad))).kind).toBe('retryable')
    expect(classifyPortoneV1('naver_cash_amount', answer(200, amounts(1100)))).toMatchObject({ kind: 'issued', receipt: { amount: 1100 } })
  })
})

describe('Toss answers', () => {
  const err = (status: number, code: string, message = '메시지') => answer(status, JSON.stringify({ code, message }))
  it('maps each documented code to its outcome, keeping the Korean message', () => {
    expect(classifyToss('issue', err(400, 'DUPLICATED_CASH_RECEIPT', '이미 현금영수증이 발급된 주문입니다.')).kind).toBe('already_issued')
    expect(classifyToss('issue', err(409, 'IDEMPOTENT_REQUEST_PROCESSING')).kind).toBe('retryable')
    expect(classifyToss('cancel', err(403, 'FORBIDDEN_CONSECUTIVE_REQUEST')).kind).toBe('rate_limited')
    const refused = classifyToss('cancel', err(403, 'NOT_CANCELABLE_AMOUNT', '취소 할 수 없는 금액 입니다.'))
    expect(refused).toMatchObject({ kind: 'permanent', meta: { providerCode: 'NOT_CANCELABLE_AMOUNT', message: '취소 할 수 없는 금액 입니다.' } })
    expect(classifyToss('cancel', err(404, 'NOT_FOUND')).kind).toBe('not_found')
    expect(classifyToss('issue', err(401, 'UNAUTHORIZED_KEY')).kind).toBe('permanent')
    expect(classifyToss('issue', err(500, 'FAILED_INTERNAL_SYSTEM_PROCESSING')).kind).toBe('unknown_outcome')
  })
  it('an IN_PROGRESS answer is a provisional receipt; a FAILED one the tax authority refused', () => {
    const o = classifyToss('issue', answer(200, SUCCESS.toss!))
    expect(o.kind === 'issued' && o.receipt.provisional).toBe(true)
    const failed = JSON.stringify({ ...JSON.parse(SUCCESS.toss!), issueStatus: 'FAILED', failure: { code: 'NTS_ERROR', message: '[TS4] 매출금액 입력오류' } })
    expect(classifyToss('issue', answer(200, failed))).toMatchObject({ kind: 'permanent', taxAuthorityRejected: true, meta: { providerCode: 'TS4' } })
  })
  it('reads what the list holds for an order: the live receipt net of its cancels', () => {
    const m = { httpStatus: 200, providerCode: null, message: null, latencyMs: 1 }
    const confirm = tossReceiptOf({ ...JSON.parse(SUCCESS.toss!), issueStatus: 'COMPLETED' }) as TossReceipt
    const cancel = (amount: number) => tossReceiptOf({ receiptKey: 'c_cr_1', orderId: 'CR0001', transactionType: 'CANCEL', amount, issueStatus: 'COMPLETED' }) as TossReceipt
    expect(tossOrderOutcome([], m).kind).toBe('not_found')
    expect(tossOrderOutcome([confirm, cancel(1_000)], m)).toMatchObject({ kind: 'issued', receipt: { amount: 10_000, provisional: false, providerReceiptId: 'cr_1' } })
    expect(tossOrderOutcome([confirm, cancel(1_000), cancel(10_000)], m).kind).toBe('cancelled')
    const failedFirst = tossReceiptOf({
      ...JSON.parse(SUCCESS.toss!),
      receiptKey: 'cr_0',
      issueStatus: 'FAILED',
      failure: { code: 'NTS_ERROR', message: '[TS1] x' },
    }) as TossReceipt
    expect(tossOrderOutcome([failedFirst], m)).toMatchObject({ kind: 'permanent', taxAuthorityRejected: true })
    // After a re-drive the order has a refused receipt and a new one: the new one counts.
    expect(tossOrderOutcome([failedFirst, confirm], m).kind).toBe('issued')
  })
})

describe('properties over arbitrary answers', () => {
  const status = fc.integer({ min: 100, max: 599 })
  const text = fc.oneof(
    fc.string(),
    fc.json(),
    fc.constant(HTML_502),
    fc.jsonValue().map((v) => JSON.stringify({ code: v, response: v, resultCode: v, type: v, cashReceipt: v, receipts: v, info: v })),
  )
  const op = fc.constantFrom<Op>('issue', 'lookup', 'cancel')
  const provider = fc.constantFrom(...Object.keys(CLASSIFIERS))

  it('every answer maps to one kind of the closed set, and never throws', () => {
    fc.assert(
      fc.property(provider, op, status, text, (p, o, s, t) => {
        expect(KINDS).toContain(CLASSIFIERS[p]!(o, answer(s, t)).kind)
      }),
      { numRuns: 2_000 },
    )
  })

  it('a receipt is only ever reported issued on a 2xx answer', () => {
    fc.assert(
      fc.property(provider, op, status, text, (p, o, s, t) => {
        const kind = CLASSIFIERS[p]!(o, answer(s, t)).kind
        if (kind === 'issued' || kind === 'cancelled') expect(s).toBeGreaterThanOrEqual(200)
        if (kind === 'issued' || kind === 'cancelled') expect(s).toBeLessThan(300)
      }),
      { numRuns: 2_000 },
    )
  })

  it('an answer that is not JSON, to an issue or cancel, is an unknown outcome (or throttling)', () => {
    fc.assert(
      fc.property(
        provider,
        fc.constantFrom<Op>('issue', 'cancel'),
        status,
        fc.string().filter((t) => !isJson(t)),
        (p, o, s, t) => {
          expect(CLASSIFIERS[p]!(o, answer(s, t)).kind).toBe(s === 429 ? 'rate_limited' : 'unknown_outcome')
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('NTS does not deduplicate, so no answer to an NTS issue is ever "retryable" (safe to send again)', () => {
    fc.assert(
      fc.property(status, text, (s, t) => {
        expect(classifyNts('issue', answer(s, t)).kind).not.toBe('retryable')
      }),
      { numRuns: 2_000 },
    )
  })
})

function isJson(t: string): boolean {
  try {
    const v: unknown = JSON.parse(t)
    return typeof v === 'object' && v !== null
  } catch {
    return false
  }
}
