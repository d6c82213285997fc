/**
 * PortOne V1 (api.iamport.kr) simulator, per reference/providers.md §1:
 * - POST /users/getToken (JSON or form): 30-minute token; the same token before expiry, extended by
 *   5 minutes when asked within its last minute; a new one after expiry; bad key/secret → 401.
 * - `Authorization: Bearer <t>` or the raw token (the Java client); missing/expired → 401.
 * - /receipts/{imp_uid} (amount taken from the payment) and /receipts/external/{merchant_uid}:
 *   POST issues (a second issue for a live receipt → HTTP 400, code ≠ 0), GET reads (never issued → 404),
 *   DELETE cancels in full. VAT is 1/11 of the taxable amount (round half up), never 10%.
 * - GET /payments/{imp_uid}/naver/cash-amount (400 for a payment that is not Naver Pay).
 * Envelope {code, message, response}; code 0 is success.
 * Valid credentials: imp_key `imp_key_<x>` with imp_secret `imp_secret_<x>`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { approvalNumber, header, maskTail, randomId, suffixAfter, vat11 } from '../sim.ts'

export interface PortonePayment {
  readonly imp_uid: string
  readonly amount: number
  readonly status?: 'paid' | 'ready' | 'cancelled'
  readonly naver?: { amount_total: number; amount_by_npoint: number; amount_by_primary: number; amount_supply: number; amount_vat: number }
}

interface Receipt {
  imp_uid?: string
  merchant_uid?: string
  receipt_tid: string
  apply_num: string
  type: 'person' | 'company'
  amount: number
  vat: number
  receipt_url: string
  applied_at: number
  cancelled_at: number
  identifier: string
}

const TOKEN_TTL_S = 30 * 60
const env = (status: number, code: number, message: string | null, response: unknown = null): SimResponse => ({ status, body: { code, message, response } })

export function createPortoneV1Sim() {
  const tokens = new Map<string, { impKey: string; expiresAt: number }>()
  const tokenOfKey = new Map<string, string>()
  const payments = new Map<string, PortonePayment>()
  const byImp = new Map<string, Receipt>()
  const byMerchantUid = new Map<string, Receipt>()
  const counters = { issued: 0, cancelled: 0, duplicates_rejected: 0 }

  const nowS = (req: SimRequest) => Math.floor(req.nowMs / 1000)
  function auth(req: SimRequest): string | null {
    const raw = header(req, 'authorization')
    if (!raw) return null
    const token = raw.replace(/^Bearer\s+/i, '').trim()
    const t = tokens.get(token)
    return t && t.expiresAt > nowS(req) ? t.impKey : null
  }

  function getToken(req: SimRequest): SimResponse {
    const key = req.body?.imp_key
    const secret = req.body?.imp_secret
    const id = suffixAfter(key, 'imp_key_')
    if (!id || suffixAfter(secret, 'imp_secret_') !== id) return env(401, -1, '아임포트 API키 또는 Secret이 올바르지 않습니다.')
    const now = nowS(req)
    let token = tokenOfKey.get(key as string)
    let t = token ? tokens.get(token) : undefined
    if (!t || t.expiresAt <= now) {
      token = randomId('tok_')
      t = { impKey: key as string, expiresAt: now + TOKEN_TTL_S }
      tokens.set(token, t)
      tokenOfKey.set(key as string, token)
    } else if (t.expiresAt - now <= 60) {
      t.expiresAt += 5 * 60
    }
    return env(200, 0, null, { access_token: token, expired_at: t.expiresAt, now })
  }

  const view = (r: Receipt) => {
    const { identifier: _omit, ...rest } = r
    return rest
  }

  function issue(req: SimRequest, target: Map<string, Receipt>, key: string, amount: number, ext: boolean): SimResponse {
    const b = req.body ?? {}
    const identifier = String(b.identifier ?? '').trim()
    if (!identifier) return env(400, 1, '현금영수증 발행대상 식별정보(identifier)가 누락되었습니다.')
    const existing = target.get(key)
    if (existing && !existing.cancelled_at) {
      counters.duplicates_rejected++
      return env(400, 1, '이미 현금영수증이 발급된 거래입니다.')
    }
    const taxFree = Number(b.tax_free ?? 0)
    const vat = b.vat_amount !== undefined ? Number(b.vat_amount) : vat11(Math.max(0, amount - taxFree))
    const r: Receipt = {
      ...(ext ? { merchant_uid: key } : { imp_uid: key }),
      receipt_tid: randomId('tid_'),
      apply_num: approvalNumber(),
      type: b.type === 'company' ? 'company' : 'person',
      amount,
      vat,
      receipt_url: `https://sandbox.invalid/receipts/${encodeURIComponent(key)}`,
      applied_at: nowS(req),
      cancelled_at: 0,
      identifier,
    }
    target.set(key, r)
    counters.issued++
    return env(200, 0, null, view(r))
  }

  function receipts(req: SimRequest, impKey: string): SimResponse {
    const ext = /^\/receipts\/external\/([^/]+)$/.exec(req.path)
    const imp = /^\/receipts\/([^/]+)$/.exec(req.path)
    const m = ext ?? imp
    if (!m) return env(404, -1, 'Not Found')
    const id = decodeURIComponent(m[1]!)
    const target = ext ? byMerchantUid : byImp
    const key = ext ? `${impKey}\u0000${id}` : id
    const r = target.get(key)
    if (req.method === 'GET') return r ? env(200, 0, null, { ...view(r), ...(ext ? { merchant_uid: id } : {}) }) : env(404, 1, '현금영수증 발급 내역이 존재하지 않습니다.')
    if (req.method === 'DELETE') {
      if (!r || r.cancelled_at) return env(ext ? 404 : 400, 1, '취소할 현금영수증 발급 내역이 존재하지 않습니다.')
      r.cancelled_at = nowS(req)
      counters.cancelled++
      return env(200, 0, null, { ...view(r), ...(ext ? { merchant_uid: id } : {}) })
    }
    if (req.method !== 'POST') return env(405, -1, 'Method Not Allowed')
    if (ext) {
      const b = req.body ?? {}
      for (const f of ['name', 'amount', 'identifier', 'channel_key']) {
        if (b[f] === undefined || b[f] === '') return env(400, 1, `필수 파라미터(${f})가 누락되었습니다.`)
      }
      const amount = Number(b.amount)
      if (!Number.isInteger(amount) || amount < 1) return env(400, 1, 'amount는 1 이상의 정수여야 합니다.')
      const res = issue(req, byMerchantUid, key, amount, true)
      return res.status === 200 ? { ...res, body: { ...(res.body as object), response: { ...(res.body as { response: object }).response, merchant_uid: id } } } : res
    }
    const payment = payments.get(id)
    if (!payment) return env(400, 1, '존재하지 않는 결제정보입니다.')
    if ((payment.status ?? 'paid') !== 'paid') return env(400, 1, '결제완료 상태가 아닌 거래입니다.')
    return issue(req, byImp, id, payment.amount, false)
  }

  const sim: ProviderSim = {
    name: 'portone',
    counters,
    isReceiptOp: (req) => req.path.startsWith('/receipts/') || req.path.startsWith('/payments/'),
    credentialOf: (req) => (req.path === '/users/getToken' ? String(req.body?.imp_key ?? '') || null : auth(req)),
    handle(req) {
      if (req.path === '/users/getToken' && req.method === 'POST') return getToken(req)
      const impKey = auth(req)
      if (!impKey) return env(401, -1, 'Unauthorized')
      const naver = /^\/payments\/([^/]+)\/naver\/cash-amount$/.exec(req.path)
      if (naver && req.method === 'GET') {
        const p = payments.get(decodeURIComponent(naver[1]!))
        if (!p) return env(404, 1, '존재하지 않는 결제정보입니다.')
        if (!p.naver) return env(400, 1, '네이버페이 결제형 거래가 아닙니다.')
        return env(200, 0, null, p.naver)
      }
      return receipts(req, impKey)
    },
    serverError: () => env(500, -1, 'PG사 현금영수증 처리 중 오류가 발생했습니다.'),
    rateLimited: (s) => ({ ...env(429, -1, 'Too Many Requests'), headers: { 'retry-after': String(s) } }),
    *livePerKey() {
      for (const r of byImp.values()) yield r.cancelled_at ? 0 : 1
      for (const r of byMerchantUid.values()) yield r.cancelled_at ? 0 : 1
    },
    receipts(): HeldReceipt[] {
      return [...byImp.entries(), ...byMerchantUid.entries()].map(([k, r]) => ({
        key: k.split('\u0000').at(-1)!,
        status: r.cancelled_at ? 'cancelled' : 'issued',
        amount: r.amount,
        approvalNumber: r.apply_num,
        identifier: maskTail(r.identifier),
      }))
    },
    reset() {
      tokens.clear()
      tokenOfKey.clear()
      byImp.clear()
      byMerchantUid.clear()
      payments.clear()
      Object.assign(counters, { issued: 0, cancelled: 0, duplicates_rejected: 0 })
    },
  }
  return {
    sim,
    registerPayments(list: readonly PortonePayment[]) {
      for (const p of list) payments.set(p.imp_uid, p)
    },
  }
}
