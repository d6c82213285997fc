/**
 * PaySsam (결제선생) V1 cash-receipt simulator, per docs/providers.md §3 (developers.payssam.kr, api-v1
 * cash-receipt).
 *
 * - `POST /if/cash-receipt/issue` `{apikey, merchant, member, bill:{bill_id, hash, price, supply_price, tax,
 *   issuance_number, trader}}` (all required).
 * - `POST /if/cash-receipt/cancel` `{apikey, merchant, member, bill_id, hash, price, trader}` and
 *   `POST /if/cash-receipt/read` `{apikey, merchant, member, bill_id, hash, price}`: PaySsam's cancel and read schemas put
 *   these fields at the top level and have no `bill` object, so a body nesting them in `bill` lacks the
 *   required `bill_id` → HTTP 400 like any missing parameter (only issue nests its fields in `bill`).
 * - `hash` = lowercase hex SHA-256 of `"{bill_id},{price}"`, price exactly as sent.
 * - Errors come as HTTP 200 with a code: 9800 bill_id already used (also after a cancel), 9980 not found,
 *   9970 already cancelled, 1003 unknown partner, 9999 anything else (wrong hash, inconsistent amounts).
 *   Missing or malformed parameters → HTTP 400 with code 9999.
 * - Success answers carry `msg` (the endpoint schemas' name); error answers carry `message` (what
 *   integrators observed), so clients must read both.
 * - A cancel whose price is below what is left is a partial cancel (PaySsam does not document partial
 *   cancels; the sandbox accepts them).
 * - bill_id: ≤ 20 alphanumerics in production; in development 사업자번호 (10 digits) + 10 characters
 *   (developers.payssam.kr, the bill_id description of every V1 schema). Development apikeys start
 *   `apikeydev` (sandbox convention).
 * - The self-issue number 0100001234 only with trader 0 (소득공제) → else HTTP 400, code 9999.
 * Valid credentials: any apikey starting `apikey` (≤ 32 characters).
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { ApprovalNumbers, LiveLedger, emptyCounters, kstStamp, maskTail, sha256hex, vat11 } from '../sim.ts'

interface Row {
  readonly appr_price: string
  readonly appr_supply_price: string
  readonly appr_tax: string
  readonly appr_num: string
  readonly appr_state: 'F' | 'C'
  readonly appr_dt: string
  readonly trader: string
  readonly issuance_number: string
}

interface Bill {
  readonly key: string
  readonly billId: string
  readonly price: number
  readonly trader: string
  readonly issuanceNumber: string
  readonly apprNum: string
  readonly issuedAt: string
  remaining: number
  readonly rows: Row[]
}

/** The NTS self-issue number (자진발급): 소득공제 only. */
const SELF_ISSUE = '0100001234'

/**
 * Sandbox convention: an apikey starting `apikeydev` belongs to PaySsam's development environment,
 * whose bill_id is the partner's 사업자번호 (10 digits) followed by 10 free characters; any other
 * apikey is a production one (20 free characters).
 */
const isDevelopmentKey = (apikey: string) => apikey.startsWith('apikeydev')

const OK = '성공하였습니다.'
const ok = (fields: object): SimResponse => ({ status: 200, body: { code: '0000', msg: OK, ...fields } })
const fail = (code: string, message: string, status = 200): SimResponse => ({
  status,
  body: { code, message },
})
const badParam = (message: string) => fail('9999', message, 400)

/** Strings as the schema says; numbers are accepted as their decimal text (a Spring backend coerces them). */
const text = (v: unknown): string | null => (typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : null)

export function createPayssamSim(): ProviderSim {
  const bills = new Map<string, Bill>()
  const ledger = new LiveLedger()
  const approvals = new ApprovalNumbers()
  const counters = emptyCounters()

  interface Parsed {
    readonly partner: { apikey: string; member: string; merchant: string }
    readonly f: Record<string, unknown>
    readonly billId: string
    readonly price: string
    readonly amount: number
  }

  /**
   * Envelope, partner, bill_id, price and hash checks shared by the three calls. `nested`: the fields
   * are read from `bill` (issue); otherwise from the top level only, whatever `bill` holds (cancel, read).
   */
  function parse(req: SimRequest, nested: boolean): Parsed | SimResponse {
    const b = req.body
    if (req.bodyInvalid || !b) return badParam('요청 본문이 올바른 JSON이 아닙니다.')
    const lengths = { apikey: 32, merchant: 30, member: 30 } as const
    for (const [f, max] of Object.entries(lengths)) {
      const v = b[f]
      if (typeof v !== 'string' || v === '') return badParam(`필수 파라미터(${f})가 누락되었습니다.`)
      if (v.length > max) return badParam(`${f}는 ${max}자 이하입니다.`)
    }
    const partner = { apikey: b.apikey as string, member: b.member as string, merchant: b.merchant as string }
    if (!partner.apikey.startsWith('apikey')) return fail('1003', '접근이 불가한 사용자 입니다.')
    const inner = b.bill
    const f: Record<string, unknown> | undefined = !nested
      ? b
      : typeof inner === 'object' && inner !== null && !Array.isArray(inner)
        ? (inner as Record<string, unknown>)
        : undefined
    if (!f) return badParam('필수 파라미터(bill)가 누락되었습니다.')
    const billId = text(f.bill_id)
    if (!billId) return badParam('필수 파라미터(bill_id)가 누락되었습니다.')
    if (!/^[A-Za-z0-9]{1,20}$/.test(billId)) return badParam('bill_id는 20자 이내의 영문/숫자입니다.')
    if (isDevelopmentKey(partner.apikey) && !/^\d{10}[A-Za-z0-9]{10}$/.test(billId)) {
      return badParam('개발 환경의 bill_id는 사업자번호(10자리) + 10자리입니다.')
    }
    const price = text(f.price)
    if (price === null || price === '') return badParam('필수 파라미터(price)가 누락되었습니다.')
    if (!/^\d{1,12}$/.test(price) || Number(price) < 1) return badParam('price 형식이 올바르지 않습니다.')
    const hash = text(f.hash)
    if (!hash) return badParam('필수 파라미터(hash)가 누락되었습니다.')
    if (hash !== sha256hex(`${billId},${price}`)) return fail('9999', '해싱값을 확인하시기 바랍니다.')
    return { partner, f, billId, price, amount: Number(price) }
  }

  function issue(req: SimRequest): SimResponse {
    const p = parse(req, true)
    if ('status' in p) return p
    const { f, billId, price, amount, partner } = p
    const supply = text(f.supply_price)
    const tax = text(f.tax)
    const issuance = text(f.issuance_number)
    const trader = text(f.trader)
    if (supply === null || supply === '') return badParam('필수 파라미터(supply_price)가 누락되었습니다.')
    if (tax === null || tax === '') return badParam('필수 파라미터(tax)가 누락되었습니다.')
    if (issuance === null || issuance === '') {
      return badParam('필수 파라미터(issuance_number)가 누락되었습니다.')
    }
    if (trader === null || trader === '') return badParam('필수 파라미터(trader)가 누락되었습니다.')
    if (!/^\d{1,12}$/.test(supply) || !/^\d{1,12}$/.test(tax)) {
      return badParam('supply_price, tax 형식이 올바르지 않습니다.')
    }
    if (trader !== '0' && trader !== '1') return badParam('trader는 0(개인) 또는 1(사업자)입니다.')
    if (!/^\d{10,19}$/.test(issuance)) {
      return fail('9999', '현금영수증 발급 요청 번호(issuance_number)를 확인하시기 바랍니다.')
    }
    if (issuance === SELF_ISSUE && trader !== '0') {
      return badParam('자진발급 번호(0100001234)는 소득공제(trader 0)에만 사용할 수 있습니다.')
    }
    if (Number(supply) + Number(tax) !== amount) {
      return fail('9999', '금액 정보를 확인하시기 바랍니다. (price = supply_price + tax)')
    }
    const key = `${partner.apikey}\u0000${billId}`
    if (bills.has(key)) {
      counters.duplicates_rejected++
      return fail('9800', '이미 사용된 Bill_ID 입니다.')
    }
    const apprNum = approvals.next()
    const dt = kstStamp(req.nowMs)
    bills.set(key, {
      key,
      billId,
      price: amount,
      trader,
      issuanceNumber: issuance,
      apprNum,
      issuedAt: new Date(req.nowMs).toISOString(),
      remaining: amount,
      rows: [
        {
          appr_price: price,
          appr_supply_price: supply,
          appr_tax: tax,
          appr_num: apprNum,
          appr_state: 'F',
          appr_dt: dt,
          trader,
          issuance_number: issuance,
        },
      ],
    })
    ledger.change(key, 1)
    counters.issued++
    return ok({
      ...partner,
      bill_id: billId,
      hash: f.hash,
      trader,
      appr_cash_num: apprNum,
      issuance_number: issuance,
    })
  }

  function cancel(req: SimRequest): SimResponse {
    const p = parse(req, false)
    if ('status' in p) return p
    const trader = text(p.f.trader)
    if (trader === null || trader === '') return badParam('필수 파라미터(trader)가 누락되었습니다.')
    if (trader !== '0' && trader !== '1') return badParam('trader는 0(개인) 또는 1(사업자)입니다.')
    const bill = bills.get(`${p.partner.apikey}\u0000${p.billId}`)
    if (!bill) return fail('9980', '청구서를 찾을 수 없습니다.')
    if (bill.remaining === 0) return fail('9970', '기 취소된 청구서 입니다.')
    if (p.amount > bill.remaining) {
      return fail('9999', `취소 금액이 취소 가능 금액(${bill.remaining})을 초과합니다.`)
    }
    const tax = vat11(p.amount)
    const apprNum = approvals.next()
    bill.remaining -= p.amount
    bill.rows.push({
      appr_price: p.price,
      appr_supply_price: String(p.amount - tax),
      appr_tax: String(tax),
      appr_num: apprNum,
      appr_state: 'C',
      appr_dt: kstStamp(req.nowMs),
      trader: bill.trader,
      issuance_number: bill.issuanceNumber,
    })
    if (bill.remaining === 0) {
      ledger.change(bill.key, -1)
      counters.cancelled++
    }
    return ok({ ...p.partner, bill_id: bill.billId, hash: p.f.hash, appr_cash_num: apprNum })
  }

  function read(req: SimRequest): SimResponse {
    const p = parse(req, false)
    if ('status' in p) return p
    const bill = bills.get(`${p.partner.apikey}\u0000${p.billId}`)
    if (!bill) return fail('9980', '청구서를 찾을 수 없습니다.')
    return ok({ ...p.partner, bill_id: bill.billId, info: bill.rows.map((r) => ({ ...r })) })
  }

  return {
    name: 'payssam',
    counters,
    classify: (req) => ({
      receiptOp: req.path.startsWith('/if/cash-receipt/'),
      credential: typeof req.body?.apikey === 'string' ? req.body.apikey : null,
    }),
    handle(req) {
      const op = req.path === '/if/cash-receipt/issue' ? issue : req.path === '/if/cash-receipt/cancel' ? cancel : req.path === '/if/cash-receipt/read' ? read : null
      if (!op) return fail('9999', '요청한 경로가 존재하지 않습니다.', 404)
      if (req.method !== 'POST') return fail('9999', '허용되지 않는 메서드입니다.', 405)
      return op(req)
    },
    serverError: () => fail('5000', 'SYSTEM ERROR', 500),
    rateLimited: (s) => ({
      ...fail('9999', '요청 한도를 초과했습니다. 잠시 후 다시 시도하세요.', 429),
      headers: { 'retry-after': String(s) },
    }),
    maxLivePerKey: () => ledger.max,
    maxReceiptsPerKey: () => ledger.maxIssued,
    receipts(): HeldReceipt[] {
      return [...bills.values()].map((b) => ({
        key: b.billId,
        status: b.remaining > 0 ? 'issued' : 'cancelled',
        amount: b.remaining,
        issuedAmount: b.price,
        approvalNumber: b.apprNum,
        identifier: maskTail(b.issuanceNumber),
        issuedAt: b.issuedAt,
      }))
    },
    reset() {
      bills.clear()
      ledger.reset()
      Object.assign(counters, emptyCounters())
    },
  }
}
