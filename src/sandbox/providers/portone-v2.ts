/**
 * PortOne V2 (api.portone.io) simulator, per reference/providers.md §2:
 * - `Authorization: PortOne <secret>`; a wrong secret → 401 {type: UNAUTHORIZED}. Valid secrets start `v2-secret-`.
 * - POST /cash-receipts (JSON parsed whatever the Content-Type): a second issue for a paymentId whose
 *   receipt is ISSUED → 409 CASH_RECEIPT_ALREADY_ISSUED; VAT defaults to (total − taxFree)/11, rounded half up.
 * - Idempotency-Key (16–256 chars, quoted or not): a completed request is replayed with its original
 *   answer for 3 hours; a request still running → 409 IDEMPOTENCY_OUTSTANDING_REQUEST.
 * - GET /payments/{paymentId}/cash-receipt (404 CASH_RECEIPT_NOT_FOUND), POST …/cash-receipt/cancel (full only).
 * - GET /cash-receipts: paged list.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { approvalNumber, header, maskTail, randomId, vat11 } from '../sim.ts'

interface CashReceipt {
  status: 'ISSUED' | 'CANCELLED'
  merchantId: string
  storeId: string
  paymentId: string
  channel: { type: 'TEST'; key: string; pgProvider: string }
  amount: number
  taxFreeAmount: number
  vatAmount: number
  currency: string
  orderName: string
  isManual: true
  type: 'PERSONAL' | 'CORPORATE'
  issueNumber: string
  pgReceiptId: string
  url: string
  issuedAt: string
  cancelledAt?: string
  statusUpdatedAt: string
  identityNumber: string
}

const IDEMPOTENCY_TTL_MS = 3 * 3600_000
const error = (status: number, type: string, message: string, extra: object = {}): SimResponse => ({ status, body: { type, message, ...extra } })

export function createPortoneV2Sim(): ProviderSim {
  const receipts = new Map<string, CashReceipt>()
  const idem = new Map<string, { state: 'running' | 'done'; response?: SimResponse; at: number }>()
  const counters = { issued: 0, cancelled: 0, duplicates_rejected: 0 }

  const secretOf = (req: SimRequest) => {
    const m = /^PortOne\s+(\S+)$/i.exec(header(req, 'authorization') ?? '')
    return m && m[1]!.startsWith('v2-secret-') && m[1]!.length > 'v2-secret-'.length ? m[1]! : null
  }
  const idemKey = (req: SimRequest, secret: string | null) => {
    const raw = header(req, 'idempotency-key')
    if (!raw || !secret) return null
    return `${secret}\u0000${req.method}\u0000${req.path}\u0000${raw.replace(/^"(.*)"$/, '$1')}`
  }
  const view = (r: CashReceipt) => {
    const { identityNumber: _omit, ...rest } = r
    return rest
  }

  function issue(req: SimRequest, secret: string): SimResponse {
    const b = req.body ?? {}
    const amount = b.amount as { total?: unknown; taxFree?: unknown; vat?: unknown } | undefined
    const customer = b.customer as { identityNumber?: unknown } | undefined
    const missing = ['paymentId', 'channelKey', 'type', 'orderName', 'currency'].find((f) => typeof b[f] !== 'string' || !b[f])
    if (missing) return error(400, 'INVALID_REQUEST', `${missing} is required`)
    if (!amount || !Number.isInteger(amount.total) || (amount.total as number) < 1) return error(400, 'INVALID_REQUEST', 'amount.total must be a positive integer')
    if (!customer || typeof customer.identityNumber !== 'string' || !customer.identityNumber) return error(400, 'INVALID_REQUEST', 'customer.identityNumber is required')
    if (b.type !== 'PERSONAL' && b.type !== 'CORPORATE') return error(400, 'INVALID_REQUEST', 'type must be PERSONAL or CORPORATE')
    const storeId = typeof b.storeId === 'string' ? b.storeId : `store-${secret.slice(10)}`
    const key = `${storeId}\u0000${b.paymentId as string}`
    const existing = receipts.get(key)
    if (existing?.status === 'ISSUED') {
      counters.duplicates_rejected++
      return error(409, 'CASH_RECEIPT_ALREADY_ISSUED', '이미 현금영수증이 발급된 결제입니다.')
    }
    const total = amount.total as number
    const taxFree = Number.isInteger(amount.taxFree) ? (amount.taxFree as number) : 0
    const now = new Date(req.nowMs).toISOString()
    const r: CashReceipt = {
      status: 'ISSUED',
      merchantId: `merchant-${secret.slice(10)}`,
      storeId,
      paymentId: b.paymentId as string,
      channel: { type: 'TEST', key: b.channelKey as string, pgProvider: 'SANDBOX' },
      amount: total,
      taxFreeAmount: taxFree,
      vatAmount: Number.isInteger(amount.vat) ? (amount.vat as number) : vat11(total - taxFree),
      currency: b.currency as string,
      orderName: b.orderName as string,
      isManual: true,
      type: b.type,
      issueNumber: approvalNumber(),
      pgReceiptId: randomId('pgr_'),
      url: `https://sandbox.invalid/v2/receipts/${encodeURIComponent(b.paymentId as string)}`,
      issuedAt: now,
      statusUpdatedAt: now,
      identityNumber: customer.identityNumber,
    }
    receipts.set(key, r)
    counters.issued++
    return { status: 200, body: { cashReceipt: { issueNumber: r.issueNumber, url: r.url, pgReceiptId: r.pgReceiptId } } }
  }

  const findFor = (req: SimRequest, secret: string, paymentId: string) => {
    const storeId = req.query.get('storeId') ?? `store-${secret.slice(10)}`
    return receipts.get(`${storeId}\u0000${paymentId}`)
  }

  return {
    name: 'portone-v2',
    counters,
    isReceiptOp: (req) => req.path.startsWith('/cash-receipts') || /^\/payments\/[^/]+\/cash-receipt/.test(req.path),
    credentialOf: (req) => secretOf(req),
    handle(req) {
      const secret = secretOf(req)
      if (!secret) return error(401, 'UNAUTHORIZED', '인증 정보가 올바르지 않습니다.')
      if (req.path === '/cash-receipts' && req.method === 'POST') return issue(req, secret)
      if (req.path === '/cash-receipts' && req.method === 'GET') {
        const items = [...receipts.values()].filter((r) => r.merchantId === `merchant-${secret.slice(10)}`).map(view)
        return { status: 200, body: { items: items.slice(0, 100), page: { number: 0, size: 100, totalCount: items.length } } }
      }
      const m = /^\/payments\/([^/]+)\/cash-receipt(\/cancel)?$/.exec(req.path)
      if (!m) return error(404, 'NOT_FOUND', 'Not Found')
      const r = findFor(req, secret, decodeURIComponent(m[1]!))
      if (!m[2] && req.method === 'GET') return r ? { status: 200, body: view(r) } : error(404, 'CASH_RECEIPT_NOT_FOUND', '현금영수증이 존재하지 않습니다.')
      if (m[2] && req.method === 'POST') {
        if (!r) return error(404, 'CASH_RECEIPT_NOT_FOUND', '현금영수증이 존재하지 않습니다.')
        if (r.status !== 'ISSUED') return error(404, 'CASH_RECEIPT_NOT_ISSUED', '발급된 현금영수증이 아닙니다.')
        r.status = 'CANCELLED'
        r.cancelledAt = r.statusUpdatedAt = new Date(req.nowMs).toISOString()
        counters.cancelled++
        return { status: 200, body: { cancelledAmount: r.amount, cancelledAt: r.cancelledAt } }
      }
      return error(405, 'INVALID_REQUEST', 'Method Not Allowed')
    },
    preflight(req) {
      if (req.method === 'GET') return null
      const key = idemKey(req, secretOf(req))
      if (!key) return null
      const raw = header(req, 'idempotency-key')!.replace(/^"(.*)"$/, '$1')
      if (raw.length < 16 || raw.length > 256) return error(400, 'INVALID_REQUEST', 'Idempotency-Key must be 16 to 256 characters')
      const e = idem.get(key)
      if (e && req.nowMs - e.at > IDEMPOTENCY_TTL_MS) idem.delete(key)
      else if (e?.state === 'running') return error(409, 'IDEMPOTENCY_OUTSTANDING_REQUEST', '같은 멱등 키의 요청이 처리 중입니다.')
      else if (e?.response) return e.response
      idem.set(key, { state: 'running', at: req.nowMs })
      return null
    },
    settle(req, committed) {
      const key = idemKey(req, secretOf(req))
      if (!key || req.method === 'GET') return
      if (committed) idem.set(key, { state: 'done', response: committed, at: req.nowMs })
      else idem.delete(key)
    },
    serverError: () => error(502, 'PG_PROVIDER', 'PG사에서 오류가 발생했습니다.', { pgCode: 'SANDBOX_5XX', pgMessage: '일시적인 오류' }),
    rateLimited: (s) => ({ ...error(429, 'TOO_MANY_REQUESTS', '요청이 너무 많습니다.'), headers: { 'retry-after': String(s) } }),
    *livePerKey() {
      for (const r of receipts.values()) yield r.status === 'ISSUED' ? 1 : 0
    },
    receipts(): HeldReceipt[] {
      return [...receipts.values()].map((r) => ({ key: r.paymentId, status: r.status === 'ISSUED' ? 'issued' : 'cancelled', amount: r.amount, approvalNumber: r.issueNumber, identifier: maskTail(r.identityNumber) }))
    },
    reset() {
      receipts.clear()
      idem.clear()
      Object.assign(counters, { issued: 0, cancelled: 0, duplicates_rejected: 0 })
    },
  }
}
