/**
 * PortOne V2's cash receipts: `POST /cash-receipts` (a second issue for a paymentId whose receipt is
 * ISSUED → 409 `CASH_RECEIPT_ALREADY_ISSUED`; `amount.vat` defaults to (total − taxFree)/11 rounded
 * half up; a channelKey not starting `channel` → 404 `CHANNEL_NOT_FOUND`), `GET
 * /payments/{paymentId}/cash-receipt`, `POST …/cash-receipt/cancel` (full only) and `GET
 * /cash-receipts` (paged list). A request naming a store other than its credential's → 403. A PG
 * failure on issue (fault `5xx`, 502 PG_PROVIDER) leaves the paymentId's receipt ISSUE_FAILED, which
 * the lookup returns (status and channel only) and a later issue with a new key replaces.
 */
import type { HeldReceipt, SimCounters, SimRequest, SimResponse } from '../../sim.ts'
import { ApprovalNumbers, LiveLedger, maskTail, nonEmpty, randomHex, segment, vat11 } from '../../sim.ts'
import { error, invalid, isInt } from './answers.ts'
import { channelIdOf, merchantOf, storeOf } from './auth.ts'

interface CashReceipt {
  status: 'ISSUED' | 'CANCELLED' | 'ISSUE_FAILED'
  readonly merchantId: string
  readonly storeId: string
  readonly paymentId: string
  readonly channel: {
    readonly type: 'TEST'
    readonly id: string
    readonly key: string
    readonly name: string
    readonly pgProvider: string
    readonly pgMerchantId: string
  }
  readonly amount: number
  readonly taxFreeAmount: number
  readonly vatAmount: number
  readonly currency: string
  readonly orderName: string
  readonly isManual: boolean
  readonly type: 'PERSONAL' | 'CORPORATE'
  readonly pgReceiptId: string
  readonly issueNumber: string
  readonly url: string
  readonly issuedAt: string
  cancelledAt?: string
  statusUpdatedAt: string
  /** Kept for the masked sandbox listing only; never part of an answer. */
  readonly identityNumber: string
}

const DAY_MS = 86_400_000

const notFound = () => error(404, 'CASH_RECEIPT_NOT_FOUND', '현금영수증이 존재하지 않습니다.')

/** The store a call names (body or query), checked against the credentials'; an error answer when foreign. */
function store(secret: string, named: unknown): string | SimResponse {
  const own = storeOf(secret)
  if (named === undefined || named === null || named === '') return own
  return named === own ? own : error(403, 'FORBIDDEN', '요청된 상점에 대한 접근 권한이 없습니다.')
}

const view = (r: CashReceipt) => {
  if (r.status === 'ISSUE_FAILED') {
    // IssueFailedCashReceipt: no amounts, numbers or dates but the status change.
    const { status, merchantId, storeId, paymentId, channel, orderName, isManual, statusUpdatedAt } = r
    return { status, merchantId, storeId, paymentId, channel, orderName, isManual, statusUpdatedAt }
  }
  const { identityNumber: _never, ...rest } = r
  return rest
}

export interface V2Receipts {
  issue(req: SimRequest, secret: string): SimResponse
  /** The PG failed an issue: the paymentId's receipt becomes ISSUE_FAILED (unless one is ISSUED). */
  recordIssueFailed(req: SimRequest, secret: string): void
  /** `GET /payments/{id}/cash-receipt`, or its cancel when `cancel`. */
  byPayment(req: SimRequest, secret: string, rawId: string, cancel: boolean): SimResponse
  list(req: SimRequest, secret: string): SimResponse
  maxLivePerKey(): number
  maxReceiptsPerKey(): number
  held(): HeldReceipt[]
  reset(): void
}

export function createV2Receipts(counters: SimCounters): V2Receipts {
  /** Current receipt per `${storeId}\0${paymentId}`. */
  const current = new Map<string, CashReceipt>()
  /** Every receipt ever issued (a paymentId can be re-issued after a cancel), for the list endpoint. */
  const history: CashReceipt[] = []
  const ledger = new LiveLedger()
  const approvals = new ApprovalNumbers()

  function issue(req: SimRequest, secret: string): SimResponse {
    if (req.bodyInvalid || !req.body) return invalid('요청 본문이 올바른 JSON이 아닙니다.')
    const b = req.body
    for (const f of ['paymentId', 'channelKey', 'orderName', 'currency'] as const) {
      if (!nonEmpty(b[f])) return invalid(`${f}은(는) 필수입니다.`)
    }
    if (b.type !== 'PERSONAL' && b.type !== 'CORPORATE') {
      return invalid('type은 PERSONAL 또는 CORPORATE 여야 합니다.')
    }
    if (b.currency !== 'KRW') return invalid('현금영수증은 KRW로만 발급할 수 있습니다.')
    const amount = b.amount as Record<string, unknown> | undefined
    if (!amount || typeof amount !== 'object' || !isInt(amount.total) || amount.total < 1) {
      return invalid('amount.total은 1 이상의 정수여야 합니다.')
    }
    const total = amount.total
    const taxFree = amount.taxFree === undefined || amount.taxFree === null ? 0 : amount.taxFree
    if (!isInt(taxFree) || taxFree < 0 || taxFree > total) {
      return invalid('amount.taxFree가 올바르지 않습니다.')
    }
    const vat = amount.vat === undefined || amount.vat === null ? vat11(total - taxFree) : amount.vat
    if (!isInt(vat) || vat < 0 || vat > total - taxFree) return invalid('amount.vat가 올바르지 않습니다.')
    const customer = b.customer as Record<string, unknown> | undefined
    if (!customer || typeof customer !== 'object' || !nonEmpty(customer.identityNumber)) {
      return invalid('customer.identityNumber는 필수입니다.')
    }
    if (b.type === 'CORPORATE' && String(customer.identityNumber).replace(/\D/g, '') === '0100001234') {
      return invalid('자진발급 번호(010-000-1234)는 소득공제(PERSONAL) 현금영수증에만 사용할 수 있습니다.')
    }
    const idType = customer.identityNumberType
    if (idType !== undefined && idType !== 'PHONE' && idType !== 'CARD' && idType !== 'BUSINESS') {
      return invalid('customer.identityNumberType은 PHONE, CARD, BUSINESS 중 하나여야 합니다.')
    }
    if (b.productType !== undefined && b.productType !== 'PHYSICAL' && b.productType !== 'DIGITAL') {
      return invalid('productType은 PHYSICAL 또는 DIGITAL 이어야 합니다.')
    }
    if (b.paymentMethod !== undefined && b.paymentMethod !== 'TRANSFER' && b.paymentMethod !== 'VIRTUAL_ACCOUNT') {
      return invalid('paymentMethod는 TRANSFER 또는 VIRTUAL_ACCOUNT 여야 합니다.')
    }
    if (b.paidAt !== undefined && (typeof b.paidAt !== 'string' || Number.isNaN(Date.parse(b.paidAt)))) {
      return invalid('paidAt은 RFC 3339 date-time 이어야 합니다.')
    }
    const storeId = store(secret, b.storeId)
    if (typeof storeId !== 'string') return storeId
    const channelKey = b.channelKey as string
    if (!channelKey.startsWith('channel')) {
      return error(404, 'CHANNEL_NOT_FOUND', '요청된 채널이 존재하지 않습니다.')
    }
    const paymentId = b.paymentId as string
    const key = `${storeId}\u0000${paymentId}`
    if (current.get(key)?.status === 'ISSUED') {
      counters.duplicates_rejected++
      return error(409, 'CASH_RECEIPT_ALREADY_ISSUED', '현금영수증이 이미 발급되었습니다.')
    }
    const now = new Date(req.nowMs).toISOString()
    const r: CashReceipt = {
      status: 'ISSUED',
      merchantId: merchantOf(secret),
      storeId,
      paymentId,
      channel: {
        type: 'TEST',
        id: channelIdOf(secret),
        key: channelKey,
        name: 'sandbox',
        pgProvider: 'TOSSPAYMENTS',
        pgMerchantId: 'sandbox-mid',
      },
      amount: total,
      taxFreeAmount: taxFree,
      vatAmount: vat,
      currency: 'KRW',
      orderName: b.orderName as string,
      isManual: true,
      type: b.type,
      pgReceiptId: `sbx-${randomHex(10)}`,
      issueNumber: approvals.next(),
      url: `https://sandbox.invalid/portone-v2/cash-receipts/${encodeURIComponent(paymentId)}`,
      issuedAt: now,
      statusUpdatedAt: now,
      identityNumber: customer.identityNumber,
    }
    current.set(key, r)
    history.push(r)
    ledger.change(key, 1)
    counters.issued++
    return {
      status: 200,
      body: { cashReceipt: { issueNumber: r.issueNumber, url: r.url, pgReceiptId: r.pgReceiptId } },
    }
  }

  function recordIssueFailed(req: SimRequest, secret: string): void {
    const b = req.body
    if (req.bodyInvalid || !b || !nonEmpty(b.paymentId) || !nonEmpty(b.channelKey) || !nonEmpty(b.orderName)) return
    const storeId = store(secret, b.storeId)
    if (typeof storeId !== 'string') return
    const key = `${storeId}\u0000${b.paymentId}`
    if (current.get(key)?.status === 'ISSUED') return
    const now = new Date(req.nowMs).toISOString()
    current.set(key, {
      status: 'ISSUE_FAILED',
      merchantId: merchantOf(secret),
      storeId,
      paymentId: b.paymentId,
      channel: { type: 'TEST', id: channelIdOf(secret), key: b.channelKey, name: 'sandbox', pgProvider: 'TOSSPAYMENTS', pgMerchantId: 'sandbox-mid' },
      amount: 0,
      taxFreeAmount: 0,
      vatAmount: 0,
      currency: 'KRW',
      orderName: b.orderName,
      isManual: true,
      type: b.type === 'CORPORATE' ? 'CORPORATE' : 'PERSONAL',
      pgReceiptId: '',
      issueNumber: '',
      url: '',
      issuedAt: now,
      statusUpdatedAt: now,
      identityNumber: '',
    })
  }

  function byPayment(req: SimRequest, secret: string, rawId: string, cancel: boolean): SimResponse {
    const paymentId = segment(rawId)
    if (paymentId === null) return invalid('paymentId가 올바르지 않습니다.')
    const storeId = store(secret, req.query.get('storeId'))
    if (typeof storeId !== 'string') return storeId
    const key = `${storeId}\u0000${paymentId}`
    const r = current.get(key)
    if (!cancel) return r ? { status: 200, body: view(r) } : notFound()
    if (!r) return notFound()
    // Only an ISSUED receipt can be cancelled: a second cancel (any key) is refused, never applied twice.
    if (r.status !== 'ISSUED') return error(404, 'CASH_RECEIPT_NOT_ISSUED', '발급된 현금영수증이 아닙니다.')
    r.status = 'CANCELLED'
    r.cancelledAt = r.statusUpdatedAt = new Date(req.nowMs).toISOString()
    ledger.change(key, -1)
    counters.cancelled++
    return { status: 200, body: { cancelledAmount: r.amount, cancelledAt: r.cancelledAt } }
  }

  function list(req: SimRequest, secret: string): SimResponse {
    let input: Record<string, unknown> = req.body ?? {}
    const q = req.query.get('requestBody')
    if (q !== null) {
      try {
        const parsed = JSON.parse(q) as unknown
        input = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {}
      } catch {
        return invalid('requestBody가 올바른 JSON이 아닙니다.')
      }
    }
    const page = (input.page ?? {}) as Record<string, unknown>
    const sort = (input.sort ?? {}) as Record<string, unknown>
    const filter = (input.filter ?? {}) as Record<string, unknown>
    const number = page.number === undefined ? 0 : page.number
    const size = page.size === undefined ? 10 : page.size
    if (!isInt(number) || number < 0 || !isInt(size) || size < 1 || size > 1000) {
      return invalid('page가 올바르지 않습니다.')
    }
    const storeId = store(secret, filter.storeId)
    if (typeof storeId !== 'string') return storeId
    const until = filter.until === undefined ? req.nowMs : Date.parse(String(filter.until))
    const from = filter.from === undefined ? until - 90 * DAY_MS : Date.parse(String(filter.from))
    if (Number.isNaN(until) || Number.isNaN(from)) {
      return invalid('filter.from/until은 date-time 이어야 합니다.')
    }
    const rangeField = filter.timeRangeField ?? 'ISSUED_AT'
    const sortBy = sort.by ?? 'ISSUED_AT'
    const timeOf = (r: CashReceipt, f: unknown) => Date.parse((f === 'CANCELLED_AT' ? r.cancelledAt : f === 'STATUS_UPDATED_AT' ? r.statusUpdatedAt : r.issuedAt) ?? '')
    const statuses = Array.isArray(filter.statuses) ? (filter.statuses as unknown[]) : null
    const types = Array.isArray(filter.types) ? (filter.types as unknown[]) : null
    const merchantId = merchantOf(secret)
    const items = history.filter((r) => {
      if (r.merchantId !== merchantId || r.storeId !== storeId) return false
      const t = timeOf(r, rangeField)
      if (!(t >= from && t <= until)) return false
      if (filter.paymentId !== undefined && r.paymentId !== filter.paymentId) return false
      if (filter.isTest === false) return false // every sandbox channel is a TEST channel
      if (filter.isManual === false) return false
      if (filter.pgReceiptId !== undefined && r.pgReceiptId !== filter.pgReceiptId) return false
      if (typeof filter.orderName === 'string' && !r.orderName.includes(filter.orderName)) return false
      if (statuses && !statuses.includes(r.status)) return false
      if (types && !types.includes(r.type)) return false
      return true
    })
    const dir = sort.order === 'ASC' ? 1 : -1
    items.sort((a, b) => dir * ((timeOf(a, sortBy) || 0) - (timeOf(b, sortBy) || 0)))
    return {
      status: 200,
      body: {
        items: items.slice(number * size, number * size + size).map(view),
        page: { number, size, totalCount: items.length },
      },
    }
  }

  return {
    issue,
    recordIssueFailed,
    byPayment,
    list,
    maxLivePerKey: () => ledger.max,
    maxReceiptsPerKey: () => ledger.maxIssued,
    held() {
      return history.map((r) => ({
        key: r.paymentId,
        status: r.status === 'ISSUED' ? 'issued' : 'cancelled',
        amount: r.status === 'ISSUED' ? r.amount : 0,
        issuedAmount: r.amount,
        approvalNumber: r.issueNumber,
        identifier: maskTail(r.identityNumber),
        issuedAt: r.issuedAt,
      }))
    },
    reset() {
      current.clear()
      history.length = 0
      ledger.reset()
    },
  }
}
