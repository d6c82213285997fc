/**
 * PaySsam (결제선생) V1 cash-receipt simulator, per reference/providers.md §3:
 * POST /if/cash-receipt/issue | /cancel | /read with {apikey, merchant, member, bill:{…}} as JSON.
 * hash = lowercase hex SHA-256 of "{bill_id},{price}" with price exactly as sent. Errors come back as
 * HTTP 200 with a code (0000 success, 9800 bill_id already used, 9980 not found, 9970 already
 * cancelled, 1003 unknown partner, 9999 other); missing or malformed parameters → HTTP 400.
 * Answers use `message` (the documented name). Cancels take a price: less than what is left is a
 * partial cancel (PaySsam does not document partial cancels; the sandbox accepts them).
 * Valid credentials: any apikey starting `apikey`.
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { approvalNumber, maskTail, sha256hex } from '../sim.ts'

interface Bill {
  billId: string
  price: number
  supply: number
  tax: number
  trader: string
  issuanceNumber: string
  apprNum: string
  remaining: number
  history: { appr_price: number; appr_supply_price: number; appr_tax: number; trader: string; appr_num: string; appr_state: 'F' | 'C'; appr_dt: string }[]
}

const ok = (body: object): SimResponse => ({ status: 200, body: { code: '0000', message: '성공하였습니다.', ...body } })
const fail = (code: string, message: string, status = 200): SimResponse => ({ status, body: { code, message } })
const kstStamp = (ms: number) => new Date(ms + 9 * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)

export function createPayssamSim(): ProviderSim {
  const bills = new Map<string, Bill>()
  const counters = { issued: 0, cancelled: 0, duplicates_rejected: 0 }

  function common(req: SimRequest): { apikey: string; bill: Record<string, unknown> } | SimResponse {
    const b = req.body
    if (!b || typeof b !== 'object') return fail('9999', '요청 본문이 올바른 JSON이 아닙니다.', 400)
    for (const f of ['apikey', 'merchant', 'member']) if (typeof b[f] !== 'string' || !b[f]) return fail('9999', `필수 파라미터(${f})가 누락되었습니다.`, 400)
    if (!(b.apikey as string).startsWith('apikey') || (b.apikey as string).length > 32) return fail('1003', '접근이 불가한 사용자 입니다.')
    const bill = b.bill as Record<string, unknown> | undefined
    if (!bill || typeof bill !== 'object') return fail('9999', '필수 파라미터(bill)가 누락되었습니다.', 400)
    if (typeof bill.bill_id !== 'string' || !/^[A-Za-z0-9]{1,20}$/.test(bill.bill_id)) return fail('9999', 'bill_id는 20자 이내의 영문/숫자입니다.', 400)
    if (typeof bill.price !== 'string' || !/^\d+$/.test(bill.price)) return fail('9999', 'price 형식이 올바르지 않습니다.', 400)
    if (bill.hash !== sha256hex(`${bill.bill_id},${bill.price}`)) return fail('9999', '해싱값을 확인하시기 바랍니다.')
    return { apikey: b.apikey as string, bill }
  }

  function issue(req: SimRequest): SimResponse {
    const c = common(req)
    if ('status' in c) return c
    const { bill, apikey } = c
    for (const f of ['supply_price', 'tax', 'issuance_number', 'trader']) if (typeof bill[f] !== 'string' || bill[f] === '') return fail('9999', `필수 파라미터(${f})가 누락되었습니다.`, 400)
    const price = Number(bill.price)
    const supply = Number(bill.supply_price)
    const tax = Number(bill.tax)
    if (!Number.isInteger(supply) || !Number.isInteger(tax) || supply + tax !== price) return fail('9999', '금액이 올바르지 않습니다. (price = supply_price + tax)')
    if (bill.trader !== '0' && bill.trader !== '1') return fail('9999', 'trader는 0(개인) 또는 1(사업자)입니다.')
    const key = `${apikey}\u0000${bill.bill_id as string}`
    if (bills.has(key)) {
      counters.duplicates_rejected++
      return fail('9800', '이미 사용된 Bill_ID 입니다.')
    }
    const apprNum = approvalNumber()
    bills.set(key, {
      billId: bill.bill_id as string,
      price,
      supply,
      tax,
      trader: bill.trader,
      issuanceNumber: bill.issuance_number as string,
      apprNum,
      remaining: price,
      history: [{ appr_price: price, appr_supply_price: supply, appr_tax: tax, trader: bill.trader, appr_num: apprNum, appr_state: 'F', appr_dt: kstStamp(req.nowMs) }],
    })
    counters.issued++
    const b = req.body!
    return ok({ apikey: b.apikey, member: b.member, merchant: b.merchant, bill_id: bill.bill_id, trader: bill.trader, appr_cash_num: apprNum })
  }

  function cancel(req: SimRequest): SimResponse {
    const c = common(req)
    if ('status' in c) return c
    const found = bills.get(`${c.apikey}\u0000${c.bill.bill_id as string}`)
    if (!found) return fail('9980', '청구서를 찾을 수 없습니다.')
    if (found.remaining === 0) return fail('9970', '기 취소된 청구서 입니다.')
    const price = Number(c.bill.price)
    if (price < 1 || price > found.remaining) return fail('9999', `취소 금액이 취소 가능 금액(${found.remaining})을 초과합니다.`)
    const tax = Math.floor((2 * price + 11) / 22)
    const apprNum = approvalNumber()
    found.remaining -= price
    found.history.push({ appr_price: price, appr_supply_price: price - tax, appr_tax: tax, trader: found.trader, appr_num: apprNum, appr_state: 'C', appr_dt: kstStamp(req.nowMs) })
    if (found.remaining === 0) counters.cancelled++
    return ok({ bill_id: found.billId, appr_cash_num: apprNum, remaining_price: String(found.remaining) })
  }

  function read(req: SimRequest): SimResponse {
    const c = common(req)
    if ('status' in c) return c
    const found = bills.get(`${c.apikey}\u0000${c.bill.bill_id as string}`)
    if (!found) return fail('9980', '청구서를 찾을 수 없습니다.')
    return ok({ bill_id: found.billId, info: found.history.map((h) => ({ bill_id: found.billId, ...h, issuance_number: maskTail(found.issuanceNumber) })) })
  }

  return {
    name: 'payssam',
    counters,
    isReceiptOp: (req) => req.path.startsWith('/if/cash-receipt/'),
    credentialOf: (req) => (typeof req.body?.apikey === 'string' ? req.body.apikey : null),
    handle(req) {
      if (req.method !== 'POST') return fail('9999', 'Method Not Allowed', 405)
      if (req.path === '/if/cash-receipt/issue') return issue(req)
      if (req.path === '/if/cash-receipt/cancel') return cancel(req)
      if (req.path === '/if/cash-receipt/read') return read(req)
      return fail('9999', 'Not Found', 404)
    },
    serverError: () => fail('5000', 'SYSTEM ERROR', 500),
    rateLimited: (s) => ({ ...fail('9999', '요청 한도를 초과했습니다. 잠시 후 다시 시도하세요.', 429), headers: { 'retry-after': String(s) } }),
    *livePerKey() {
      for (const b of bills.values()) yield b.remaining > 0 ? 1 : 0
    },
    receipts(): HeldReceipt[] {
      return [...bills.values()].map((b) => ({ key: b.billId, status: b.remaining > 0 ? 'issued' : 'cancelled', amount: b.remaining, approvalNumber: b.apprNum, identifier: maskTail(b.issuanceNumber) }))
    },
    reset() {
      bills.clear()
      Object.assign(counters, { issued: 0, cancelled: 0, duplicates_rejected: 0 })
    },
  }
}
