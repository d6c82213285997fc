/**
 * PortOne V1 behaviours checked against PortOne's V1 schema and official clients (docs/providers.md §1):
 * the token in `X-ImpTokenHeader`, receipts by imp_uid owned by one merchant, and the per-PG fields of
 * the issue calls — each through the adapter and the sandbox over real HTTP.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import type { PortoneV1Credentials } from '../../src/providers/portone-v1/portone-v1-credentials.ts'
import type { IssueRequest } from '../../src/providers/types.ts'

let sandbox: Sandbox
beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
})
afterAll(async () => {
  await sandbox?.close()
})
beforeEach(() => sandbox.reset())

const base = () => sandbox.baseUrls.portone
const creds = (id: string, extra: Partial<PortoneV1Credentials> = {}): PortoneV1Credentials => ({
  impKey: `imp_key_${id}`,
  impSecret: `imp_secret_${id}`,
  channelKey: `channel-${id}`,
  ...extra,
})
const adapterFor = (c: PortoneV1Credentials) =>
  createProvider('portone', {
    baseUrl: base(),
    credentials: c,
    timeouts: { connectMs: 300, readMs: 2_000 },
    retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
  })
const request = (over: Partial<IssueRequest> = {}): IssueRequest => {
  const key = `imp_${randomBytes(6).toString('hex')}`
  return {
    providerKey: key,
    idempotencyKey: `cr-issue-${key}`,
    portonePayment: false,
    orderName: '수강료',
    identifier: '01012345678',
    identifierType: 'phone',
    purpose: 'deduction',
    amounts: { total: 22_000, supply: 20_000, vat: 2_000, taxFree: 0, serviceFee: 0 },
    tradeDate: '2026-11-21',
    paidAt: '2026-11-21T05:00:00.000Z',
    merchantBusinessNumber: '2208162517',
    ...over,
  }
}
const token = async (id: string) => {
  const r = await fetch(`${base()}/users/getToken`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ imp_key: `imp_key_${id}`, imp_secret: `imp_secret_${id}` }),
  })
  return ((await r.json()) as { response: { access_token: string } }).response.access_token
}
const live = () => sandbox.receipts('portone').filter((r) => r.status === 'issued').length

describe('PortOne V1 token header', () => {
  it('accepts the token in X-ImpTokenHeader as well as Authorization, and refuses a wrong one in either', async () => {
    const t = await token('hdr')
    const issue = await fetch(`${base()}/receipts/external/order-hdr-1`, {
      method: 'POST',
      headers: { 'x-imptokenheader': t, 'content-type': 'application/json' },
      body: JSON.stringify({ channel_key: 'channel-hdr', name: '꽃', amount: 11_000, identifier: '01012345678' }),
    })
    expect(issue.status).toBe(200)
    expect(((await issue.json()) as { code: number }).code).toBe(0)
    const viaAuthorization = await fetch(`${base()}/receipts/external/order-hdr-1`, { headers: { authorization: `Bearer ${t}` } })
    expect(viaAuthorization.status).toBe(200)
    const wrong = await fetch(`${base()}/receipts/external/order-hdr-1`, { headers: { 'x-imptokenheader': 'not-a-token' } })
    expect(wrong.status).toBe(401)
  })
})

describe('PortOne V1 receipts by imp_uid belong to one merchant', () => {
  it("another merchant's token reads 404, cancels 400 and cannot issue; the owner's receipt stays live", async () => {
    const owner = adapterFor(creds('owner'))
    const other = adapterFor(creds('other'))
    const req = request({ portonePayment: true })
    sandbox.registerPortonePayments([{ imp_uid: req.providerKey, amount: 22_000, imp_key: 'imp_key_owner' }])
    expect((await owner.issue(req)).kind).toBe('issued')

    const t = await token('other')
    const read = await fetch(`${base()}/receipts/${req.providerKey}`, { headers: { authorization: t } })
    expect(read.status).toBe(404)
    const del = await fetch(`${base()}/receipts/${req.providerKey}`, { method: 'DELETE', headers: { authorization: t } })
    expect(del.status).toBe(400)

    const lookupReq = { providerKey: req.providerKey, portonePayment: true, amounts: req.amounts }
    expect((await other.lookup(lookupReq)).kind).toBe('not_found')
    const cancel = await other.cancel({
      ...lookupReq,
      idempotencyKey: 'c',
      original: { approvalNumber: null, tradeDate: req.tradeDate, amounts: req.amounts },
      partial: false,
      reason: 1,
      purpose: 'deduction',
    })
    expect(cancel.kind).toBe('not_found')
    expect((await other.issue(req)).kind).toBe('permanent')

    expect(live()).toBe(1)
    expect((await owner.lookup(lookupReq)).kind).toBe('issued')
  })

  it("a receipt issued by one merchant for an unowned payment is still that merchant's alone", async () => {
    const req = request({ portonePayment: true })
    sandbox.registerPortonePayments([{ imp_uid: req.providerKey, amount: 22_000 }])
    expect((await adapterFor(creds('first')).issue(req)).kind).toBe('issued')
    const lookupReq = { providerKey: req.providerKey, portonePayment: true, amounts: req.amounts }
    expect((await adapterFor(creds('second')).lookup(lookupReq)).kind).toBe('not_found')
  })
})

describe('PortOne V1 per-PG fields', () => {
  const registerPg = (id: string, pg: NonNullable<PortoneV1Credentials['pg']>) => sandbox.registerPortoneMerchants([{ imp_key: `imp_key_${id}`, pg_provider: pg }])

  it('KSNET: the adapter sends product_type and buyer_name; without the PG configured the sandbox refuses the issue', async () => {
    registerPg('ks', 'ksnet')
    const unconfigured = await adapterFor(creds('ks')).issue(request({ buyer: { name: '김하나' } }))
    expect(unconfigured.kind).toBe('permanent')
    expect(unconfigured.meta.message).toContain('product_type')
    expect(live()).toBe(0)

    const ks = adapterFor(creds('ks', { pg: 'ksnet', productType: 'digital' }))
    expect((await ks.issue(request({ buyer: { name: '김하나' } }))).kind).toBe('issued')
    const noName = await ks.issue(request())
    expect(noName.kind).toBe('permanent')
    expect(noName.meta.providerCode).toBe('PG_FIELD_MISSING')
    expect(live()).toBe(1)
  })

  it('KSNET: an identifier with a hyphen is refused by the sandbox; the adapter sends digits only', async () => {
    registerPg('ks2', 'ksnet')
    const t = await token('ks2')
    const body = { channel_key: 'channel-ks2', name: '꽃', amount: 11_000, product_type: 'real', buyer_name: '김하나' }
    const hyphen = await fetch(`${base()}/receipts/external/order-ks2-1`, {
      method: 'POST',
      headers: { authorization: t, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, identifier: '010-1234-5678' }),
    })
    expect(hyphen.status).toBe(400)
    const ks = adapterFor(creds('ks2', { pg: 'ksnet' }))
    expect((await ks.issue(request({ identifier: '010-1234-5678', buyer: { name: '김하나' } }))).kind).toBe('issued')
  })

  it('smartro_v2 and welcome need buyer_tel: taken from a phone identifier, refused locally otherwise', async () => {
    registerPg('sm', 'smartro_v2')
    const sm = adapterFor(creds('sm', { pg: 'smartro_v2' }))
    expect((await sm.issue(request({ buyer: { name: '이둘' } }))).kind).toBe('issued')
    const card = await sm.issue(request({ identifier: '1234567890123456', identifierType: 'card', buyer: { name: '이둘' } }))
    expect(card.kind).toBe('permanent')
    expect(card.meta.message).toContain('buyer_tel')

    registerPg('wc', 'welcome')
    const wc = adapterFor(creds('wc', { pg: 'welcome' }))
    const req = request({ portonePayment: true })
    sandbox.registerPortonePayments([{ imp_uid: req.providerKey, amount: 22_000 }])
    expect((await wc.issue(req)).kind).toBe('issued') // corp_reg_no from the merchant's business number
    expect((await wc.issue(request())).kind).toBe('permanent') // external: the payment method is not known
  })

  it('welcome external receipts carry pay_method from the payment method (trans/vbank); cash is refused locally', async () => {
    registerPg('wp', 'welcome')
    const bodies: Record<string, unknown>[] = []
    const recording: typeof fetch = (url, init) => {
      if (init?.method === 'POST' && String(url).includes('/receipts/external/')) bodies.push(JSON.parse(String(init.body)) as Record<string, unknown>)
      return fetch(url, init)
    }
    const wp = createProvider('portone', {
      baseUrl: base(),
      credentials: creds('wp', { pg: 'welcome' }),
      fetch: recording,
      timeouts: { connectMs: 300, readMs: 3_000 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    })
    expect((await wp.issue(request({ paymentMethod: 'bank_transfer' }))).kind).toBe('issued')
    expect((await wp.issue(request({ paymentMethod: 'virtual_account' }))).kind).toBe('issued')
    expect(bodies.map((b) => b.pay_method)).toEqual(['trans', 'vbank'])
    // The V1 schema's pay_method knows no cash: nothing is sent, and the reason names the method.
    const cash = await wp.issue(request({ paymentMethod: 'cash' }))
    expect(cash.kind).toBe('permanent')
    expect(cash.meta.providerCode).toBe('PG_FIELD_MISSING')
    expect(cash.meta.message).toContain('cash')
    expect(bodies).toHaveLength(2)
    expect(live()).toBe(2)
    // The sandbox refuses what the schema refuses: no pay_method, or one outside trans/vbank.
    const t = await token('wp')
    const body = { channel_key: 'channel-wp', name: '꽃', amount: 11_000, identifier: '01012345678', type: 'person', buyer_tel: '01012345678', corp_reg_no: '2208162517' }
    const post = (extra: object) =>
      fetch(`${base()}/receipts/external/order-wp-${randomBytes(4).toString('hex')}`, {
        method: 'POST',
        headers: { authorization: t, 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, ...extra }),
      })
    expect((await post({})).status).toBe(400)
    expect((await post({ pay_method: 'cash' })).status).toBe(400)
    expect((await post({ pay_method: 'trans' })).status).toBe(200)
  })

  it('KICC and Settle Bank require identifier_type; the adapter always sends it', async () => {
    registerPg('kc', 'kicc')
    const t = await token('kc')
    const bare = await fetch(`${base()}/receipts/external/order-kc-1`, {
      method: 'POST',
      headers: { authorization: t, 'content-type': 'application/json' },
      body: JSON.stringify({ channel_key: 'channel-kc', name: '꽃', amount: 11_000, identifier: '01012345678' }),
    })
    expect(bare.status).toBe(400)
    expect((await adapterFor(creds('kc', { pg: 'kicc' })).issue(request())).kind).toBe('issued')
    registerPg('st', 'settle')
    expect((await adapterFor(creds('st', { pg: 'settle' })).issue(request())).kind).toBe('issued')
  })

  it('(신) 나이스페이 issues no receipt for a card number; KICC cannot cancel by imp_uid (501)', async () => {
    registerPg('nv', 'nice_v2')
    const nv = adapterFor(creds('nv', { pg: 'nice_v2' }))
    expect((await nv.issue(request({ identifier: '1234567890123456', identifierType: 'card' }))).kind).toBe('permanent')
    expect((await nv.issue(request())).kind).toBe('issued')

    registerPg('kc2', 'kicc')
    const t = await token('kc2')
    const del = await fetch(`${base()}/receipts/imp_never`, { method: 'DELETE', headers: { authorization: t } })
    expect(del.status).toBe(501)
  })
})
