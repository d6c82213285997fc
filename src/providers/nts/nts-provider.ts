/**
 * NTS-style direct API adapter (the shape described in docs/providers.md §4, with the
 * sandbox's extension documented in sandbox/README.md): a bearer token from POST /oauth/token, POST /api/v1/cashReceipt/issue with
 * a clientReference (our deterministic key), GET /api/v1/cashReceipt?clientReference= to look it up,
 * and POST /api/v1/cashReceipt/cancel against the original approval number and trade date.
 * NTS accepts a second issue for the same reference, so an issue is never repeated after sending.
 */
import type { NtsCredentials } from './nts-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, type RequestIo, transportMeta, transportOutcome, withRetry, type HttpResult } from '../http.ts'
import { body, send, str, TokenCache, tokenFailure, withTokenRefresh } from '../common.ts'
import { kstWallClock, type ProviderOutcome, type ProviderReceipt } from '../../domain/index.ts'
import type { CallContext, CancelRequest, CashReceiptProvider, IssueRequest, LookupRequest, ProviderDeps } from '../types.ts'
import { classifyNts, ntsReceiptList } from './nts-errors.ts'

const ID_TYPE = { phone: 'PHONE', business: 'BUSINESS', card: 'CARD', rrn: 'RRN', self: 'PHONE' } as const

export function createNtsProvider(deps: ProviderDeps<NtsCredentials>): CashReceiptProvider {
  const now = deps.now ?? Date.now
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const creds = deps.credentials
  const budget = deps.retry ?? DEFAULT_RETRY
  const tokens = new TokenCache(async () => {
    const r = await send(http, deps.logger, {
      method: 'POST',
      url: `${base}/oauth/token`,
      body: { grant_type: 'client_credentials', client_id: creds.clientId, client_secret: creds.clientSecret },
    })
    const b = r.ok ? body(r) : null
    if (r.ok && r.status === 200 && b && str(b.access_token)) return { token: str(b.access_token)!, ttlMs: Number(b.expires_in ?? 600) * 1000 }
    return tokenFailure(r, b ? str(b.resultCode) : null, b ? str(b.resultMessage) : null)
  }, now)

  async function call(method: 'GET' | 'POST', path: string, payload: unknown, io: RequestIo): Promise<HttpResult | ProviderOutcome> {
    return withTokenRefresh(tokens, (token) => send(http, deps.logger, { method, url: `${base}${path}`, headers: { authorization: `Bearer ${token}` }, body: payload, ...io }))
  }

  function op(operation: 'issue' | 'lookup' | 'cancel', method: 'GET' | 'POST', path: string, payload: unknown, ctx?: CallContext) {
    return withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await call(method, path, payload, requestIo(operation, ctx))
        if ('kind' in r) return r
        if (r.ok) return classifyNts(operation, r)
        return operation === 'lookup' ? { kind: 'retryable', meta: transportMeta(r) } : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  return {
    name: 'nts',
    credentialId: `nts-${creds.clientId}`,
    capabilities: { partialCancel: true, naverCashAmount: false },
    issue(req: IssueRequest, ctx?: CallContext) {
      const kst = kstWallClock(Date.parse(req.paidAt))
      return op(
        'issue',
        'POST',
        '/api/v1/cashReceipt/issue',
        {
          businessNumber: req.merchantBusinessNumber,
          transactionDate: kst.slice(0, 10).replace(/-/g, ''),
          transactionTime: kst.slice(11, 19).replace(/:/g, ''),
          transactionAmount: req.amounts.total,
          supplyAmount: req.amounts.supply,
          vatAmount: req.amounts.vat,
          serviceFee: req.amounts.serviceFee,
          consumerIdentifier: req.identifier,
          identifierType: ID_TYPE[req.identifierType],
          receiptPurpose: req.purpose === 'expense' ? '지출증빙' : '소득공제',
          clientReference: req.providerKey,
        },
        ctx,
      )
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return op('lookup', 'GET', `/api/v1/cashReceipt?clientReference=${encodeURIComponent(req.providerKey)}`, undefined, ctx)
    },
    /** The lookup answer lists every receipt issued under the reference (NTS does not deduplicate). */
    async lookupAll(req: LookupRequest, ctx?: CallContext): Promise<readonly ProviderReceipt[] | ProviderOutcome> {
      let list: ProviderReceipt[] | null = null
      const o = await withRetry(
        async (): Promise<ProviderOutcome> => {
          list = null
          const r = await call('GET', `/api/v1/cashReceipt?clientReference=${encodeURIComponent(req.providerKey)}`, undefined, requestIo('lookup', ctx))
          if ('kind' in r) return r
          if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
          const outcome = classifyNts('lookup', r)
          if (outcome.kind === 'issued' || outcome.kind === 'cancelled' || outcome.kind === 'not_found') list = ntsReceiptList(r)
          return outcome
        },
        { budget, signal: ctx?.signal, onCall: (x) => ctx?.onCall?.('lookup', x) },
      )
      return list ?? o
    },
    cancel(req: CancelRequest, ctx?: CallContext) {
      if (!req.original.approvalNumber) {
        return Promise.resolve<ProviderOutcome>({
          kind: 'permanent',
          meta: { httpStatus: null, providerCode: 'NO_APPROVAL_NUMBER', message: 'the original approval number is unknown', latencyMs: 0 },
        })
      }
      return op(
        'cancel',
        'POST',
        '/api/v1/cashReceipt/cancel',
        {
          clientReference: req.providerKey,
          originalApprovalNumber: req.original.approvalNumber,
          originalTransactionDate: req.original.tradeDate.replace(/-/g, ''),
          cancelReason: req.reason,
          cancelAmount: req.amounts.total,
        },
        ctx,
      )
    },
  }
}
