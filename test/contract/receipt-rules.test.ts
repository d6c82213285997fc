/**
 * Rules every provider applies to the receipt itself, through each adapter and its sandbox over real
 * HTTP: the NTS self-issue number 010-000-1234 only for 소득공제, and PaySsam's bill_id rule, which
 * differs between its development and production environments (docs/providers.md).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { popbillSandboxSecret, startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider, type CredentialsByProvider } from '../../src/providers/registry.ts'
import type { IssueRequest } from '../../src/providers/types.ts'
import type { ProviderName } from '../../src/domain/index.ts'
import { SELF_ISSUE_NUMBER } from '../../src/domain/identifier.ts'
import { checkPurposeIdentifier } from '../../src/domain/purpose.ts'

let sandbox: Sandbox
beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
})
afterAll(async () => {
  await sandbox?.close()
})
beforeEach(() => sandbox.reset())

function adapter<N extends ProviderName>(name: N, credentials: CredentialsByProvider[N]) {
  return createProvider(name, {
    baseUrl: sandbox.baseUrls[name],
    credentials,
    timeouts: { connectMs: 300, readMs: 2_000 },
    retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
  })
}
const request = (over: Partial<IssueRequest> = {}): IssueRequest => {
  const key = `CR${randomBytes(9).toString('hex').toUpperCase()}`
  return {
    providerKey: key,
    idempotencyKey: `cr-issue-${key}-rules`,
    portonePayment: false,
    orderName: '진료비',
    identifier: SELF_ISSUE_NUMBER,
    identifierType: 'self',
    purpose: 'deduction',
    amounts: { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 },
    tradeDate: '2026-11-21',
    paidAt: '2026-11-21T05:00:00.000Z',
    merchantBusinessNumber: '2208162517',
    ...over,
  }
}
const live = (p: ProviderName) => sandbox.receipts(p).filter((r) => r.status === 'issued').length

const ADAPTERS = {
  portone: () => adapter('portone', { impKey: 'imp_key_rules', impSecret: 'imp_secret_rules', channelKey: 'channel-rules' }),
  'portone-v2': () => adapter('portone-v2', { apiSecret: 'v2-secret-rules', channelKey: 'channel-v2-rules', storeId: 'store-rules' }),
  payssam: () => adapter('payssam', { apikey: 'apikeyrules', member: 'member-rules', merchant: 'shop-rules' }),
  nts: () => adapter('nts', { clientId: 'nts-rules', clientSecret: 'nts-secret-rules' }),
  // Popbill documents 010-000-1234 as 소득공제용 only and refuses it on a 지출증빙용 receipt.
  popbill: () => adapter('popbill', { linkId: 'LINK-rules', secretKey: popbillSandboxSecret('LINK-rules'), corpNum: '2208162517', bulk: false }),
} as const

describe('the self-issue number 010-000-1234 is for 소득공제 only', () => {
  it('is refused by the domain for 지출증빙', () => {
    expect(checkPurposeIdentifier('expense', 'self')?.rule).toBe('self-issue')
    expect(checkPurposeIdentifier('deduction', 'self')).toBeNull()
  })

  for (const name of Object.keys(ADAPTERS) as (keyof typeof ADAPTERS)[]) {
    it(`${name}: the sandbox refuses it for 지출증빙 (permanent, nothing held) and issues it for 소득공제`, async () => {
      const a = ADAPTERS[name]()
      const refused = await a.issue(request({ purpose: 'expense' }))
      expect(refused.kind).toBe('permanent')
      expect(live(name)).toBe(0)
      expect((await a.issue(request())).kind).toBe('issued')
      expect(live(name)).toBe(1)
    })
  }
})

describe('Toss Payments: the NTS refuses 010-000-1234 on a 지출증빙 receipt once the deferred result is in', () => {
  it('the receipt accepted IN_PROGRESS ends FAILED with NTS_ERROR [TS8]; the 소득공제 one COMPLETED', async () => {
    const post = (orderId: string, type: string) =>
      fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('test_sk_rules:').toString('base64')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 11_000, orderId, orderName: '진료비', type, customerIdentityNumber: SELF_ISSUE_NUMBER }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { issueStatus: string; requestedAt: string } }))
    const expense = await post('order-self-exp', '지출증빙')
    const deduction = await post('order-self-ded', '소득공제')
    expect([expense.status, expense.body.issueStatus]).toEqual([200, 'IN_PROGRESS'])
    sandbox.toss.advance(3 * 86_400_000)
    const list = await fetch(`${sandbox.baseUrls.toss}/v1/cash-receipts?requestDate=${expense.body.requestedAt.slice(0, 10)}`, {
      headers: { authorization: `Basic ${Buffer.from('test_sk_rules:').toString('base64')}` },
    }).then(async (r) => (await r.json()) as { data: { orderId: string; issueStatus: string; failure?: { message?: string } }[] })
    const byOrder = Object.fromEntries(list.data.map((d) => [d.orderId, d]))
    expect(byOrder['order-self-exp']!.issueStatus).toBe('FAILED')
    expect(byOrder['order-self-exp']!.failure?.message).toContain('TS8')
    expect(byOrder['order-self-ded']!.issueStatus).toBe('COMPLETED')
    expect(deduction.status).toBe(200)
  })
})

describe('PaySsam bill_id in its development and production environments', () => {
  const dev = { apikey: 'apikeydevrules', member: 'member-rules', merchant: 'shop-rules' }

  it('development: bill_id is the 사업자번호 + 10 characters, and issue, read and cancel find the bill', async () => {
    const a = adapter('payssam', { ...dev, environment: 'development', businessNumber: '2208162517' })
    const req = request({ identifier: '01012345678', identifierType: 'phone' })
    expect((await a.issue(req)).kind).toBe('issued')
    const held = sandbox.receipts('payssam')
    expect(held).toHaveLength(1)
    expect(held[0]!.key).toMatch(/^2208162517[0-9A-Z]{10}$/)
    const lookup = { providerKey: req.providerKey, portonePayment: false, amounts: req.amounts }
    expect((await a.lookup(lookup)).kind).toBe('issued')
    const cancelled = await a.cancel({
      ...lookup,
      idempotencyKey: 'c',
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
      partial: false,
      reason: 1,
      purpose: 'deduction',
    })
    expect(cancelled.kind).toBe('cancelled')
    expect((await a.lookup(lookup)).kind).toBe('cancelled')
  })

  it('development: the production-style key (CR + 18 hex) is refused with HTTP 400', async () => {
    const a = adapter('payssam', dev)
    const refused = await a.issue(request({ identifier: '01012345678', identifierType: 'phone' }))
    expect(refused.kind).toBe('permanent')
    expect(refused.meta.httpStatus).toBe(400)
    expect(live('payssam')).toBe(0)
  })

  it('production: any 20 alphanumerics, the ledger key as it is', async () => {
    const a = ADAPTERS.payssam()
    const req = request({ identifier: '01012345678', identifierType: 'phone' })
    expect((await a.issue(req)).kind).toBe('issued')
    expect(sandbox.receipts('payssam')[0]!.key).toBe(req.providerKey)
  })
})
