/**
 * PortOne V2 (api.portone.io) adapter. Key: paymentId; every POST carries an Idempotency-Key
 * (RFC 8941 quoted string) so a timed-out issue can be repeated safely.
 *
 * PortOne keeps a completed request's answer for its key for 3 hours, errors included: once the PG
 * failed an issue (502 PG_PROVIDER), every retry under that key gets the same 502 back and nothing is
 * tried again. So after a PG_PROVIDER answer the adapter reads the receipt: when PortOne recorded the
 * failure (status ISSUE_FAILED) it repeats the issue once under a key derived from that failure's
 * `statusUpdatedAt`, the same in every worker, so the repeat is idempotent in its own right. The
 * paymentId still forbids a second receipt (409 CASH_RECEIPT_ALREADY_ISSUED).
 *
 * Why not the official @portone/server-sdk (0.19.0): it calls the global fetch with no timeout or
 * abort signal, does not send Idempotency-Key, and gives no access to the HTTP status of a failure
 * (only typed errors), so unknown outcomes could not be told from rejections. The contract tests
 * drive our sandbox with that SDK instead, to check the sandbox against the real protocol.
 */
import { createHash } from 'node:crypto'
import type { PortoneV2Credentials } from './portone-v2-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, transportMeta, transportOutcome, withRetry } from '../http.ts'
import { body, send, str } from '../common.ts'
import type { ProviderOutcome } from '../../domain/index.ts'
import type { CallContext, CancelRequest, CashReceiptProvider, IssueRequest, LookupRequest, ProviderDeps } from '../types.ts'
import { classifyPortoneV2 } from './portone-v2-errors.ts'


const ID_TYPE = { phone: 'PHONE', business: 'BUSINESS', card: 'CARD', rrn: undefined, self: 'PHONE' } as const

export function createPortoneV2Provider(deps: ProviderDeps<PortoneV2Credentials>): CashReceiptProvider {
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const creds = deps.credentials
  const budget = deps.retry ?? DEFAULT_RETRY
  const auth = { authorization: `PortOne ${creds.apiSecret}` }
  const store = creds.storeId ? `?storeId=${encodeURIComponent(creds.storeId)}` : ''

  function op(operation: 'issue' | 'lookup' | 'cancel', method: 'GET' | 'POST', path: string, payload: unknown, ctx: CallContext | undefined, headers: Record<string, string> = {}, amount?: number) {
    return withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, { method, url: `${base}${path}`, headers: { ...auth, ...headers }, body: payload, ...requestIo(operation, ctx) })
        if (r.ok) return classifyPortoneV2(operation, r, amount)
        return operation === 'lookup' ? { kind: 'retryable', meta: transportMeta(r) } : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  /** `statusUpdatedAt` of the paymentId's receipt when PortOne holds it as ISSUE_FAILED, else null. */
  async function issueFailedAt(paymentId: string, ctx: CallContext | undefined): Promise<string | null> {
    let failedAt: string | null = null
    // A lookup like any other (recorded through onCall); only the failure's time is kept from it.
    await withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, { method: 'GET', url: `${base}/payments/${encodeURIComponent(paymentId)}/cash-receipt${store}`, headers: auth, ...requestIo('lookup', ctx) })
        if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
        const b = r.status === 200 ? body(r) : null
        if (b?.status === 'ISSUE_FAILED') failedAt = str(b.statusUpdatedAt)
        return classifyPortoneV2('lookup', r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('lookup', o) },
    )
    return failedAt
  }

  return {
    name: 'portone-v2',
    credentialId: `portone-v2-${creds.storeId ?? creds.channelKey}`,
    capabilities: { partialCancel: false, naverCashAmount: false },
    async issue(req: IssueRequest, ctx?: CallContext) {
      const idType = ID_TYPE[req.identifierType]
      const payload = {
        ...(creds.storeId ? { storeId: creds.storeId } : {}),
        paymentId: req.providerKey,
        channelKey: creds.channelKey,
        type: req.purpose === 'expense' ? 'CORPORATE' : 'PERSONAL',
        orderName: req.orderName,
        currency: 'KRW',
        amount: { total: req.amounts.total, taxFree: req.amounts.taxFree, vat: req.amounts.vat },
        customer: {
          identityNumber: req.identifier,
          ...(idType ? { identityNumberType: idType } : {}),
          ...(req.buyer?.name ? { name: req.buyer.name } : {}),
          ...(req.buyer?.email ? { email: req.buyer.email } : {}),
          ...(req.buyer?.tel ? { phoneNumber: req.buyer.tel } : {}),
        },
        paidAt: req.paidAt,
      }
      const post = (key: string) => op('issue', 'POST', '/cash-receipts', payload, ctx, { 'idempotency-key': `"${key}"` }, req.amounts.total)
      const first = await post(req.idempotencyKey)
      if (first.kind !== 'unknown_outcome' || first.meta.providerCode !== 'PG_PROVIDER') return first
      const failedAt = await issueFailedAt(req.providerKey, ctx)
      if (!failedAt) return first
      const suffix = createHash('sha256').update(failedAt).digest('hex').slice(0, 12)
      return post(`${req.idempotencyKey.replace(/-f[0-9a-f]{12}$/, '')}-f${suffix}`)
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return op('lookup', 'GET', `/payments/${encodeURIComponent(req.providerKey)}/cash-receipt${store}`, undefined, ctx)
    },
    cancel(req: CancelRequest, ctx?: CallContext) {
      if (req.partial) {
        return Promise.resolve<ProviderOutcome>({ kind: 'permanent', meta: { httpStatus: null, providerCode: 'PARTIAL_CANCEL_UNSUPPORTED', message: 'PortOne V2 cancels receipts in full only', latencyMs: 0 } })
      }
      return op('cancel', 'POST', `/payments/${encodeURIComponent(req.providerKey)}/cash-receipt/cancel${store}`, {}, ctx, { 'idempotency-key': `"${req.idempotencyKey}"` })
    },
  }
}
