/**
 * Popbill (Linkhub) Cashbill simulator, per docs/providers.md (Popbill), which records what was checked
 * against the official node SDK (linkhub-sdk/node-popbill, node-linkhub) and docs.popbill.com.
 *
 * - Token: `POST /POPBILL/Token` or `/POPBILL_TEST/Token` (the auth host's paths) with
 *   `Authorization: LINKHUB <LinkID> <signature>`, `x-lh-date`, `x-lh-version: 2.0` and body
 *   `{access_id: <CorpNum>, scope: [..., "140"]}`. The signature is base64 HMAC-SHA256, keyed with the
 *   base64-decoded SecretKey, over `POST\n<base64 SHA-256 of the body>\n<x-lh-date>\n[<x-lh-forwarded>\n]2.0\n/<ServiceID>/Token`.
 *   Sandbox secrets: `popbillSandboxSecret(linkId)`. A wrong signature, version or date → 401.
 *   Answer `{session_token, serviceID, linkID, usercode, ipaddress, expiration, scope}`; one hour.
 *   `GET /Time` answers the server time (the SDKs' UseLocalTimeYN=false).
 * - Calls: `Authorization: Bearer <session_token>` (missing → 401 -10000034; unknown or expired → 401
 *   -10000033); POST with `X-HTTP-Method-Override` for the other verbs.
 * - RegistIssue `POST /Cashbill` + ISSUE: validates the Cashbill as documented (mgtKey ≤ 24 of
 *   [A-Za-z0-9_-]; amounts strings of at most 9 digits; required fields; tradeDT today or yesterday
 *   KST; franchiseCorpNum the token's seller); a used mgtKey → -14001019. Answer `{code: 1, message,
 *   confirmNum, tradeDate, tradeDT}`; the receipt is state 300.
 * - Midnight filing: a receipt issued before the current KST day (or before `fileNow()`) is filed:
 *   304, or 305 with an ntsresultCode — `failNext([...])` for the next issues, TS1 for an identity
 *   number no identifier has, TS4 when totalAmount ≠ supplyCost + tax + serviceFee.
 * - BulkSubmit `POST /Cashbill` + BULKISSUE with `x-pb-submit-id` (≤ 36 of [A-Za-z0-9_-]) and
 *   `x-pb-message-digest` (base64 SHA-1 of the body), `{cashbills: [...]}` (1–100): accepted with
 *   `{code: 1, receiptID}` and processed in the background — txState 0 (submitted), 1 (processing),
 *   2 (done) after the bulk delay (default 2.5 × a modelled submission time, `setBulkDelay(ms)`).
 *   Each cashbill is then validated and issued like RegistIssue, with its own result. A SubmitID
 *   already used by the seller → -14001031, whatever the content.
 * - GetBulkResult `GET /Cashbill/BULK/{SubmitID}/State`: `{code, submitID, submitCount, successCount,
 *   failCount, txState, txResultCode, txStartDT, txEndDT, receiptDT, receiptID, issueResult: [{code,
 *   message, mgtKey, confirmNum, tradeDate, issueDT}]}`, issueResult only at txState 2; unknown → -14000000.
 * - GetInfo `GET /Cashbill/{MgtKey}` (CashbillInfo; unknown → -14000003); GetInfos `POST /Cashbill/States`
 *   with a JSON array of ≤ 1000 keys (the infos of the keys held; others left out).
 * - RevokeRegistIssue `POST /Cashbill` + REVOKEISSUE `{mgtKey, orgConfirmNum, orgTradeDate,
 *   isPartCancel, cancelType 1|2|3, supplyCost, tax, serviceFee, totalAmount}`: a separate 취소거래
 *   receipt under its own mgtKey; unknown original → -14001020; original not filed (300, 305) →
 *   -14001021; more than what is left → -14001023; used mgtKey → -14001019.
 * - CancelIssue `POST /Cashbill/{MgtKey}` + CANCELISSUE: withdraws a receipt not yet filed (state 400);
 *   filed → -14001025; unknown → -14000003.
 * - Delete `POST /Cashbill/{MgtKey}` + DELETE: frees the mgtKey (the only way to reuse one) of a receipt
 *   refused at filing (305) or withdrawn (400); other states → -14001027.
 * Errors are `{code: <negative>, message}` with a non-200 status (400 validation, 401 auth).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../sim.ts'
import { ApprovalNumbers, LiveLedger, emptyCounters, header, kstDate, kstStamp, maskTail, randomHex, segment } from '../sim.ts'

const TOKEN_TTL_MS = 3_600_000
const BULK_MAX = 100
const GET_INFOS_MAX = 1000
/** State of a receipt withdrawn by CancelIssue (the published codes stop at 3xx; the sandbox's choice). */
const STATE_WITHDRAWN = 400

/** The SecretKey the sandbox accepts for a LinkID: base64 of `sandbox-secret:<LinkID>`. */
export const popbillSandboxSecret = (linkId: string): string => Buffer.from(`sandbox-secret:${linkId}`, 'utf8').toString('base64')

/** The NTS filing results the simulator can give (same family as Toss's NTS_ERROR list). */
export const POPBILL_NTS_RESULTS: Readonly<Record<string, string>> = {
  TS1: '신분확인정보 자릿수 오류',
  TS2: '카드정보 자릿수 오류',
  TS3: '제외업종사업자와 거래한 현금결제내역',
  TS4: '매출금액 입력오류 또는 거래금액 총합계 입력오류.',
  TS5: '승인번호, 거래일자 중복 오류',
  TS6: '거래일자 오류',
  TS7: '가맹점 사업자등록번호 미등록 오류',
  TS8: 'Layout 오류(Record 항목별 입력 값 오류)',
  XXX: '정의 안된 오류',
}

interface Token {
  readonly linkId: string
  readonly corpNum: string
  readonly serviceId: string
  readonly scopes: readonly string[]
  readonly expiresAt: number
}

interface Bill {
  readonly corpNum: string
  readonly mgtKey: string
  readonly itemKey: string
  readonly confirmNum: string
  readonly tradeDate: string
  readonly tradeDT: string
  readonly tradeType: '승인거래' | '취소거래'
  readonly tradeUsage: string
  readonly tradeOpt: string
  readonly taxationType: string
  readonly totalAmount: number
  readonly supplyCost: number
  readonly tax: number
  readonly serviceFee: number
  readonly identityNum: string
  readonly itemName: string
  readonly orgConfirmNum: string | null
  readonly orgTradeDate: string | null
  readonly issuedAtMs: number
  /** Issue order: `fileNow()` files what was issued before it, whatever the (injected) clock says. */
  readonly seq: number
  readonly failWith: string | null
  stateCode: number
  stateAtMs: number
  ntsAtMs: number | null
  /** Originals: what revocations took so far. */
  cancelledAmount: number
}

interface Submission {
  readonly corpNum: string
  readonly submitId: string
  readonly digest: string
  readonly receiptId: string
  readonly items: readonly unknown[]
  readonly submittedAtMs: number
  readonly doneAtMs: number
  results: Record<string, unknown>[] | null
}

type Fields = Record<string, unknown>

const fail = (status: number, code: number, message: string): SimResponse => ({ status, body: { code, message } })

export interface PopbillSim extends ProviderSim {
  /** Files every receipt issued so far, as midnight would (304, or 305 where due). */
  fileNow(): void
  /** The next issues fail at the NTS filing with these result codes, in order. */
  failNext(codes: readonly string[]): void
  /** How long a bulk submission takes to process; null = 2.5 × the modelled submission time. */
  setBulkDelay(ms: number | null): void
}

export function createPopbillSim(opts: { readonly clock: () => number; readonly bulkDelayMs?: number | null }): PopbillSim {
  const counters = emptyCounters()
  const approvals = new ApprovalNumbers()
  const live = new LiveLedger()
  const tokens = new Map<string, Token>()
  const bills = new Map<string, Bill>()
  const byConfirm = new Map<string, Bill>()
  const submissions = new Map<string, Submission>()
  let pending: Submission[] = []
  let failQueue: string[] = []
  let filedUpTo = 0
  let seq = 0
  let bulkDelayMs: number | null = opts.bulkDelayMs ?? null

  const billKey = (corpNum: string, mgtKey: string) => `${corpNum}\u0000${mgtKey}`
  const ledgerKey = (b: Bill) => `${b.corpNum}:${b.mgtKey}`

  // ---- filing ---------------------------------------------------------------------------------

  /** Files a receipt once midnight (KST) has passed since its issue, or `fileNow()` covered it. */
  function settle(b: Bill, nowMs: number): void {
    if (b.stateCode !== 300) return
    const midnightPassed = kstDate(b.issuedAtMs) < kstDate(nowMs)
    if (!midnightPassed && b.seq > filedUpTo) return
    b.stateCode = b.failWith ? 305 : 304
    b.stateAtMs = nowMs
    b.ntsAtMs = nowMs
    if (b.failWith && b.tradeType === '승인거래' && b.totalAmount - b.cancelledAmount > 0) {
      // Refused by the NTS: nothing is receipted.
      live.change(ledgerKey(b), -1)
    }
  }

  function info(b: Bill, nowMs: number): Fields {
    settle(b, nowMs)
    const filed = b.ntsAtMs !== null
    return {
      itemKey: b.itemKey,
      mgtKey: b.mgtKey,
      tradeDate: b.tradeDate,
      tradeDT: b.tradeDT,
      tradeType: b.tradeType,
      tradeUsage: b.tradeUsage,
      tradeOpt: b.tradeOpt,
      taxationType: b.taxationType,
      totalAmount: String(b.totalAmount),
      supplyCost: String(b.supplyCost),
      tax: String(b.tax),
      serviceFee: String(b.serviceFee),
      issueDT: kstStamp(b.issuedAtMs),
      regDT: kstStamp(b.issuedAtMs),
      stateCode: b.stateCode,
      stateDT: kstStamp(b.stateAtMs),
      identityNum: maskIdentity(b.identityNum),
      itemName: b.itemName,
      orderNumber: '',
      email: '',
      hp: '',
      customerName: '',
      confirmNum: b.confirmNum,
      orgConfirmNum: b.orgConfirmNum ?? '',
      orgTradeDate: b.orgTradeDate ?? '',
      ntssendDT: filed ? kstStamp(b.ntsAtMs!) : '',
      ntsresultDT: filed ? kstStamp(b.ntsAtMs!) : '',
      ntsresultCode: filed ? (b.failWith ?? '0000') : '',
      ntsresultMessage: filed ? (b.failWith ? (POPBILL_NTS_RESULTS[b.failWith] ?? POPBILL_NTS_RESULTS.XXX) : '') : '',
      printYN: false,
      interOPYN: false,
    }
  }

  // ---- auth -----------------------------------------------------------------------------------

  function issueToken(req: SimRequest, serviceId: string): SimResponse {
    const auth = header(req, 'authorization')
    const m = auth ? /^LINKHUB (\S+) (\S+)$/.exec(auth.trim()) : null
    if (!m) return fail(401, -10000032, '링크허브 인증정보가 올바르지 않습니다.')
    const [, linkId, signature] = m as unknown as [string, string, string]
    if (header(req, 'x-lh-version') !== '2.0') return fail(401, -10000032, 'x-lh-version 2.0 이 필요합니다.')
    const date = header(req, 'x-lh-date')
    if (!date || Number.isNaN(Date.parse(date))) return fail(401, -10000032, 'x-lh-date 가 올바르지 않습니다.')
    const forwarded = header(req, 'x-lh-forwarded')
    const digest = createHash('sha256').update(req.bodyText, 'utf8').digest('base64')
    const target = `POST\n${digest}\n${date}\n${forwarded ? `${forwarded}\n` : ''}2.0\n/${serviceId}/Token`
    const expected = createHmac('sha256', Buffer.from(popbillSandboxSecret(linkId), 'base64'))
      .update(target, 'utf8')
      .digest()
    const given = Buffer.from(signature, 'base64')
    if (!/^[A-Za-z0-9_-]{1,100}$/.test(linkId) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return fail(401, -10000032, '링크허브 인증 서명이 일치하지 않습니다.')
    }
    const b = req.body
    const corpNum = typeof b?.access_id === 'string' ? b.access_id : ''
    if (!corpNum) return fail(400, -10000015, '사업자번호가 입력되지 않았습니다.')
    if (!/^\d{10}$/.test(corpNum)) return fail(400, -10000014, '사업자번호에 해당하는 회원이 없습니다.')
    const scopes = Array.isArray(b?.scope) ? b.scope.filter((s): s is string => typeof s === 'string') : []
    const sessionToken = randomHex(24)
    const expiresAt = req.nowMs + TOKEN_TTL_MS
    tokens.set(sessionToken, { linkId, corpNum, serviceId, scopes, expiresAt })
    return {
      status: 200,
      body: {
        session_token: sessionToken,
        serviceID: serviceId,
        linkID: linkId,
        usercode: 'POPBILL',
        ipaddress: forwarded ?? '*',
        expiration: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        scope: scopes,
      },
    }
  }

  /** The bearer token's seller, or the 401 answer. */
  function bearer(req: SimRequest): Token | SimResponse {
    const auth = header(req, 'authorization')
    const m = auth ? /^Bearer (\S+)$/.exec(auth.trim()) : null
    if (!m) return fail(401, -10000034, '인증 토큰이 입력되지 않았습니다.')
    const t = tokens.get(m[1]!)
    if (!t || t.expiresAt <= req.nowMs) return fail(401, -10000033, '인증 토큰의 해석에 실패하였습니다. (만료되었거나 올바르지 않은 토큰)')
    if (!t.scopes.includes('140')) return fail(403, -14000002, '현금영수증 조회 권한이 없습니다. (토큰 scope 140)')
    return t
  }

  // ---- validation -----------------------------------------------------------------------------

  const MGT_KEY = /^[A-Za-z0-9_-]{1,24}$/

  /** An amount as Popbill takes it: a string of at most 9 digits. */
  function amount(v: unknown, missing: [number, string], negative: [number, string]): number | SimResponse {
    if (typeof v === 'string' && /^-\d+$/.test(v.trim())) return fail(400, negative[0], negative[1])
    if (typeof v !== 'string' || !/^\d{1,9}$/.test(v)) {
      const why = typeof v === 'number' ? ' (금액은 문자열로 입력해야 합니다)' : v === undefined || v === '' ? '' : ' (숫자 9자리 이하)'
      return fail(400, missing[0], `${missing[1]}${why}`)
    }
    return Number(v)
  }
  const isAnswer = (v: unknown): v is SimResponse => typeof v === 'object' && v !== null && 'status' in v

  /** The four amounts of a Cashbill (issue, and a partial revocation), in Popbill's order of checks. */
  function amountsOf(c: Fields): { serviceFee: number; supplyCost: number; tax: number; totalAmount: number } | SimResponse {
    const serviceFee = amount(c.serviceFee, [-14001008, '봉사료가 입력되지 않았습니다.'], [-14001009, '봉사료는 음수를 입력할 수 없습니다.'])
    if (isAnswer(serviceFee)) return serviceFee
    const supplyCost = amount(c.supplyCost, [-14001010, '공급가액이 입력되지 않았습니다.'], [-14001011, '공급가액은 음수를 입력할 수 없습니다.'])
    if (isAnswer(supplyCost)) return supplyCost
    const tax = amount(c.tax, [-14001012, '부가세가 입력되지 않았습니다.'], [-14001013, '부가세는 음수를 입력할 수 없습니다.'])
    if (isAnswer(tax)) return tax
    const totalAmount = amount(c.totalAmount, [-14001014, '합계금액이 입력되지 않았습니다.'], [-14001015, '합계금액은 음수를 입력할 수 없습니다.'])
    if (isAnswer(totalAmount)) return totalAmount
    return { serviceFee, supplyCost, tax, totalAmount }
  }

  /** Validates one Cashbill for issue at `atMs` by seller `corpNum`; the fields, or the error answer. */
  function validate(c: Fields | null, corpNum: string, atMs: number) {
    if (!c) return fail(400, -14001000, '현금영수증 정보가 입력되지 않았습니다.')
    const mgtKey = c.mgtKey
    if (typeof mgtKey !== 'string' || mgtKey === '') return fail(400, -14001003, '문서번호(mgtKey)가 입력되지 않았습니다.')
    if (!MGT_KEY.test(mgtKey)) return fail(400, -14001003, '문서번호는 영문, 숫자, 하이픈(-), 언더바(_) 조합 24자 이하입니다.')
    const franchise = typeof c.franchiseCorpNum === 'string' ? c.franchiseCorpNum.replace(/-/g, '') : ''
    if (!franchise) return fail(400, -14001001, '가맹점 사업자번호가 입력되지 않았습니다.')
    if (!/^\d{10}$/.test(franchise)) return fail(400, -14001002, '가맹점 사업자번호가 올바르지 않습니다.')
    if (franchise !== corpNum) return fail(403, -14000002, '다른 사업자의 현금영수증을 발행할 권한이 없습니다.')
    if (c.tradeType === undefined || c.tradeType === '') return fail(400, -14001017, '문서형태(승인거래/취소거래)가 입력되지 않았습니다.')
    if (c.tradeType !== '승인거래') return fail(400, -14001017, '발행은 승인거래만 가능합니다. 취소거래는 RevokeRegistIssue 로 발행합니다.')
    if (c.tradeUsage !== '소득공제용' && c.tradeUsage !== '지출증빙용') return fail(400, -14001018, '거래구분(소득공제용/지출증빙용)이 입력되지 않았습니다.')
    const tradeOpt = c.tradeOpt === undefined || c.tradeOpt === '' ? '일반' : c.tradeOpt
    if (tradeOpt !== '일반' && tradeOpt !== '도서공연' && tradeOpt !== '대중교통') return fail(400, -14001018, '거래유형은 일반, 도서공연, 대중교통 중 하나입니다.')
    if (c.taxationType !== '과세' && c.taxationType !== '비과세') return fail(400, -14001006, '과세형태(과세/비과세)가 입력되지 않았습니다.')
    const identityNum = typeof c.identityNum === 'string' ? c.identityNum.trim() : ''
    if (!identityNum) return fail(400, -14001004, '식별번호가 입력되지 않았습니다.')
    const selfIssue = identityNum === '010-000-1234'
    if (selfIssue && c.tradeUsage !== '소득공제용') return fail(400, -14001004, '자진발급(010-000-1234)은 소득공제용만 가능합니다.')
    if (!selfIssue && !/^\d{1,30}$/.test(identityNum)) return fail(400, -14001004, '식별번호는 숫자만 입력할 수 있습니다.')
    const amounts = amountsOf(c)
    if (isAnswer(amounts)) return amounts
    const { serviceFee, supplyCost, tax, totalAmount } = amounts
    let tradeDT = kstStamp(atMs)
    if (c.tradeDT !== undefined && c.tradeDT !== '') {
      const t = c.tradeDT
      if (typeof t !== 'string' || !/^\d{14}$/.test(t)) return fail(400, -14001005, '거래일시(tradeDT)는 yyyyMMddHHmmss 형식입니다.')
      const today = kstDate(atMs)
      const yesterday = kstDate(atMs - 86_400_000)
      if (t.slice(0, 8) !== today && t.slice(0, 8) !== yesterday) return fail(400, -14001005, '거래일시는 발행일 당일 또는 전일만 입력할 수 있습니다.')
      tradeDT = t
    }
    const digits = identityNum.replace(/-/g, '')
    // What the NTS will refuse at filing (the receipt is still accepted now).
    const natural =
      !selfIssue && (digits.length < 10 || digits.length > 19) ? 'TS1' : totalAmount !== supplyCost + tax + serviceFee || supplyCost < tax || totalAmount < 1 ? 'TS4' : null
    return {
      mgtKey,
      tradeDT,
      tradeUsage: c.tradeUsage,
      tradeOpt: tradeOpt as string,
      taxationType: c.taxationType,
      identityNum,
      itemName: typeof c.itemName === 'string' ? c.itemName.slice(0, 100) : '',
      serviceFee,
      supplyCost,
      tax,
      totalAmount,
      natural,
    }
  }

  /** Issues one validated Cashbill at `atMs`: the receipt, or the error answer (used mgtKey). */
  function register(c: Fields | null, corpNum: string, atMs: number): Bill | SimResponse {
    const v = validate(c, corpNum, atMs)
    if (isAnswer(v)) return v
    if (bills.has(billKey(corpNum, v.mgtKey))) {
      counters.duplicates_rejected++
      return fail(400, -14001019, '이미 사용중인 문서번호입니다.')
    }
    const b: Bill = {
      corpNum,
      mgtKey: v.mgtKey,
      itemKey: `0${String(Date.now()).slice(-9)}${randomHex(4)}`.slice(0, 18),
      confirmNum: approvals.next(),
      tradeDate: v.tradeDT.slice(0, 8),
      tradeDT: v.tradeDT,
      tradeType: '승인거래',
      tradeUsage: v.tradeUsage as string,
      tradeOpt: v.tradeOpt,
      taxationType: v.taxationType as string,
      totalAmount: v.totalAmount,
      supplyCost: v.supplyCost,
      tax: v.tax,
      serviceFee: v.serviceFee,
      identityNum: v.identityNum,
      itemName: v.itemName,
      orgConfirmNum: null,
      orgTradeDate: null,
      issuedAtMs: atMs,
      seq: ++seq,
      failWith: failQueue.shift() ?? v.natural,
      stateCode: 300,
      stateAtMs: atMs,
      ntsAtMs: null,
      cancelledAmount: 0,
    }
    bills.set(billKey(corpNum, b.mgtKey), b)
    byConfirm.set(`${corpNum}\u0000${b.confirmNum}`, b)
    counters.issued++
    live.change(ledgerKey(b), 1)
    return b
  }

  // ---- operations -----------------------------------------------------------------------------

  function registIssue(req: SimRequest, t: Token): SimResponse {
    if (req.bodyInvalid) return fail(400, -14001000, '현금영수증 정보가 올바른 JSON 이 아닙니다.')
    const b = register(req.body, t.corpNum, req.nowMs)
    if (isAnswer(b)) return b
    return { status: 200, body: { code: 1, message: '발행되었습니다.', confirmNum: b.confirmNum, tradeDate: b.tradeDate, tradeDT: b.tradeDT } }
  }

  function bulkSubmit(req: SimRequest, t: Token): SimResponse {
    const submitId = header(req, 'x-pb-submit-id')
    if (!submitId) return fail(400, -14001033, '제출아이디(x-pb-submit-id)가 입력되지 않았습니다.')
    if (!/^[A-Za-z0-9_-]{1,36}$/.test(submitId)) return fail(400, -14001033, '제출아이디는 영문, 숫자, 하이픈(-), 언더바(_) 조합 36자 이하입니다.')
    const digest = createHash('sha1').update(req.bodyText, 'utf8').digest('base64')
    if (header(req, 'x-pb-message-digest') !== digest) return fail(400, -14001034, '요청 전문의 해시값(x-pb-message-digest)이 일치하지 않습니다.')
    const list = req.body?.cashbills
    if (!Array.isArray(list) || list.length === 0) return fail(400, -14001000, '현금영수증 정보가 입력되지 않았습니다.')
    if (list.length > BULK_MAX) return fail(400, -14001032, `대량발행은 최대 ${BULK_MAX}건까지 제출할 수 있습니다.`)
    const key = `${t.corpNum}\u0000${submitId}`
    if (submissions.has(key)) return fail(400, -14001031, '이미 사용된 제출아이디입니다. 제출아이디는 재사용할 수 없습니다.')
    // Issuance runs in the background and takes about 2.5 × the submission time (docs: bulk-issue).
    const delay = bulkDelayMs ?? Math.round(2.5 * (20 + 2 * list.length))
    const s: Submission = {
      corpNum: t.corpNum,
      submitId,
      digest,
      receiptId: `0${randomHex(9)}`.slice(0, 18),
      items: list,
      submittedAtMs: req.nowMs,
      doneAtMs: req.nowMs + delay,
      results: null,
    }
    submissions.set(key, s)
    pending.push(s)
    return { status: 200, body: { code: 1, message: '접수되었습니다.', receiptID: s.receiptId } }
  }

  /** Processes the submissions whose time has come, in submission order. */
  function processDue(nowMs: number): void {
    if (!pending.length) return
    const due = pending.filter((s) => s.doneAtMs <= nowMs)
    if (!due.length) return
    pending = pending.filter((s) => s.doneAtMs > nowMs)
    for (const s of due) {
      s.results = s.items.map((item) => {
        const c = item && typeof item === 'object' && !Array.isArray(item) ? (item as Fields) : null
        const got = register(c, s.corpNum, s.doneAtMs)
        const mgtKey = typeof c?.mgtKey === 'string' ? c.mgtKey : ''
        if (isAnswer(got)) {
          const e = got.body as { code: number; message: string }
          return { code: e.code, message: e.message, mgtKey, confirmNum: '', tradeDate: '', issueDT: '' }
        }
        return { code: 1, message: '발행완료', mgtKey, confirmNum: got.confirmNum, tradeDate: got.tradeDate, issueDT: kstStamp(got.issuedAtMs) }
      })
    }
  }

  function bulkResult(req: SimRequest, t: Token, submitId: string): SimResponse {
    const s = submissions.get(`${t.corpNum}\u0000${submitId}`)
    if (!s) return fail(400, -14000000, '제출아이디에 해당하는 접수 정보가 없습니다.')
    const delay = s.doneAtMs - s.submittedAtMs
    const txState = s.results ? 2 : req.nowMs < s.submittedAtMs + delay * 0.2 ? 0 : 1
    const results = s.results ?? []
    const ok = results.filter((r) => r.code === 1).length
    return {
      status: 200,
      body: {
        code: 1,
        message: txState === 2 ? '처리완료' : txState === 1 ? '처리중' : '접수',
        submitID: s.submitId,
        submitCount: s.items.length,
        successCount: txState === 2 ? ok : 0,
        failCount: txState === 2 ? results.length - ok : 0,
        txState,
        txResultCode: txState === 2 ? 1 : null,
        txStartDT: txState >= 1 ? kstStamp(s.submittedAtMs + delay * 0.2) : '',
        txEndDT: txState === 2 ? kstStamp(s.doneAtMs) : '',
        receiptDT: kstStamp(s.submittedAtMs),
        receiptID: s.receiptId,
        issueResult: txState === 2 ? results : [],
      },
    }
  }

  function getInfo(req: SimRequest, t: Token, mgtKey: string): SimResponse {
    const b = bills.get(billKey(t.corpNum, mgtKey))
    if (!b) return fail(400, -14000003, '해당 문서번호에 해당하는 현금영수증이 없습니다.')
    return { status: 200, body: info(b, req.nowMs) }
  }

  function getInfos(req: SimRequest, t: Token): SimResponse {
    let keys: unknown
    try {
      keys = JSON.parse(req.bodyText || 'null')
    } catch {
      keys = null
    }
    if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'string')) return fail(400, -14000001, '문서번호 배열이 입력되지 않았습니다.')
    if (keys.length > GET_INFOS_MAX) return fail(400, -14000001, `최대 ${GET_INFOS_MAX}건까지 조회할 수 있습니다.`)
    const out: Fields[] = []
    for (const k of keys as string[]) {
      const b = bills.get(billKey(t.corpNum, k))
      if (b) out.push(info(b, req.nowMs))
    }
    return { status: 200, body: out }
  }

  function revoke(req: SimRequest, t: Token): SimResponse {
    const c = req.body
    if (!c) return fail(400, -14001000, '취소 현금영수증 정보가 입력되지 않았습니다.')
    const mgtKey = c.mgtKey
    if (typeof mgtKey !== 'string' || !MGT_KEY.test(mgtKey)) return fail(400, -14001003, '문서번호는 영문, 숫자, 하이픈(-), 언더바(_) 조합 24자 이하입니다.')
    const orgConfirmNum = typeof c.orgConfirmNum === 'string' ? c.orgConfirmNum : ''
    const orgTradeDate = typeof c.orgTradeDate === 'string' ? c.orgTradeDate : ''
    const original = byConfirm.get(`${t.corpNum}\u0000${orgConfirmNum}`)
    if (!original || original.tradeDate !== orgTradeDate || original.tradeType !== '승인거래') return fail(400, -14001020, '원본 현금영수증이 존재하지 않습니다.')
    settle(original, req.nowMs)
    if (original.stateCode === STATE_WITHDRAWN) return fail(400, -14001020, '원본 현금영수증이 발행취소되었습니다.')
    if (original.stateCode !== 304) return fail(400, -14001021, '원본 현금영수증이 국세청에 전송되지 않아 취소 현금영수증을 발행할 수 없습니다.')
    const cancelType = c.cancelType === undefined || c.cancelType === null || c.cancelType === '' ? 1 : Number(c.cancelType)
    if (![1, 2, 3].includes(cancelType)) return fail(400, -14001024, '취소사유(cancelType)는 1(거래취소), 2(오류발급취소), 3(기타) 중 하나입니다.')
    if (bills.has(billKey(t.corpNum, mgtKey))) {
      counters.duplicates_rejected++
      return fail(400, -14001019, '이미 사용중인 문서번호입니다.')
    }
    const left = original.totalAmount - original.cancelledAmount
    let amounts = { supplyCost: original.supplyCost, tax: original.tax, serviceFee: original.serviceFee, totalAmount: left }
    const partial = c.isPartCancel === true || c.isPartCancel === 'true'
    if (partial) {
      const given = amountsOf(c)
      if (isAnswer(given)) return given
      amounts = given
    } else if (original.cancelledAmount > 0) {
      // The rest of a receipt already partly revoked.
      amounts = { ...amounts, supplyCost: Math.max(0, left - original.tax - original.serviceFee), totalAmount: left }
    }
    if (amounts.totalAmount < 1 || amounts.totalAmount > left || amounts.supplyCost > original.supplyCost) {
      return fail(400, -14001023, '취소 공급가액(합계)이 원본의 남은 금액을 초과합니다.')
    }
    const b: Bill = {
      ...original,
      mgtKey,
      itemKey: `0${String(Date.now()).slice(-9)}${randomHex(4)}`.slice(0, 18),
      confirmNum: approvals.next(),
      tradeDate: kstDate(req.nowMs),
      tradeDT: kstStamp(req.nowMs),
      tradeType: '취소거래',
      ...amounts,
      orgConfirmNum: original.confirmNum,
      orgTradeDate: original.tradeDate,
      issuedAtMs: req.nowMs,
      seq: ++seq,
      failWith: null,
      stateCode: 300,
      stateAtMs: req.nowMs,
      ntsAtMs: null,
      cancelledAmount: 0,
    }
    bills.set(billKey(t.corpNum, mgtKey), b)
    byConfirm.set(`${t.corpNum}\u0000${b.confirmNum}`, b)
    original.cancelledAmount += amounts.totalAmount
    if (original.cancelledAmount >= original.totalAmount) {
      counters.cancelled++
      live.change(ledgerKey(original), -1)
    }
    return { status: 200, body: { code: 1, message: '취소 현금영수증이 발행되었습니다.', confirmNum: b.confirmNum, tradeDate: b.tradeDate, tradeDT: b.tradeDT } }
  }

  function cancelIssue(req: SimRequest, t: Token, mgtKey: string): SimResponse {
    const b = bills.get(billKey(t.corpNum, mgtKey))
    if (!b) return fail(400, -14000003, '해당 문서번호에 해당하는 현금영수증이 없습니다.')
    settle(b, req.nowMs)
    if (b.stateCode === STATE_WITHDRAWN) return fail(400, -14001026, '이미 발행취소된 현금영수증입니다.')
    if (b.stateCode !== 300) return fail(400, -14001025, '국세청 전송이 시작된 현금영수증은 발행취소할 수 없습니다. 취소 현금영수증(RevokeRegistIssue)을 발행하세요.')
    b.stateCode = STATE_WITHDRAWN
    b.stateAtMs = req.nowMs
    if (b.tradeType === '승인거래') {
      counters.cancelled++
      live.change(ledgerKey(b), -1)
    } else {
      // A withdrawn revocation gives its amount back to the original.
      const original = b.orgConfirmNum ? byConfirm.get(`${t.corpNum}\u0000${b.orgConfirmNum}`) : undefined
      if (original) {
        if (original.cancelledAmount >= original.totalAmount) {
          counters.cancelled--
          live.change(ledgerKey(original), 1)
        }
        original.cancelledAmount -= b.totalAmount
      }
    }
    return { status: 200, body: { code: 1, message: '발행취소 되었습니다.' } }
  }

  /**
   * Delete `POST /Cashbill/{MgtKey}` + DELETE: frees the mgtKey of a receipt that holds nothing — one
   * the NTS refused (305) or one withdrawn before filing (400); any other state → -14001027.
   */
  function remove(req: SimRequest, t: Token, mgtKey: string): SimResponse {
    const b = bills.get(billKey(t.corpNum, mgtKey))
    if (!b) return fail(400, -14000003, '해당 문서번호에 해당하는 현금영수증이 없습니다.')
    settle(b, req.nowMs)
    if (b.stateCode !== 305 && b.stateCode !== STATE_WITHDRAWN) return fail(400, -14001027, '삭제할 수 없는 상태의 현금영수증입니다. (국세청 전송실패, 발행취소 상태만 삭제 가능)')
    bills.delete(billKey(t.corpNum, mgtKey))
    byConfirm.delete(`${t.corpNum}\u0000${b.confirmNum}`)
    return { status: 200, body: { code: 1, message: '삭제되었습니다.' } }
  }

  // ---- routing --------------------------------------------------------------------------------

  const TOKEN = /^\/(POPBILL|POPBILL_TEST)\/Token$/
  const BULK_STATE = /^\/Cashbill\/BULK\/([^/]+)\/State$/
  const ONE = /^\/Cashbill\/([^/]+)$/

  function credentialOf(req: SimRequest): string | null {
    const m = /^Bearer (\S+)$/.exec(header(req, 'authorization')?.trim() ?? '')
    const t = m ? tokens.get(m[1]!) : undefined
    return t ? `${t.linkId}:${t.corpNum}` : null
  }

  return {
    name: 'popbill',
    counters,
    classify(req) {
      return { receiptOp: req.path.startsWith('/Cashbill'), credential: credentialOf(req) }
    },
    handle(req) {
      processDue(req.nowMs)
      const tm = TOKEN.exec(req.path)
      if (tm) return req.method === 'POST' ? issueToken(req, tm[1]!) : fail(405, -99999999, 'POST 만 허용됩니다.')
      if (req.path === '/Time' && req.method === 'GET') {
        return { status: 200, body: new Date(req.nowMs).toISOString().replace(/\.\d{3}Z$/, 'Z'), headers: { 'content-type': 'text/plain; charset=utf-8' } }
      }
      if (!req.path.startsWith('/Cashbill')) return fail(404, -99999999, `${req.path} 는 제공되지 않습니다.`)
      const t = bearer(req)
      if ('status' in t) return t
      const override = header(req, 'x-http-method-override')?.toUpperCase()
      const bulk = BULK_STATE.exec(req.path)
      if (bulk) {
        const id = segment(bulk[1]!)
        return req.method === 'GET' && id !== null ? bulkResult(req, t, id) : fail(405, -99999999, 'GET 만 허용됩니다.')
      }
      if (req.path === '/Cashbill/States') return req.method === 'POST' && !override ? getInfos(req, t) : fail(405, -99999999, 'POST 만 허용됩니다.')
      if (req.path === '/Cashbill') {
        if (req.method !== 'POST') return fail(405, -99999999, 'POST 만 허용됩니다.')
        if (override === 'ISSUE') return registIssue(req, t)
        if (override === 'BULKISSUE') return bulkSubmit(req, t)
        if (override === 'REVOKEISSUE') return revoke(req, t)
        return fail(400, -99999999, `sandbox: /Cashbill ${override ?? 'POST'} (임시저장 등) is not simulated`)
      }
      const one = ONE.exec(req.path)
      const key = one ? segment(one[1]!) : null
      if (key === null) return fail(404, -14000003, '해당 문서번호에 해당하는 현금영수증이 없습니다.')
      if (req.method === 'GET') return getInfo(req, t, key)
      if (req.method === 'POST' && override === 'CANCELISSUE') return cancelIssue(req, t, key)
      if (req.method === 'POST' && override === 'DELETE') return remove(req, t, key)
      return fail(400, -99999999, `sandbox: /Cashbill/{MgtKey} ${override ?? req.method} is not simulated`)
    },
    serverError: () => fail(500, -99999999, '일시적인 서버 오류입니다. (sandbox)'),
    rateLimited: (s) => ({ ...fail(429, -99999999, '요청이 많아 처리할 수 없습니다. 잠시 후 다시 시도하세요.'), headers: { 'retry-after': String(s) } }),
    maxLivePerKey: () => {
      processDue(opts.clock())
      return live.max
    },
    maxReceiptsPerKey: () => live.maxIssued,
    receipts(): HeldReceipt[] {
      const now = opts.clock()
      processDue(now)
      const out: HeldReceipt[] = []
      for (const b of bills.values()) {
        if (b.tradeType !== '승인거래') continue
        settle(b, now)
        if (b.stateCode === 305) continue
        const left = b.stateCode === STATE_WITHDRAWN ? 0 : b.totalAmount - b.cancelledAmount
        out.push({
          key: b.mgtKey,
          status: left > 0 ? 'issued' : 'cancelled',
          amount: left,
          issuedAmount: b.totalAmount,
          approvalNumber: b.confirmNum,
          identifier: maskTail(b.identityNum.replace(/-/g, '')),
          issuedAt: new Date(b.issuedAtMs).toISOString(),
        })
      }
      return out
    },
    reset() {
      tokens.clear()
      bills.clear()
      byConfirm.clear()
      submissions.clear()
      pending = []
      failQueue = []
      filedUpTo = 0
      seq = 0
      bulkDelayMs = opts.bulkDelayMs ?? null
      live.reset()
      Object.assign(counters, emptyCounters())
    },
    fileNow() {
      const now = opts.clock()
      processDue(now)
      filedUpTo = seq
      for (const b of bills.values()) settle(b, now)
    },
    failNext(codes) {
      failQueue = [...codes]
    },
    setBulkDelay(ms) {
      bulkDelayMs = ms === null ? null : Math.max(0, ms)
    },
  }
}

/** CashbillInfo shows the identity number masked, as Popbill's info screens do. */
function maskIdentity(n: string): string {
  return n.length > 4 ? `${n.slice(0, 3)}${'*'.repeat(Math.max(0, n.length - 7))}${n.slice(-4)}` : '****'
}
