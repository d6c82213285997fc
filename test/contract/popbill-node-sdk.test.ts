/**
 * Popbill's official node SDK (`popbill` on npm, repository linkhub-sdk/node-popbill, with its token
 * library `linkhub`) run unchanged against the simulator, and beside our adapter on the same receipts.
 *
 * The SDK has no host option: `lib/BaseService.js` sends every call with `https.request` to
 * `popbill-test.linkhub.co.kr` and `linkhub`'s TokenBuilder sends the token request to
 * `auth.linkhub.co.kr`, both on port 443 through Node's `https.globalAgent` (neither passes an agent).
 * So the test swaps `https.globalAgent` for one whose sockets go to a local forwarder: plain TCP, no TLS,
 * which an HTTP/1.1 client does not notice. The forwarder checks the Host header is one of Linkhub's,
 * records what came, and passes the request byte for byte to the sandbox under `/popbill` (where the
 * sandbox serves both Linkhub's auth paths and Popbill's API paths). The SDK's signing, headers,
 * bodies (its `_stringify` drops falsy fields such as `isPartCancel: false`), method overrides and
 * answer handling are its own.
 *
 * What that proves: the sandbox accepts what the official SDK sends and answers what it reads, and our
 * adapter, checked by the same sandbox, interoperates with it on one receipt store — receipts one
 * issues the other reads, the SDK's GetBulkResult decides the adapter's BulkSubmit and the other way
 * round, and a token the SDK signed is accepted by the check the adapter's signing also passes.
 */
import { createRequire } from 'node:module'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { popbillSandboxSecret, startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import { revocationKey } from '../../src/providers/popbill/popbill-provider.ts'
import type { CashReceiptProvider } from '../../src/providers/types.ts'
import { issueRequest } from '../helpers/issue-request.ts'

type Callback = (x: Record<string, unknown>) => void
/** The SDK's CashbillService, as far as this test calls it (callback style, overloads by argument count). */
interface SdkCashbillService {
  registIssue(corpNum: string, cashbill: Record<string, unknown>, ok: Callback, err: Callback): void
  getInfo(corpNum: string, mgtKey: string, ok: Callback, err: Callback): void
  getInfos(corpNum: string, keys: string[], ok: (x: Record<string, unknown>[]) => void, err: Callback): void
  bulkSubmit(corpNum: string, submitId: string, cashbills: Record<string, unknown>[], ok: Callback, err: Callback): void
  getBulkResult(corpNum: string, submitId: string, ok: Callback, err: Callback): void
  cancelIssue(corpNum: string, mgtKey: string, ok: Callback, err: Callback): void
  revokeRegistIssue(
    corpNum: string,
    mgtKey: string,
    orgConfirmNum: string,
    orgTradeDate: string,
    smssendYN: boolean,
    memo: string,
    isPartCancel: boolean,
    cancelType: number,
    supplyCost: string,
    tax: string,
    serviceFee: string,
    totalAmount: string,
    ok: Callback,
    err: Callback,
  ): void
}

const requireCjs = createRequire(import.meta.url)
const CashbillService = requireCjs('popbill/lib/CashbillService') as new (config: Record<string, unknown>) => SdkCashbillService

const CORP = '2208162517'
const LINK_ID = 'LINK-sdk'
const LINKHUB_HOSTS = new Set(['auth.linkhub.co.kr', 'popbill-test.linkhub.co.kr'])

/** A Popbill answer: `ok` with the SDK's success value, or the SDK's error object `{code, message}`. */
type Answer<T> = { ok: true; value: T } | { ok: false; code: number; message: string }
function answer<T>(run: (ok: (x: T) => void, err: Callback) => void): Promise<Answer<T>> {
  return new Promise((resolve) =>
    run(
      (value) => resolve({ ok: true, value }),
      (e) => resolve({ ok: false, code: Number(e.code), message: String(e.message) }),
    ),
  )
}
function value<T>(a: Answer<T>): T {
  if (!a.ok) throw new Error(`Popbill answered ${a.code} ${a.message}`)
  return a.value
}

/** A Cashbill as the SDK's own example (CashbillTest.js) builds it, amounts as strings. */
function cashbill(mgtKey: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    mgtKey,
    tradeType: '승인거래',
    tradeUsage: '소득공제용',
    taxationType: '과세',
    identityNum: '01012345678',
    franchiseCorpNum: CORP,
    smssendYN: false,
    itemName: '진료비',
    supplyCost: '10000',
    tax: '1000',
    serviceFee: '0',
    totalAmount: '11000',
    ...over,
  }
}

let sandbox: Sandbox
let forwarder: http.Server
let previousAgent: https.Agent
let clock = Date.now()
const seen: { host: string; method: string; path: string; override: string | null }[] = []
let n = 0
const key = (tag: string) => `SDK${Date.now().toString(36)}${tag}${(n++).toString(36)}`.toUpperCase().slice(0, 24)

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0, clock: () => clock })
  const target = new URL(sandbox.baseUrls.popbill)
  forwarder = http.createServer((req, res) => {
    const host = String(req.headers.host ?? '').replace(/:\d+$/, '')
    const override = req.headers['x-http-method-override']
    seen.push({ host, method: req.method ?? '', path: req.url ?? '', override: typeof override === 'string' ? override : null })
    if (!LINKHUB_HOSTS.has(host)) {
      res.writeHead(421).end()
      return
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: `${target.pathname}${req.url ?? ''}`, headers: { ...req.headers, host: target.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve))
  const port = (forwarder.address() as AddressInfo).port
  /** Every https socket of this process goes to the forwarder while this file runs (restored after). */
  class ToForwarder extends https.Agent {
    override createConnection(): net.Socket {
      return net.connect(port, '127.0.0.1')
    }
  }
  const mod = https as unknown as { globalAgent: https.Agent }
  previousAgent = mod.globalAgent
  mod.globalAgent = new ToForwarder({ keepAlive: false })
})
afterAll(async () => {
  if (previousAgent) (https as unknown as { globalAgent: https.Agent }).globalAgent = previousAgent
  await new Promise<void>((resolve) => (forwarder ? forwarder.close(() => resolve()) : resolve()))
  await sandbox?.close()
})

describe('popbill: the official node SDK against the simulator', () => {
  let sdk: SdkCashbillService
  let adapter: CashReceiptProvider

  beforeEach(() => {
    sandbox.reset()
    clock = Date.now()
    seen.length = 0
    // linkhub keeps one token builder per process; a new service re-initialises it with this config.
    sdk = new CashbillService({ LinkID: LINK_ID, SecretKey: popbillSandboxSecret(LINK_ID), IsTest: true, IPRestrictOnOff: true, UseStaticIP: false, UseLocalTimeYN: true })
    adapter = createProvider('popbill', {
      baseUrl: sandbox.baseUrls.popbill,
      credentials: { linkId: LINK_ID, secretKey: popbillSandboxSecret(LINK_ID), corpNum: CORP, bulk: true },
      timeouts: { connectMs: 1_000, readMs: 2_000 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
  })

  it("signs its token as the sandbox checks it: token from Linkhub's auth host, calls on Popbill's test host", async () => {
    const mgtKey = key('T')
    const issued = value(await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(mgtKey), ok, err)))
    expect(issued.code).toBe(1)
    expect(String(issued.confirmNum)).toMatch(/^\w{9,}$/)
    expect(seen[0]).toEqual({ host: 'auth.linkhub.co.kr', method: 'POST', path: '/POPBILL_TEST/Token', override: null })
    expect(seen[1]).toEqual({ host: 'popbill-test.linkhub.co.kr', method: 'POST', path: '/Cashbill', override: 'ISSUE' })

    // A wrong SecretKey: the SDK's signature no longer matches and the token is refused.
    const wrong = new CashbillService({ LinkID: LINK_ID, SecretKey: Buffer.from('not the secret').toString('base64'), IsTest: true, IPRestrictOnOff: true, UseLocalTimeYN: true })
    const refused = await answer<Record<string, unknown>>((ok, err) => wrong.getInfo(CORP, mgtKey, ok, err))
    expect(refused).toMatchObject({ ok: false, code: -10000032 })
  })

  it('issues one receipt (RegistIssue) that our adapter reads, reads one our adapter issued, refuses a duplicate mgtKey (-14001019)', async () => {
    const mgtKey = key('S')
    const issued = value(await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(mgtKey), ok, err)))
    const read = await adapter.lookup({ providerKey: mgtKey, portonePayment: false, amounts: { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 } })
    expect(read.kind).toBe('issued')
    if (read.kind === 'issued') expect(read.receipt.approvalNumber).toBe(issued.confirmNum)

    const ours = issueRequest('popbill', { paidAt: new Date(clock).toISOString() })
    const o = await adapter.issue(ours)
    expect(o.kind).toBe('issued')
    const info = value(await answer<Record<string, unknown>>((ok, err) => sdk.getInfo(CORP, ours.providerKey, ok, err)))
    expect(info).toMatchObject({ mgtKey: ours.providerKey, stateCode: 300, tradeType: '승인거래', tradeUsage: '소득공제용' })
    expect(String(info.totalAmount)).toBe('11000')
    if (o.kind === 'issued') expect(info.confirmNum).toBe(o.receipt.approvalNumber)

    const dup = await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(mgtKey), ok, err))
    expect(dup).toMatchObject({ ok: false, code: -14001019 })
    const infos = value(await answer<Record<string, unknown>[]>((ok, err) => sdk.getInfos(CORP, [mgtKey, ours.providerKey], ok, err)))
    expect(infos.map((i) => i.mgtKey).sort()).toEqual([mgtKey, ours.providerKey].sort())
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  })

  it("bulk: the SDK's BulkSubmit is decided by our GetBulkResult and ours by the SDK's, per item, mixed", async () => {
    const held = key('H')
    value(await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(held), ok, err)))
    const keys = [key('A'), key('B')]
    const submitId = `SDK-${Date.now()}`
    const bills = [cashbill(keys[0]!), cashbill(keys[1]!), cashbill(held), cashbill(key('N'), { supplyCost: 10_000 })]
    const accepted = value(await answer<Record<string, unknown>>((ok, err) => sdk.bulkSubmit(CORP, submitId, bills, ok, err)))
    expect(accepted.code).toBe(1)
    expect(seen.at(-1)).toMatchObject({ path: '/Cashbill', override: 'BULKISSUE' })
    const early = value(await answer<Record<string, unknown>>((ok, err) => sdk.getBulkResult(CORP, submitId, ok, err)))
    expect(early.txState).not.toBe(2)
    expect((await adapter.bulk!.bulkResult(submitId)).kind).toBe('processing')

    clock += 60_000
    const done = await adapter.bulk!.bulkResult(submitId)
    expect(done.kind).toBe('done')
    if (done.kind === 'done') {
      expect(done.items.get(keys[0]!)?.kind).toBe('issued')
      expect(done.items.get(keys[1]!)?.kind).toBe('issued')
      expect(done.items.get(held)?.kind).toBe('already_issued')
      expect(done.items.get(String(bills[3]!.mgtKey))?.kind).toBe('permanent') // an amount sent as a number
    }
    const sdkDone = value(await answer<Record<string, unknown>>((ok, err) => sdk.getBulkResult(CORP, submitId, ok, err)))
    expect(sdkDone).toMatchObject({ txState: 2, successCount: 2, failCount: 2 })
    const codes = new Map((sdkDone.issueResult as Record<string, unknown>[]).map((r) => [r.mgtKey, Number(r.code)]))
    expect(codes.get(keys[0]!)).toBe(1)
    expect(codes.get(held)).toBe(-14001019)

    // And the other way round: our BulkSubmit (x-pb-submit-id, x-pb-message-digest) read by the SDK.
    const ours = [issueRequest('popbill', { paidAt: new Date(clock).toISOString() }), issueRequest('popbill', { paidAt: new Date(clock).toISOString() })]
    expect((await adapter.bulk!.submitBulk({ submitId: `OURS-${submitId}`, items: ours })).kind).toBe('accepted')
    clock += 60_000
    const theirs = value(await answer<Record<string, unknown>>((ok, err) => sdk.getBulkResult(CORP, `OURS-${submitId}`, ok, err)))
    expect(theirs).toMatchObject({ txState: 2, successCount: 2, failCount: 0 })
    // The same SubmitID again, whatever the content, is refused to the SDK as well.
    const reused = await answer<Record<string, unknown>>((ok, err) => sdk.bulkSubmit(CORP, `OURS-${submitId}`, [cashbill(key('R'))], ok, err))
    expect(reused.ok).toBe(false)
    expect((await adapter.bulk!.submitBulk({ submitId, items: ours })).kind).toBe('already_submitted')
  })

  it('cancels as the SDK does: CancelIssue before filing; after filing RevokeRegistIssue in part then in full, read by our lookup', async () => {
    const early = key('W')
    value(await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(early), ok, err)))
    value(await answer<Record<string, unknown>>((ok, err) => sdk.cancelIssue(CORP, early, ok, err)))
    expect((await adapter.lookup({ providerKey: early, portonePayment: false, amounts: { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 } })).kind).toBe(
      'cancelled',
    )

    const orig = key('F')
    const issued = value(await answer<Record<string, unknown>>((ok, err) => sdk.registIssue(CORP, cashbill(orig), ok, err)))
    const confirmNum = String(issued.confirmNum)
    const tradeDate = String(issued.tradeDate)
    // Before the filing Popbill refuses a revocation (-14001021).
    const tooEarly = await answer<Record<string, unknown>>((ok, err) =>
      sdk.revokeRegistIssue(CORP, revocationKey(orig, 1), confirmNum, tradeDate, false, '', true, 1, '5000', '500', '0', '5500', ok, err),
    )
    expect(tooEarly).toMatchObject({ ok: false, code: -14001021 })
    sandbox.popbill.fileNow()
    expect(value(await answer<Record<string, unknown>>((ok, err) => sdk.getInfo(CORP, orig, ok, err))).stateCode).toBe(304)

    // Partial (isPartCancel true, cancelType 1 거래취소), then the rest with isPartCancel false — which
    // the SDK leaves out of the body — and cancelType 2 오류발급취소.
    value(
      await answer<Record<string, unknown>>((ok, err) =>
        sdk.revokeRegistIssue(CORP, revocationKey(orig, 1), confirmNum, tradeDate, false, '', true, 1, '5000', '500', '0', '5500', ok, err),
      ),
    )
    const amounts = { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 }
    const half = await adapter.lookup({ providerKey: orig, portonePayment: false, amounts })
    expect(half.kind).toBe('issued')
    if (half.kind === 'issued') expect(half.receipt.cancelledAmount).toBe(5_500)
    value(
      await answer<Record<string, unknown>>((ok, err) =>
        sdk.revokeRegistIssue(CORP, revocationKey(orig, 2), confirmNum, tradeDate, false, '', false, 2, '5000', '500', '0', '5500', ok, err),
      ),
    )
    expect((await adapter.lookup({ providerKey: orig, portonePayment: false, amounts })).kind).toBe('cancelled')
    // Nothing left: a third revocation is refused; a cancelType outside 1–3 is refused.
    const over = await answer<Record<string, unknown>>((ok, err) =>
      sdk.revokeRegistIssue(CORP, revocationKey(orig, 3), confirmNum, tradeDate, false, '', true, 1, '1000', '0', '0', '1000', ok, err),
    )
    expect(over).toMatchObject({ ok: false, code: -14001023 })
    const badType = await answer<Record<string, unknown>>((ok, err) =>
      sdk.revokeRegistIssue(CORP, revocationKey(orig, 4), confirmNum, tradeDate, false, '', true, 4, '1000', '0', '0', '1000', ok, err),
    )
    expect(badType).toMatchObject({ ok: false, code: -14001024 })
  })
})
