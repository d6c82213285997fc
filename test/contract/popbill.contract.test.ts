/**
 * Popbill: the shared contract, then what only Popbill has — the Linkhub token (signature, cache,
 * refresh), provisional answers filed at midnight (304) or refused by the NTS (305), bulk submission
 * with per-item results, GetInfos, revocations (full and partial) and CancelIssue before filing.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createHash, createHmac } from 'node:crypto'
import { defineProviderContract } from './provider-contract.ts'
import { popbillSandboxSecret, startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import type { CashReceiptProvider, IssueRequest } from '../../src/providers/types.ts'
import type { PopbillCredentials } from '../../src/providers/popbill/popbill-credentials.ts'
import { issueRequest } from '../helpers/issue-request.ts'

const credentials = (linkId: string, corpNum = '2208162517'): PopbillCredentials => ({ linkId, secretKey: popbillSandboxSecret(linkId), corpNum, bulk: false })

defineProviderContract({
  provider: 'popbill',
  credentials: credentials('LINK-contract'),
  badCredentials: { ...credentials('LINK-contract'), secretKey: Buffer.from('not the secret').toString('base64') },
  tokenLifetimeMs: 3_600_000,
  serverErrorOnIssue: 'unknown_outcome', // Popbill does not say a 5xx was not processed: look up first
  deduplicates: true,
})

describe('popbill: token, filing states, bulk, revocations', () => {
  let sandbox: Sandbox
  let clock = Date.now()
  let adapter: CashReceiptProvider
  const creds = credentials('LINK-contract2')

  beforeAll(async () => {
    sandbox = await startSandbox({ port: 0, clock: () => clock })
  })
  afterAll(async () => {
    await sandbox?.close()
  })
  beforeEach(() => {
    sandbox.reset()
    clock = Date.now()
    adapter = make()
  })

  function make(c: PopbillCredentials = creds): CashReceiptProvider {
    return createProvider('popbill', {
      baseUrl: sandbox.baseUrls.popbill,
      credentials: c,
      timeouts: { connectMs: 300, readMs: 400 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
  }
  const newRequest = (over: Partial<IssueRequest> = {}) => issueRequest('popbill', { paidAt: new Date(clock).toISOString(), ...over })
  const lookup = (req: IssueRequest) => adapter.lookup({ providerKey: req.providerKey, portonePayment: false, amounts: req.amounts })
  const cancelReq = (req: IssueRequest, n: number, over: { partial?: boolean; total?: number } = {}) => {
    const total = over.total ?? req.amounts.total
    const supply = Math.round(total / 1.1)
    return {
      providerKey: req.providerKey,
      portonePayment: false,
      idempotencyKey: `cr-cancel-${req.providerKey}-${n}`,
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
      amounts: over.partial ? { total, supply, vat: total - supply, taxFree: 0, serviceFee: 0 } : req.amounts,
      partial: over.partial ?? false,
      reason: 1 as const,
      purpose: req.purpose,
    }
  }

  /** A raw Linkhub token request, signed with `secret`. */
  async function rawToken(linkId: string, secret: string) {
    const text = JSON.stringify({ access_id: '2208162517', scope: ['member', '140'] })
    const date = new Date().toISOString()
    const digest = createHash('sha256').update(text).digest('base64')
    const sig = createHmac('sha256', Buffer.from(secret, 'base64')).update(`POST\n${digest}\n${date}\n2.0\n/POPBILL_TEST/Token`).digest('base64')
    const res = await fetch(`${sandbox.baseUrls.popbill}/POPBILL_TEST/Token`, {
      method: 'POST',
      headers: { 'x-lh-date': date, 'x-lh-version': '2.0', authorization: `LINKHUB ${linkId} ${sig}`, 'content-type': 'Application/json' },
      body: text,
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  it('signs the Linkhub token request: the right signature gets a token, a wrong one 401 with a code', async () => {
    const good = await rawToken('LINK-raw', popbillSandboxSecret('LINK-raw'))
    expect(good.status).toBe(200)
    expect(good.body.session_token).toEqual(expect.any(String))
    expect(Date.parse(String(good.body.expiration))).toBeGreaterThan(clock)
    const bad = await rawToken('LINK-raw', popbillSandboxSecret('LINK-other'))
    expect(bad.status).toBe(401)
    expect(bad.body.code).toBe(-10000032)
  })

  it('caches the token: many calls, one token request', async () => {
    for (let i = 0; i < 3; i++) expect((await adapter.issue(newRequest())).kind).toBe('issued')
    // The sandbox counts requests per provider: 3 issues + 1 token.
    expect(sandbox.stats().providers.popbill.requests).toBe(4)
  })

  it('refreshes the token on a token error code whatever the status (an expired token answered 403 -10000033)', async () => {
    // The transport turns the simulator's 401 into a 403 carrying the same body: the code alone must do.
    const as403: typeof fetch = async (input, init) => {
      const res = await fetch(input, init)
      if (res.status !== 401) return res
      return new Response(await res.text(), { status: 403, headers: res.headers })
    }
    adapter = createProvider('popbill', {
      baseUrl: sandbox.baseUrls.popbill,
      credentials: creds,
      fetch: as403,
      timeouts: { connectMs: 300, readMs: 400 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
    expect((await adapter.issue(newRequest())).kind).toBe('issued')
    clock += 3_600_000 + 60_000 // the sandbox expires the token; the adapter still holds it
    expect((await adapter.issue(newRequest())).kind).toBe('issued')
    expect(sandbox.stats().providers.popbill.issued).toBe(2)
  })

  it('refreshes the token once on a 401 and repeats the call once: expiry costs one token request; a 401 that stays is permanent, not a loop', async () => {
    // Counts what goes out; while `deny` is set every /Cashbill answer is replaced by 401 -10000033.
    let deny = false
    const sent = { token: 0, cashbill: 0 }
    const counting: typeof fetch = async (input, init) => {
      const path = new URL(String(input instanceof Request ? input.url : input)).pathname
      if (path.endsWith('/Token')) sent.token++
      else sent.cashbill++
      const res = await fetch(input, init)
      if (!deny || path.endsWith('/Token')) return res
      await res.arrayBuffer()
      return new Response(JSON.stringify({ code: -10000033, message: 'token expired' }), { status: 401, headers: { 'content-type': 'application/json' } })
    }
    adapter = createProvider('popbill', {
      baseUrl: sandbox.baseUrls.popbill,
      credentials: creds,
      fetch: counting,
      timeouts: { connectMs: 300, readMs: 400 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
    expect((await adapter.issue(newRequest())).kind).toBe('issued')
    expect(sent).toEqual({ token: 1, cashbill: 1 })

    clock += 3_600_000 + 60_000 // the sandbox expires the token; the adapter still holds it
    expect((await adapter.issue(newRequest())).kind).toBe('issued')
    expect(sent).toEqual({ token: 2, cashbill: 3 }) // 401, one refresh, the call once more

    deny = true
    const refused = await adapter.lookup({ providerKey: newRequest().providerKey, portonePayment: false, amounts: newRequest().amounts })
    expect(refused.kind).toBe('permanent')
    expect(sent).toEqual({ token: 3, cashbill: 5 }) // one refresh, one repeat, then it stops
    deny = false
    expect(sandbox.stats().providers.popbill.issued).toBe(2)
  })

  it('issues provisionally (300); midnight filing makes it final (304)', async () => {
    const req = newRequest()
    const o = await adapter.issue(req)
    expect(o.kind).toBe('issued')
    if (o.kind === 'issued') expect(o.receipt.provisional).toBe(true)
    const before = await lookup(req)
    expect(before.kind === 'issued' && before.receipt.provisional).toBe(true)
    clock += 86_400_000 // past midnight KST
    const after = await lookup(req)
    expect(after.kind).toBe('issued')
    if (after.kind === 'issued') {
      expect(after.receipt.provisional).toBe(false)
      expect(after.receipt.amount).toBe(req.amounts.total)
    }
  })

  it('sends a mixed receipt (taxable, tax-free and a service fee) so that the NTS identity holds: filed 304', async () => {
    const req = newRequest({ amounts: { total: 107_000, supply: 89_977, vat: 6_323, taxFree: 26_750, serviceFee: 10_700 } })
    expect((await adapter.issue(req)).kind).toBe('issued')
    sandbox.popbill.fileNow()
    const o = await lookup(req)
    expect(o.kind === 'issued' && !o.receipt.provisional && o.receipt.amount).toBe(107_000)
  })

  it('reads a filing the NTS refused (305) as permanent, taxAuthorityRejected, with the ntsresultCode', async () => {
    const req = newRequest()
    sandbox.popbill.failNext(['TS1'])
    expect((await adapter.issue(req)).kind).toBe('issued')
    sandbox.popbill.fileNow()
    const o = await lookup(req)
    expect(o.kind).toBe('permanent')
    if (o.kind === 'permanent') {
      expect(o.taxAuthorityRejected).toBe(true)
      expect(o.meta.providerCode).toBe('TS1')
    }
    expect(sandbox.stats().max_live_receipts_per_key).toBe(0)
  })

  it('issues again under the same mgtKey after a 305 (the refused receipt is deleted first), never over a live one', async () => {
    const req = newRequest()
    sandbox.popbill.failNext(['TS4'])
    await adapter.issue(req)
    sandbox.popbill.fileNow()
    const again = await adapter.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-r1` })
    expect(again.kind).toBe('issued')
    const found = await lookup(req)
    expect(found.kind === 'issued' && found.receipt.provisional).toBe(true)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    // A live (filed) receipt is never deleted: a further issue stays a duplicate.
    sandbox.popbill.fileNow()
    expect((await adapter.issue(req)).kind).toBe('already_issued')
  })

  it('reads a duplicate mgtKey (-14001019) as already_issued, and the lookup finds the one receipt', async () => {
    const req = newRequest()
    await adapter.issue(req)
    const again = await adapter.issue(req)
    expect(again.kind).toBe('already_issued')
    expect(again.meta.providerCode).toBe('-14001019')
    expect((await lookup(req)).kind).toBe('issued')
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
  })

  it('refuses what Popbill refuses: a bad mgtKey and an amount over 9 digits are permanent', async () => {
    const badKey = await adapter.issue(newRequest({ providerKey: 'has space' }))
    expect(badKey.kind).toBe('permanent')
    expect(badKey.meta.providerCode).toBe('-14001003')
    const tooLong = await adapter.issue(newRequest({ providerKey: 'A'.repeat(25) }))
    expect(tooLong.kind).toBe('permanent')
    const big = await adapter.issue(newRequest({ amounts: { total: 1_000_000_000, supply: 909_090_909, vat: 90_909_091, taxFree: 0, serviceFee: 0 } }))
    expect(big.kind).toBe('permanent')
    expect(big.meta.providerCode).toBe('-14001014')
    expect(sandbox.stats().providers.popbill.issued).toBe(0)
  })

  it('withdraws a receipt before filing (CancelIssue); the lookup then reads it cancelled', async () => {
    const req = newRequest()
    await adapter.issue(req)
    const c = await adapter.cancel(cancelReq(req, 1))
    expect(c.kind).toBe('cancelled')
    expect((await lookup(req)).kind).toBe('cancelled')
    expect(sandbox.stats().max_live_receipts_per_key).toBe(0)
  })

  it('revokes a filed receipt in full (a 취소거래 receipt); a repeat of the same cancel is read back, not doubled', async () => {
    const req = newRequest()
    await adapter.issue(req)
    sandbox.popbill.fileNow()
    const c = await adapter.cancel(cancelReq(req, 1))
    expect(c.kind).toBe('cancelled')
    if (c.kind === 'cancelled') expect(c.receipt.approvalNumber).toMatch(/^\d{9}$/)
    const again = await adapter.cancel(cancelReq(req, 1))
    expect(again.kind).toBe('cancelled')
    expect((await lookup(req)).kind).toBe('cancelled')
    expect(sandbox.stats().providers.popbill.cancelled).toBe(1)
  })

  it('revokes part of a filed receipt, then the rest; partial before filing is refused (-14001021)', async () => {
    const req = newRequest()
    await adapter.issue(req)
    const early = await adapter.cancel(cancelReq(req, 1, { partial: true, total: 3_300 }))
    expect(early.kind).toBe('permanent')
    expect(early.meta.providerCode).toBe('-14001021')
    sandbox.popbill.fileNow()
    expect((await adapter.cancel(cancelReq(req, 1, { partial: true, total: 3_300 }))).kind).toBe('cancelled')
    const mid = await lookup(req)
    expect(mid.kind).toBe('issued')
    if (mid.kind === 'issued') {
      expect(mid.receipt.amount).toBe(req.amounts.total - 3_300)
      expect(mid.receipt.cancelledAmount).toBe(3_300)
    }
    const over = await adapter.cancel(cancelReq(req, 2, { partial: true, total: req.amounts.total }))
    expect(over.kind).toBe('permanent')
    expect(over.meta.providerCode).toBe('-14001023')
    expect((await adapter.cancel(cancelReq(req, 3, { partial: true, total: req.amounts.total - 3_300 }))).kind).toBe('cancelled')
    expect((await lookup(req)).kind).toBe('cancelled')
  })

  it('answers a revocation of an unknown receipt as not_found', async () => {
    expect((await adapter.cancel(cancelReq(newRequest(), 1))).kind).toBe('not_found')
  })

  it('refuses CancelIssue once the receipt is filed (-14001025)', async () => {
    const req = newRequest()
    await adapter.issue(req)
    sandbox.popbill.fileNow()
    const token = await rawToken('LINK-contract2', creds.secretKey)
    const res = await fetch(`${sandbox.baseUrls.popbill}/Cashbill/${req.providerKey}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${String(token.body.session_token)}`, 'x-http-method-override': 'CANCELISSUE', 'content-type': 'application/json' },
      body: '{}',
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { code: number }).code).toBe(-14001025)
  })

  describe('bulk', () => {
    it('submits, processes in the background, and reports one result per item (mixed)', async () => {
      const bulk = adapter.bulk!
      expect(bulk.maxItems).toBe(100)
      const dup = newRequest()
      await adapter.issue(dup)
      const items = [newRequest(), newRequest(), dup, newRequest({ providerKey: 'x'.repeat(30) })]
      const submitId = `B-${Date.now()}`
      expect((await bulk.submitBulk({ submitId, items })).kind).toBe('accepted')
      expect((await bulk.bulkResult(submitId)).kind).toBe('processing')
      clock += 60_000
      const done = await bulk.bulkResult(submitId)
      expect(done.kind).toBe('done')
      if (done.kind !== 'done') return
      expect(done.items.get(items[0]!.providerKey)?.kind).toBe('issued')
      expect(done.items.get(items[1]!.providerKey)?.kind).toBe('issued')
      expect(done.items.get(dup.providerKey)?.kind).toBe('already_issued')
      expect(done.items.get(items[3]!.providerKey)?.kind).toBe('permanent')
      const many = await bulk.lookupMany(items.map((q) => ({ providerKey: q.providerKey, portonePayment: false, amounts: q.amounts })))
      expect(many instanceof Map).toBe(true)
      if (many instanceof Map) {
        expect(many.get(items[0]!.providerKey)?.kind).toBe('issued')
        expect(many.get(items[3]!.providerKey)?.kind).toBe('not_found')
      }
      expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    })

    it('refuses a reused SubmitID (already_submitted) and an unknown one reads not_found', async () => {
      const bulk = adapter.bulk!
      await bulk.submitBulk({ submitId: 'S-1', items: [newRequest()] })
      expect((await bulk.submitBulk({ submitId: 'S-1', items: [newRequest()] })).kind).toBe('already_submitted')
      expect((await bulk.bulkResult('S-unknown')).kind).toBe('not_found')
    })

    it('a submission that commits and then times out is unknown_outcome; GetBulkResult decides', async () => {
      const bulk = adapter.bulk!
      await adapter.lookup({ providerKey: 'warm', portonePayment: false, amounts: newRequest().amounts }) // token first
      const items = [newRequest(), newRequest()]
      sandbox.forceNext('popbill', ['timeout_after_commit'])
      expect((await bulk.submitBulk({ submitId: 'S-lost', items })).kind).toBe('unknown_outcome')
      clock += 60_000
      const done = await bulk.bulkResult('S-lost')
      expect(done.kind).toBe('done')
      if (done.kind === 'done') expect([...done.items.values()].every((o) => o.kind === 'issued')).toBe(true)
      expect((await bulk.submitBulk({ submitId: 'S-lost', items })).kind).toBe('already_submitted')
    })

    it('the fault grammar reaches Popbill: popbill:timeout_after_commit on every call, never on tokens', async () => {
      const bulk = adapter.bulk!
      sandbox.setFaults('popbill:timeout_after_commit=1,hang=200')
      const items = [newRequest()]
      expect((await bulk.submitBulk({ submitId: 'S-spec', items })).kind).toBe('unknown_outcome')
      sandbox.setFaults('')
      clock += 60_000
      const done = await bulk.bulkResult('S-spec')
      expect(done.kind === 'done' && done.items.get(items[0]!.providerKey)?.kind).toBe('issued')
      expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    })
  })
})

/** What the simulator refuses, over raw HTTP as any client would send it (the adapter never sends these). */
describe('popbill simulator: refuses what Popbill refuses', () => {
  let sandbox: Sandbox
  let clock = Date.now()
  let token = ''
  const linkId = 'LINK-fidelity'

  beforeAll(async () => {
    sandbox = await startSandbox({ port: 0, clock: () => clock })
  })
  afterAll(async () => {
    await sandbox?.close()
  })
  beforeEach(async () => {
    sandbox.reset()
    clock = Date.now()
    const text = JSON.stringify({ access_id: '2208162517', scope: ['member', '140'] })
    const date = new Date().toISOString()
    const digest = createHash('sha256').update(text).digest('base64')
    const sig = createHmac('sha256', Buffer.from(popbillSandboxSecret(linkId), 'base64'))
      .update(`POST\n${digest}\n${date}\n2.0\n/POPBILL_TEST/Token`)
      .digest('base64')
    const res = await fetch(`${sandbox.baseUrls.popbill}/POPBILL_TEST/Token`, {
      method: 'POST',
      headers: { 'x-lh-date': date, 'x-lh-version': '2.0', authorization: `LINKHUB ${linkId} ${sig}`, 'content-type': 'Application/json' },
      body: text,
    })
    token = String(((await res.json()) as { session_token: string }).session_token)
  })

  const cashbill = (over: Record<string, unknown> = {}) => ({
    mgtKey: `K${Math.random().toString(36).slice(2, 12)}`,
    tradeType: '승인거래',
    tradeUsage: '소득공제용',
    taxationType: '과세',
    supplyCost: '10000',
    tax: '1000',
    serviceFee: '0',
    totalAmount: '11000',
    franchiseCorpNum: '2208162517',
    identityNum: '01012345678',
    ...over,
  })
  async function post(path: string, override: string | null, body: string, headers: Record<string, string> = {}) {
    const res = await fetch(`${sandbox.baseUrls.popbill}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json;charset=utf-8', ...(override ? { 'x-http-method-override': override } : {}), ...headers },
      body,
    })
    return { status: res.status, body: (await res.json()) as { code: number; message: string } }
  }
  const issue = (c: Record<string, unknown>) => post('/Cashbill', 'ISSUE', JSON.stringify(c))
  const bulk = (submitId: string, list: unknown[], digest?: string) => {
    const text = JSON.stringify({ cashbills: list })
    return post('/Cashbill', 'BULKISSUE', text, { 'x-pb-submit-id': submitId, 'x-pb-message-digest': digest ?? createHash('sha1').update(text).digest('base64') })
  }

  it.each([
    ['an amount sent as a number', { supplyCost: 10000 }, -14001010],
    ['a negative amount', { tax: '-1' }, -14001013],
    ['an amount over 9 digits', { totalAmount: '1000000000' }, -14001014],
    ['no identity number', { identityNum: '' }, -14001004],
    ['the self-issue number on 지출증빙용', { identityNum: '010-000-1234', tradeUsage: '지출증빙용' }, -14001004],
    ['no tradeUsage', { tradeUsage: undefined }, -14001018],
    ['no tradeType', { tradeType: undefined }, -14001017],
    ['no seller BRN', { franchiseCorpNum: undefined }, -14001001],
    ['a malformed seller BRN', { franchiseCorpNum: '12345' }, -14001002],
    ['another seller than the token', { franchiseCorpNum: '1248100998' }, -14000002],
    ['a mgtKey with other characters', { mgtKey: 'key/1' }, -14001003],
    ['a mgtKey over 24 characters', { mgtKey: 'K'.repeat(25) }, -14001003],
    ['a tradeDT two days back', { tradeDT: '20200101120000' }, -14001005],
  ])('RegistIssue refuses %s', async (_what, over, code) => {
    const r = await issue(cashbill(over))
    expect(r.status).toBeGreaterThanOrEqual(400)
    expect(r.body.code).toBe(code)
    expect(sandbox.stats().providers.popbill.issued).toBe(0)
  })

  it('refuses a call with an expired token (401 -10000033) and one without (-10000034)', async () => {
    clock += 3_600_000 + 1
    expect((await issue(cashbill())).body.code).toBe(-10000033)
    token = ''
    const res = await fetch(`${sandbox.baseUrls.popbill}/Cashbill/K1`)
    expect(res.status).toBe(401)
    expect(((await res.json()) as { code: number }).code).toBe(-10000034)
  })

  it('BulkSubmit refuses more than 100 cashbills, a wrong digest, a bad SubmitID and an empty list', async () => {
    const many = Array.from({ length: 101 }, () => cashbill())
    expect((await bulk('S-many', many)).body.code).toBe(-14001032)
    expect((await bulk('S-digest', [cashbill()], 'AAAA')).body.code).toBe(-14001034)
    expect((await bulk('S/1', [cashbill()])).body.code).toBe(-14001033)
    expect((await bulk('S-empty', [])).body.code).toBe(-14001000)
    expect(
      (
        await bulk(
          'S-100',
          Array.from({ length: 100 }, () => cashbill()),
        )
      ).body.code,
    ).toBe(1)
  })

  it('processes a submission in the background for 2.5 × its modelled submission time (20 + 2n ms): txState 0 → 1 → 2, results only at 2', async () => {
    const state = async (submitId: string) => {
      const res = await fetch(`${sandbox.baseUrls.popbill}/Cashbill/BULK/${submitId}/State`, { headers: { authorization: `Bearer ${token}` } })
      return (await res.json()) as { txState: number; successCount: number; issueResult: unknown[] }
    }
    // The clock is the sandbox's: only it moves, so the boundaries are exact whatever the machine's load.
    for (const n of [1, 100]) {
      const t0 = clock
      const delay = Math.round(2.5 * (20 + 2 * n)) // 55 ms for 1, 550 ms for 100
      expect(
        (
          await bulk(
            `S-model-${n}`,
            Array.from({ length: n }, () => cashbill()),
          )
        ).body.code,
      ).toBe(1)
      expect(await state(`S-model-${n}`)).toMatchObject({ txState: 0, successCount: 0, issueResult: [] })
      clock = t0 + Math.ceil(delay * 0.2)
      expect((await state(`S-model-${n}`)).txState).toBe(1)
      clock = t0 + delay - 1
      expect(await state(`S-model-${n}`)).toMatchObject({ txState: 1, issueResult: [] })
      clock = t0 + delay
      const done = await state(`S-model-${n}`)
      expect(done).toMatchObject({ txState: 2, successCount: n })
      expect(done.issueResult).toHaveLength(n)
    }
    // A set delay replaces the model (POST /_sandbox/popbill/bulk-delay); null restores it.
    sandbox.popbill.setBulkDelay(2_000)
    const t1 = clock
    await bulk('S-set', [cashbill()])
    clock = t1 + 1_999
    expect((await state('S-set')).txState).toBe(1)
    clock = t1 + 2_000
    expect((await state('S-set')).txState).toBe(2)
    sandbox.popbill.setBulkDelay(null)
    const t2 = clock
    await bulk('S-model-again', [cashbill()])
    clock = t2 + 55
    expect((await state('S-model-again')).txState).toBe(2)
  })

  it('BulkSubmit refuses a reused SubmitID even with the same content', async () => {
    const list = [cashbill()]
    expect((await bulk('S-same', list)).body.code).toBe(1)
    expect((await bulk('S-same', list)).body.code).toBe(-14001031)
  })

  it('GetInfos refuses more than 1000 keys and lists only the keys it holds', async () => {
    const c = cashbill()
    await issue(c)
    expect((await post('/Cashbill/States', null, JSON.stringify(Array.from({ length: 1001 }, (_, i) => `K${i}`)))).body.code).toBe(-14000001)
    const res = await fetch(`${sandbox.baseUrls.popbill}/Cashbill/States`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify([c.mgtKey, 'unknown']),
    })
    const list = (await res.json()) as { mgtKey: string; stateCode: number; totalAmount: string }[]
    expect(list.map((i) => [i.mgtKey, i.stateCode, i.totalAmount])).toEqual([[c.mgtKey, 300, '11000']])
  })

  it('RevokeRegistIssue refuses an unknown original (-14001020), a cancelType outside 1–3 and more than is left', async () => {
    const c = cashbill()
    const issued = (await issue(c)).body as unknown as { confirmNum: string; tradeDate: string }
    sandbox.popbill.fileNow()
    const revoke = (over: Record<string, unknown>) =>
      post(
        '/Cashbill',
        'REVOKEISSUE',
        JSON.stringify({ mgtKey: `R${Math.random().toString(36).slice(2, 10)}`, orgConfirmNum: issued.confirmNum, orgTradeDate: issued.tradeDate, ...over }),
      )
    expect((await revoke({ orgConfirmNum: '999999999' })).body.code).toBe(-14001020)
    expect((await revoke({ cancelType: 4 })).body.code).toBe(-14001024)
    expect((await revoke({ isPartCancel: true, supplyCost: '20000', tax: '2000', serviceFee: '0', totalAmount: '22000' })).body.code).toBe(-14001023)
    expect((await revoke({ cancelType: 2 })).body.code).toBe(1)
    expect((await revoke({})).body.code).toBe(-14001023)
  })
})

describe("popbill simulator: Popbill's processing time per call (popbillCallMs)", () => {
  it('answers every /Cashbill call no sooner than the set processing time', async () => {
    const sandbox = await startSandbox({ port: 0, popbillCallMs: 150 })
    try {
      const base = sandbox.baseUrls.popbill
      // A call without a token is still a /Cashbill call: it is refused (401) after Popbill's time.
      const started = performance.now()
      const res = await fetch(`${base}/Cashbill/States`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' })
      const tookMs = performance.now() - started
      expect(res.status).toBe(401)
      expect(tookMs).toBeGreaterThanOrEqual(150 - 1) // a lower bound: what the sandbox adds, not how fast it is
      expect((await fetch(`${base}/Time`)).status).toBe(200)
    } finally {
      await sandbox.close()
    }
  })

  it('refuses a processing time that is not a whole number of ms', async () => {
    await expect(startSandbox({ port: 0, popbillCallMs: -1 })).rejects.toThrow(/popbillCallMs/)
    await expect(startSandbox({ port: 0, popbillCallMs: 1.5 })).rejects.toThrow(/popbillCallMs/)
  })
})
