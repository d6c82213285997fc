/**
 * PortOne V1 (api.iamport.kr) adapter. Keys: imp_uid for payments PortOne processed
 * (/receipts/{imp_uid}, amount taken from the payment), merchant_uid for cash taken outside PortOne
 * (/receipts/external/{merchant_uid}) and for the cash part of a Naver Pay payment (its imp_uid as
 * merchant_uid, the amount read from /payments/{imp_uid}/naver/cash-amount; docs/providers.md §1). The token is reused until a minute before expiry; a 401 in
 * flight refreshes once and retries once. A 400 on issue is read back: a live receipt for the key
 * means already_issued (V1 answers a duplicate with the same 400 as a bad request).
 */
import type { PortoneV1Credentials } from './portone-v1-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, type RequestIo, transportMeta, transportOutcome, withRetry, type HttpResult } from '../http.ts'
import { body, codeText, send, str, TokenCache, tokenFailure, withTokenRefresh } from '../common.ts'
import { vatOf, type ProviderOutcome } from '../../domain/index.ts'
import type { CallContext, CancelRequest, CashReceiptProvider, IssueRequest, LookupRequest, NaverCashAmount, ProviderDeps } from '../types.ts'
import { classifyPortoneV1, naverCashAmountOf, receiptOf } from './portone-v1-errors.ts'
import { pgFields } from './portone-v1-pg.ts'

const ID_TYPE = { phone: 'phone', business: 'business', card: 'taxcard', rrn: 'person', self: 'phone' } as const

export function createPortoneV1Provider(deps: ProviderDeps<PortoneV1Credentials>): CashReceiptProvider {
  const now = deps.now ?? Date.now
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const creds = deps.credentials
  const budget = deps.retry ?? DEFAULT_RETRY

  const tokens = new TokenCache(async () => {
    const r = await send(http, deps.logger, { method: 'POST', url: `${base}/users/getToken`, body: { imp_key: creds.impKey, imp_secret: creds.impSecret } })
    const b = r.ok ? body(r) : null
    const res = b?.response as { access_token?: string; expired_at?: number; now?: number } | undefined
    if (r.ok && r.status === 200 && b?.code === 0 && res?.access_token && res.expired_at && res.now) {
      // Server clock: the lifetime is expired_at − now, whatever our clock says.
      return { token: res.access_token, ttlMs: (res.expired_at - res.now) * 1000 }
    }
    return tokenFailure(r, b ? codeText(b.code) : null, b ? str(b.message) : null)
  }, now)

  /** One authorised call; a 401 refreshes the token once and repeats the call once. */
  async function call(method: 'GET' | 'POST' | 'DELETE', path: string, payload: unknown, io: RequestIo): Promise<HttpResult | ProviderOutcome> {
    return withTokenRefresh(tokens, (token) => send(http, deps.logger, { method, url: `${base}${path}`, headers: { authorization: `Bearer ${token}` }, body: payload, ...io }))
  }

  const pathOf = (key: string, portonePayment: boolean) => (portonePayment ? `/receipts/${encodeURIComponent(key)}` : `/receipts/external/${encodeURIComponent(key)}`)

  async function op(operation: 'issue' | 'lookup' | 'cancel', method: 'GET' | 'POST' | 'DELETE', path: string, payload: unknown, ctx?: CallContext): Promise<ProviderOutcome> {
    return withRetry(
      async () => {
        const r = await call(method, path, payload, requestIo(operation, ctx))
        if ('kind' in r) return r
        if (r.ok) return classifyPortoneV1(operation, r)
        // A lookup has no side effect: any transport failure is simply worth another try.
        return operation === 'lookup' ? { kind: 'retryable', meta: transportMeta(r) } : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  const provider: CashReceiptProvider = {
    name: 'portone',
    credentialId: `portone-${creds.impKey}`,
    capabilities: { partialCancel: false, naverCashAmount: true },
    async issue(req: IssueRequest, ctx?: CallContext) {
      const perPg = pgFields(creds, req)
      if ('refused' in perPg) return perPg.refused
      const common = {
        // Digits only: KSNET silently issues nothing for an identifier with a hyphen.
        identifier: req.identifier.replace(/\D/g, ''),
        identifier_type: ID_TYPE[req.identifierType],
        type: req.purpose === 'expense' ? 'company' : 'person',
        tax_free: req.amounts.taxFree,
        // VAT is 1/11 of (amount − tax_free) unless sent: sent when ours differs (a service fee is
        // outside the VAT base; Naver Pay's cash amount comes with its own VAT split).
        ...(req.amounts.vat !== vatOf(req.amounts.total - req.amounts.taxFree) ? { vat_amount: req.amounts.vat } : {}),
        ...(req.buyer?.name ? { buyer_name: req.buyer.name } : {}),
        ...(req.buyer?.email ? { buyer_email: req.buyer.email } : {}),
        ...(req.buyer?.tel ? { buyer_tel: req.buyer.tel } : {}),
        ...perPg.fields,
      }
      const payload = req.portonePayment ? common : { ...common, channel_key: creds.channelKey, name: req.orderName, amount: req.amounts.total }
      const o = await op('issue', 'POST', pathOf(req.providerKey, req.portonePayment), payload, ctx)
      if (o.kind !== 'permanent' || o.meta.httpStatus !== 400) return o
      // 400 = missing parameter, payment not paid, or already issued: the receipt record decides.
      const found = await provider.lookup({ providerKey: req.providerKey, portonePayment: req.portonePayment, amounts: req.amounts }, ctx)
      return found.kind === 'issued' ? { kind: 'already_issued', meta: o.meta } : o
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return op('lookup', 'GET', pathOf(req.providerKey, req.portonePayment), undefined, ctx)
    },
    cancel(req: CancelRequest, ctx?: CallContext) {
      if (req.partial) {
        return Promise.resolve<ProviderOutcome>({
          kind: 'permanent',
          meta: { httpStatus: null, providerCode: 'PARTIAL_CANCEL_UNSUPPORTED', message: 'PortOne V1 cancels receipts in full only', latencyMs: 0 },
        })
      }
      return op('cancel', 'DELETE', pathOf(req.providerKey, req.portonePayment), undefined, ctx)
    },
    async naverCashAmount(paymentRef: string, ctx?: CallContext): Promise<NaverCashAmount | ProviderOutcome> {
      let amount: NaverCashAmount | null = null
      const o = await withRetry(
        async () => {
          const r = await call('GET', `/payments/${encodeURIComponent(paymentRef)}/naver/cash-amount`, undefined, requestIo('naver_cash_amount', ctx))
          if ('kind' in r) return r
          if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
          const outcome = classifyPortoneV1('naver_cash_amount', r)
          const res = body(r)?.response as Record<string, unknown> | undefined
          if (outcome.kind === 'issued' && res) amount = naverCashAmountOf(res)
          return outcome
        },
        { budget, signal: ctx?.signal, onCall: (x) => ctx?.onCall?.('naver_cash_amount', x) },
      )
      return amount ?? o
    },
  }
  return provider
}

export { receiptOf }
