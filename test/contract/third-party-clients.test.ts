/**
 * The sandboxes driven by clients this project did not write, so they are checked against the real
 * protocol and not only against our own adapters: the official @portone/server-sdk for PortOne V2,
 * and plain HTTP requests built from the providers' documented examples and field tables for PortOne V1 and
 * PaySsam.
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PortOneClient } from '@portone/server-sdk'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'

let sandbox: Sandbox

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
})
afterAll(async () => {
  await sandbox?.close()
})

describe('PortOne V2 through the official @portone/server-sdk', () => {
  it('issues, reads, refuses a duplicate with CASH_RECEIPT_ALREADY_ISSUED, cancels, and rejects a bad secret', async () => {
    // The SDK takes an origin as baseUrl and sends JSON as text/plain without an Idempotency-Key.
    const receipts = PortOneClient({ secret: 'v2-secret-sdk', baseUrl: sandbox.url, storeId: 'store-sdk' }).payment.cashReceipt
    const paymentId = `sdk-${Date.now()}`
    const body = {
      paymentId,
      channelKey: 'channel-sdk',
      type: 'PERSONAL' as const,
      orderName: '수강료',
      currency: 'KRW' as const,
      amount: { total: 33_000 },
      customer: { identityNumber: '01012345678', identityNumberType: 'PHONE' as const },
    }
    const issued = await receipts.issueCashReceipt(body)
    expect(issued.cashReceipt.issueNumber).toMatch(/^\d{9}$/)

    const read = await receipts.getCashReceiptByPaymentId({ paymentId })
    expect(read.status).toBe('ISSUED')
    if (read.status === 'ISSUED') {
      expect(read.amount).toBe(33_000)
      expect(read.vatAmount).toBe(3_000) // 1/11 of the total, not 10%
    }

    const duplicate = await receipts.issueCashReceipt(body).catch((e: unknown) => e)
    expect((duplicate as { data?: { type?: string } }).data?.type).toBe('CASH_RECEIPT_ALREADY_ISSUED')

    const cancelled = await receipts.cancelCashReceiptByPaymentId({ paymentId })
    expect(cancelled.cancelledAmount).toBe(33_000)
    expect((await receipts.getCashReceiptByPaymentId({ paymentId })).status).toBe('CANCELLED')

    const missing = await receipts.getCashReceiptByPaymentId({ paymentId: 'never-issued' }).catch((e: unknown) => e)
    expect((missing as { data?: { type?: string } }).data?.type).toBe('CASH_RECEIPT_NOT_FOUND')

    const bad = PortOneClient({ secret: 'not-a-secret', baseUrl: sandbox.url }).payment.cashReceipt
    const unauthorized = await bad.getCashReceiptByPaymentId({ paymentId }).catch((e: unknown) => e)
    expect((unauthorized as { data?: { type?: string } }).data?.type).toBe('UNAUTHORIZED')
    expect(sandbox.stats().providers['portone-v2']!.duplicates_rejected).toBe(1)
  })
})

describe('PortOne V2 ISSUE_FAILED as the official SDK reads it', () => {
  it('a PG failure leaves a receipt the SDK parses as ISSUE_FAILED, and a later issue replaces it', async () => {
    const receipts = PortOneClient({ secret: 'v2-secret-sdkfail', baseUrl: sandbox.url, storeId: 'store-sdkfail' }).payment.cashReceipt
    const paymentId = `sdk-fail-${Date.now()}`
    const body = {
      paymentId,
      channelKey: 'channel-sdk',
      type: 'PERSONAL' as const,
      orderName: '수강료',
      currency: 'KRW' as const,
      amount: { total: 22_000 },
      customer: { identityNumber: '01012345678', identityNumberType: 'PHONE' as const },
    }
    sandbox.forceNext('portone-v2', ['5xx'])
    const failed = await receipts.issueCashReceipt(body).catch((e: unknown) => e)
    expect((failed as { data?: { type?: string } }).data?.type).toBe('PG_PROVIDER')
    const read = await receipts.getCashReceiptByPaymentId({ paymentId })
    expect(read.status).toBe('ISSUE_FAILED')
    if (read.status === 'ISSUE_FAILED') expect(read.paymentId).toBe(paymentId)
    // The SDK sends no Idempotency-Key, so its retry is a new request.
    expect((await receipts.issueCashReceipt(body)).cashReceipt.issueNumber).toMatch(/^\d{9}$/)
    expect((await receipts.getCashReceiptByPaymentId({ paymentId })).status).toBe('ISSUED')
  })
})

describe('PortOne V1 with plain HTTP, as documented', () => {
  const base = () => `${sandbox.url}/portone`

  it('gets a token with a form body, issues an external receipt with Bearer and the raw token, and rejects a duplicate with 400', async () => {
    const tokenRes = await fetch(`${base()}/users/getToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ imp_key: 'imp_key_plain', imp_secret: 'imp_secret_plain' }),
    })
    const token = (await tokenRes.json()) as { code: number; response: { access_token: string; expired_at: number; now: number } }
    expect(token.code).toBe(0)
    expect(token.response.expired_at - token.response.now).toBe(1800)
    // A second getToken before expiry returns the same token (JSON body this time).
    const again = (await (
      await fetch(`${base()}/users/getToken`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ imp_key: 'imp_key_plain', imp_secret: 'imp_secret_plain' }),
      })
    ).json()) as typeof token
    expect(again.response.access_token).toBe(token.response.access_token)

    const issue = (auth: string) =>
      fetch(`${base()}/receipts/external/order-plain-1`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify({ channel_key: 'channel-plain', name: '꽃다발', amount: 11_000, identifier: '01012345678', identifier_type: 'phone', type: 'person' }),
      })
    const first = await issue(`Bearer ${token.response.access_token}`)
    expect(first.status).toBe(200)
    const receipt = (await first.json()) as { code: number; response: { apply_num: string; vat: number; merchant_uid: string } }
    expect(receipt.code).toBe(0)
    expect(receipt.response.vat).toBe(1_000)
    expect(receipt.response.merchant_uid).toBe('order-plain-1')
    const dup = await issue(token.response.access_token) // the Java client sends the raw token
    expect(dup.status).toBe(400)
    expect(((await dup.json()) as { code: number }).code).not.toBe(0)

    const unknown = await fetch(`${base()}/receipts/external/never-issued`, { headers: { authorization: token.response.access_token } })
    expect(unknown.status).toBe(404)
    const noToken = await fetch(`${base()}/receipts/external/order-plain-1`)
    expect(noToken.status).toBe(401)
    const badKey = await fetch(`${base()}/users/getToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ imp_key: 'imp_key_plain', imp_secret: 'wrong' }),
    })
    expect(badKey.status).toBe(401)
  })
})

describe('PaySsam V1 with plain HTTP, as documented', () => {
  const hash = (billId: string, price: string) => createHash('sha256').update(`${billId},${price}`).digest('hex')
  const partner = { apikey: 'apikeyplain', merchant: 'shop-plain', member: 'member-plain' }
  const postBody = (path: string, body: Record<string, unknown>) =>
    fetch(`${sandbox.url}/payssam/if/cash-receipt/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }))
  /** Issue nests its fields in `bill`; cancel and read take them at the top level (the V1 schemas). */
  const post = (path: string, fields: Record<string, string>) => postBody(path, path === 'issue' ? { ...partner, bill: fields } : { ...partner, ...fields })

  it('issues with the documented hash, refuses a reused bill_id with 9800, reads F then C rows, and rejects a wrong hash', async () => {
    const bill = { bill_id: 'PLAIN0000000000001', price: '11000', supply_price: '10000', tax: '1000', issuance_number: '01012345678', trader: '0' }
    const issued = await post('issue', { ...bill, hash: hash(bill.bill_id, bill.price) })
    expect(issued).toMatchObject({ status: 200, body: { code: '0000' } })
    expect(issued.body.appr_cash_num).toMatch(/^\d{9}$/)
    expect((await post('issue', { ...bill, hash: hash(bill.bill_id, bill.price) })).body.code).toBe('9800')

    const read = await post('read', { bill_id: bill.bill_id, price: bill.price, hash: hash(bill.bill_id, bill.price) })
    expect((read.body.info as { appr_state: string }[]).map((i) => i.appr_state)).toEqual(['F'])
    const cancel = await post('cancel', { bill_id: bill.bill_id, price: bill.price, trader: '0', hash: hash(bill.bill_id, bill.price) })
    expect(cancel.body.code).toBe('0000')
    const after = await post('read', { bill_id: bill.bill_id, price: bill.price, hash: hash(bill.bill_id, bill.price) })
    expect((after.body.info as { appr_state: string }[]).map((i) => i.appr_state)).toEqual(['F', 'C'])

    const wrongHash = await post('issue', { ...bill, bill_id: 'PLAIN0000000000002', hash: hash('PLAIN0000000000002', '11,000') })
    expect(wrongHash.body.code).not.toBe('0000')
    const missing = await post('read', { bill_id: 'PLAIN0000000000099', price: '1', hash: hash('PLAIN0000000000099', '1') })
    expect(missing.body.code).toBe('9980')
  })

  it('refuses cancel and read fields nested in `bill` with HTTP 400, as their schemas have no bill object', async () => {
    const bill = { bill_id: 'PLAIN0000000000003', price: '5500', supply_price: '5000', tax: '500', issuance_number: '01012345678', trader: '0' }
    expect((await post('issue', { ...bill, hash: hash(bill.bill_id, bill.price) })).body.code).toBe('0000')
    const nested = { bill_id: bill.bill_id, price: bill.price, trader: '0', hash: hash(bill.bill_id, bill.price) }
    for (const path of ['cancel', 'read']) {
      const refused = await postBody(path, { ...partner, bill: nested })
      expect(refused.status).toBe(400)
      expect(refused.body.code).toBe('9999')
      expect(String(refused.body.message)).toContain('bill_id')
    }
    // Nothing was cancelled by the refused call: the top-level read still shows the issue row only.
    const read = await post('read', { bill_id: bill.bill_id, price: bill.price, hash: hash(bill.bill_id, bill.price) })
    expect((read.body.info as { appr_state: string }[]).map((i) => i.appr_state)).toEqual(['F'])
  })
})
