/**
 * Toss Payments: the shared contract, then what only Toss has — provisional answers finalised (or
 * refused by the tax authority) later, lookups through the list API with cursor paging, partial
 * cancels with NOT_CANCELABLE_AMOUNT, the Idempotency-Key rules and FORBIDDEN_CONSECUTIVE_REQUEST.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { defineProviderContract } from './provider-contract.ts'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import type { CashReceiptProvider, IssueRequest } from '../../src/providers/types.ts'

defineProviderContract({
  provider: 'toss',
  credentials: { secretKey: 'test_sk_contract' },
  badCredentials: { secretKey: 'not_a_toss_key' },
  serverErrorOnIssue: 'unknown_outcome', // Toss does not say a 5xx was not processed: look up first
  deduplicates: true,
  idempotencyReplay: true,
})

describe('toss: deferred results, list lookups, partial cancels', () => {
  let sandbox: Sandbox
  let clock = Date.now()
  let adapter: CashReceiptProvider
  const secretKey = 'test_sk_contract2'
  const auth = `Basic ${Buffer.from(`${secretKey}:`).toString('base64')}`

  beforeAll(async () => {
    sandbox = await startSandbox({ port: 0, clock: () => clock })
  })
  afterAll(async () => {
    await sandbox?.close()
  })
  beforeEach(() => {
    sandbox.reset()
    clock = Date.now()
    adapter = createProvider('toss', {
      baseUrl: sandbox.baseUrls.toss,
      credentials: { secretKey },
      timeouts: { connectMs: 300, readMs: 400 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
  })

  const newRequest = (over: Partial<IssueRequest> = {}): IssueRequest => {
    const key = `CR${randomBytes(12).toString('hex').toUpperCase()}`
    return {
      providerKey: key,
      idempotencyKey: `cr-issue-${key}`,
      portonePayment: false,
      orderName: '수강료',
      identifier: '01012345678',
      identifierType: 'phone',
      purpose: 'deduction',
      amounts: { total: 33_000, supply: 30_000, vat: 3_000, taxFree: 0, serviceFee: 0 },
      tradeDate: '2026-11-21',
      paidAt: '2026-11-21T05:00:00.000Z',
      merchantBusinessNumber: '2208162517',
      ...over,
    }
  }
  const lookup = (req: IssueRequest) => adapter.lookup({ providerKey: req.providerKey, portonePayment: false, amounts: req.amounts })
  const cancel = (req: IssueRequest, receiptKey: string | null, total: number, partial: boolean, seq: number) =>
    adapter.cancel({
      providerKey: req.providerKey,
      portonePayment: false,
      idempotencyKey: `cr-cancel-${req.providerKey}-${seq}`,
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts, providerReceiptId: receiptKey },
      amounts: { total, supply: 0, vat: 0, taxFree: 0, serviceFee: 0 },
      partial,
      reason: 1,
      purpose: 'deduction',
    })

  it('answers provisionally; after the result delay the lookup finds the receipt final', async () => {
    const req = newRequest()
    const o = await adapter.issue(req)
    expect(o.kind).toBe('issued')
    if (o.kind !== 'issued') return
    expect(o.receipt.provisional).toBe(true)
    expect(o.receipt.providerReceiptId).toBeTruthy()
    const before = await lookup(req)
    expect(before.kind === 'issued' && before.receipt.provisional).toBe(true)
    sandbox.toss.advance(2 * 86_400_000)
    const after = await lookup(req)
    expect(after.kind).toBe('issued')
    if (after.kind === 'issued') {
      expect(after.receipt.provisional).toBe(false)
      expect(after.receipt.approvalNumber).toBe(o.receipt.approvalNumber)
      expect(after.receipt.amount).toBe(33_000)
    }
  })

  it('maps a receipt the tax authority refused to permanent with the TSx code and message', async () => {
    sandbox.toss.failNext(['TS4'])
    const req = newRequest()
    expect((await adapter.issue(req)).kind).toBe('issued')
    sandbox.toss.advance(2 * 86_400_000)
    const after = await lookup(req)
    expect(after.kind).toBe('permanent')
    if (after.kind === 'permanent') {
      expect(after.taxAuthorityRejected).toBe(true)
      expect(after.meta.providerCode).toBe('TS4')
      expect(after.meta.message).toContain('[TS4]')
    }
    expect(sandbox.stats().max_live_receipts_per_key).toBe(0)
    // Refused: the order may be issued again (a re-drive), and the lookup then sees the new receipt.
    clock += 2_000
    const again = await adapter.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-r1` })
    expect(again.kind).toBe('issued')
    expect((await lookup(req)).kind).toBe('issued')
  })

  it('cancels in part, then the rest; more than what is left is NOT_CANCELABLE_AMOUNT; both keys kept', async () => {
    const req = newRequest()
    const o = await adapter.issue(req)
    const key = o.kind === 'issued' ? o.receipt.providerReceiptId : null
    const part = await cancel(req, key, 10_000, true, 1)
    expect(part.kind).toBe('cancelled')
    if (part.kind === 'cancelled') {
      expect(part.receipt.providerReceiptId).toBe(`c_${key}`)
      expect(part.receipt.amount).toBe(10_000)
    }
    const left = await lookup(req)
    expect(left.kind).toBe('issued')
    if (left.kind === 'issued') expect(left.receipt.amount).toBe(23_000)
    clock += 2_000
    const tooMuch = await cancel(req, key, 30_000, true, 2)
    expect(tooMuch.kind).toBe('permanent')
    expect(tooMuch.meta.providerCode).toBe('NOT_CANCELABLE_AMOUNT')
    clock += 2_000
    expect((await cancel(req, key, 23_000, true, 3)).kind).toBe('cancelled')
    expect((await lookup(req)).kind).toBe('cancelled')
    expect(sandbox.stats().max_live_receipts_per_key).toBe(0)
  })

  it('maps a cancel of an unknown receiptKey to not_found, and one without a key to permanent', async () => {
    const req = newRequest()
    expect((await cancel(req, 'cr_nope', 1_000, false, 1)).kind).toBe('not_found')
    expect((await cancel(req, null, 1_000, false, 1)).kind).toBe('permanent')
  })

  it('maps a repeated cancel within a second (FORBIDDEN_CONSECUTIVE_REQUEST) to rate_limited', async () => {
    const req = newRequest()
    const o = await adapter.issue(req)
    const key = o.kind === 'issued' ? o.receipt.providerReceiptId : null
    expect((await cancel(req, key, 1_000, true, 1)).kind).toBe('cancelled')
    const again = await cancel(req, key, 1_000, true, 2)
    expect(again.kind).toBe('rate_limited')
    expect(again.meta.providerCode).toBe('FORBIDDEN_CONSECUTIVE_REQUEST')
    // The retry it asks for, with the same Idempotency-Key a second later, goes through: the refusal
    // processed nothing, so it is not replayed to that key.
    clock += 2_000
    expect((await cancel(req, key, 1_000, true, 2)).kind).toBe('cancelled')
  })

  it('finds a receipt past the first page of the list (cursor and hasNext)', async () => {
    const reqs = Array.from({ length: 5 }, () => newRequest())
    for (const r of reqs) expect((await adapter.issue(r)).kind).toBe('issued')
    const date = new Date(clock + 9 * 3600_000).toISOString().slice(0, 10)
    const page = async (cursor?: number) => {
      const res = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=${date}&limit=2${cursor !== undefined ? `&cursor=${cursor}` : ''}`, {
        headers: { authorization: auth },
      })
      return (await res.json()) as { hasNext: boolean; lastCursor: number; data: { orderId: string }[] }
    }
    const seen: string[] = []
    let p = await page()
    seen.push(...p.data.map((d) => d.orderId))
    while (p.hasNext) {
      p = await page(p.lastCursor)
      seen.push(...p.data.map((d) => d.orderId))
    }
    expect(seen).toEqual(reqs.map((r) => r.providerKey))
    expect((await lookup(reqs[4]!)).kind).toBe('issued')
    const tooMany = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=${date}&limit=10001`, { headers: { authorization: auth } })
    expect(tooMany.status).toBe(400)
    expect(((await tooMany.json()) as { code: string }).code).toBe('EXCEED_MAX_QUERY_LIMIT')
  })

  it('looks up in a busy day (hundreds of receipts of one credential), concurrent lookups sharing list scans', async () => {
    // A day's list of one credential larger than one parsable body: one 10,000-entry page of it was
    // unreadable (over the body cap), so every lookup of a busy credential failed forever.
    const reqs = Array.from({ length: 700 }, () => newRequest())
    for (let i = 0; i < reqs.length; i += 25) {
      const got = await Promise.all(reqs.slice(i, i + 25).map((r) => adapter.issue(r)))
      expect(got.map((o) => o.kind)).toEqual(got.map(() => 'issued'))
    }
    expect((await lookup(reqs[0]!)).kind).toBe('issued')
    expect((await lookup(reqs.at(-1)!)).kind).toBe('issued')
    const before = sandbox.stats().providers.toss.requests
    const asked = [...reqs.slice(0, 40), newRequest(), newRequest()]
    const answers = await Promise.all(asked.map((r) => lookup(r)))
    expect(answers.map((o) => o.kind)).toEqual([...asked.slice(0, 40).map(() => 'issued'), 'not_found', 'not_found'])
    answers.slice(0, 40).forEach((o, i) => {
      if (o.kind === 'issued') expect(o.receipt.approvalNumber).toBeTruthy()
      else expect.unreachable(`lookup ${i}: ${o.kind}`)
    })
    // 42 lookups asked together share one scan: without a sentSince it reads yesterday (one empty
    // page) and today (700 entries, 3 pages): 4 requests, not 42 × 4.
    expect(sandbox.stats().providers.toss.requests - before).toBe(4)
  })

  it('lists request dates once for many keys: every page through the caller, only the keys asked for kept', async () => {
    // Issued yesterday (KST request date), cancelled in part today: a listing of today alone holds its
    // CANCEL without the CONFIRM, which settles nothing.
    const kst = (ms: number) => new Date(ms + 9 * 3600_000).toISOString().slice(0, 10)
    const y = newRequest()
    clock = Date.now() - 86_400_000
    const yo = await adapter.issue(y)
    clock = Date.now()
    expect((await cancel(y, yo.kind === 'issued' ? yo.receipt.providerReceiptId : null, 3_000, true, 1)).kind).toBe('cancelled')
    const reqs = Array.from({ length: 260 }, () => newRequest())
    for (let i = 0; i < reqs.length; i += 26) {
      const got = await Promise.all(reqs.slice(i, i + 26).map((r) => adapter.issue(r)))
      expect(got.map((o) => o.kind)).toEqual(got.map(() => 'issued'))
    }
    const asked = new Set([...reqs.slice(0, 5), reqs.at(-1)!, y].map((r) => r.providerKey))
    asked.add('CRNEVERISSUED000000000000000000')
    let scheduled = 0
    const schedule = <T>(call: () => Promise<T>): Promise<T> => {
      scheduled++
      return call()
    }
    const before = sandbox.stats().providers.toss.requests
    const today = await adapter.listReceipts!({ sentSince: kst(Date.now()), keys: asked }, { schedule })
    // 261 entries today (260 CONFIRMs and one CANCEL): two pages of 250, each one scheduled call.
    expect(sandbox.stats().providers.toss.requests - before).toBe(2)
    expect(scheduled).toBe(2)
    if ('kind' in today) return expect.unreachable(`listing: ${today.kind}`)
    expect(today.requests).toBe(2)
    expect([...today.held.keys()].sort()).toEqual([...reqs.slice(0, 5), reqs.at(-1)!, y].map((r) => r.providerKey).sort())
    for (const r of [...reqs.slice(0, 5), reqs.at(-1)!]) expect(today.held.get(r.providerKey)).toMatchObject({ kind: 'issued', receipt: { amount: 33_000, provisional: true } })
    expect(today.held.get(y.providerKey)).toEqual({ kind: 'unsettled' })
    // From yesterday on, the order's CONFIRM is read too: issued with what is left, as the lookup says.
    const both = await adapter.listReceipts!({ sentSince: kst(Date.now() - 86_400_000), keys: new Set([y.providerKey]) }, { schedule })
    if ('kind' in both) return expect.unreachable(`listing: ${both.kind}`)
    expect(both.held.get(y.providerKey)).toMatchObject({ kind: 'issued', receipt: { amount: 30_000, cancelledAmount: 3_000 } })
    const looked = await adapter.lookup({ providerKey: y.providerKey, portonePayment: false, amounts: y.amounts, sentSince: kst(Date.now() - 86_400_000) })
    expect(looked).toMatchObject({ kind: 'issued', receipt: { amount: 30_000, cancelledAmount: 3_000 } })
  })

  it('refuses an Idempotency-Key over 300 characters, and replays one scoped to key + API key + URL + method', async () => {
    const req = newRequest({ idempotencyKey: 'k'.repeat(301) })
    const o = await adapter.issue(req)
    expect(o.kind).toBe('permanent')
    expect(o.meta.providerCode).toBe('INVALID_IDEMPOTENCY_KEY')
    const shared = `shared-${randomBytes(6).toString('hex')}`
    const first = await adapter.issue(newRequest({ idempotencyKey: shared }))
    // The same key under another API key is another request.
    const other = createProvider('toss', { baseUrl: sandbox.baseUrls.toss, credentials: { secretKey: 'test_sk_other' }, retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 } })
    const second = await other.issue(newRequest({ idempotencyKey: shared }))
    expect(first.kind).toBe('issued')
    expect(second.kind).toBe('issued')
    if (first.kind === 'issued' && second.kind === 'issued') expect(second.receipt.providerReceiptId).not.toBe(first.receipt.providerReceiptId)
    // Fifteen days later the key no longer replays: the same request is a duplicate order.
    clock += 16 * 86_400_000
    const later = await adapter.issue(newRequest({ idempotencyKey: shared }))
    expect(later.kind).toBe('issued')
  })

  it('answers 403 INCORRECT_BASIC_AUTH_FORMAT to a key without the colon, 401 UNAUTHORIZED_KEY to an unknown one', async () => {
    const noColon = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=2026-11-21`, {
      headers: { authorization: `Basic ${Buffer.from(secretKey).toString('base64')}` },
    })
    expect(noColon.status).toBe(403)
    expect(((await noColon.json()) as { code: string }).code).toBe('INCORRECT_BASIC_AUTH_FORMAT')
    const unknown = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=2026-11-21`, {
      headers: { authorization: `Basic ${Buffer.from('sk_nope:').toString('base64')}` },
    })
    expect(unknown.status).toBe(401)
    expect(((await unknown.json()) as { code: string }).code).toBe('UNAUTHORIZED_KEY')
  })
})
