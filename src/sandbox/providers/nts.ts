/**
 * NTS-style direct API simulator. No public NTS API exists; this follows the shape of seed 003
 * (bearer token from an auth call; POST /api/v1/cashReceipt/issue with businessNumber,
 * transactionDate, transactionTime, transactionAmount, the consumer identifier and receiptPurpose;
 * a daily issuance quota) plus the smallest faithful extension, documented in src/sandbox/README.md:
 * - `clientReference` on issue, and GET /api/v1/cashReceipt?clientReference=… returning every receipt
 *   held for it;
 * - POST /api/v1/cashReceipt/cancel referencing the original approval number and date (reason 1/2/3,
 *   partial amounts allowed);
 * - like NTS, it does NOT deduplicate: a second issue with the same clientReference is a second receipt.
 * Valid credentials: client_id `nts-<x>` with client_secret `nts-secret-<x>`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { approvalNumber, header, maskTail, randomId, suffixAfter } from '../sim.ts'

interface NtsReceipt {
  clientReference: string
  approvalNumber: string
  transactionDate: string
  amount: number
  cancelled: number
  purpose: string
  identifier: string
  issuedAt: string
  cancelledAt: string | null
}

const TOKEN_TTL_S = 3600
const res = (status: number, resultCode: string, resultMessage: string, extra: object = {}): SimResponse => ({ status, body: { resultCode, resultMessage, ...extra } })
const kstDate = (ms: number) => new Date(ms + 9 * 3600_000).toISOString().slice(0, 10).replace(/-/g, '')
const msToKstMidnight = (ms: number) => 86_400_000 - ((ms + 9 * 3600_000) % 86_400_000)

export function createNtsSim(opts: { dailyQuota: number }): ProviderSim {
  const tokens = new Map<string, { clientId: string; expiresAt: number }>()
  const byRef = new Map<string, NtsReceipt[]>()
  const byApproval = new Map<string, NtsReceipt>()
  const quota = new Map<string, number>()
  const counters = { issued: 0, cancelled: 0, duplicates_rejected: 0 }

  const clientOf = (req: SimRequest) => {
    const m = /^Bearer\s+(\S+)$/i.exec(header(req, 'authorization') ?? '')
    const t = m ? tokens.get(m[1]!) : undefined
    return t && t.expiresAt > req.nowMs ? t.clientId : null
  }

  function token(req: SimRequest): SimResponse {
    const id = suffixAfter(req.body?.client_id, 'nts-')
    if (!id || req.body?.client_secret !== `nts-secret-${id}`) return res(401, 'AUTH_FAILED', '인증에 실패했습니다.')
    const t = randomId('nts_')
    tokens.set(t, { clientId: req.body!.client_id as string, expiresAt: req.nowMs + TOKEN_TTL_S * 1000 })
    return { status: 200, body: { access_token: t, token_type: 'Bearer', expires_in: TOKEN_TTL_S } }
  }

  function issue(req: SimRequest, clientId: string): SimResponse {
    const b = req.body ?? {}
    const need = ['businessNumber', 'transactionDate', 'transactionTime', 'transactionAmount', 'consumerIdentifier', 'receiptPurpose', 'clientReference']
    const missing = need.find((f) => b[f] === undefined || b[f] === '')
    if (missing) return res(400, 'E001', `필수 항목 누락: ${missing}`)
    if (!/^\d{10}$/.test(String(b.businessNumber))) return res(400, 'TS7', '사업자등록번호 오류')
    if (!/^\d{8}$/.test(String(b.transactionDate)) || !/^\d{6}$/.test(String(b.transactionTime))) return res(400, 'TS6', '거래일자 오류')
    const total = Number(b.transactionAmount)
    const supply = Number(b.supplyAmount ?? total)
    const vat = Number(b.vatAmount ?? 0)
    const fee = Number(b.serviceFee ?? 0)
    if (!Number.isInteger(total) || total < 1 || supply + vat + fee !== total || supply < vat) return res(400, 'TS4', '금액 오류 (거래금액 = 공급가액 + 부가세 + 봉사료)')
    const id = String(b.consumerIdentifier).replace(/\D/g, '')
    if (id.length < 10 || id.length > 19) return res(400, 'TS1', '신분확인번호 자릿수 오류')
    if (b.receiptPurpose !== '소득공제' && b.receiptPurpose !== '지출증빙') return res(400, 'E002', 'receiptPurpose는 소득공제 또는 지출증빙입니다.')
    if (id === '0100001234' && b.receiptPurpose === '지출증빙') return res(400, 'TS1', '자진발급은 소득공제만 가능합니다.')
    const day = `${clientId}\u0000${kstDate(req.nowMs)}`
    const used = quota.get(day) ?? 0
    if (used >= opts.dailyQuota) {
      return { ...res(429, 'QUOTA_EXCEEDED', '일일 발급 한도를 초과했습니다.'), headers: { 'retry-after': String(Math.ceil(msToKstMidnight(req.nowMs) / 1000)) } }
    }
    quota.set(day, used + 1)
    const r: NtsReceipt = {
      clientReference: String(b.clientReference),
      approvalNumber: approvalNumber(),
      transactionDate: String(b.transactionDate),
      amount: total,
      cancelled: 0,
      purpose: String(b.receiptPurpose),
      identifier: id,
      issuedAt: new Date(req.nowMs).toISOString(),
      cancelledAt: null,
    }
    const key = `${clientId}\u0000${r.clientReference}`
    byRef.set(key, [...(byRef.get(key) ?? []), r])
    byApproval.set(`${clientId}\u0000${r.approvalNumber}\u0000${r.transactionDate}`, r)
    counters.issued++
    return res(200, '0000', '정상 처리되었습니다.', { approvalNumber: r.approvalNumber, transactionDate: r.transactionDate, clientReference: r.clientReference, issuedAt: r.issuedAt })
  }

  const view = (r: NtsReceipt) => ({
    approvalNumber: r.approvalNumber,
    status: r.cancelled >= r.amount ? 'CANCELLED' : 'ISSUED',
    transactionDate: r.transactionDate,
    transactionAmount: r.amount,
    cancelledAmount: r.cancelled,
    receiptPurpose: r.purpose,
    issuedAt: r.issuedAt,
    cancelledAt: r.cancelledAt,
  })

  function cancel(req: SimRequest, clientId: string): SimResponse {
    const b = req.body ?? {}
    const r = byApproval.get(`${clientId}\u0000${String(b.originalApprovalNumber)}\u0000${String(b.originalTransactionDate)}`)
    if (!r) return res(404, 'TSC', '원거래 승인번호/거래일자가 존재하지 않습니다.')
    if (![1, 2, 3, '1', '2', '3'].includes(b.cancelReason as never)) return res(400, 'E003', 'cancelReason은 1, 2, 3 중 하나입니다.')
    const amount = Number(b.cancelAmount ?? r.amount - r.cancelled)
    if (!Number.isInteger(amount) || amount < 1 || amount > r.amount - r.cancelled) return res(400, 'TSG', '취소 금액이 원거래 잔액을 초과합니다.')
    r.cancelled += amount
    if (r.cancelled >= r.amount) {
      r.cancelledAt = new Date(req.nowMs).toISOString()
      counters.cancelled++
    }
    return res(200, '0000', '정상 처리되었습니다.', { approvalNumber: approvalNumber(), cancelledAmount: amount, remainingAmount: r.amount - r.cancelled, receipt: view(r) })
  }

  return {
    name: 'nts',
    counters,
    isReceiptOp: (req) => req.path.startsWith('/api/v1/cashReceipt'),
    credentialOf: (req) => (req.path === '/oauth/token' ? String(req.body?.client_id ?? '') || null : clientOf(req)),
    handle(req) {
      if (req.path === '/oauth/token' && req.method === 'POST') return token(req)
      const clientId = clientOf(req)
      if (!clientId) return res(401, 'AUTH_REQUIRED', '유효한 인증 토큰이 필요합니다.')
      if (req.path === '/api/v1/cashReceipt/issue' && req.method === 'POST') return issue(req, clientId)
      if (req.path === '/api/v1/cashReceipt/cancel' && req.method === 'POST') return cancel(req, clientId)
      if (req.path === '/api/v1/cashReceipt' && req.method === 'GET') {
        const ref = req.query.get('clientReference')
        if (!ref) return res(400, 'E001', '필수 항목 누락: clientReference')
        return res(200, '0000', '정상 처리되었습니다.', { receipts: (byRef.get(`${clientId}\u0000${ref}`) ?? []).map(view) })
      }
      return res(404, 'E404', 'Not Found')
    },
    serverError: () => res(503, 'SYSTEM_ERROR', '일시적인 시스템 오류입니다. 잠시 후 다시 시도하세요.'),
    rateLimited: (s) => ({ ...res(429, 'RATE_LIMITED', '요청이 너무 많습니다.'), headers: { 'retry-after': String(s) } }),
    *livePerKey() {
      for (const list of byRef.values()) yield list.filter((r) => r.cancelled < r.amount).length
    },
    receipts(): HeldReceipt[] {
      return [...byRef.values()].flat().map((r) => ({ key: r.clientReference, status: r.cancelled >= r.amount ? 'cancelled' : 'issued', amount: r.amount - r.cancelled, approvalNumber: r.approvalNumber, identifier: maskTail(r.identifier) }))
    },
    reset() {
      tokens.clear()
      byRef.clear()
      byApproval.clear()
      quota.clear()
      Object.assign(counters, { issued: 0, cancelled: 0, duplicates_rejected: 0 })
    },
  }
}
