/**
 * PortOne V2 (api.portone.io) adapter. Key: paymentId; every POST carries an Idempotency-Key
 * (RFC 8941 quoted string) so a timed-out issue can be repeated safely.
 *
 * Why not the official @portone/server-sdk (0.19.0): it calls the global fetch with no timeout or
 * abort signal, does not send Idempotency-Key, and gives no access to the HTTP status of a failure
 * (only typed errors), so unknown outcomes could not be told from rejections. The contract tests
 * drive our sandbox with that SDK instead, to check the sandbox against the real protocol.
 */
import type { PortoneV2Credentials } from './portone-v2-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, transportMeta, transportOutcome, withRetry } from '../http.ts'
import { send } from '../common.ts'
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

  return {
    name: 'portone-v2',
    credentialId: `portone-v2-${creds.storeId ?? creds.channelKey}`,
    capabilities: { partialCancel: false, naverCashAmount: false },
    issue(req: IssueRequest, ctx?: CallContext) {
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
      return op('issue', 'POST', '/cash-receipts', payload, ctx, { 'idempotency-key': `"${req.idempotencyKey}"` }, req.amounts.total)
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
