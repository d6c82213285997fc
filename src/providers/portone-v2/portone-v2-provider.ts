/**
 * PortOne V2 (api.portone.io) adapter. Key: paymentId; every POST carries an Idempotency-Key
 * (RFC 8941 quoted string) so a timed-out issue can be repeated safely.
 *
 * The key sent is the receipt's key plus a digest of the body (`-b<12 hex>`, HMAC-SHA-256 keyed with
 * the API secret, so the header reveals nothing of the body): a request whose content changed between
 * attempts (a refund imported meanwhile lowers the amount) is a new request, not a reuse of the key for
 * another body, which PortOne must refuse. The paymentId still forbids a second receipt.
 *
 * PortOne keeps a completed request's answer for its key for 3 hours, errors included: once the PG
 * failed an issue or a cancel (502 PG_PROVIDER), every retry under that key gets the same 502 back and
 * nothing is tried again. So after a PG_PROVIDER answer the adapter reads the receipt:
 * - issue: when PortOne recorded the failure (status ISSUE_FAILED) it repeats the issue once under a
 *   key derived from that failure's `statusUpdatedAt`, the same in every worker. The paymentId still
 *   forbids a second receipt (409 CASH_RECEIPT_ALREADY_ISSUED).
 * - cancel: CANCELLED → the cancel took effect; still ISSUED → it repeats the cancel once under
 *   `-a<n>`, n the cancel row's attempt number in the ledger (one claim, one worker, per number; the
 *   body is always the same). PortOne refuses to cancel a receipt that is not ISSUED (404
 *   CASH_RECEIPT_NOT_ISSUED), so no key can cancel twice; a refusal that reads back CANCELLED means an
 *   earlier request of ours took effect, and is answered as the cancellation.
 *
 * Why not the official @portone/server-sdk (0.19.0): it calls the global fetch with no timeout or
 * abort signal, does not send Idempotency-Key, and gives no access to the HTTP status of a failure
 * (only typed errors), so unknown outcomes could not be told from rejections. The contract tests
 * drive our sandbox with that SDK instead, to check the sandbox against the real protocol.
 */
import { createHash, createHmac } from 'node:crypto'
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

  function op(
    operation: 'issue' | 'lookup' | 'cancel',
    method: 'GET' | 'POST',
    path: string,
    payload: unknown,
    ctx: CallContext | undefined,
    headers: Record<string, string> = {},
    amount?: number,
  ) {
    return withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, { method, url: `${base}${path}`, headers: { ...auth, ...headers }, body: payload, ...requestIo(operation, ctx) })
        if (r.ok) return classifyPortoneV2(operation, r, amount)
        return operation === 'lookup' ? { kind: 'retryable', meta: transportMeta(r) } : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  /** The key a request goes under: the receipt's key plus a keyed digest of exactly the body sent. */
  const keyFor = (key: string, payload: unknown) => `${key}-b${createHmac('sha256', creds.apiSecret).update(JSON.stringify(payload)).digest('hex').slice(0, 12)}`

  /** The paymentId's receipt, read like any lookup (recorded through onCall), with the body PortOne answered. */
  async function read(paymentId: string, ctx: CallContext | undefined): Promise<{ outcome: ProviderOutcome; body: Record<string, unknown> | null }> {
    let held: Record<string, unknown> | null = null
    const outcome = await withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, {
          method: 'GET',
          url: `${base}/payments/${encodeURIComponent(paymentId)}/cash-receipt${store}`,
          headers: auth,
          ...requestIo('lookup', ctx),
        })
        if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
        held = r.status === 200 ? body(r) : null
        return classifyPortoneV2('lookup', r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('lookup', o) },
    )
    return { outcome, body: held }
  }

  /** A cancel refused because the receipt is not ISSUED: when it reads CANCELLED, the cancellation it is. */
  async function refusedCancel(o: ProviderOutcome, paymentId: string, ctx: CallContext | undefined): Promise<ProviderOutcome> {
    if (o.kind !== 'not_found' || o.meta.providerCode !== 'CASH_RECEIPT_NOT_ISSUED') return o
    const held = await read(paymentId, ctx)
    return held.outcome.kind === 'cancelled' ? held.outcome : o
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
      const key = keyFor(req.idempotencyKey, payload)
      const first = await post(key)
      if (first.kind !== 'unknown_outcome' || first.meta.providerCode !== 'PG_PROVIDER') return first
      const held = await read(req.providerKey, ctx)
      const failedAt = held.body?.status === 'ISSUE_FAILED' ? str(held.body.statusUpdatedAt) : null
      if (!failedAt) return first
      return post(`${key}-f${createHash('sha256').update(failedAt).digest('hex').slice(0, 12)}`)
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return op('lookup', 'GET', `/payments/${encodeURIComponent(req.providerKey)}/cash-receipt${store}`, undefined, ctx)
    },
    async cancel(req: CancelRequest, ctx?: CallContext) {
      if (req.partial) {
        return {
          kind: 'permanent',
          meta: { httpStatus: null, providerCode: 'PARTIAL_CANCEL_UNSUPPORTED', message: 'PortOne V2 cancels receipts in full only', latencyMs: 0 },
        } satisfies ProviderOutcome
      }
      const payload = {}
      const post = (key: string) =>
        op('cancel', 'POST', `/payments/${encodeURIComponent(req.providerKey)}/cash-receipt/cancel${store}`, payload, ctx, { 'idempotency-key': `"${key}"` })
      const key = keyFor(req.idempotencyKey, payload)
      const first = await post(key)
      if (first.kind !== 'unknown_outcome' || first.meta.providerCode !== 'PG_PROVIDER') return refusedCancel(first, req.providerKey, ctx)
      // The 502 is kept for this key: read what PortOne holds before anything else.
      const held = await read(req.providerKey, ctx)
      if (held.outcome.kind === 'cancelled') return held.outcome
      if (held.outcome.kind !== 'issued' || req.attemptNo === undefined) return first
      return refusedCancel(await post(`${key}-a${req.attemptNo}`), req.providerKey, ctx)
    },
  }
}
