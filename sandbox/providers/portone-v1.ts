/**
 * PortOne V1 (api.iamport.kr) simulator, per docs/providers.md §1 (PortOne's V1 API schema, its
 * guide "현금영수증 단건발급 API" and the Naver Pay "Get cash receipt amount API").
 *
 * - `POST /users/getToken` with `imp_key`/`imp_secret` as JSON or form: a 30-minute token; asking again
 *   before expiry returns the same token, extended by 5 minutes when asked within its last minute; a new
 *   one after expiry; a bad key or secret → 401.
 * - Other calls take the token in `Authorization` (`Bearer <token>` or the raw token, as the official
 *   Java and Node clients send it) or in `X-ImpTokenHeader` (the official Python client); missing,
 *   unknown or expired → 401.
 * - A receipt by imp_uid belongs to the merchant (imp_key) that issued it, and a payment registered
 *   with an `imp_key` to that merchant: another merchant's token reads 404 and cancels 400 (the
 *   documented answers for a receipt that does not exist / was never issued), and issues 400
 *   (unknown payment).
 * - Per-PG fields (the V1 schema's `x-portone-per-pg` notes), by the merchant's PG registered through
 *   `POST /_sandbox/portone/merchants` `[{imp_key, pg_provider}]` (unregistered: no PG-specific rule):
 *   see PG_RULES. A PG the endpoint does not support → 501.
 * - `/receipts/{imp_uid}`: the amount comes from the payment (remaining balance after refunds), which
 *   must be registered (`POST /_sandbox/portone/payments`) and `paid`, else 400.
 * - `/receipts/external/{merchant_uid}`: cash taken outside PortOne; `name`, `amount`, `identifier` and
 *   `channel_key` (or the older `pg`) are required.
 * - A second issue for a key with a live receipt → HTTP 400 with a non-zero code (not 422). GET of a
 *   never-issued key → 404. DELETE cancels in full: never issued → 400 (imp_uid) / 404 (external).
 * - VAT is 1/11 of (amount − tax_free), rounded half up, unless `vat_amount` (or the deprecated `vat`)
 *   is sent — never 10%.
 * - `GET /payments/{imp_uid}/naver/cash-amount`: 400 unless the payment is a Naver Pay 결제형 one.
 * - `POST /receipts/{imp_uid}` for a Naver Pay payment → 501 (naverpay is not among the PGs the call
 *   supports); its cash part is issued as an external receipt.
 * Envelope `{code, message, response}`, code 0 = success, -1 for every error (the exact non-zero values
 * are not documented).
 * Valid credentials: imp_key `imp_key_<x>` with imp_secret `imp_secret_<x>`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { ApprovalNumbers, LiveLedger, emptyCounters, header, intOf, maskTail, nonEmpty, pruneHead, randomHex, segment, suffixAfter, vat11 } from '../sim.ts'

/** A payment PortOne processed, registered through `POST /_sandbox/portone/payments`. */
export interface PortonePayment {
  readonly imp_uid: string
  readonly amount: number
  /** Default `paid`; receipts can only be issued for paid payments. */
  readonly status?: 'paid' | 'ready' | 'cancelled'
  /** Sandbox extension: amount refunded so far; the receipt is issued for the remaining balance. */
  readonly cancel_amount?: number
  /** Sandbox extension: the merchant (imp_key) the payment belongs to; unset = any merchant's. */
  readonly imp_key?: string
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
  /** The merchant (imp_key) whose token issued it. */
  readonly impKey: string
}

/** PG codes of the V1 API (`pg_provider`) that the sandbox knows rules for. */
export const PORTONE_V1_PGS = ['html5_inicis', 'kcp', 'nice', 'kicc', 'settle', 'daou', 'tosspayments', 'ksnet', 'smartro', 'smartro_v2', 'nice_v2', 'welcome'] as const
export type PortoneV1Pg = (typeof PORTONE_V1_PGS)[number]

/** A merchant's PG, registered through `POST /_sandbox/portone/merchants`. */
export interface PortoneMerchant {
  readonly imp_key: string
  readonly pg_provider: PortoneV1Pg
}

/**
 * Per-PG rules of `POST /receipts/{imp_uid}` and `POST /receipts/external/{merchant_uid}` (V1 schema,
 * `x-portone-per-pg` of each parameter and `x-portone-supported-pgs` of each operation).
 */
interface PgRule {
  /** Parameters this PG requires on issue (both endpoints unless `externalOnly`/`impOnly`). */
  readonly required: readonly string[]
  readonly requiredImpOnly?: readonly string[]
  readonly requiredExternalOnly?: readonly string[]
  /** KSNET: identifiers are digits only (its guide: a hyphen makes the receipt silently not issued). */
  readonly digitsOnly?: boolean
  /** (신) 나이스페이: no receipt by 국세청현금영수증카드 number through the API. */
  readonly noTaxcard?: boolean
}
const PG_RULES: Readonly<Record<PortoneV1Pg, PgRule>> = {
  html5_inicis: { required: [] },
  kcp: { required: [] },
  nice: { required: [] },
  kicc: { required: ['identifier_type'] },
  settle: { required: ['identifier_type'] },
  daou: { required: [], requiredImpOnly: ['company_tel', 'company_name', 'corp_reg_no'] },
  tosspayments: { required: [] },
  ksnet: { required: ['product_type', 'buyer_name'], digitsOnly: true },
  smartro: { required: [] },
  smartro_v2: { required: ['type', 'buyer_name', 'buyer_tel'] },
  nice_v2: { required: ['identifier_type', 'type'], noTaxcard: true },
  welcome: { required: ['type', 'buyer_tel', 'corp_reg_no'], requiredExternalOnly: ['pay_method'] },
}
/** `x-portone-supported-pgs` per operation (imp_uid issue and cancel, external issue). */
const SUPPORTED: Readonly<Record<'imp_issue' | 'imp_cancel' | 'ext_issue', ReadonlySet<string>>> = {
  imp_issue: new Set(['html5_inicis', 'kcp', 'nice', 'kicc', 'settle', 'daou', 'tosspayments', 'ksnet', 'smartro', 'smartro_v2', 'nice_v2', 'welcome']),
  imp_cancel: new Set(['html5_inicis', 'kcp', 'settle', 'nice', 'daou', 'tosspayments', 'nice_v2', 'ksnet', 'smartro_v2', 'welcome']),
  ext_issue: new Set(['html5_inicis', 'kcp', 'settle', 'nice', 'kicc', 'tosspayments', 'nice_v2', 'ksnet', 'smartro', 'smartro_v2', 'welcome']),
}
/** NTS self-issue number: 소득공제 only. */
const SELF_ISSUE = '0100001234'

const TOKEN_TTL_S = 30 * 60
const EXTEND_WITHIN_S = 60
const EXTEND_BY_S = 5 * 60
const IDENTIFIER_TYPES = new Set(['person', 'business', 'phone', 'taxcard'])

const envelope = (status: number, code: number, message: string | null, response: unknown = null): SimResponse => ({
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
  if (o.cancel_amount !== undefined && (intOf(o.cancel_amount) === null || (o.cancel_amount as number) > o.amount)) {
    throw new TypeError(`payment ${o.imp_uid}: cancel_amount must be an integer between 0 and amount`)
  }
  if (o.imp_key !== undefined && !nonEmpty(o.imp_key)) {
    throw new TypeError(`payment ${o.imp_uid}: imp_key must be a non-empty string`)
  }
  if (o.naver !== undefined) {
    const n = o.naver as Record<string, unknown> | null
    for (const f of ['amount_total', 'amount_by_npoint', 'amount_by_primary', 'amount_supply', 'amount_vat']) {
      if (!n || intOf(n[f]) === null || typeof n[f] !== 'number') {
        throw new TypeError(`payment ${o.imp_uid}: naver.${f} must be an integer`)
      }
    }
  }
  return o as unknown as PortonePayment
}

export function validatePortoneMerchant(m: unknown): PortoneMerchant {
  const o = m as Record<string, unknown> | null
  if (!o || typeof o !== 'object' || !nonEmpty(o.imp_key)) throw new TypeError('each merchant needs an imp_key')
  if (!(PORTONE_V1_PGS as readonly unknown[]).includes(o.pg_provider)) {
    throw new TypeError(`merchant ${o.imp_key}: pg_provider must be one of ${PORTONE_V1_PGS.join(', ')}`)
  }
  return o as unknown as PortoneMerchant
}

export function createPortoneV1Sim(): ProviderSim & {
  registerPayments(list: readonly PortonePayment[]): void
  registerMerchants(list: readonly PortoneMerchant[]): void
} {
  const tokens = new Map<string, { impKey: string; expiresAt: number }>()
  const tokenOfKey = new Map<string, string>()
  const payments = new Map<string, PortonePayment>()
  /** imp_key → the merchant's PG. */
  const pgOf = new Map<string, PortoneV1Pg>()
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
    const raw = header(req, 'authorization') ?? header(req, 'x-imptokenheader')
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

  /** The merchant's PG rules for an issue: an error answer, or null when the request satisfies them. */
  function pgCheck(b: Record<string, unknown>, pg: PortoneV1Pg | undefined, ext: boolean): SimResponse | null {
    if (!pg) return null
    if (!SUPPORTED[ext ? 'ext_issue' : 'imp_issue'].has(pg)) {
      return fail(501, `현재 포트원이 현금영수증 관련 지원하지 않는 PG사입니다. (${pg})`)
    }
    const rule = PG_RULES[pg]
    const required = [...rule.required, ...((ext ? rule.requiredExternalOnly : rule.requiredImpOnly) ?? [])]
    for (const f of required) {
      if (!nonEmpty(b[f])) return fail(400, `${pg} 현금영수증 발행 시 ${f} 파라미터는 필수입니다.`)
    }
    if (b.product_type !== undefined && b.product_type !== 'real' && b.product_type !== 'digital') {
      return fail(400, 'product_type은 real 또는 digital 이어야 합니다.')
    }
    if (ext && b.pay_method !== undefined && b.pay_method !== 'trans' && b.pay_method !== 'vbank') {
      return fail(400, 'pay_method는 trans 또는 vbank 여야 합니다.')
    }
    if (rule.digitsOnly && typeof b.identifier === 'string' && !/^\d+$/.test(b.identifier)) {
      return fail(400, `${pg} 현금영수증 식별정보(identifier)는 하이픈(-) 없이 숫자만 입력해야 합니다.`)
    }
    if (rule.noTaxcard && b.identifier_type === 'taxcard') {
      return fail(400, `${pg}는 API로 국세청현금영수증카드 번호 발급을 지원하지 않습니다.`)
    }
    return null
  }

  /** Fields shared by both issue endpoints; an error answer, or what the receipt needs. */
  function commonFields(b: Record<string, unknown>, amount: number) {
    if (!nonEmpty(b.identifier)) return fail(400, '현금영수증 발행대상 식별정보(identifier)는 필수입니다.')
    if (b.type === 'company' && b.identifier.replace(/\D/g, '') === SELF_ISSUE) {
      return fail(400, '자진발급 번호(010-000-1234)는 소득공제(person) 현금영수증에만 사용할 수 있습니다.')
    }
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

  function issue(req: SimRequest, impKey: string, key: string, id: string, ext: boolean, amount: number): SimResponse {
    const b = req.body ?? {}
    const pgError = pgCheck(b, pgOf.get(impKey), ext)
    if (pgError) return pgError
    const fields = commonFields(b, amount)
    if ('status' in fields) return fields
    const existing = current.get(key)
    if (existing && existing.impKey !== impKey) return fail(400, '존재하지 않는 결제정보입니다.')
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
      impKey,
    }
    current.set(key, r)
    history.push(r)
    ledger.change(key, 1)
    counters.issued++
    return envelope(200, 0, null, view(r))
  }

  function cancel(req: SimRequest, impKey: string, key: string, ext: boolean): SimResponse {
    const pg = pgOf.get(impKey)
    if (!ext && pg && !SUPPORTED.imp_cancel.has(pg)) {
      return fail(501, `현재 포트원이 현금영수증 관련 지원하지 않는 PG사입니다. (${pg})`)
    }
    // Another merchant's receipt is, to this merchant, one that was never issued.
    const r = ownedBy(current.get(key), impKey)
    if (!r) {
      return ext ? fail(404, '현금영수증 발행 내역이 존재하지 않습니다.') : fail(400, '포트원을 통해 발행된 현금영수증이 없습니다.')
    }
    if (r.cancelled_at) return fail(400, '이미 취소된 현금영수증입니다.')
    r.cancelled_at = nowS(req)
    ledger.change(key, -1)
    counters.cancelled++
    return envelope(200, 0, null, view(r))
  }

  const ownedBy = (r: Receipt | undefined, impKey: string) => (r && r.impKey === impKey ? r : undefined)

  function receipts(req: SimRequest, impKey: string, rest: string): SimResponse {
    const ext = rest.startsWith('external/')
    const raw = ext ? rest.slice('external/'.length) : rest
    if (!raw || raw.includes('/')) return fail(404, 'Not Found')
    const id = segment(raw)
    if (id === null) return fail(400, '잘못된 경로 파라미터입니다.')
    const key = ext ? `ext:${impKey}:${id}` : `imp:${id}`
    switch (req.method) {
      case 'GET': {
        const r = ownedBy(current.get(key), impKey)
        return r ? envelope(200, 0, null, view(r)) : fail(404, '현금영수증 발행 내역이 존재하지 않습니다.')
      }
      case 'DELETE':
        return cancel(req, impKey, key, ext)
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
          return issue(req, impKey, key, id, true, amount)
        }
        const p = payments.get(id)
        if (!p || (p.imp_key !== undefined && p.imp_key !== impKey)) return fail(400, '존재하지 않는 결제정보입니다.')
        // Naver Pay (결제형) is not among the PGs this call supports; its cash part is receipted on
        // the external route with the amount from /payments/{imp_uid}/naver/cash-amount.
        if (p.naver) return fail(501, '현재 포트원이 현금영수증 관련 지원하지 않는 PG사입니다.')
        if ((p.status ?? 'paid') !== 'paid') return fail(400, '결제완료(paid) 상태가 아닌 결제건입니다.')
        const amount = p.amount - (p.cancel_amount ?? 0)
        if (amount < 1) return fail(400, '현금영수증을 발행할 잔액이 없습니다.')
        return issue(req, impKey, key, id, false, amount)
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
      return naver ? naverCashAmount(req, naver[1]!) : receipts(req, impKey, req.path.slice('/receipts/'.length))
    },
    serverError: (req) => fail(500, req.method === 'DELETE' ? '현금영수증 발행취소에 실패하였습니다.' : '현금영수증 발행에 실패하였습니다.'),
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
      pgOf.clear()
      current.clear()
      history.length = 0
      ledger.reset()
      Object.assign(counters, emptyCounters())
    },
    registerPayments(list) {
      const valid = list.map(validatePortonePayment) // all or nothing
      for (const p of valid) payments.set(p.imp_uid, p)
    },
    registerMerchants(list) {
      const valid = list.map(validatePortoneMerchant) // all or nothing
      for (const m of valid) pgOf.set(m.imp_key, m.pg_provider)
    },
  }
}
