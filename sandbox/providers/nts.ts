/**
 * NTS-style direct API simulator. No public NTS API exists; this follows the shape an unofficial blog article describes
 * (docs/providers.md §4: a bearer token from an auth call; `POST /api/v1/cashReceipt/issue` with businessNumber, transactionDate,
 * transactionTime, transactionAmount, the consumer identifier and receiptPurpose; a daily issuance
 * limit) plus the smallest extension exactly-once issuance needs, documented in sandbox/README.md:
 *
 * - `POST /oauth/token` (client credentials, JSON or form) → `{access_token, token_type: 'Bearer',
 *   expires_in: 3600}`; every call mints a new token and earlier ones stay valid until they expire.
 * - `clientReference` on issue (our deterministic key); `GET /api/v1/cashReceipt?clientReference=…`
 *   returns every receipt held for it.
 * - `POST /api/v1/cashReceipt/cancel` references the original approval number and trade date, with
 *   reason 1/2/3 and an amount (partial allowed); a cancel is its own transaction with its own
 *   approval number.
 * - Like NTS, it does NOT deduplicate: a second issue with the same clientReference is a second receipt.
 * - A daily issuance quota per credential, reset at 00:00 KST → 429 `QUOTA_EXCEEDED`.
 * Envelope `{resultCode, resultMessage, …}`; `0000` = success; validation codes borrow the NTS filing
 * error family (TS1 identifier, TS4 amounts, TS6 date, TS7 business number, TSC/TSE/TSG for cancels).
 * Valid credentials: client_id `nts-<x>` with client_secret `nts-secret-<x>`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { ApprovalNumbers, LiveLedger, emptyCounters, header, intOf, kstDate, maskTail, msToKstMidnight, nonEmpty, pruneHead, randomHex, suffixAfter, vat11 } from '../sim.ts'

type Purpose = '소득공제' | '지출증빙'

interface Cancellation {
  readonly approvalNumber: string
  readonly transactionDate: string
  readonly cancelAmount: number
  readonly cancelReason: 1 | 2 | 3
  readonly cancelledAt: string
}

interface NtsReceipt {
  readonly ledgerKey: string
  readonly clientReference: string
  readonly approvalNumber: string
  readonly businessNumber: string
  readonly transactionDate: string
  readonly transactionTime: string
  readonly amount: number
  readonly supply: number
  readonly vat: number
  readonly fee: number
  readonly purpose: Purpose
  readonly identifier: string
  readonly identifierType: string
  readonly issuedAt: string
  cancelled: number
  cancelledAt: string | null
  readonly cancellations: Cancellation[]
}

/** Access-token lifetime in seconds. */
export const NTS_TOKEN_TTL_S = 3600
/** Default daily issuance quota per credential. */
export const NTS_DEFAULT_DAILY_QUOTA = 1_000_000

const ID_TYPES = new Set(['PHONE', 'BUSINESS', 'CARD', 'RRN'])
const SELF_ISSUE = '0100001234'
const OK_MESSAGE = '정상 처리되었습니다.'

const res = (status: number, resultCode: string, resultMessage: string, extra: object = {}): SimResponse => ({
  status,
  body: { resultCode, resultMessage, ...extra },
})

function validDate(yyyymmdd: string): boolean {
  if (!/^\d{8}$/.test(yyyymmdd)) return false
  const y = Number(yyyymmdd.slice(0, 4))
  const m = Number(yyyymmdd.slice(4, 6))
  const d = Number(yyyymmdd.slice(6, 8))
  const dt = new Date(Date.UTC(y, m - 1, d))
  return y >= 2000 && dt.getUTCFullYear() === y && dt.getUTCMonth() === m - 1 && dt.getUTCDate() === d
}

const validTime = (hhmmss: string) => /^\d{6}$/.test(hhmmss) && Number(hhmmss.slice(0, 2)) < 24 && Number(hhmmss.slice(2, 4)) < 60 && Number(hhmmss.slice(4, 6)) < 60

/** NTS rule TS1: 10–13 digits (phone, business, resident number) or a 13–19-digit card number. */
function identifierProblem(id: string, type: string | null): string | null {
  if (!/^\d+$/.test(id)) return '신분확인번호는 숫자만 입력합니다.'
  if (type === 'CARD') return id.length >= 13 && id.length <= 19 ? null : '카드번호 자릿수 오류'
  if (type === 'BUSINESS') return id.length === 10 ? null : '사업자등록번호 자릿수 오류'
  if (type === 'RRN') return id.length === 13 ? null : '주민등록번호 자릿수 오류'
  if (type === 'PHONE') {
    return id.length >= 10 && id.length <= 11 && id.startsWith('0') ? null : '휴대전화번호 자릿수 오류'
  }
  return id.length >= 10 && id.length <= 19 ? null : '신분확인번호 자릿수 오류'
}

export function createNtsSim(opts: { dailyQuota?: number | null } = {}): ProviderSim & { setDailyQuota(n: number | null): void } {
  let dailyQuota = opts.dailyQuota ?? NTS_DEFAULT_DAILY_QUOTA
  const tokens = new Map<string, { clientId: string; expiresAt: number }>()
  const byRef = new Map<string, NtsReceipt[]>()
  const byApproval = new Map<string, NtsReceipt>()
  const all: NtsReceipt[] = []
  const quota = new Map<string, { day: string; used: number }>()
  const ledger = new LiveLedger()
  const approvals = new ApprovalNumbers()
  const counters = emptyCounters()

  /** The client id behind a bearer token, or why not. */
  function auth(req: SimRequest): { clientId: string } | SimResponse {
    const raw = header(req, 'authorization') ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(raw)
    if (!m) return res(401, 'AUTH_REQUIRED', '인증 토큰이 필요합니다.')
    const t = tokens.get(m[1]!)
    if (!t) return res(401, 'INVALID_TOKEN', '유효하지 않은 인증 토큰입니다.')
    if (t.expiresAt <= req.nowMs) return res(401, 'TOKEN_EXPIRED', '인증 토큰이 만료되었습니다.')
    return { clientId: t.clientId }
  }

  function token(req: SimRequest): SimResponse {
    const b = req.body ?? {}
    if (b.grant_type !== undefined && b.grant_type !== 'client_credentials') {
      return res(400, 'UNSUPPORTED_GRANT_TYPE', 'grant_type은 client_credentials만 지원합니다.', {
        error: 'unsupported_grant_type',
      })
    }
    if (!nonEmpty(b.client_id) || !nonEmpty(b.client_secret)) {
      return res(400, 'E001', '필수 항목 누락: client_id, client_secret', { error: 'invalid_request' })
    }
    const id = suffixAfter(b.client_id, 'nts-')
    if (!id || b.client_secret !== `nts-secret-${id}`) {
      return res(401, 'AUTH_FAILED', '클라이언트 인증에 실패했습니다.', { error: 'invalid_client' })
    }
    pruneHead(tokens, (v) => v.expiresAt <= req.nowMs)
    const t = `nts_${randomHex(24)}`
    tokens.set(t, { clientId: b.client_id, expiresAt: req.nowMs + NTS_TOKEN_TTL_S * 1000 })
    return { status: 200, body: { access_token: t, token_type: 'Bearer', expires_in: NTS_TOKEN_TTL_S } }
  }

  function issue(req: SimRequest, clientId: string): SimResponse {
    if (req.bodyInvalid || !req.body) return res(400, 'E000', '요청 본문이 올바른 JSON이 아닙니다.')
    const b = req.body
    const consumer = b.consumerIdentifier ?? b.consumerPhone
    const required: [string, unknown][] = [
      ['businessNumber', b.businessNumber],
      ['transactionDate', b.transactionDate],
      ['transactionTime', b.transactionTime],
      ['transactionAmount', b.transactionAmount],
      ['consumerIdentifier', consumer],
      ['receiptPurpose', b.receiptPurpose],
      ['clientReference', b.clientReference],
    ]
    const missing = required.find(([, v]) => v === undefined || v === null || v === '')
    if (missing) return res(400, 'E001', `필수 항목 누락: ${missing[0]}`)
    const businessNumber = String(b.businessNumber).replace(/-/g, '')
    if (!/^\d{10}$/.test(businessNumber)) return res(400, 'TS7', '사업자등록번호 오류')
    const date = String(b.transactionDate)
    const time = String(b.transactionTime)
    if (!validDate(date) || !validTime(time)) return res(400, 'TS6', '거래일자 오류 (YYYYMMDD, HHMMSS)')
    const total = intOf(b.transactionAmount)
    const fee = b.serviceFee === undefined || b.serviceFee === null ? 0 : intOf(b.serviceFee)
    if (total === null || total < 1 || fee === null || fee > total) return res(400, 'TS4', '금액 오류')
    const vatIn = b.vatAmount === undefined || b.vatAmount === null ? null : intOf(b.vatAmount)
    if (vatIn === null && b.vatAmount !== undefined && b.vatAmount !== null) {
      return res(400, 'TS4', '금액 오류 (부가세)')
    }
    const supplyIn = b.supplyAmount === undefined || b.supplyAmount === null ? null : intOf(b.supplyAmount)
    if (supplyIn === null && b.supplyAmount !== undefined && b.supplyAmount !== null) {
      return res(400, 'TS4', '금액 오류 (공급가액)')
    }
    // Omitted amounts follow the total: VAT is 1/11 of what is not service fee (never 10%).
    const vat = vatIn ?? (supplyIn === null ? vat11(total - fee) : total - fee - supplyIn)
    const supply = supplyIn ?? total - fee - vat
    if (supply < 0 || vat < 0 || supply + vat + fee !== total || supply < vat) {
      return res(400, 'TS4', '금액 오류 (거래금액 = 공급가액 + 부가세 + 봉사료)')
    }
    const idType = b.identifierType === undefined || b.identifierType === null ? null : String(b.identifierType)
    if (idType !== null && !ID_TYPES.has(idType)) {
      return res(400, 'E002', 'identifierType은 PHONE, BUSINESS, CARD, RRN 중 하나입니다.')
    }
    const identifier = String(consumer).replace(/-/g, '')
    const problem = identifierProblem(identifier, identifier === SELF_ISSUE ? null : idType)
    if (problem) return res(400, 'TS1', problem)
    const purpose = b.receiptPurpose
    if (purpose !== '소득공제' && purpose !== '지출증빙') {
      return res(400, 'E002', 'receiptPurpose는 소득공제 또는 지출증빙입니다.')
    }
    if (identifier === SELF_ISSUE && purpose !== '소득공제') {
      return res(400, 'TS1', '자진발급(0100001234)은 소득공제만 가능합니다.')
    }
    const reference = String(b.clientReference)
    if (reference.length > 64) return res(400, 'E002', 'clientReference는 64자 이하입니다.')

    const today = kstDate(req.nowMs)
    let q = quota.get(clientId)
    if (!q || q.day !== today) quota.set(clientId, (q = { day: today, used: 0 }))
    if (q.used >= dailyQuota) {
      counters.rate_limited++
      return {
        ...res(429, 'QUOTA_EXCEEDED', `일일 발급 한도(${dailyQuota}건)를 초과했습니다. 00:00(KST)에 초기화됩니다.`),
        headers: { 'retry-after': String(Math.ceil(msToKstMidnight(req.nowMs) / 1000)) },
      }
    }
    q.used++

    const ledgerKey = `${clientId}\u0000${reference}`
    const r: NtsReceipt = {
      ledgerKey,
      clientReference: reference,
      approvalNumber: approvals.next(),
      businessNumber,
      transactionDate: date,
      transactionTime: time,
      amount: total,
      supply,
      vat,
      fee,
      purpose,
      identifier,
      identifierType: idType ?? 'UNSPECIFIED',
      issuedAt: new Date(req.nowMs).toISOString(),
      cancelled: 0,
      cancelledAt: null,
      cancellations: [],
    }
    const list = byRef.get(ledgerKey)
    if (list) list.push(r)
    else byRef.set(ledgerKey, [r])
    byApproval.set(`${clientId}\u0000${r.approvalNumber}\u0000${date}`, r)
    all.push(r)
    ledger.change(ledgerKey, 1)
    counters.issued++
    return res(200, '0000', OK_MESSAGE, {
      approvalNumber: r.approvalNumber,
      transactionDate: date,
      clientReference: reference,
      transactionAmount: total,
      supplyAmount: supply,
      vatAmount: vat,
      serviceFee: fee,
      issuedAt: r.issuedAt,
    })
  }

  const view = (r: NtsReceipt) => ({
    approvalNumber: r.approvalNumber,
    status: r.cancelled >= r.amount ? 'CANCELLED' : 'ISSUED',
    clientReference: r.clientReference,
    transactionDate: r.transactionDate,
    transactionTime: r.transactionTime,
    transactionAmount: r.amount,
    supplyAmount: r.supply,
    vatAmount: r.vat,
    serviceFee: r.fee,
    cancelledAmount: r.cancelled,
    remainingAmount: r.amount - r.cancelled,
    receiptPurpose: r.purpose,
    consumerIdentifier: maskTail(r.identifier),
    issuedAt: r.issuedAt,
    cancelledAt: r.cancelledAt,
    cancellations: r.cancellations.map((c) => ({ ...c })),
  })

  function cancel(req: SimRequest, clientId: string): SimResponse {
    if (req.bodyInvalid || !req.body) return res(400, 'E000', '요청 본문이 올바른 JSON이 아닙니다.')
    const b = req.body
    if (!nonEmpty(String(b.originalApprovalNumber ?? ''))) {
      return res(400, 'E001', '필수 항목 누락: originalApprovalNumber')
    }
    if (!nonEmpty(String(b.originalTransactionDate ?? ''))) {
      return res(400, 'E001', '필수 항목 누락: originalTransactionDate')
    }
    const reason = Number(b.cancelReason)
    if (b.cancelReason === undefined || (reason !== 1 && reason !== 2 && reason !== 3) || String(b.cancelReason).trim() !== String(reason)) {
      return res(400, 'E002', 'cancelReason은 1(거래취소), 2(오류발급취소), 3(기타) 중 하나입니다.')
    }
    const r = byApproval.get(`${clientId}\u0000${String(b.originalApprovalNumber)}\u0000${String(b.originalTransactionDate)}`)
    if (!r) return res(404, 'TSC', '원거래 승인번호/거래일자가 국세청에 존재하지 않습니다.')
    if (b.businessNumber !== undefined && String(b.businessNumber).replace(/-/g, '') !== r.businessNumber) {
      return res(400, 'TSE', '취소거래와 원거래의 사업자등록번호가 다릅니다.')
    }
    const left = r.amount - r.cancelled
    const amount = b.cancelAmount === undefined || b.cancelAmount === null ? left : intOf(b.cancelAmount)
    if (left === 0) return res(400, 'TSG', '이미 전액 취소된 거래입니다.')
    if (amount === null || amount < 1 || amount > left) {
      return res(400, 'TSG', `취소 금액 오류 (취소 가능 금액 ${left})`)
    }
    const c: Cancellation = {
      approvalNumber: approvals.next(),
      transactionDate: kstDate(req.nowMs),
      cancelAmount: amount,
      cancelReason: reason,
      cancelledAt: new Date(req.nowMs).toISOString(),
    }
    r.cancellations.push(c)
    r.cancelled += amount
    if (r.cancelled >= r.amount) {
      r.cancelledAt = c.cancelledAt
      ledger.change(r.ledgerKey, -1)
      counters.cancelled++
    }
    return res(200, '0000', OK_MESSAGE, {
      approvalNumber: c.approvalNumber,
      transactionDate: c.transactionDate,
      cancelledAmount: amount,
      remainingAmount: r.amount - r.cancelled,
      receipt: view(r),
    })
  }

  function lookup(req: SimRequest, clientId: string): SimResponse {
    const ref = req.query.get('clientReference')
    if (!ref) return res(400, 'E001', '필수 항목 누락: clientReference')
    const list = byRef.get(`${clientId}\u0000${ref}`) ?? []
    return res(200, '0000', OK_MESSAGE, { clientReference: ref, receipts: list.map(view) })
  }

  return {
    name: 'nts',
    counters,
    classify(req) {
      if (req.path === '/oauth/token') {
        return {
          receiptOp: false,
          credential: typeof req.body?.client_id === 'string' ? req.body.client_id : null,
        }
      }
      const a = req.path.startsWith('/api/') ? auth(req) : null
      return {
        receiptOp: req.path.startsWith('/api/v1/cashReceipt'),
        credential: a && 'clientId' in a ? a.clientId : null,
      }
    },
    handle(req) {
      if (req.path === '/oauth/token') {
        return req.method === 'POST' ? token(req) : res(405, 'E405', '허용되지 않는 메서드입니다.')
      }
      const route =
        req.path === '/api/v1/cashReceipt/issue'
          ? ['POST', issue]
          : req.path === '/api/v1/cashReceipt/cancel'
            ? ['POST', cancel]
            : req.path === '/api/v1/cashReceipt'
              ? ['GET', lookup]
              : null
      if (!route) return res(404, 'E404', '요청한 경로가 존재하지 않습니다.')
      const a = auth(req)
      if (!('clientId' in a)) return a
      const [method, fn] = route as [string, (r: SimRequest, c: string) => SimResponse]
      return req.method === method ? fn(req, a.clientId) : res(405, 'E405', '허용되지 않는 메서드입니다.')
    },
    serverError: () => res(503, 'SYSTEM_ERROR', '일시적인 시스템 오류로 처리되지 않았습니다. 잠시 후 다시 시도하세요.'),
    rateLimited: (s) => ({
      ...res(429, 'RATE_LIMITED', '요청이 너무 많습니다. 잠시 후 다시 시도하세요.'),
      headers: { 'retry-after': String(s) },
    }),
    maxLivePerKey: () => ledger.max,
    maxReceiptsPerKey: () => ledger.maxIssued,
    receipts(): HeldReceipt[] {
      return all.map((r) => ({
        key: r.clientReference,
        status: r.cancelled >= r.amount ? 'cancelled' : 'issued',
        amount: r.amount - r.cancelled,
        issuedAmount: r.amount,
        approvalNumber: r.approvalNumber,
        identifier: maskTail(r.identifier),
        issuedAt: r.issuedAt,
      }))
    },
    reset() {
      tokens.clear()
      byRef.clear()
      byApproval.clear()
      all.length = 0
      quota.clear()
      ledger.reset()
      Object.assign(counters, emptyCounters())
    },
    setDailyQuota(n) {
      dailyQuota = n ?? NTS_DEFAULT_DAILY_QUOTA
    },
  }
}
