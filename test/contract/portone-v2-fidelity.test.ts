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
const request = (over: Partial<IssueRequest> = {}): IssueRequest => {
  const id = `pay-${randomBytes(6).toString('hex')}`
  return {
    providerKey: id,
    idempotencyKey: `cr-issue-${id}-fidelity`,
    portonePayment: false,
    orderName: '진료비',
    identifier: '01012345678',
    identifierType: 'phone',
    purpose: 'deduction',
    amounts: { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 },
    tradeDate: '2026-11-21',
    paidAt: '2026-11-21T05:00:00.000Z',
    merchantBusinessNumber: '2208162517',
    ...over,
  }
}
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
    const cancel = await a.cancel({ ...lookupOf(req), idempotencyKey: `cr-cancel-${req.providerKey}-1`, original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts }, partial: false, reason: 1, purpose: 'deduction' })
    expect(cancel.kind).toBe('cancelled')
    // Re-issuing would now succeed with a new key, but this key's answer is kept.
    expect((await a.issue(second)).kind).toBe('already_issued')
    expect(stats().issued).toBe(1)
  })

  it('a different body under a used key is refused (422) and nothing is issued', async () => {
    const a = adapter()
    const req = request()
    expect((await a.issue(req)).kind).toBe('issued')
    const other = await a.issue({ ...request(), idempotencyKey: req.idempotencyKey })
    expect(other.kind).toBe('permanent')
    expect(other.meta.httpStatus).toBe(422)
    expect(stats().issued).toBe(1)
  })

  it('keeps an answer for 3 hours: after that the same key is a new request', async () => {
    const a = adapter()
    const req = request()
    // A refusal (409 after another key issued the receipt), kept under this key…
    expect((await a.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-other` })).kind).toBe('issued')
    expect((await a.issue(req)).kind).toBe('already_issued')
    const cancel = await a.cancel({ ...lookupOf(req), idempotencyKey: `cr-cancel-${req.providerKey}-1`, original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts }, partial: false, reason: 1, purpose: 'deduction' })
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
