/**
 * PortOne V2's Idempotency-Key as its REST overview documents it (a completed request retried with the
 * same key gets the original answer, errors included, for 3 hours) and the ISSUE_FAILED receipt a PG
 * failure leaves, through the adapter and the sandbox over real HTTP (docs/providers.md §2).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import type { IssueRequest } from '../../src/providers/types.ts'
import { issueRequest } from '../helpers/issue-request.ts'

let sandbox: Sandbox
let clock = Date.now()
beforeAll(async () => {
  sandbox = await startSandbox({ port: 0, clock: () => clock })
})
afterAll(async () => {
  await sandbox?.close()
})
beforeEach(() => {
  sandbox.reset()
  sandbox.setFaults('')
  clock = Date.now()
})

const creds = { apiSecret: 'v2-secret-fid', channelKey: 'channel-v2-fid', storeId: 'store-fid' }
const adapter = (fetchImpl?: typeof fetch) =>
  createProvider('portone-v2', {
    baseUrl: sandbox.baseUrls['portone-v2'],
    credentials: creds,
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
    // WHATWG fetch opens its first connection slowly; the undici transport needs little.
    timeouts: { connectMs: 300, readMs: fetchImpl ? 3_000 : 400 },
    retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
  })
const request = (over: Partial<IssueRequest> = {}): IssueRequest => issueRequest('fidelity', { key: `pay-${randomBytes(6).toString('hex')}`, ...over })
const stats = () => sandbox.stats().providers['portone-v2']!
const rawReceipt = async (paymentId: string) => {
  const r = await fetch(`${sandbox.baseUrls['portone-v2']}/payments/${paymentId}/cash-receipt?storeId=store-fid`, { headers: { authorization: `PortOne ${creds.apiSecret}` } })
  return { status: r.status, body: (await r.json()) as Record<string, unknown> }
}
const lookupOf = (req: IssueRequest) => ({ providerKey: req.providerKey, portonePayment: false, amounts: req.amounts })

describe('PortOne V2 Idempotency-Key replay', () => {
  it('a PG failure is replayed for the same key instead of re-executed; the receipt reads ISSUE_FAILED', async () => {
    const sent: { url: string; init: RequestInit }[] = []
    const recording: typeof fetch = (url, init) => {
      sent.push({ url: String(url), init: init ?? {} })
      return fetch(url, init)
    }
    const a = adapter(recording)
    const req = request()
    // The issue meets a PG failure, and the adapter's read of the receipt a server error.
    sandbox.forceNext('portone-v2', ['5xx', '5xx'])
    const first = await a.issue(req)
    expect(first.kind).toBe('unknown_outcome')
    expect(first.meta.providerCode).toBe('PG_PROVIDER')

    const failed = await rawReceipt(req.providerKey)
    expect(failed.status).toBe(200)
    expect(failed.body.status).toBe('ISSUE_FAILED')
    expect(failed.body.issueNumber).toBeUndefined()
    expect((await a.lookup(lookupOf(req))).kind).toBe('not_found')

    // No fault now: the same request under the same key gets the original 502 back; nothing is issued.
    const post = sent.find((s) => s.init.method === 'POST')!
    const again = await fetch(post.url, { ...post.init, signal: null })
    expect(again.status).toBe(502)
    expect(((await again.json()) as { type: string }).type).toBe('PG_PROVIDER')
    expect(stats().issued).toBe(0)
  })

  it('after a replayed PG failure the adapter reads ISSUE_FAILED and issues once under a key derived from it', async () => {
    const a = adapter()
    const req = request()
    sandbox.forceNext('portone-v2', ['5xx', '5xx'])
    expect((await a.issue(req)).kind).toBe('unknown_outcome')
    // The next job attempt: same key → replayed 502 → ISSUE_FAILED read → repeat under the derived key.
    const retried = await a.issue(req)
    expect(retried.kind).toBe('issued')
    expect(stats().issued).toBe(1)
    expect((await a.lookup(lookupOf(req))).kind).toBe('issued')
    // Once issued, the base key still replays its 502, and the receipt is not ISSUE_FAILED: no new key.
    const third = await a.issue(req)
    expect(third.kind).toBe('unknown_outcome')
    expect(stats().issued).toBe(1)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  })

  it('an answer lost after commit is replayed: the retry with the same key returns the original receipt', async () => {
    const a = adapter()
    const req = request()
    sandbox.forceNext('portone-v2', ['timeout_after_commit'])
    expect((await a.issue(req)).kind).toBe('unknown_outcome')
    const replay = await a.issue(req)
    expect(replay.kind).toBe('issued')
    const held = sandbox.receipts('portone-v2')
    expect(held).toHaveLength(1)
    if (replay.kind === 'issued') expect(replay.receipt.approvalNumber).toBe(held[0]!.approvalNumber)
    expect(stats().issued).toBe(1)
  })

  it('replays a refusal too: a key first answered 409 keeps answering 409 after the receipt is cancelled', async () => {
    const a = adapter()
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    const second = { ...req, idempotencyKey: `${req.idempotencyKey}-second` }
    expect((await a.issue(second)).kind).toBe('already_issued')
    const cancel = await a.cancel({
      ...lookupOf(req),
      idempotencyKey: `cr-cancel-${req.providerKey}-1`,
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
      partial: false,
      reason: 1,
      purpose: 'deduction',
    })
    expect(cancel.kind).toBe('cancelled')
    // Re-issuing would now succeed with a new key, but this key's answer is kept.
    expect((await a.issue(second)).kind).toBe('already_issued')
    expect(stats().issued).toBe(1)
  })

  it('the sandbox refuses a different body under a used key (422); the adapter keys each body apart', async () => {
    const sent: { url: string; init: RequestInit }[] = []
    const recording: typeof fetch = (url, init) => {
      sent.push({ url: String(url), init: init ?? {} })
      return fetch(url, init)
    }
    const a = adapter(recording)
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    const post = sent.find((s) => s.init.method === 'POST')!
    const headers = post.init.headers as Record<string, string>
    // Raw: the same key with another body is refused, and nothing is issued.
    const reused = await fetch(post.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...JSON.parse(String(post.init.body)), paymentId: `pay-${randomBytes(6).toString('hex')}` }),
    })
    expect(reused.status).toBe(422)
    expect(stats().issued).toBe(1)
    // Through the adapter the same receipt key with another body goes under another Idempotency-Key.
    const other = await a.issue({ ...request(), idempotencyKey: req.idempotencyKey })
    expect(other.kind).toBe('issued')
    const keys = sent.filter((s) => s.init.method === 'POST').map((s) => (s.init.headers as Record<string, string>)['idempotency-key'])
    expect(keys).toHaveLength(2)
    expect(keys[0]).not.toBe(keys[1])
    expect(keys[0]).toMatch(new RegExp(`^"${req.idempotencyKey}-b[0-9a-f]{12}"$`))
  })

  it('a refund imported between attempts changes the body: the next attempt is a new request, not a 422', async () => {
    const a = adapter()
    const req = request()
    // The first attempt meets a PG failure (and its read of the receipt a server error): 502 kept for its key.
    sandbox.forceNext('portone-v2', ['5xx', '5xx'])
    expect((await a.issue(req)).kind).toBe('unknown_outcome')
    // 5,500 refunded meanwhile: the next attempt receipts what remains under the same receipt key.
    const refunded = { ...req, amounts: { total: 5_500, supply: 5_000, vat: 500, taxFree: 0, serviceFee: 0 } }
    const second = await a.issue(refunded)
    expect(second.kind).toBe('issued')
    const held = sandbox.receipts('portone-v2')
    expect(held).toHaveLength(1)
    expect(held[0]!.amount).toBe(5_500)
    // The original content's key still replays its 502 (the worker then reads the receipt back: issued,
    // for 5,500); another key for it would be refused by the paymentId. One receipt either way.
    expect((await a.issue(req)).kind).toBe('unknown_outcome')
    const found = await a.lookup(lookupOf(req))
    expect(found.kind).toBe('issued')
    if (found.kind === 'issued') expect(found.receipt.amount).toBe(5_500)
    expect((await a.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-r1` })).kind).toBe('already_issued')
    expect(stats().issued).toBe(1)
  })

  it('keeps an answer for 3 hours: after that the same key is a new request', async () => {
    const a = adapter()
    const req = request()
    // A refusal (409 after another key issued the receipt), kept under this key…
    expect((await a.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-other` })).kind).toBe('issued')
    expect((await a.issue(req)).kind).toBe('already_issued')
    const cancel = await a.cancel({
      ...lookupOf(req),
      idempotencyKey: `cr-cancel-${req.providerKey}-1`,
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
      partial: false,
      reason: 1,
      purpose: 'deduction',
    })
    expect(cancel.kind).toBe('cancelled')
    clock += 3 * 3_600_000 - 60_000
    expect((await a.issue(req)).kind).toBe('already_issued')
    // …until 3 hours have passed: then the key is a new request and issues again after the cancel.
    clock += 120_000
    expect((await a.issue(req)).kind).toBe('issued')
  })

  it('does not keep a throttled answer: the same key is processed once the rate allows', async () => {
    await sandbox.close()
    sandbox = await startSandbox({ port: 0, clock: () => clock, rateLimits: 'portone-v2=1' })
    try {
      const a = adapter()
      const req = request()
      const first = await a.issue(request())
      expect(first.kind).toBe('issued')
      const limited = await a.issue(req)
      expect(limited.kind).toBe('rate_limited')
      clock += 2_000
      await new Promise((r) => setTimeout(r, 1_100))
      expect((await a.issue(req)).kind).toBe('issued')
    } finally {
      await sandbox.close()
      sandbox = await startSandbox({ port: 0, clock: () => clock })
    }
  })
})

describe('PortOne V2 cancel after a PG failure', () => {
  const cancelOf = (req: IssueRequest, attemptNo?: number) => ({
    ...lookupOf(req),
    idempotencyKey: `cr-cancel-${req.providerKey}-1`,
    original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
    amounts: req.amounts,
    partial: false,
    reason: 1 as const,
    purpose: 'deduction' as const,
    ...(attemptNo === undefined ? {} : { attemptNo }),
  })

  it('a replayed 502 on cancel: the receipt reads ISSUED, the cancel is repeated once under the attempt-derived key', async () => {
    const sent: string[] = []
    const recording: typeof fetch = (url, init) => {
      if (init?.method === 'POST' && String(url).includes('/cancel')) sent.push((init.headers as Record<string, string>)['idempotency-key']!)
      return fetch(url, init)
    }
    const a = adapter(recording)
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    // Attempt 1: the PG fails the cancel, and the read that follows meets a server error.
    sandbox.forceNext('portone-v2', ['5xx', '5xx'])
    const first = await a.cancel(cancelOf(req, 1))
    expect(first.kind).toBe('unknown_outcome')
    expect(first.meta.providerCode).toBe('PG_PROVIDER')
    expect((await rawReceipt(req.providerKey)).body.status).toBe('ISSUED')
    // Attempt 2: the key replays its 502, the receipt reads ISSUED, the repeat under -a2 cancels it.
    const second = await a.cancel(cancelOf(req, 2))
    expect(second.kind).toBe('cancelled')
    expect(stats().cancelled).toBe(1)
    expect(sent).toHaveLength(3)
    expect(sent[1]).toBe(sent[0])
    expect(sent[2]).toBe(`${sent[0]!.slice(0, -1)}-a2"`)
    expect((await rawReceipt(req.providerKey)).body.status).toBe('CANCELLED')
    // Attempt 3 (its answer was lost, say): the key's 502 again, the receipt reads CANCELLED → done, nothing sent.
    const third = await a.cancel(cancelOf(req, 3))
    expect(third.kind).toBe('cancelled')
    expect(sent).toHaveLength(4)
    expect(stats().cancelled).toBe(1)
  })

  it('without a readable receipt or an attempt number the 502 stands (the job retries, looking up first)', async () => {
    const a = adapter()
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    sandbox.forceNext('portone-v2', ['5xx'])
    expect((await a.cancel(cancelOf(req))).kind).toBe('unknown_outcome')
    expect(stats().cancelled).toBe(0)
    // With an attempt number the same call cancels (the derived key is a new request).
    expect((await a.cancel(cancelOf(req, 2))).kind).toBe('cancelled')
    expect(stats().cancelled).toBe(1)
  })

  it('PortOne refuses a second cancel (404 CASH_RECEIPT_NOT_ISSUED); the adapter reads it back as cancelled', async () => {
    const a = adapter()
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    expect((await a.cancel(cancelOf(req, 1))).kind).toBe('cancelled')
    // A raw cancel under a new key: refused, the receipt stays cancelled once.
    const raw = await fetch(`${sandbox.baseUrls['portone-v2']}/payments/${req.providerKey}/cash-receipt/cancel?storeId=store-fid`, {
      method: 'POST',
      headers: { authorization: `PortOne ${creds.apiSecret}`, 'idempotency-key': `"cr-cancel-${req.providerKey}-other"` },
    })
    expect(raw.status).toBe(404)
    expect(((await raw.json()) as { type: string }).type).toBe('CASH_RECEIPT_NOT_ISSUED')
    // Through the adapter under another key (a second cancel row, say): refused, read back, answered cancelled.
    const again = await a.cancel({ ...cancelOf(req, 1), idempotencyKey: `cr-cancel-${req.providerKey}-2` })
    expect(again.kind).toBe('cancelled')
    expect(stats().cancelled).toBe(1)
    // A receipt never issued is still not_found.
    const never = request()
    expect((await a.cancel(cancelOf(never, 1))).kind).toBe('not_found')
  })
})
