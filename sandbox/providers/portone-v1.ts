/**
 * PortOne V1 (api.iamport.kr) simulator, per docs/providers.md §1 (PortOne's V1 API schema, its
 * guide "현금영수증 단건발급 API" and the Naver Pay "Get cash receipt amount API").
 *
 * - `POST /users/getToken` with `imp_key`/`imp_secret` as JSON or form: a 30-minute token; asking again
 *   before expiry returns the same token, extended by 5 minutes when asked within its last minute; a new
 *   one after expiry; a bad key or secret → 401.
 * - Other calls take `Authorization: Bearer <token>` or the raw token (the official Java client);
 *   missing, unknown or expired → 401.
 * - `/receipts/{imp_uid}`: the amount comes from the payment (remaining balance after refunds), which
 *   must be registered (`POST /_sandbox/portone/payments`) and `paid`, else 400.
 * - `/receipts/external/{merchant_uid}`: cash taken outside PortOne; `name`, `amount`, `identifier` and
 *   `channel_key` (or the older `pg`) are required.
 * - A second issue for a key with a live receipt → HTTP 400 with a non-zero code (not 422). GET of a
 *   never-issued key → 404. DELETE cancels in full: never issued → 400 (imp_uid) / 404 (external).
 * - VAT is 1/11 of (amount − tax_free), rounded half up, unless `vat_amount` (or the deprecated `vat`)
 *   is sent — never 10%.
 * - `GET /payments/{imp_uid}/naver/cash-amount`: 400 unless the payment is a Naver Pay 결제형 one.
 * Envelope `{code, message, response}`, code 0 = success, -1 for every error (the exact non-zero values
 * are not documented).
 * Valid credentials: imp_key `imp_key_<x>` with imp_secret `imp_secret_<x>`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import {
  ApprovalNumbers,
  LiveLedger,
  emptyCounters,
  header,
  intOf,
  maskTail,
  nonEmpty,
  pruneHead,
  randomHex,
  segment,
  suffixAfter,
  vat11,
} from '../sim.ts'

/** A payment PortOne processed, registered through `POST /_sandbox/portone/payments`. */
export interface PortonePayment {
  readonly imp_uid: string
  readonly amount: number
  /** Default `paid`; receipts can only be issued for paid payments. */
  readonly status?: 'paid' | 'ready' | 'cancelled'
  /** Sandbox extension: amount refunded so far; the receipt is issued for the remaining balance. */
  readonly cancel_amount?: number
  /** Present for Naver Pay 결제형 payments: what `/payments/{imp_uid}/naver/cash-amount` answers. */
  readonly naver?: {
    readonly amount_total: number
    readonly amount_by_npoint: number
    readonly amount_by_primary: number
    readonly amount_supply: number
    readonly amount_vat: number
  }
}

/** ReceiptAnnotation / ExternalReceiptAnnotation. */
interface Receipt {
  readonly key: string
  readonly imp_uid?: string
  readonly merchant_uid?: string
  readonly receipt_tid: string
  readonly apply_num: string
  readonly type: 'person' | 'company'
  readonly amount: number
  readonly vat: number
  readonly receipt_url: string
  readonly applied_at: number
  cancelled_at: number
  readonly identifier: string
}

const TOKEN_TTL_S = 30 * 60
const EXTEND_WITHIN_S = 60
const EXTEND_BY_S = 5 * 60
const IDENTIFIER_TYPES = new Set(['person', 'business', 'phone', 'taxcard'])

const envelope = (
  status: number,
  code: number,
  message: string | null,
  response: unknown = null,
): SimResponse => ({
  status,
  body: { code, message, response },
})
const fail = (status: number, message: string): SimResponse => envelope(status, -1, message)

export function validatePortonePayment(p: unknown): PortonePayment {
  const o = p as Record<string, unknown> | null
  if (!o || typeof o !== 'object') throw new TypeError('each payment must be an object')
  if (!nonEmpty(o.imp_uid)) throw new TypeError('imp_uid is required')
  if (typeof o.amount !== 'number' || !Number.isSafeInteger(o.amount) || o.amount < 0) {
    throw new TypeError(`payment ${o.imp_uid}: amount must be a non-negative integer`)
  }
  if (o.status !== undefined && o.status !== 'paid' && o.status !== 'ready' && o.status !== 'cancelled') {
    throw new TypeError(`payment ${o.imp_uid}: status must be paid, ready or cancelled`)
  }
  if (
    o.cancel_amount !== undefined &&
    (intOf(o.cancel_amount) === null || (o.cancel_amount as number) > o.amount)
  ) {
    throw new TypeError(`payment ${o.imp_uid}: cancel_amount must be an integer between 0 and amount`)
  }
  if (o.naver !== undefined) {
    const n = o.naver as Record<string, unknown> | null
    for (const f of [
      'amount_total',
      'amount_by_npoint',
      'amount_by_primary',
      'amount_supply',
      'amount_vat',
    ]) {
      if (!n || intOf(n[f]) === null || typeof n[f] !== 'number') {
        throw new TypeError(`payment ${o.imp_uid}: naver.${f} must be an integer`)
      }
    }
  }
  return o as unknown as PortonePayment
}

export function createPortoneV1Sim(): ProviderSim & {
  registerPayments(list: readonly PortonePayment[]): void
} {
  const tokens = new Map<string, { impKey: string; expiresAt: number }>()
  const tokenOfKey = new Map<string, string>()
  const payments = new Map<string, PortonePayment>()
  /** Current receipt per key (`imp:<imp_uid>` or `ext:<imp_key>:<merchant_uid>`). */
  const current = new Map<string, Receipt>()
  /** Every receipt ever issued (a key can be re-issued after a cancel), for the sandbox listing. */
  const history: Receipt[] = []
  const ledger = new LiveLedger()
  const approvals = new ApprovalNumbers()
  const counters = emptyCounters()

  const nowS = (req: SimRequest) => Math.floor(req.nowMs / 1000)

  /** The imp_key behind the request's token, or null (missing, unknown or expired). */
  function impKeyOf(req: SimRequest): string | null {
    const raw = header(req, 'authorization')
    if (!raw) return null
    const token = raw.startsWith('Bearer ') || raw.startsWith('bearer ') ? raw.slice(7).trim() : raw.trim()
    const t = tokens.get(token)
    return t && t.expiresAt > nowS(req) ? t.impKey : null
  }

  function getToken(req: SimRequest): SimResponse {
    const b = req.body ?? {}
    if (!nonEmpty(b.imp_key) || !nonEmpty(b.imp_secret)) {
      return fail(400, 'imp_key, imp_secret 파라미터가 누락되었습니다.')
    }
    const id = suffixAfter(b.imp_key, 'imp_key_')
    if (!id || b.imp_secret !== `imp_secret_${id}`) {
      return fail(401, '아임포트 API키 또는 API Secret이 올바르지 않습니다.')
    }
    const now = nowS(req)
    const impKey = b.imp_key
    const existing = tokenOfKey.get(impKey)
    let t = existing ? tokens.get(existing) : undefined
    let token = existing
    if (!t || t.expiresAt <= now) {
      if (existing) tokens.delete(existing)
      pruneHead(tokens, (v) => v.expiresAt <= now)
      token = randomHex(20)
      t = { impKey, expiresAt: now + TOKEN_TTL_S }
      tokens.set(token, t)
      tokenOfKey.set(impKey, token)
    } else if (t.expiresAt - now <= EXTEND_WITHIN_S) {
      t.expiresAt += EXTEND_BY_S
    }
    return envelope(200, 0, null, { access_token: token, expired_at: t.expiresAt, now })
  }

  const view = (r: Receipt) => ({
    ...(r.imp_uid !== undefined ? { imp_uid: r.imp_uid } : { merchant_uid: r.merchant_uid }),
    receipt_tid: r.receipt_tid,
    apply_num: r.apply_num,
    type: r.type,
    amount: r.amount,
    vat: r.vat,
    receipt_url: r.receipt_url,
    applied_at: r.applied_at,
    cancelled_at: r.cancelled_at,
  })

  /** Fields shared by both issue endpoints; an error answer, or what the receipt needs. */
  function commonFields(b: Record<string, unknown>, amount: number) {
    if (!nonEmpty(b.identifier)) return fail(400, '현금영수증 발행대상 식별정보(identifier)는 필수입니다.')
    if (b.identifier_type !== undefined && !IDENTIFIER_TYPES.has(String(b.identifier_type))) {
      return fail(400, 'identifier_type은 person, business, phone, taxcard 중 하나여야 합니다.')
    }
    if (b.type !== undefined && b.type !== 'person' && b.type !== 'company') {
      return fail(400, 'type은 person 또는 company 여야 합니다.')
    }
    const taxFree = b.tax_free === undefined || b.tax_free === '' ? 0 : intOf(b.tax_free)
    if (taxFree === null || taxFree > amount) {
      return fail(400, 'tax_free는 0 이상, 발행금액 이하의 정수여야 합니다.')
    }
    const explicitVat = b.vat_amount ?? b.vat
    let vat = vat11(amount - taxFree)
    if (explicitVat !== undefined && explicitVat !== '') {
      const v = intOf(explicitVat)
      if (v === null || v > amount - taxFree) {
        return fail(400, 'vat_amount는 0 이상, 과세금액 이하의 정수여야 합니다.')
      }
      vat = v
    }
    return {
      identifier: b.identifier.trim(),
      type: b.type === 'company' ? ('company' as const) : ('person' as const),
      vat,
    }
  }

  function issue(req: SimRequest, key: string, id: string, ext: boolean, amount: number): SimResponse {
    const fields = commonFields(req.body ?? {}, amount)
    if ('status' in fields) return fields
    const existing = current.get(key)
    if (existing && !existing.cancelled_at) {
      counters.duplicates_rejected++
      return fail(400, '이미 현금영수증이 발행된 거래건입니다.')
    }
    const r: Receipt = {
      key,
      ...(ext ? { merchant_uid: id } : { imp_uid: id }),
      receipt_tid: `SBX${randomHex(8).toUpperCase()}`,
      apply_num: approvals.next(),
      type: fields.type,
      amount,
      vat: fields.vat,
      receipt_url: `https://sandbox.invalid/iamport/receipts/${encodeURIComponent(id)}`,
      applied_at: nowS(req),
      cancelled_at: 0,
      identifier: fields.identifier,
    }
    current.set(key, r)
    history.push(r)
    ledger.change(key, 1)
    counters.issued++
    return envelope(200, 0, null, view(r))
  }

  function cancel(req: SimRequest, key: string, ext: boolean): SimResponse {
    const r = current.get(key)
    if (!r) {
      return ext
        ? fail(404, '현금영수증 발행 내역이 존재하지 않습니다.')
        : fail(400, '포트원을 통해 발행된 현금영수증이 없습니다.')
    }
    if (r.cancelled_at) return fail(400, '이미 취소된 현금영수증입니다.')
    r.cancelled_at = nowS(req)
    ledger.change(key, -1)
    counters.cancelled++
    return envelope(200, 0, null, view(r))
  }

  function receipts(req: SimRequest, impKey: string, rest: string): SimResponse {
    const ext = rest.startsWith('external/')
    const raw = ext ? rest.slice('external/'.length) : rest
    if (!raw || raw.includes('/')) return fail(404, 'Not Found')
    const id = segment(raw)
    if (id === null) return fail(400, '잘못된 경로 파라미터입니다.')
    const key = ext ? `ext:${impKey}:${id}` : `imp:${id}`
    switch (req.method) {
      case 'GET': {
        const r = current.get(key)
        return r ? envelope(200, 0, null, view(r)) : fail(404, '현금영수증 발행 내역이 존재하지 않습니다.')
      }
      case 'DELETE':
        return cancel(req, key, ext)
      case 'POST': {
        if (req.bodyInvalid) return fail(400, '요청 본문을 해석할 수 없습니다.')
        if (ext) {
          const b = req.body ?? {}
          if (!nonEmpty(b.name)) return fail(400, '주문명(name)은 필수입니다.')
          if (!nonEmpty(b.channel_key) && !nonEmpty(b.pg)) {
            return fail(400, '채널 키(channel_key)는 필수입니다.')
          }
          const amount = intOf(b.amount)
          if (amount === null || amount < 1) return fail(400, '발행금액(amount)은 1 이상의 정수여야 합니다.')
          return issue(req, key, id, true, amount)
        }
        const p = payments.get(id)
        if (!p) return fail(400, '존재하지 않는 결제정보입니다.')
        if ((p.status ?? 'paid') !== 'paid') return fail(400, '결제완료(paid) 상태가 아닌 결제건입니다.')
        const amount = p.amount - (p.cancel_amount ?? 0)
        if (amount < 1) return fail(400, '현금영수증을 발행할 잔액이 없습니다.')
        return issue(req, key, id, false, amount)
      }
      default:
        return fail(405, 'Method Not Allowed')
    }
  }

  function naverCashAmount(req: SimRequest, raw: string): SimResponse {
    if (req.method !== 'GET') return fail(405, 'Method Not Allowed')
    const id = segment(raw)
    const p = id === null ? undefined : payments.get(id)
    if (!p) return fail(400, '존재하지 않는 결제정보입니다.')
    if (!p.naver) return fail(400, '네이버페이 결제형 거래가 아닙니다.')
    return envelope(200, 0, null, { ...p.naver })
  }

  const NAVER = /^\/payments\/([^/]+)\/naver\/cash-amount$/

  return {
    name: 'portone',
    counters,
    classify(req) {
      if (req.path === '/users/getToken') {
        return {
          receiptOp: false,
          credential: typeof req.body?.imp_key === 'string' ? req.body.imp_key : null,
        }
      }
      return {
        receiptOp: req.path.startsWith('/receipts/') || NAVER.test(req.path),
        credential: impKeyOf(req),
      }
    },
    handle(req) {
      if (req.path === '/users/getToken') {
        return req.method === 'POST' ? getToken(req) : fail(405, 'Method Not Allowed')
      }
      const isReceipt = req.path.startsWith('/receipts/')
      const naver = isReceipt ? null : NAVER.exec(req.path)
      if (!isReceipt && !naver) return fail(404, 'Not Found')
      const impKey = impKeyOf(req)
      if (!impKey) return fail(401, 'Unauthorized')
      return naver
        ? naverCashAmount(req, naver[1]!)
        : receipts(req, impKey, req.path.slice('/receipts/'.length))
    },
    serverError: (req) =>
      fail(
        500,
        req.method === 'DELETE'
          ? '현금영수증 발행취소에 실패하였습니다.'
          : '현금영수증 발행에 실패하였습니다.',
      ),
    rateLimited: (s) => ({ ...fail(429, 'Too Many Requests'), headers: { 'retry-after': String(s) } }),
    maxLivePerKey: () => ledger.max,
    maxReceiptsPerKey: () => ledger.maxIssued,
    receipts(): HeldReceipt[] {
      return history.map((r) => ({
        key: r.imp_uid ?? r.merchant_uid!,
        status: r.cancelled_at ? 'cancelled' : 'issued',
        amount: r.cancelled_at ? 0 : r.amount,
        issuedAmount: r.amount,
        approvalNumber: r.apply_num,
        identifier: maskTail(r.identifier),
        issuedAt: new Date(r.applied_at * 1000).toISOString(),
      }))
    },
    reset() {
      tokens.clear()
      tokenOfKey.clear()
      payments.clear()
      current.clear()
      history.length = 0
      ledger.reset()
      Object.assign(counters, emptyCounters())
    },
    registerPayments(list) {
      const valid = list.map(validatePortonePayment) // all or nothing
      for (const p of valid) payments.set(p.imp_uid, p)
    },
  }
}
