/**
 * The PortOne V1 simulator driven by PortOne's own Node client, `iamport` on npm (0.3.4, repository
 * iamport/iamport-rest-client-nodejs), unchanged: its token handling (getToken, the raw token in
 * Authorization, one refresh after a 401), request building and error handling.
 *
 * Two limits of that client, stated rather than worked around inside it:
 * - No constructor option for the host: it takes `Iamport.DEFAULT_HOST`, a public static read when an
 *   instance is built, which this test points at the sandbox.
 * - The published 0.3.4 has no receipts resource (the repository's master has lib/resources/Receipts.js,
 *   never published). The test declares that resource with the client's own published mechanism
 *   (`Resource.extend` + `iamportMethod`), with the same paths and required parameters as that file;
 *   every byte on the wire is still the client's.
 */
import { createRequire } from 'node:module'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'

interface IamportInstance {
  readonly _host: string
}
interface IamportCtor {
  new (opts: { impKey: string; impSecret: string }): IamportInstance
  DEFAULT_HOST: string
}
type Call = (param: Record<string, unknown>) => Promise<Record<string, unknown>>
interface ResourceCtor {
  extend(spec: Record<string, unknown>): new (iamport: IamportInstance) => Record<string, Call>
  iamportMethod(spec: { method: string; command: string | null; urlParam: string; require?: string[] }): Call
}

const require = createRequire(import.meta.url)
const Iamport = require('iamport') as IamportCtor
const Resource = require('iamport/lib/resource') as ResourceCtor

/** lib/resources/Receipts.js of iamport/iamport-rest-client-nodejs (master), built the client's way. */
const Receipts = Resource.extend({
  path: 'receipts',
  get: Resource.iamportMethod({ method: 'GET', command: null, urlParam: 'imp_uid' }),
  create: Resource.iamportMethod({ method: 'POST', command: null, urlParam: 'imp_uid', require: ['identifier'] }),
  delete: Resource.iamportMethod({ method: 'DELETE', command: null, urlParam: 'imp_uid' }),
  getExternal: Resource.iamportMethod({ method: 'GET', command: 'external', urlParam: 'merchant_uid' }),
  createExternal: Resource.iamportMethod({ method: 'POST', command: 'external', urlParam: 'merchant_uid', require: ['channel_key', 'name', 'amount', 'identifier'] }),
  deleteExternal: Resource.iamportMethod({ method: 'DELETE', command: 'external', urlParam: 'merchant_uid' }),
})

let sandbox: Sandbox
let clock = Date.now()
const defaultHost = Iamport.DEFAULT_HOST

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0, clock: () => clock })
  Iamport.DEFAULT_HOST = sandbox.baseUrls.portone
})
afterAll(async () => {
  Iamport.DEFAULT_HOST = defaultHost
  await sandbox?.close()
})

const clientFor = (id: string) => new Receipts(new Iamport({ impKey: `imp_key_${id}`, impSecret: `imp_secret_${id}` }))

describe('PortOne V1 through the official Node client (npm iamport 0.3.4)', () => {
  it('issues by imp_uid and externally, reads, refuses a duplicate with 400, cancels, and hides receipts from another merchant', async () => {
    const receipts = clientFor('node')
    sandbox.registerPortonePayments([{ imp_uid: 'imp_node_1', amount: 33_000, imp_key: 'imp_key_node' }])

    const issued = await receipts.create!({ imp_uid: 'imp_node_1', identifier: '01012345678', identifier_type: 'phone', type: 'person' })
    expect(issued.imp_uid).toBe('imp_node_1')
    expect(issued.amount).toBe(33_000) // the payment's amount
    expect(issued.vat).toBe(3_000) // 1/11
    expect(issued.apply_num).toMatch(/^\d{9}$/)
    expect((await receipts.get!({ imp_uid: 'imp_node_1' })).cancelled_at).toBe(0)

    const duplicate = await receipts.create!({ imp_uid: 'imp_node_1', identifier: '01012345678' }).catch((e: unknown) => e)
    expect((duplicate as { code?: string }).code).toBe('HTTP_400')

    const external = await receipts.createExternal!({
      merchant_uid: 'order-node-1',
      channel_key: 'channel-node',
      name: '꽃다발',
      amount: 11_000,
      identifier: '01012345678',
      type: 'person',
    })
    expect(external.merchant_uid).toBe('order-node-1')
    expect(external.vat).toBe(1_000)
    const missing = await receipts.getExternal!({ merchant_uid: 'order-never' }).catch((e: unknown) => e)
    expect((missing as { code?: string }).code).toBe('HTTP_404')

    const stranger = clientFor('stranger')
    const foreign = await stranger.get!({ imp_uid: 'imp_node_1' }).catch((e: unknown) => e)
    expect((foreign as { code?: string }).code).toBe('HTTP_404')
    const foreignCancel = await stranger.delete!({ imp_uid: 'imp_node_1' }).catch((e: unknown) => e)
    expect((foreignCancel as { code?: string }).code).toBe('HTTP_400')

    const cancelled = await receipts.delete!({ imp_uid: 'imp_node_1' })
    expect(cancelled.cancelled_at).toBeGreaterThan(0)
    expect((await receipts.deleteExternal!({ merchant_uid: 'order-node-1' })).cancelled_at).toBeGreaterThan(0)
    expect(sandbox.receipts('portone').filter((r) => r.status === 'issued')).toHaveLength(0)
  })

  it('gets a new token after the sandbox expired the cached one (its 401 → refresh → repeat)', async () => {
    const receipts = clientFor('expiry')
    sandbox.registerPortonePayments([
      { imp_uid: 'imp_exp_1', amount: 5_500 },
      { imp_uid: 'imp_exp_2', amount: 5_500 },
    ])
    expect((await receipts.create!({ imp_uid: 'imp_exp_1', identifier: '01012345678' })).amount).toBe(5_500)
    clock += 31 * 60_000 // past the token's 30 minutes at the sandbox; the client's own clock has not moved
    expect((await receipts.create!({ imp_uid: 'imp_exp_2', identifier: '01012345678' })).amount).toBe(5_500)
  })

  it("rejects a bad secret with HTTP_401 after the client's one token refresh", async () => {
    const bad = new Receipts(new Iamport({ impKey: 'imp_key_bad', impSecret: 'wrong' }))
    const refused = await bad.get!({ imp_uid: 'imp_node_1' }).catch((e: unknown) => e)
    expect((refused as { code?: string }).code).toBe('HTTP_401')
  })
})
