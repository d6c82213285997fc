/**
 * PortOne V2 (api.portone.io) simulator, per docs/providers.md §2 and @portone/server-sdk 0.19.0.
 *
 * - Auth: `Authorization: PortOne <secret>` on every call, or `Bearer <accessToken>` from
 *   `POST /login/api-secret` (access 30 min, refresh 1 day, rotated on every login or refresh).
 *   Missing or wrong → 401 `UNAUTHORIZED`. Valid secrets are `v2-secret-<x>`; their store is
 *   `store-<x>`, and a request naming another store → 403 `FORBIDDEN`.
 * - Bodies are parsed as JSON whatever the Content-Type (the SDK sends text/plain).
 * - `POST /cash-receipts`: a second issue for a paymentId whose receipt is ISSUED → 409
 *   `CASH_RECEIPT_ALREADY_ISSUED`; `amount.vat` defaults to (total − taxFree)/11 rounded half up; a
 *   channelKey not starting `channel` → 404 `CHANNEL_NOT_FOUND`.
 * - `Idempotency-Key` on any POST (16–256 ASCII characters, RFC 8941 quoted; GET ignores it): a completed
 *   request is replayed with its original answer for 3 hours; one still running → 409
 *   `IDEMPOTENCY_OUTSTANDING_REQUEST`. Scope: credential + method + path + key.
 * - `GET /payments/{paymentId}/cash-receipt` (404 `CASH_RECEIPT_NOT_FOUND`); `POST …/cash-receipt/cancel`
 *   (full only; 404 `CASH_RECEIPT_NOT_FOUND` / `CASH_RECEIPT_NOT_ISSUED`); `GET /cash-receipts` (paged list,
 *   body or `requestBody` query).
 * Errors are `{type, message}`; the HTTP status follows the type.
 */
import type { HeldReceipt, IdempotencyHooks, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import {
  ApprovalNumbers,
  LiveLedger,
  emptyCounters,
  header,
  maskTail,
  nonEmpty,
  pruneHead,
  randomHex,
  segment,
  suffixAfter,
  vat11,
} from '../sim.ts'

interface CashReceipt {
  status: 'ISSUED' | 'CANCELLED'
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

const IDEMPOTENCY_TTL_MS = 3 * 3600_000
const ACCESS_TTL_MS = 30 * 60_000
const REFRESH_TTL_MS = 24 * 3600_000
const DAY_MS = 86_400_000

const error = (status: number, type: string, message: string, extra: object = {}): SimResponse => ({
  status,
  body: { type, message, ...extra },
})
const invalid = (message: string) => error(400, 'INVALID_REQUEST', message)
const notFound = () => error(404, 'CASH_RECEIPT_NOT_FOUND', '현금영수증이 존재하지 않습니다.')

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)

/** RFC 8941 sf-string (`"…"`) or, leniently, the bare key. */
function parseIdempotencyKey(raw: string): string | null {
  const t = raw.trim()
  const inner =
    t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1).replace(/\\(["\\])/g, '$1') : t
  return inner.length >= 16 && inner.length <= 256 && /^[\x20-\x7e]+$/.test(inner) ? inner : null
}

export function createPortoneV2Sim(): ProviderSim {
  /** Current receipt per `${storeId}\0${paymentId}`. */
  const current = new Map<string, CashReceipt>()
  /** Every receipt ever issued (a paymentId can be re-issued after a cancel), for the list endpoint. */
  const history: CashReceipt[] = []
  const idem = new Map<string, { state: 'running' | 'done'; response?: SimResponse; at: number }>()
  const accessTokens = new Map<string, { secret: string; expiresAt: number }>()
  const refreshTokens = new Map<string, { secret: string; expiresAt: number }>()
  const refreshOfSecret = new Map<string, string>()
  const ledger = new LiveLedger()
  const approvals = new ApprovalNumbers()
  const counters = emptyCounters()

  /** The API secret a request acts for, or null. */
  function secretOf(req: SimRequest): string | null {
    const raw = header(req, 'authorization')
    if (!raw) return null
    const sp = raw.indexOf(' ')
    if (sp < 0) return null
    const scheme = raw.slice(0, sp).toLowerCase()
    const value = raw.slice(sp + 1).trim()
    if (scheme === 'portone') return suffixAfter(value, 'v2-secret-') ? value : null
    if (scheme === 'bearer') {
      const t = accessTokens.get(value)
      return t && t.expiresAt > req.nowMs ? t.secret : null
    }
    return null
  }

  const suffix = (secret: string) => secret.slice('v2-secret-'.length)
  const storeOf = (secret: string) => `store-${suffix(secret)}`
  const merchantOf = (secret: string) => `merchant-${suffix(secret)}`

  /** The store a call names (body or query), checked against the credentials'; an error answer when foreign. */
  function store(secret: string, named: unknown): string | SimResponse {
    const own = storeOf(secret)
    if (named === undefined || named === null || named === '') return own
    return named === own ? own : error(403, 'FORBIDDEN', '요청된 상점에 대한 접근 권한이 없습니다.')
  }

  const view = (r: CashReceipt) => {
    const { identityNumber: _never, ...rest } = r
    return rest
  }

  function tokenPair(secret: string, nowMs: number) {
    const old = refreshOfSecret.get(secret)
    if (old) refreshTokens.delete(old)
    pruneHead(accessTokens, (v) => v.expiresAt <= nowMs)
    pruneHead(refreshTokens, (v) => v.expiresAt <= nowMs)
    const accessToken = `sbx-at-${randomHex(24)}`
    const refreshToken = `sbx-rt-${randomHex(24)}`
    accessTokens.set(accessToken, { secret, expiresAt: nowMs + ACCESS_TTL_MS })
    refreshTokens.set(refreshToken, { secret, expiresAt: nowMs + REFRESH_TTL_MS })
    refreshOfSecret.set(secret, refreshToken)
    return { status: 200, body: { accessToken, refreshToken } }
  }

  function login(req: SimRequest): SimResponse {
    const secret = req.body?.apiSecret
    if (!nonEmpty(secret)) return invalid('apiSecret은 필수입니다.')
    if (!suffixAfter(secret, 'v2-secret-')) {
      return error(401, 'UNAUTHORIZED', '인증 정보가 올바르지 않습니다.')
    }
    return tokenPair(secret, req.nowMs)
  }

  function refresh(req: SimRequest): SimResponse {
    const token = req.body?.refreshToken
    if (!nonEmpty(token)) return invalid('refreshToken은 필수입니다.')
    const t = refreshTokens.get(token)
    if (!t || t.expiresAt <= req.nowMs) {
      return error(401, 'UNAUTHORIZED', '유효하지 않은 리프레시 토큰입니다.')
    }
    return tokenPair(t.secret, req.nowMs)
  }

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
    const idType = customer.identityNumberType
    if (idType !== undefined && idType !== 'PHONE' && idType !== 'CARD' && idType !== 'BUSINESS') {
      return invalid('customer.identityNumberType은 PHONE, CARD, BUSINESS 중 하나여야 합니다.')
    }
    if (b.productType !== undefined && b.productType !== 'PHYSICAL' && b.productType !== 'DIGITAL') {
      return invalid('productType은 PHYSICAL 또는 DIGITAL 이어야 합니다.')
    }
    if (
      b.paymentMethod !== undefined &&
      b.paymentMethod !== 'TRANSFER' &&
      b.paymentMethod !== 'VIRTUAL_ACCOUNT'
    ) {
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
        id: `channel-id-${suffix(secret)}`,
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

  function byPayment(req: SimRequest, secret: string, rawId: string, cancel: boolean): SimResponse {
    const paymentId = segment(rawId)
    if (paymentId === null) return invalid('paymentId가 올바르지 않습니다.')
    const storeId = store(secret, req.query.get('storeId'))
    if (typeof storeId !== 'string') return storeId
    const key = `${storeId}\u0000${paymentId}`
    const r = current.get(key)
    if (!cancel) return r ? { status: 200, body: view(r) } : notFound()
    if (!r) return notFound()
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
    const timeOf = (r: CashReceipt, f: unknown) =>
      Date.parse(
        (f === 'CANCELLED_AT' ? r.cancelledAt : f === 'STATUS_UPDATED_AT' ? r.statusUpdatedAt : r.issuedAt) ??
          '',
      )
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

  const idempotency: IdempotencyHooks = {
    begin(req) {
      if (req.method === 'GET') return null
      const raw = header(req, 'idempotency-key')
      if (raw === undefined) return null
      const secret = secretOf(req)
      if (!secret) return null // the handler answers 401
      const key = parseIdempotencyKey(raw)
      if (key === null) {
        return { early: invalid('Idempotency-Key는 16자 이상 256자 이하의 ASCII 문자열이어야 합니다.') }
      }
      pruneHead(idem, (e) => e.state === 'done' && req.nowMs - e.at > IDEMPOTENCY_TTL_MS)
      const slot = `${secret}\u0000${req.method}\u0000${req.path}\u0000${key}`
      const e = idem.get(slot)
      if (e && req.nowMs - e.at > IDEMPOTENCY_TTL_MS && e.state === 'done') idem.delete(slot)
      else if (e?.state === 'running') {
        return {
          early: error(
            409,
            'IDEMPOTENCY_OUTSTANDING_REQUEST',
            '같은 멱등 키로 보낸 요청이 아직 처리 중입니다.',
          ),
        }
      } else if (e?.response) return { early: e.response }
      idem.set(slot, { state: 'running', at: req.nowMs })
      return { slot }
    },
    finish(slot, committed) {
      const e = idem.get(slot)
      if (!e) return
      if (committed) {
        e.state = 'done'
        e.response = committed
      } else {
        idem.delete(slot)
      }
    },
  }

  const PAYMENT = /^\/payments\/([^/]+)\/cash-receipt(\/cancel)?$/

  return {
    name: 'portone-v2',
    counters,
    idempotency,
    classify(req) {
      if (req.path === '/login/api-secret') {
        return {
          receiptOp: false,
          credential: typeof req.body?.apiSecret === 'string' ? req.body.apiSecret : null,
        }
      }
      if (req.path === '/token/refresh') {
        const t =
          typeof req.body?.refreshToken === 'string' ? refreshTokens.get(req.body.refreshToken) : undefined
        return { receiptOp: false, credential: t?.secret ?? null }
      }
      return { receiptOp: req.path === '/cash-receipts' || PAYMENT.test(req.path), credential: secretOf(req) }
    },
    handle(req) {
      if (req.path === '/login/api-secret' && req.method === 'POST') return login(req)
      if (req.path === '/token/refresh' && req.method === 'POST') return refresh(req)
      const m = req.path === '/cash-receipts' ? null : PAYMENT.exec(req.path)
      if (req.path !== '/cash-receipts' && !m) {
        return error(404, 'NOT_FOUND', '요청한 경로가 존재하지 않습니다.')
      }
      const secret = secretOf(req)
      if (!secret) return error(401, 'UNAUTHORIZED', '인증 정보가 올바르지 않습니다.')
      if (!m) {
        if (req.method === 'POST') return issue(req, secret)
        if (req.method === 'GET') return list(req, secret)
      } else {
        const cancel = m[2] !== undefined
        if (req.method === (cancel ? 'POST' : 'GET')) return byPayment(req, secret, m[1]!, cancel)
      }
      return error(405, 'METHOD_NOT_ALLOWED', '허용되지 않는 메서드입니다.')
    },
    serverError: (req) =>
      req.method === 'GET'
        ? error(500, 'INTERNAL_SERVER_ERROR', '일시적인 오류가 발생했습니다.')
        : error(502, 'PG_PROVIDER', 'PG사에서 오류가 발생했습니다.', {
            pgCode: 'SBX500',
            pgMessage: '일시적인 오류',
          }),
    rateLimited: (s) => ({
      ...error(429, 'TOO_MANY_REQUESTS', '요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.'),
      headers: { 'retry-after': String(s) },
    }),
    maxLivePerKey: () => ledger.max,
    receipts(): HeldReceipt[] {
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
      idem.clear()
      accessTokens.clear()
      refreshTokens.clear()
      refreshOfSecret.clear()
      ledger.reset()
      Object.assign(counters, emptyCounters())
    },
  }
}
