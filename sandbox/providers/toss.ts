/**
 * Toss Payments cash-receipt simulator (api.tosspayments.com `/v1/cash-receipts`), per
 * docs/providers.md §5, which records the official page each behaviour was checked against.
 *
 * - Auth: `Authorization: Basic base64("<secretKey>:")`; valid sandbox keys start `test_sk_` or
 *   `live_sk_`. No colon after the key → 403 `INCORRECT_BASIC_AUTH_FORMAT`; missing, not Basic or an
 *   unknown key → 401 `UNAUTHORIZED_KEY`.
 * - `POST /v1/cash-receipts` `{amount, orderId, orderName, type 소득공제|지출증빙, customerIdentityNumber,
 *   taxFreeAmount?}` (the older `POST /v1/payments/cash-receipts` with `registrationNumber`, which the
 *   official sample still calls, is served too) → 200 CashReceipt, `transactionType: CONFIRM`,
 *   `issueStatus: IN_PROGRESS`. A second issue for an orderId whose receipt is not FAILED → 400
 *   `DUPLICATED_CASH_RECEIPT`; a second issue for an orderId (after a FAILED one) or cancel of a
 *   receiptKey within a second of the previous one → 403 `FORBIDDEN_CONSECUTIVE_REQUEST`.
 * - Deferred result: an IN_PROGRESS receipt becomes COMPLETED, or FAILED with `failure {code:
 *   NTS_ERROR, message: "[TSx] …"}`, once `resultDelayMs` has passed (default one day; Toss says one
 *   to two). `advance(ms)` (`POST /_sandbox/toss/advance`) moves the result clock only, never the
 *   request dates. NTS failures: `failNext([...codes])` (`POST /_sandbox/toss/nts-failures`), an
 *   identity number whose length no identifier has (TS1), and the self-issue number 0100001234 on a
 *   지출증빙 receipt (TS8, an input value NTS does not accept there).
 * - `POST /v1/cash-receipts/{receiptKey}/cancel` `{amount?}`: without amount the rest is cancelled,
 *   with it a partial cancel; more than what is left → 403 `NOT_CANCELABLE_AMOUNT`; unknown key →
 *   404 `NOT_FOUND`. The answer is a CashReceipt with `receiptKey` `c_<original>`, `transactionType:
 *   CANCEL` and the cancelled amount.
 * - `GET /v1/cash-receipts?requestDate=yyyy-MM-dd&cursor=&limit=` (limit default 100, max 10000):
 *   `{hasNext, lastCursor, data}` in request order, CONFIRM and CANCEL entries of that KST request date.
 * - `Idempotency-Key` on every POST (≤ 300 characters, else 400 `INVALID_IDEMPOTENCY_KEY`): the first
 *   answer is replayed for 15 days; one still running → 409 `IDEMPOTENT_REQUEST_PROCESSING`. Scope:
 *   key + API key + URL + method. GET ignores it.
 * Errors are `{code, message}` with the HTTP status.
 */
import type { HeldReceipt, IdempotencyHooks, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { ApprovalNumbers, LiveLedger, emptyCounters, header, intOf, maskTail, nonEmpty, pruneHead, segment } from '../sim.ts'

const IDEMPOTENCY_TTL_MS = 15 * 86_400_000
const CONSECUTIVE_WINDOW_MS = 1_000
export const DEFAULT_TOSS_RESULT_DELAY_MS = 86_400_000
const LIST_MAX = 10_000

/** The NTS result codes Toss relays as `NTS_ERROR` (docs.tosspayments.com/reference/error-codes). */
export const NTS_RESULT_MESSAGES: Readonly<Record<string, string>> = {
  TS1: '신분확인정보 자릿수 오류',
  TS2: '카드정보 자릿수 오류',
  TS3: '제외업종사업자와 거래한 현금결제내역',
  TS4: '매출금액 입력오류 또는 거래금액 총합계 입력오류.',
  TS5: '승인번호, 거래일자 중복 오류',
  TS6: '거래일자 오류',
  TS7: '가맹점 사업자등록번호 미등록 오류 또는 현금영수증사업자의 승인코드가 불일치한 경우',
  TS8: 'Layout 오류(Record 항목별 입력 값 오류)',
  XXX: '정의 안된 오류',
}

type IssueStatus = 'IN_PROGRESS' | 'COMPLETED' | 'FAILED'

interface Entry {
  /** Order in the list (the cursor). */
  readonly seq: number
  readonly secret: string
  readonly receiptKey: string
  readonly orderId: string
  readonly orderName: string
  readonly type: '소득공제' | '지출증빙'
  readonly transactionType: 'CONFIRM' | 'CANCEL'
  readonly amount: number
  readonly taxFreeAmount: number
  readonly issueNumber: string
  readonly customerIdentityNumber: string
  readonly requestedAtMs: number
  readonly requestDate: string
  /** When the NTS answer is in (result clock). */
  readonly resultDueMs: number
  /** The NTS code this receipt will fail with, or null. */
  readonly failWith: string | null
  issueStatus: IssueStatus
  /** CONFIRM: what cancels took so far. */
  cancelledAmount: number
  canceledAtMs: number | null
}

const error = (status: number, code: string, message: string): SimResponse => ({ status, body: { code, message } })
const unauthorized = () => error(401, 'UNAUTHORIZED_KEY', '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.')

/** ISO 8601 with +09:00, as Toss writes times. */
function kstIso(ms: number): string {
  return `${new Date(ms + 9 * 3600_000).toISOString().slice(0, 19)}+09:00`
}
const kstDay = (ms: number): string => new Date(ms + 9 * 3600_000).toISOString().slice(0, 10)

/** The secret key of a Basic header, or null when it is missing, malformed or not a sandbox key. */
export function tossSecretOf(req: SimRequest): string | null {
  const raw = header(req, 'authorization')
  const m = raw ? /^Basic ([A-Za-z0-9+/=]+)$/.exec(raw.trim()) : null
  if (!m) return null
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
  if (!decoded.endsWith(':')) return null
  const key = decoded.slice(0, -1)
  return /^(test|live)_sk_[A-Za-z0-9_-]+$/.test(key) ? key : null
}

/** A Basic header whose decoded value lacks the `:` after the key: Toss answers 403 INCORRECT_BASIC_AUTH_FORMAT. */
function basicWithoutColon(req: SimRequest): boolean {
  const raw = header(req, 'authorization')
  const m = raw ? /^Basic ([A-Za-z0-9+/=]+)$/.exec(raw.trim()) : null
  return m !== null && !Buffer.from(m[1]!, 'base64').toString('utf8').includes(':')
}
const incorrectBasicAuth = () => error(403, 'INCORRECT_BASIC_AUTH_FORMAT', "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.")

/** Identity numbers NTS files: phone 10–11 digits, business number 10, card 13–19, resident number 13. */
const identityLengthOk = (n: string) => n.length >= 10 && n.length <= 19

export interface TossSim extends ProviderSim {
  /** Moves the result clock (never the request dates) forward. */
  advance(ms: number): void
  /** The next issues fail at the NTS with these codes (TS1…TS8, XXX), in order. */
  failNext(codes: readonly string[]): void
  setResultDelay(ms: number): void
}

export function createTossSim(opts: { resultDelayMs?: number } = {}): TossSim {
  const counters = emptyCounters()
  const live = new LiveLedger()
  const approvals = new ApprovalNumbers()
  /** `${secret}\0${receiptKey}` → CONFIRM entry. */
  const byKey = new Map<string, Entry>()
  /** `${secret}\0${orderId}` → CONFIRM entries, oldest first. */
  const byOrder = new Map<string, Entry[]>()
  /** `${secret}\0${requestDate}` → entries in seq order. */
  const byDate = new Map<string, Entry[]>()
  const lastRequestAt = new Map<string, number>()
  const idem = new Map<string, { state: 'running' | 'done'; response?: SimResponse; at: number }>()
  let seq = 0
  let advancedMs = 0
  let resultDelayMs = opts.resultDelayMs ?? DEFAULT_TOSS_RESULT_DELAY_MS
  let failQueue: string[] = []

  /**
   * Toss answers 403 FORBIDDEN_CONSECUTIVE_REQUEST to repeated requests without saying how close; the
   * sandbox refuses a second request for the same order (issue) or receipt (cancel) within a second.
   */
  function consecutive(key: string, nowMs: number): boolean {
    const last = lastRequestAt.get(key)
    lastRequestAt.delete(key) // re-inserted at the end, so the map stays in time order for pruneHead
    lastRequestAt.set(key, nowMs)
    pruneHead(lastRequestAt, (t) => nowMs - t > CONSECUTIVE_WINDOW_MS)
    return last !== undefined && nowMs - last < CONSECUTIVE_WINDOW_MS
  }
  const forbiddenConsecutive = () => error(403, 'FORBIDDEN_CONSECUTIVE_REQUEST', '반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.')

  /** Applies the NTS answer to an entry whose time has come. */
  function settle(e: Entry, nowMs: number): void {
    if (e.issueStatus !== 'IN_PROGRESS' || nowMs + advancedMs < e.resultDueMs) return
    if (e.failWith && e.transactionType === 'CONFIRM') {
      e.issueStatus = 'FAILED'
      // What is still live at that moment stops being a receipt.
      if (e.cancelledAmount < e.amount) live.change(`${e.secret}\u0000${e.orderId}`, -1)
    } else {
      e.issueStatus = 'COMPLETED'
    }
  }

  function view(e: Entry): Record<string, unknown> {
    return {
      mId: 'tosspayments',
      receiptKey: e.receiptKey,
      orderId: e.orderId,
      orderName: e.orderName,
      type: e.type,
      issueNumber: e.issueNumber,
      approvalNumber: e.issueNumber,
      receiptUrl: `https://dashboard.tosspayments.com/sales-slip?transactionId=${encodeURIComponent(e.receiptKey)}&ref=PX`,
      businessNumber: '1234567890',
      transactionType: e.transactionType,
      amount: e.amount,
      taxFreeAmount: e.taxFreeAmount,
      issueStatus: e.issueStatus,
      failure: e.issueStatus === 'FAILED' && e.failWith ? { code: 'NTS_ERROR', message: `[${e.failWith}] ${NTS_RESULT_MESSAGES[e.failWith] ?? NTS_RESULT_MESSAGES.XXX}` } : null,
      customerIdentityNumber: maskTail(e.customerIdentityNumber),
      requestedAt: kstIso(e.requestedAtMs),
      approvedAt: e.issueStatus === 'COMPLETED' ? kstIso(e.resultDueMs - advancedMs) : null,
      canceledAt: e.canceledAtMs === null ? null : kstIso(e.canceledAtMs),
    }
  }

  function add(e: Entry): void {
    const k = `${e.secret}\u0000${e.requestDate}`
    const list = byDate.get(k) ?? []
    list.push(e)
    byDate.set(k, list)
  }

  function issue(req: SimRequest, secret: string, legacy: boolean): SimResponse {
    const b = req.body
    if (req.bodyInvalid || !b) return error(400, 'INVALID_REQUEST', '잘못된 요청입니다.')
    const amount = typeof b.amount === 'number' ? intOf(b.amount) : null
    const taxFree = b.taxFreeAmount === undefined || b.taxFreeAmount === null ? 0 : typeof b.taxFreeAmount === 'number' ? intOf(b.taxFreeAmount) : null
    const identity = legacy ? (b.registrationNumber ?? b.customerIdentityNumber) : (b.customerIdentityNumber ?? b.registrationNumber)
    if (b.amount === undefined || b.orderId === undefined || b.orderName === undefined || b.type === undefined || identity === undefined) {
      return error(400, 'INVALID_REQUIRED_PARAM', '필수 파라미터가 누락되었습니다.')
    }
    if (amount === null || amount < 1) return error(400, 'BELOW_ZERO_AMOUNT', '금액은 0보다 커야 합니다.')
    if (typeof b.orderId !== 'string' || !/^[A-Za-z0-9_-]{6,64}$/.test(b.orderId)) {
      return error(400, 'INVALID_ORDER_ID', 'orderId는 영문 대소문자, 숫자, 특수문자(-, _)만 허용합니다. 6자 이상 64자 이하여야 합니다.')
    }
    if (!nonEmpty(b.orderName) || b.orderName.length > 100) return error(400, 'INVALID_ORDER_NAME', '주문명은 1자 이상 100자 이하여야 합니다.')
    if (b.type !== '소득공제' && b.type !== '지출증빙') return error(400, 'INVALID_CASH_RECEIPT_INFO', '현금 영수증 정보가 잘못되었습니다.')
    if (typeof identity !== 'string' || !/^\d{1,30}$/.test(identity)) return error(400, 'INVALID_CASH_RECEIPT_INFO', '현금 영수증 정보가 잘못되었습니다.')
    if (taxFree === null || taxFree > amount) return error(400, 'INVALID_REQUEST', '잘못된 요청입니다.')
    const orderKey = `${secret}\u0000${b.orderId}`
    const prior = byOrder.get(orderKey) ?? []
    for (const p of prior) settle(p, req.nowMs)
    if (prior.some((p) => p.issueStatus !== 'FAILED')) {
      counters.duplicates_rejected++
      return error(400, 'DUPLICATED_CASH_RECEIPT', '이미 현금영수증이 발급된 주문입니다.')
    }
    if (consecutive(`issue\u0000${orderKey}`, req.nowMs)) return forbiddenConsecutive()
    // NTS refuses the self-issue number 010-000-1234 on a 지출증빙 receipt (자진발급 is 소득공제 only).
    const selfIssueExpense = identity === '0100001234' && b.type === '지출증빙'
    const failWith = failQueue.shift() ?? (!identityLengthOk(identity) ? 'TS1' : selfIssueExpense ? 'TS8' : null)
    const e: Entry = {
      seq: ++seq,
      secret,
      receiptKey: `cr_${randomKey()}`,
      orderId: b.orderId,
      orderName: b.orderName,
      type: b.type,
      transactionType: 'CONFIRM',
      amount,
      taxFreeAmount: taxFree,
      issueNumber: approvals.next(),
      customerIdentityNumber: identity,
      requestedAtMs: req.nowMs,
      requestDate: kstDay(req.nowMs),
      resultDueMs: req.nowMs + advancedMs + resultDelayMs,
      failWith,
      issueStatus: 'IN_PROGRESS',
      cancelledAmount: 0,
      canceledAtMs: null,
    }
    byKey.set(`${secret}\u0000${e.receiptKey}`, e)
    byOrder.set(orderKey, [...prior, e])
    add(e)
    counters.issued++
    live.change(orderKey, 1)
    settle(e, req.nowMs)
    return { status: 200, body: view(e) }
  }

  function cancel(req: SimRequest, secret: string, receiptKey: string): SimResponse {
    const e = byKey.get(`${secret}\u0000${receiptKey}`)
    if (!e) return error(404, 'NOT_FOUND', '존재하지 않는 정보 입니다.')
    if (req.bodyInvalid) return error(400, 'INVALID_REQUEST', '잘못된 요청입니다.')
    if (consecutive(`cancel\u0000${secret}\u0000${receiptKey}`, req.nowMs)) return forbiddenConsecutive()
    settle(e, req.nowMs)
    const left = e.issueStatus === 'FAILED' ? 0 : e.amount - e.cancelledAmount
    const raw = req.body?.amount
    const amount = raw === undefined || raw === null ? left : typeof raw === 'number' ? intOf(raw) : null
    if (amount === null) return error(400, 'INVALID_REQUEST', '잘못된 요청입니다.')
    if (amount < 1 && left > 0) return error(400, 'BELOW_ZERO_AMOUNT', '금액은 0보다 커야 합니다.')
    if (amount > left || left === 0) return error(403, 'NOT_CANCELABLE_AMOUNT', '취소 할 수 없는 금액 입니다.')
    e.cancelledAmount += amount
    const c: Entry = {
      ...e,
      seq: ++seq,
      receiptKey: `c_${e.receiptKey}`,
      transactionType: 'CANCEL',
      amount,
      taxFreeAmount: Math.min(e.taxFreeAmount, amount),
      requestedAtMs: req.nowMs,
      requestDate: kstDay(req.nowMs),
      resultDueMs: req.nowMs + advancedMs + resultDelayMs,
      failWith: null,
      issueStatus: 'IN_PROGRESS',
      cancelledAmount: 0,
      canceledAtMs: req.nowMs,
    }
    settle(c, req.nowMs)
    add(c)
    if (e.cancelledAmount === e.amount) {
      e.canceledAtMs = req.nowMs
      counters.cancelled++
      live.change(`${secret}\u0000${e.orderId}`, -1)
    }
    return { status: 200, body: view(c) }
  }

  function list(req: SimRequest, secret: string): SimResponse {
    const date = req.query.get('requestDate')
    if (!date || !/^\d{4}-\d{2}-\d{2}$/.test(date) || Number.isNaN(Date.parse(`${date}T00:00:00+09:00`))) {
      return error(400, 'INVALID_DATE', '날짜 형식이 올바르지 않습니다.')
    }
    const limitRaw = req.query.get('limit')
    const limit = limitRaw === null || limitRaw === '' ? 100 : intOf(limitRaw)
    if (limit === null || limit < 1) return error(400, 'INVALID_REQUEST', '잘못된 요청입니다.')
    if (limit > LIST_MAX) return error(400, 'EXCEED_MAX_QUERY_LIMIT', '최대 조회 개수를 초과했습니다.')
    const cursorRaw = req.query.get('cursor')
    const cursor = cursorRaw === null || cursorRaw === '' ? 0 : intOf(cursorRaw)
    if (cursor === null) return error(400, 'INVALID_PAGING_KEY', '잘못된 페이징 키 입니다.')
    const all = byDate.get(`${secret}\u0000${date}`) ?? []
    // First entry after the cursor (entries are in seq order).
    let lo = 0
    let hi = all.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (all[mid]!.seq <= cursor) lo = mid + 1
      else hi = mid
    }
    const page = all.slice(lo, lo + limit)
    for (const e of page) settle(e, req.nowMs)
    const data = page.map(view)
    const lastCursor = page.length ? page[page.length - 1]!.seq : cursor
    return { status: 200, body: { hasNext: lo + limit < all.length, lastCursor, data } }
  }

  const idempotency: IdempotencyHooks = {
    begin(req) {
      if (req.method !== 'POST') return null
      const key = header(req, 'idempotency-key')
      if (key === undefined) return null
      const secret = tossSecretOf(req)
      if (!secret) return null // the handler answers 401
      if (key.length === 0 || key.length > 300) return { early: error(400, 'INVALID_IDEMPOTENCY_KEY', '멱등키는 300자 이하여야 합니다.') }
      pruneHead(idem, (e) => e.state === 'done' && req.nowMs - e.at > IDEMPOTENCY_TTL_MS)
      const slot = `${secret}\u0000${req.method}\u0000${req.path}\u0000${key}`
      const e = idem.get(slot)
      if (e?.state === 'done' && req.nowMs - e.at > IDEMPOTENCY_TTL_MS) idem.delete(slot)
      else if (e?.state === 'running') return { early: error(409, 'IDEMPOTENT_REQUEST_PROCESSING', '이전 멱등 요청이 처리중입니다.') }
      else if (e?.response) return { early: e.response }
      idem.set(slot, { state: 'running', at: req.nowMs })
      return { slot }
    },
    finish(slot, committed) {
      const e = idem.get(slot)
      if (!e) return
      // A "try again later" refusal (the consecutive-request guard, a 429) processed nothing: it frees
      // the key as a request that never ran would, so the retry it asks for can go with the same key.
      // Stored, it would be replayed to every retry for 15 days (found by notification-events, whose
      // re-drive came within a second of the first issue). Toss's docs do not say either way.
      if (committed && (committed.status === 429 || (committed.status === 403 && (committed.body as { code?: unknown } | undefined)?.code === 'FORBIDDEN_CONSECUTIVE_REQUEST'))) {
        idem.delete(slot)
        return
      }
      if (committed) {
        e.state = 'done'
        e.response = committed
      } else {
        idem.delete(slot)
      }
    },
  }

  const CANCEL = /^\/v1\/cash-receipts\/([^/]+)\/cancel$/
  const isIssuePath = (p: string) => p === '/v1/cash-receipts' || p === '/v1/payments/cash-receipts'

  return {
    name: 'toss',
    counters,
    idempotency,
    classify(req) {
      return { receiptOp: isIssuePath(req.path) || CANCEL.test(req.path), credential: tossSecretOf(req) }
    },
    handle(req) {
      const m = CANCEL.exec(req.path)
      if (!isIssuePath(req.path) && !m) return error(404, 'NOT_FOUND', '존재하지 않는 정보 입니다.')
      const secret = tossSecretOf(req)
      if (!secret) return basicWithoutColon(req) ? incorrectBasicAuth() : unauthorized()
      if (m) {
        if (req.method !== 'POST') return error(405, 'METHOD_NOT_ALLOWED', '허용되지 않는 메서드입니다.')
        const key = segment(m[1]!)
        return key === null ? error(404, 'NOT_FOUND', '존재하지 않는 정보 입니다.') : cancel(req, secret, key)
      }
      if (req.method === 'POST') return issue(req, secret, req.path === '/v1/payments/cash-receipts')
      if (req.method === 'GET' && req.path === '/v1/cash-receipts') return list(req, secret)
      return error(405, 'METHOD_NOT_ALLOWED', '허용되지 않는 메서드입니다.')
    },
    serverError: () => error(500, 'FAILED_INTERNAL_SYSTEM_PROCESSING', '내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.'),
    rateLimited: (s) => ({
      ...error(429, 'TOO_MANY_REQUESTS', '요청량이 많아 일시적으로 처리할 수 없습니다. 잠시 후 다시 시도해주세요.'),
      headers: { 'retry-after': String(s) },
    }),
    maxLivePerKey: () => live.max,
    maxReceiptsPerKey: () => live.maxIssued,
    receipts(): HeldReceipt[] {
      const now = Date.now()
      const out: HeldReceipt[] = []
      for (const e of byKey.values()) {
        settle(e, now)
        if (e.issueStatus === 'FAILED') continue
        const left = e.amount - e.cancelledAmount
        out.push({
          key: e.orderId,
          status: left > 0 ? 'issued' : 'cancelled',
          amount: left,
          issuedAmount: e.amount,
          approvalNumber: e.issueNumber,
          identifier: maskTail(e.customerIdentityNumber),
          issuedAt: kstIso(e.requestedAtMs),
        })
      }
      return out
    },
    reset() {
      byKey.clear()
      byOrder.clear()
      byDate.clear()
      lastRequestAt.clear()
      idem.clear()
      live.reset()
      seq = 0
      advancedMs = 0
      failQueue = []
      Object.assign(counters, emptyCounters())
    },
    advance(ms) {
      advancedMs += Math.max(0, ms)
    },
    failNext(codes) {
      failQueue = [...codes]
    },
    setResultDelay(ms) {
      resultDelayMs = Math.max(0, ms)
    },
  }
}

function randomKey(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  let s = ''
  for (let i = 0; i < 32; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)]
  return s
}
