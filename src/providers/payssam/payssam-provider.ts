/**
 * PaySsam (결제선생) V1 adapter: /if/cash-receipt/issue, /cancel, /read with the partner credentials
 * in the body. Key: bill_id (≤ 20 alphanumerics, unique). hash = lowercase hex SHA-256 of
 * "{bill_id},{price}" over the exact price string sent (no phone field in cash-receipt calls).
 * Partial cancellation is not documented by PaySsam, so the adapter offers full cancels only.
 */
import { createHash } from 'node:crypto'
import type { PayssamCredentials } from './payssam-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, transportMeta, transportOutcome, withRetry } from '../http.ts'
import { send } from '../common.ts'
import type { ProviderOutcome } from '../../domain/index.ts'
import type { CallContext, CancelRequest, CashReceiptProvider, IssueRequest, LookupRequest, ProviderDeps } from '../types.ts'
import { classifyPayssam } from './payssam-errors.ts'

export const payssamHash = (billId: string, price: string) => createHash('sha256').update(`${billId},${price}`, 'utf8').digest('hex')

/**
 * The bill_id sent for a ledger key. Production: the key itself (`CR` + 18 hex, within the 20
 * alphanumerics). Development: PaySsam wants the 사업자번호 (10 digits) + 10 characters, so the key is
 * digested to 10 base-36 characters (about 52 bits) after the number — the same for every call on
 * the key, so lookups and cancels find the bill.
 */
export function payssamBillId(creds: Pick<PayssamCredentials, 'environment' | 'businessNumber'>, key: string): string {
  if (creds.environment !== 'development') return key
  const n = BigInt(`0x${createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 16)}`)
  return `${creds.businessNumber}${n.toString(36).toUpperCase().padStart(10, '0').slice(-10)}`
}

export function createPayssamProvider(deps: ProviderDeps<PayssamCredentials>): CashReceiptProvider {
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const creds = deps.credentials
  const budget = deps.retry ?? DEFAULT_RETRY
  const partner = { apikey: creds.apikey, merchant: creds.merchant, member: creds.member }
  /**
   * Issue nests its fields in `bill` (ReqIssueCashReceipt); cancel and read take theirs at the top level
   * next to the partner credentials (their V1 request schemas have no `bill` object).
   */
  const bodyOf = (operation: 'issue' | 'lookup' | 'cancel', fields: Record<string, string>) => (operation === 'issue' ? { ...partner, bill: fields } : { ...partner, ...fields })

  function op(operation: 'issue' | 'lookup' | 'cancel', path: string, fields: Record<string, string>, ctx?: CallContext) {
    return withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, { method: 'POST', url: `${base}${path}`, body: bodyOf(operation, fields), ...requestIo(operation, ctx) })
        if (r.ok) return classifyPayssam(operation, r)
        return operation === 'lookup' ? { kind: 'retryable', meta: transportMeta(r) } : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  return {
    name: 'payssam',
    credentialId: `payssam-${createHash('sha256').update(creds.apikey).digest('hex').slice(0, 12)}`,
    capabilities: { partialCancel: false, naverCashAmount: false },
    issue(req: IssueRequest, ctx?: CallContext) {
      const price = String(req.amounts.total)
      const billId = payssamBillId(creds, req.providerKey)
      return op(
        'issue',
        '/if/cash-receipt/issue',
        {
          bill_id: billId,
          hash: payssamHash(billId, price),
          price,
          supply_price: String(req.amounts.total - req.amounts.vat),
          tax: String(req.amounts.vat),
          issuance_number: req.identifier,
          trader: req.purpose === 'expense' ? '1' : '0',
        },
        ctx,
      )
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      const price = String(req.amounts.total)
      const billId = payssamBillId(creds, req.providerKey)
      return op('lookup', '/if/cash-receipt/read', { bill_id: billId, hash: payssamHash(billId, price), price }, ctx)
    },
    cancel(req: CancelRequest, ctx?: CallContext) {
      if (req.partial) {
        return Promise.resolve<ProviderOutcome>({
          kind: 'permanent',
          meta: { httpStatus: null, providerCode: 'PARTIAL_CANCEL_UNSUPPORTED', message: 'PaySsam does not document partial cancellation', latencyMs: 0 },
        })
      }
      const price = String(req.amounts.total)
      const billId = payssamBillId(creds, req.providerKey)
      return op('cancel', '/if/cash-receipt/cancel', { bill_id: billId, hash: payssamHash(billId, price), price, trader: req.purpose === 'expense' ? '1' : '0' }, ctx)
    },
  }
}
