/**
 * The outcome policy, table-driven: for each provider answer (or local event) of an issue or cancel
 * attempt, the ledger transition and the queue action it decides — before and at the last attempt,
 * with and without an open lookup question — and the rules that hold for every combination.
 */
import { describe, expect, it } from 'vitest'
import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import {
  attemptOf,
  decide,
  failureEvent,
  perform,
  RetryableJobError,
  settled,
  thrownOutcome,
  type AttemptContext,
  type Decision,
  type PolicyEvent,
} from '../../src/jobs/outcome-policy.ts'
import { MerchantNotConfiguredError } from '../../src/jobs/provider-source.ts'
import type { Transition } from '../../src/db/ledger.ts'
import type { CallMeta, OutcomeKind, ProviderOutcome, ProviderReceipt } from '../../src/domain/index.ts'
import { NotNowError, QueueFullError } from '../../src/throttle/throttle.ts'
import { LeaseLostError } from '../../src/jobs/lease.ts'

const meta: CallMeta = { httpStatus: 500, providerCode: 'E1', message: '처리 오류', latencyMs: 3 }
const receipt: ProviderReceipt = { status: 'issued', approvalNumber: '123456789', providerReceiptId: 'P1', receiptUrl: null, amount: 1100, issuedAt: null, cancelledAt: null }
const cancelledReceipt: ProviderReceipt = { ...receipt, status: 'cancelled' }
const amounts = { total: 1100, supply: 1000, vat: 100, taxFree: 0, serviceFee: 0 }

function outcome(kind: OutcomeKind, m = meta): ProviderOutcome {
  switch (kind) {
    case 'issued':
      return { kind, receipt, meta: m }
    case 'cancelled':
      return { kind, receipt: cancelledReceipt, meta: m }
    case 'rate_limited':
      return { kind, retryAfterMs: 2_000, meta: m }
    default:
      return { kind, meta: m }
  }
}
const KINDS: readonly OutcomeKind[] = ['issued', 'cancelled', 'already_issued', 'not_found', 'retryable', 'rate_limited', 'permanent', 'unknown_outcome']
const error = (kind: OutcomeKind) => ({ errorClass: kind, code: 'E1', message: '처리 오류' })

const issue = (over: Partial<AttemptContext> = {}): AttemptContext => ({ operation: 'issue', attempt: 1, attemptsAllowed: 5, needsLookup: false, ...over })
const cancel = (over: Partial<AttemptContext> = {}): AttemptContext => ({ operation: 'cancel', attempt: 1, attemptsAllowed: 5, needsLookup: false, ...over })
const LAST = { attempt: 5 }

interface Row {
  readonly name: string
  readonly event: PolicyEvent
  readonly ctx: AttemptContext
  readonly expected: Decision
}

const ROWS: readonly Row[] = [
  // The claim found nothing to do.
  {
    name: 'a receipt that does not exist fails the job',
    event: { type: 'claim', receiptId: 7, claim: { status: 'missing' } },
    ctx: issue(),
    expected: { type: 'settle', ledger: null, queue: { type: 'fail', message: 'receipt 7 does not exist' } },
  },
  {
    name: 'a settled receipt completes the job at once',
    event: { type: 'claim', receiptId: 7, claim: { status: 'done', state: 'issued' } },
    ctx: cancel(),
    expected: { type: 'settle', ledger: null, queue: { type: 'complete', state: 'issued', detail: 'already settled' } },
  },
  {
    name: 'a receipt leased by another worker is delayed until its lease ends',
    event: { type: 'claim', receiptId: 7, claim: { status: 'leased', retryInMs: 1_234 } },
    ctx: issue(),
    expected: { type: 'settle', ledger: null, queue: { type: 'delay', ms: 1_234 } },
  },

  // Issue: the lookup an open question forces before any call.
  {
    name: 'issue lookup: found issued is recorded issued',
    event: { type: 'lookup', outcome: outcome('issued') },
    ctx: issue({ needsLookup: true }),
    expected: { type: 'settle', ledger: { state: 'issued', needsLookup: false, receipt, error: null }, queue: { type: 'complete', state: 'issued', detail: 'found by lookup' } },
  },
  {
    name: 'issue lookup: found cancelled is recorded cancelled',
    event: { type: 'lookup', outcome: outcome('cancelled') },
    ctx: issue({ needsLookup: true }),
    expected: {
      type: 'settle',
      ledger: { state: 'cancelled', needsLookup: false, receipt: cancelledReceipt, error: null },
      queue: { type: 'complete', state: 'cancelled', detail: 'found cancelled at provider' },
    },
  },
  {
    name: 'issue lookup: not found lets the issue call go',
    event: { type: 'lookup', outcome: outcome('not_found') },
    ctx: issue({ needsLookup: true }),
    expected: { type: 'proceed' },
  },
  {
    name: 'issue lookup: not found once the commit window has closed lets the issue call go',
    event: { type: 'lookup', outcome: outcome('not_found'), commitWindowLeftMs: 0 },
    ctx: issue({ needsLookup: true }),
    expected: { type: 'proceed' },
  },
  {
    name: 'issue lookup: not found while an earlier request may still commit waits for the window, no attempt used',
    event: { type: 'lookup', outcome: outcome('not_found'), commitWindowLeftMs: 4_000 },
    ctx: issue({ needsLookup: true, jitterMs: 10 }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true }, queue: { type: 'delay', ms: 4_010 } },
  },
  {
    name: 'issue lookup: not found inside the window on the last attempt still waits, never fails',
    event: { type: 'lookup', outcome: outcome('not_found'), commitWindowLeftMs: 4_000 },
    ctx: issue({ needsLookup: true, attempt: 5, attemptsAllowed: 5 }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true }, queue: { type: 'delay', ms: 4_000 } },
  },
  {
    name: 'issue lookup: a failed lookup keeps the question open and retries',
    event: { type: 'lookup', outcome: outcome('retryable') },
    ctx: issue({ needsLookup: true }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true, error: error('retryable') }, queue: { type: 'retry', message: 'lookup: retryable E1' } },
  },
  {
    name: 'issue lookup: a permanent lookup failure fails for good, question still open',
    event: { type: 'lookup', outcome: outcome('permanent') },
    ctx: issue({ needsLookup: true }),
    expected: { type: 'settle', ledger: { state: 'failed', needsLookup: true, error: error('permanent') }, queue: { type: 'fail', message: 'lookup: permanent E1 처리 오류' } },
  },

  // Issue: the call.
  {
    name: 'issued: recorded with the amounts receipted, job completes',
    event: { type: 'call', outcome: outcome('issued'), amounts },
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'issued', needsLookup: false, receipt, error: null, amounts }, queue: { type: 'complete', state: 'issued' } },
  },
  { name: 'already issued: read back first', event: { type: 'call', outcome: outcome('already_issued') }, ctx: issue(), expected: { type: 'read_back' } },
  { name: 'unknown outcome: read back first', event: { type: 'call', outcome: outcome('unknown_outcome') }, ctx: issue(), expected: { type: 'read_back' } },
  {
    name: 'retryable: pending, another attempt after backoff',
    event: { type: 'call', outcome: outcome('retryable') },
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: false, error: error('retryable') }, queue: { type: 'retry', message: 'issue: retryable E1' } },
  },
  {
    name: 'retryable at the last attempt: failed for re-drive',
    event: { type: 'call', outcome: outcome('retryable') },
    ctx: issue(LAST),
    expected: {
      type: 'settle',
      ledger: { state: 'failed', needsLookup: false, error: error('retryable') },
      queue: { type: 'fail', message: 'issue: retryable after last attempt (E1)' },
    },
  },
  {
    name: 'retryable without a provider code: the HTTP status is the code',
    event: { type: 'call', outcome: outcome('retryable', { ...meta, providerCode: null }) },
    ctx: issue(),
    expected: {
      type: 'settle',
      ledger: { state: 'pending', needsLookup: false, error: { errorClass: 'retryable', code: '500', message: '처리 오류' } },
      queue: { type: 'retry', message: 'issue: retryable 500' },
    },
  },
  {
    name: 'rate limited: pending, the limiter held, delayed without using an attempt',
    event: { type: 'call', outcome: outcome('rate_limited') },
    ctx: issue({ attempt: 5, jitterMs: 100 }),
    expected: { type: 'settle', ledger: { state: 'pending', error: error('rate_limited') }, queue: { type: 'delay', ms: 2_100 }, penalizeMs: 2_000 },
  },
  {
    name: 'permanent: failed, no further attempt',
    event: { type: 'call', outcome: outcome('permanent') },
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'failed', needsLookup: false, error: error('permanent') }, queue: { type: 'fail', message: 'issue: permanent E1 처리 오류' } },
  },
  {
    name: 'the read-back finds the receipt: issued',
    event: { type: 'read_back', outcome: outcome('issued'), after: outcome('unknown_outcome'), amounts },
    ctx: issue(),
    expected: {
      type: 'settle',
      ledger: { state: 'issued', needsLookup: false, receipt, error: null, amounts },
      queue: { type: 'complete', state: 'issued', detail: 'unknown_outcome' },
    },
  },
  {
    name: 'the read-back finds it cancelled: cancelled',
    event: { type: 'read_back', outcome: outcome('cancelled'), after: outcome('already_issued') },
    ctx: issue(),
    expected: {
      type: 'settle',
      ledger: { state: 'cancelled', needsLookup: false, receipt: cancelledReceipt, error: null },
      queue: { type: 'complete', state: 'cancelled', detail: 'already_issued' },
    },
  },
  {
    name: 'the read-back finds nothing after an unknown outcome: not trusted, looked up again after backoff',
    event: { type: 'read_back', outcome: outcome('not_found', { ...meta, providerCode: 'NF' }), after: outcome('unknown_outcome') },
    ctx: issue(),
    expected: {
      type: 'settle',
      ledger: { state: 'pending', needsLookup: true, error: error('unknown_outcome') },
      queue: { type: 'retry', message: 'issue: unknown outcome (E1); will look up first' },
    },
  },
  {
    name: 'the read-back finds nothing at the last attempt: failed, unknown outcome, looked up on re-drive',
    event: { type: 'read_back', outcome: outcome('not_found', { ...meta, providerCode: 'NF' }), after: outcome('already_issued') },
    ctx: issue(LAST),
    expected: {
      type: 'settle',
      ledger: { state: 'failed', needsLookup: true, error: { errorClass: 'unknown_outcome', code: 'NF', message: '처리 오류' } },
      queue: { type: 'fail', message: 'issue: outcome unknown after last attempt' },
    },
  },
  {
    name: 'Naver Pay cash amount not readable: retried',
    event: { type: 'naver_cash_amount', outcome: outcome('retryable') },
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: false, error: error('retryable') }, queue: { type: 'retry', message: 'naver_cash_amount: retryable E1' } },
  },

  // Local events.
  {
    name: 'nothing to issue: skipped',
    event: { type: 'nothing_to_issue', reason: 'refunded' },
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'skipped', needsLookup: false, skipReason: 'refunded', error: null }, queue: { type: 'complete', state: 'skipped' } },
  },
  {
    name: 'an invalid request: failed for good',
    event: { type: 'invalid', code: 'IDENTIFIER_MISSING', message: 'no buyer identifier' },
    ctx: issue(),
    expected: {
      type: 'settle',
      ledger: { state: 'failed', error: { errorClass: 'permanent', code: 'IDENTIFIER_MISSING', message: 'no buyer identifier' } },
      queue: { type: 'fail', message: 'IDENTIFIER_MISSING: no buyer identifier' },
    },
  },
  {
    name: 'deferred by the throttle: pending, the claim uncounted, delayed without using an attempt',
    event: failureEvent(new QueueFullError(800)),
    ctx: issue(LAST),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: false, uncounted: true }, queue: { type: 'delay', ms: 800 } },
  },
  {
    name: 'the credential cannot take the call now (rate, circuit, …): the same, whatever the attempt',
    event: failureEvent(new NotNowError('circuit', 5_000)),
    ctx: issue({ ...LAST, needsLookup: true }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true, uncounted: true }, queue: { type: 'delay', ms: 5_000 } },
  },
  {
    name: 'deferred after a send (the read-back put off): the outcome of the request is open, looked up first',
    event: failureEvent(new NotNowError('rate', 300), true),
    ctx: issue(),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true, uncounted: true }, queue: { type: 'delay', ms: 300 } },
  },
  {
    name: 'lease lost: nothing recorded, the new owner finishes',
    event: failureEvent(new LeaseLostError('taken over')),
    ctx: cancel(),
    expected: { type: 'settle', ledger: null, queue: { type: 'complete', state: 'taken-over', detail: 'taken over' } },
  },

  // Cancel.
  {
    name: 'cancel lookup: found cancelled is the cancel accepted',
    event: { type: 'lookup', outcome: outcome('cancelled') },
    ctx: cancel({ needsLookup: true }),
    expected: {
      type: 'settle',
      ledger: { state: 'issued', needsLookup: false, receipt: cancelledReceipt, error: null },
      queue: { type: 'complete', state: 'cancelled', detail: 'found by lookup' },
    },
  },
  {
    name: 'cancel lookup: anything else lets the cancel call go',
    event: { type: 'lookup', outcome: outcome('retryable') },
    ctx: cancel({ needsLookup: true }),
    expected: { type: 'proceed' },
  },
  {
    name: 'cancel lookup: not cancelled yet while the last cancel sent may still take effect waits for the window, no attempt used',
    event: { type: 'lookup', outcome: outcome('issued'), commitWindowLeftMs: 3_000 },
    ctx: cancel({ needsLookup: true, jitterMs: 5, attempt: 5, attemptsAllowed: 5 }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true }, queue: { type: 'delay', ms: 3_005 } },
  },
  {
    name: 'cancel lookup: not cancelled yet once the commit window has closed lets the cancel call go',
    event: { type: 'lookup', outcome: outcome('issued'), commitWindowLeftMs: 0 },
    ctx: cancel({ needsLookup: true }),
    expected: { type: 'proceed' },
  },
  {
    name: "partial cancel lookup: the provider holds this cancel's part cancelled on top of the ledger's: accepted, nothing sent",
    event: {
      type: 'lookup',
      outcome: { kind: 'issued', receipt: { ...receipt, cancelledAmount: 1_500 }, meta },
      commitWindowLeftMs: 3_000,
      partialCancel: { cancelledBefore: 500, amount: 1_000 },
    },
    ctx: cancel({ needsLookup: true, partialCancel: true }),
    expected: {
      type: 'settle',
      ledger: { state: 'issued', needsLookup: false, receipt: { ...receipt, cancelledAmount: 1_500 }, error: null },
      queue: { type: 'complete', state: 'cancelled', detail: 'partial cancel found by lookup' },
    },
  },
  {
    name: 'partial cancel lookup: the provider holds what the ledger did before it: waits for the window, then lets the call go',
    event: {
      type: 'lookup',
      outcome: { kind: 'issued', receipt: { ...receipt, cancelledAmount: 500 }, meta },
      commitWindowLeftMs: 3_000,
      partialCancel: { cancelledBefore: 500, amount: 1_000 },
    },
    ctx: cancel({ needsLookup: true, partialCancel: true }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true }, queue: { type: 'delay', ms: 3_000 } },
  },
  {
    name: 'partial cancel lookup: not cancelled yet once the window has closed lets the call go',
    event: {
      type: 'lookup',
      outcome: { kind: 'issued', receipt: { ...receipt, cancelledAmount: 500 }, meta },
      commitWindowLeftMs: 0,
      partialCancel: { cancelledBefore: 500, amount: 1_000 },
    },
    ctx: cancel({ needsLookup: true, partialCancel: true }),
    expected: { type: 'proceed' },
  },
  {
    name: 'partial cancel lookup: another amount cancelled at the provider fails for a person, nothing sent',
    event: {
      type: 'lookup',
      outcome: { kind: 'issued', receipt: { ...receipt, cancelledAmount: 2_500 }, meta },
      commitWindowLeftMs: 0,
      partialCancel: { cancelledBefore: 500, amount: 1_000 },
    },
    ctx: cancel({ needsLookup: true, partialCancel: true }),
    expected: {
      type: 'settle',
      ledger: {
        state: 'failed',
        needsLookup: true,
        error: { errorClass: 'permanent', code: 'CANCELLED_AMOUNT_MISMATCH', message: 'the provider holds 2500 KRW cancelled; the ledger 500 KRW before this cancel of 1000 KRW' },
      },
      queue: { type: 'fail', message: 'lookup: the provider holds 2500 KRW cancelled; the ledger 500 KRW before this cancel of 1000 KRW' },
    },
  },
  {
    name: 'cancelled: the cancel row is issued (accepted)',
    event: { type: 'call', outcome: outcome('cancelled') },
    ctx: cancel(),
    expected: { type: 'settle', ledger: { state: 'issued', needsLookup: false, receipt: cancelledReceipt, error: null }, queue: { type: 'complete', state: 'cancelled' } },
  },
  { name: 'cancel, unknown outcome of a full cancel: read back', event: { type: 'call', outcome: outcome('unknown_outcome') }, ctx: cancel(), expected: { type: 'read_back' } },
  {
    name: 'cancel, unknown outcome of a partial cancel (no lookup possible): pending, marked, retried',
    event: { type: 'call', outcome: outcome('unknown_outcome') },
    ctx: cancel({ partialCancel: true }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true, error: error('unknown_outcome') }, queue: { type: 'retry', message: 'cancel: unknown_outcome E1' } },
  },
  {
    name: 'cancel read-back finds it cancelled: accepted',
    event: { type: 'read_back', outcome: outcome('cancelled'), after: outcome('unknown_outcome') },
    ctx: cancel(),
    expected: {
      type: 'settle',
      ledger: { state: 'issued', needsLookup: false, receipt: cancelledReceipt, error: null },
      queue: { type: 'complete', state: 'cancelled', detail: 'unknown outcome, found by lookup' },
    },
  },
  {
    name: 'cancel read-back finds it still issued at the last attempt: failed, marked for lookup',
    event: { type: 'read_back', outcome: outcome('issued'), after: outcome('unknown_outcome') },
    ctx: cancel(LAST),
    expected: {
      type: 'settle',
      ledger: { state: 'failed', needsLookup: true, error: error('unknown_outcome') },
      queue: { type: 'fail', message: 'cancel: unknown_outcome E1 처리 오류' },
    },
  },
  ...(['permanent', 'not_found', 'issued', 'already_issued'] as const).map((kind): Row => ({
    name: `cancel answered ${kind}: failed for good`,
    event: { type: 'call', outcome: outcome(kind) },
    ctx: cancel(),
    expected: { type: 'settle', ledger: { state: 'failed', needsLookup: false, error: error(kind) }, queue: { type: 'fail', message: `cancel: ${kind} E1 처리 오류` } },
  })),
  {
    name: 'cancel retryable: pending, retried; an open question stays open',
    event: { type: 'call', outcome: outcome('retryable') },
    ctx: cancel({ needsLookup: true }),
    expected: { type: 'settle', ledger: { state: 'pending', needsLookup: true, error: error('retryable') }, queue: { type: 'retry', message: 'cancel: retryable E1' } },
  },
  {
    name: 'cancel rate limited: pending, the limiter held, delayed without using an attempt',
    event: { type: 'call', outcome: outcome('rate_limited') },
    ctx: cancel(),
    expected: { type: 'settle', ledger: { state: 'pending', error: error('rate_limited') }, queue: { type: 'delay', ms: 2_000 }, penalizeMs: 2_000 },
  },
]

describe('outcome policy: each event decides one ledger transition and one queue action', () => {
  for (const row of ROWS) {
    it(row.name, () => {
      expect(decide(row.event, row.ctx)).toEqual(row.expected)
    })
  }

  it('our own failure: pending and marked for lookup (failed at the last attempt), the error rethrown as is, recorded on a best-effort basis', () => {
    const boom = new TypeError('connection terminated')
    for (const ctx of [issue(), cancel()]) {
      expect(decide(failureEvent(boom), ctx)).toEqual({
        type: 'settle',
        ledger: { state: 'pending', needsLookup: true, error: { errorClass: 'internal', code: 'TypeError', message: 'connection terminated' } },
        queue: { type: 'retry', message: 'connection terminated', error: boom },
        bestEffort: true,
      })
      expect(decide(failureEvent(boom), { ...ctx, ...LAST })).toMatchObject({ ledger: { state: 'failed', needsLookup: true }, queue: { type: 'retry', error: boom } })
    }
  })
})

describe('outcome policy: rules over every answer, step and attempt', () => {
  const steps = ['lookup', 'call', 'read_back', 'naver_cash_amount'] as const
  const all: { event: PolicyEvent; ctx: AttemptContext; kind: OutcomeKind }[] = []
  for (const operation of ['issue', 'cancel'] as const) {
    for (const step of steps) {
      if (operation === 'cancel' && step === 'naver_cash_amount') continue
      for (const kind of KINDS) {
        for (const attempt of [1, 5]) {
          for (const needsLookup of [false, true]) {
            for (const partialCancel of operation === 'cancel' ? [false, true] : [false]) {
              const o = outcome(kind)
              const event: PolicyEvent = step === 'read_back' ? { type: 'read_back', outcome: o, after: outcome('unknown_outcome') } : { type: step, outcome: o }
              all.push({ event, ctx: { operation, attempt, attemptsAllowed: 5, needsLookup, partialCancel }, kind })
            }
          }
        }
      }
    }
  }

  it('covers every combination', () => {
    // issue: 4 steps × 8 answers × 2 attempts × 2 lookup states; cancel: 3 steps × 8 × 2 × 2 × full/partial
    expect(all.length).toBe(4 * 8 * 2 * 2 + 3 * 8 * 2 * 2 * 2)
  })

  it('an unknown outcome never clears the lookup question, and a failed lookup never does either', () => {
    for (const { event, ctx, kind } of all) {
      const d = decide(event, ctx)
      if (d.type !== 'settle' || !d.ledger) continue
      // (A lookup is only made while the question is open.)
      if (kind === 'unknown_outcome' || (event.type === 'lookup' && ctx.needsLookup && d.ledger.state !== 'issued' && d.ledger.state !== 'cancelled')) {
        expect(d.ledger.needsLookup ?? ctx.needsLookup, `${ctx.operation} ${event.type} ${kind}`).toBe(true)
      }
    }
  })

  it('only the policy’s terminal states end the job, and only a failed row fails it', () => {
    for (const { event, ctx, kind } of all) {
      const d = decide(event, ctx)
      if (d.type !== 'settle') continue
      const label = `${ctx.operation} ${event.type} ${kind} attempt ${ctx.attempt}`
      if (d.queue.type === 'fail') expect(d.ledger?.state, label).toBe('failed')
      if (d.queue.type === 'retry' || d.queue.type === 'delay') expect(d.ledger?.state, label).toBe('pending')
      if (d.ledger?.state === 'failed') expect(d.queue.type, label).toBe('fail')
      // Another attempt is only ever asked for while attempts remain; a delay never uses one.
      if (d.queue.type === 'retry') expect(ctx.attempt, label).toBeLessThan(ctx.attemptsAllowed)
    }
  })

  it('a receipt the provider confirms is recorded, never failed or retried', () => {
    for (const { event, ctx, kind } of all) {
      const d = decide(event, ctx)
      const confirms = ctx.operation === 'issue' ? kind === 'issued' && event.type !== 'naver_cash_amount' : kind === 'cancelled'
      if (!confirms) continue
      expect(d.type, `${ctx.operation} ${event.type}`).toBe('settle')
      if (d.type === 'settle') expect(d.queue.type).toBe('complete')
    }
  })

  it('a rate limit never uses an attempt and always holds the limiter', () => {
    for (const { event, ctx, kind } of all) {
      // (A read-back decides on the call's answer, whatever the lookup said.)
      if (kind !== 'rate_limited' || event.type === 'read_back') continue
      const d = decide(event, ctx)
      if (d.type !== 'settle') continue
      expect(d.queue, `${ctx.operation} ${event.type}`).toMatchObject({ type: 'delay' })
      expect(d.penalizeMs).toBe(2_000)
    }
  })
})

describe('outcome policy: a receipt the tax authority refused (Toss FAILED)', () => {
  const refused: ProviderOutcome = {
    kind: 'permanent',
    taxAuthorityRejected: true,
    meta: { httpStatus: 200, providerCode: 'TS1', message: '[TS1] 신분확인정보 자릿수 오류', latencyMs: 3 },
  }
  it('found by the lookup before an issue: failed as tax_authority with the lookup question answered, so a re-drive issues again', () => {
    const d = decide({ type: 'lookup', outcome: refused }, issue({ needsLookup: true }))
    expect(d).toMatchObject({
      type: 'settle',
      ledger: { state: 'failed', needsLookup: false, error: { errorClass: 'tax_authority', code: 'TS1', message: '[TS1] 신분확인정보 자릿수 오류' } },
      queue: { type: 'fail' },
    })
  })
  it('answered to the issue itself: failed under the same class', () => {
    const d = decide({ type: 'call', outcome: refused, amounts }, issue())
    expect(d).toMatchObject({ type: 'settle', ledger: { state: 'failed', error: { errorClass: 'tax_authority', code: 'TS1' } }, queue: { type: 'fail' } })
  })
})

describe('what BullMQ does with what a handler threw', () => {
  const job = (attemptsMade: number) => ({ attemptsMade, opts: { attempts: 3 } })
  it('a delay uses no attempt; an unrecoverable error or the last attempt fails; anything else is retried', () => {
    expect(thrownOutcome(new DelayedError(), job(2))).toBe('delayed')
    expect(thrownOutcome(new UnrecoverableError('x'), job(0))).toBe('failed')
    expect(thrownOutcome(new RetryableJobError('x'), job(1))).toBe('retry')
    expect(thrownOutcome(new Error('x'), job(2))).toBe('failed')
  })

  it("the running worker's WORKER_ATTEMPTS decides the last attempt, capped by what the job carries", () => {
    const carried = (attemptsMade: number) => ({ attemptsMade, opts: { attempts: 100 } })
    expect(attemptOf(carried(0), 1)).toEqual({ attempt: 1, attemptsAllowed: 1 })
    expect(thrownOutcome(new RetryableJobError('x'), carried(0), 1)).toBe('failed')
    expect(thrownOutcome(new RetryableJobError('x'), carried(0), 2)).toBe('retry')
    expect(attemptOf(job(0), 6)).toEqual({ attempt: 1, attemptsAllowed: 3 })
    expect(attemptOf(job(0))).toEqual({ attempt: 1, attemptsAllowed: 3 })
  })

  it('a job naming a merchant the worker does not know fails at once with the hint (no call was made)', () => {
    const d = settled(decide(failureEvent(new MerchantNotConfiguredError("merchant m-x is not in this worker's merchant list")), issue()))
    expect(d.ledger).toMatchObject({ state: 'failed', error: { errorClass: 'permanent', code: 'MERCHANT_NOT_CONFIGURED' } })
    expect(d.queue).toMatchObject({ type: 'fail' })
  })
})

describe('performing a decision', () => {
  // Neither path below touches the job (no delay), so a bare object stands in for it.
  const job = { attemptsMade: 0, opts: { attempts: 3 } } as unknown as Job
  const ctx = issue()

  it('records the transition, then completes; a row taken over meanwhile reports taken-over', async () => {
    const d = settled(decide({ type: 'nothing_to_issue', reason: 'refunded' }, ctx))
    const recorded: Transition[] = []
    await expect(perform(d, job, undefined, { record: async (t) => (recorded.push(t), true) })).resolves.toEqual({ state: 'skipped' })
    await expect(perform(d, job, undefined, { record: async () => false })).resolves.toEqual({ state: 'taken-over' })
    expect(recorded).toEqual([d.ledger])
  })

  it('a failure to record becomes our own failure: recorded as such if possible, and that error is what BullMQ sees', async () => {
    const d = settled(decide({ type: 'call', outcome: outcome('issued'), amounts }, ctx))
    const broken = new Error('check constraint violated')
    const tried: Transition[] = []
    const record = async (t: Transition) => {
      tried.push(t)
      if (t.state === 'issued') throw broken
      return true
    }
    const onRecordError = (err: unknown) => settled(decide(failureEvent(err), ctx))
    await expect(perform(d, job, undefined, { record, onRecordError })).rejects.toBe(broken)
    expect(tried.map((t) => [t.state, t.needsLookup])).toEqual([
      ['issued', false],
      ['pending', true],
    ])
    // Recording the failure may fail too: the original error still surfaces.
    await expect(perform(d, job, undefined, { record: async () => Promise.reject(broken), onRecordError })).rejects.toBe(broken)
  })
})
