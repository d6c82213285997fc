/**
 * Popbill (Linkhub) Cashbill adapter (docs/providers.md, Popbill), checked against the official node
 * SDK (linkhub-sdk/node-popbill lib/CashbillService.js, lib/BaseService.js) and its token library
 * (linkhub-sdk/node-linkhub lib/TokenBuilder.js).
 *
 * - Token: `POST {auth}/{POPBILL|POPBILL_TEST}/Token` with `{access_id: corpNum, scope: ["member","140"]}`,
 *   signed `LINKHUB <LinkID> base64(HMAC-SHA256(base64decode(SecretKey), "POST\n" + base64(SHA256(body))
 *   + "\n" + x-lh-date + "\n" + "2.0\n" + "/{ServiceID}/Token"))`. Cached until its `expiration`;
 *   a 401 on a call refreshes it once and repeats the call once.
 * - Calls: `Authorization: Bearer <session_token>`; verbs other than GET/POST are POSTs with
 *   `X-HTTP-Method-Override` (ISSUE, BULKISSUE, REVOKEISSUE, CANCELISSUE).
 * - Issue: RegistIssue `POST /Cashbill` + ISSUE; our deterministic key is the `mgtKey`, which Popbill
 *   refuses to reuse (-14001019 / -14000004 → already_issued → read back). The answer is provisional:
 *   state 300 until the midnight NTS filing makes it 304 (final) or 305 (refused, with ntsresultCode);
 *   reconcile reads the result.
 * - Lookup: GetInfos `POST /Cashbill/States` with the key and its revocation keys, in ONE call: a
 *   revocation is a separate receipt under its own mgtKey, so the original's own CashbillInfo never
 *   says it was cancelled.
 * - Cancel: GetInfo first (the original's confirmNum and tradeDate, and whether it is filed). A full
 *   cancel of a receipt not yet filed (300) is CancelIssue (withdrawn from the filing); anything else
 *   is RevokeRegistIssue, a 취소거래 receipt under a mgtKey derived from the original's and the
 *   cancel's number, so a repeat is refused as a duplicate and read back.
 * - Bulk: BulkSubmit `POST /Cashbill` + BULKISSUE with `x-pb-submit-id` and `x-pb-message-digest`
 *   (base64 SHA-1 of the body), up to 100 receipts; GetBulkResult `GET /Cashbill/BULK/{SubmitID}/State`
 *   (txState 0/1 processing, 2 done with one result per mgtKey); GetInfos for many keys.
 *
 * The `popbill` npm SDK is not used: it reaches only its hard-coded https hosts, and a network error
 * or timeout never calls its error callback (BaseService `_makeRequest`), which would leave an
 * unknown outcome waiting forever. This is plain HTTP through the shared transport, like the others.
 */
import { createHash, createHmac } from 'node:crypto'
import type { PopbillCredentials } from './popbill-credentials.ts'
import { DEFAULT_RETRY, httpClientFor, requestIo, transportMeta, transportOutcome, withRetry, type HttpRequest, type HttpResult } from '../http.ts'
import { TokenCache, body, meta, num, send, str, tokenFailure, withTokenRefresh } from '../common.ts'
import { addDays, kstToday, type CallMeta, type ProviderOutcome, type ProviderReceipt } from '../../domain/index.ts'
import type {
  BulkCallContext,
  BulkIssueRequest,
  BulkIssuer,
  BulkResultOutcome,
  BulkSubmitOutcome,
  CallContext,
  CancelRequest,
  CashReceiptProvider,
  IssueRequest,
  LookupRequest,
  ProviderDeps,
} from '../types.ts'
import {
  ALREADY_FILED_CODE,
  DUPLICATE_CODES,
  NOT_FILED_CODE,
  STATE_FILING_FAILED,
  STATE_ISSUED,
  SUBMIT_ID_USED_CODE,
  cashbillInfoOf,
  classifyPopbill,
  isoFromKst,
  popbillCode,
  popbillReceiptOutcome,
  rejected,
  type CashbillInfo,
} from './popbill-errors.ts'

/** Receipts per BulkSubmit (documented maximum). */
export const POPBILL_BULK_MAX = 100
/** Keys per GetInfos call (documented maximum). */
const GET_INFOS_MAX = 1000
/** Revocations one receipt can have here: each takes a key slot, read with the original in one GetInfos. */
export const POPBILL_MAX_REVOCATIONS = 9
const KEYS_PER_RECEIPT = 1 + POPBILL_MAX_REVOCATIONS
const LINKHUB_VERSION = '2.0'
/** The common-table codes of a token Popbill could not read (expired, unknown) or did not get. */
const TOKEN_ERROR_CODES: ReadonlySet<string> = new Set(['-10000033', '-10000034'])
/** Used when a token answer has no readable `expiration` (the lifetime is not documented). */
const FALLBACK_TOKEN_TTL_MS = 10 * 60_000

/**
 * The mgtKey of a receipt's n-th revocation (n = the cancel's number, 1…9): the original's first 21
 * characters, `-C` and n. Our original keys never contain `-`, so no revocation key is an original's;
 * at most 24 characters of [A-Za-z0-9-_].
 */
export function revocationKey(originalKey: string, n: number): string {
  return `${originalKey.slice(0, 21)}-C${n}`
}

/** The cancel's number from its idempotency key (`cr-cancel-…-<n>`, src/providers/keys.ts), or null. */
function cancelNumber(idempotencyKey: string): number | null {
  const m = /-(\d{1,4})$/.exec(idempotencyKey)
  return m ? Number(m[1]) : null
}

/** Where the token is asked for, and which ServiceID: Linkhub's auth host for Popbill's own hosts, else the base URL itself (the sandbox, a proxy). */
export function popbillEndpoints(baseUrl: string): { authUrl: string; serviceId: 'POPBILL' | 'POPBILL_TEST' } {
  const base = baseUrl.replace(/\/+$/, '')
  let host = ''
  try {
    host = new URL(base).hostname
  } catch {
    // config validated it; a bad URL fails at the first call as a transport error
  }
  const m = /^(static-|ga-)?popbill(-test)?\.linkhub\.co\.kr$/.exec(host)
  if (!m) return { authUrl: base, serviceId: 'POPBILL_TEST' }
  return { authUrl: `https://${m[1] ?? ''}auth.linkhub.co.kr`, serviceId: m[2] ? 'POPBILL_TEST' : 'POPBILL' }
}

/** `yyyyMMddHHmmss` in KST. */
function kstStamp(ms: number): string {
  return new Date(ms + 9 * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)
}

const won = (n: number) => String(Math.max(0, Math.trunc(n)))

/**
 * The amounts as Popbill takes them: strings, total = supplyCost + tax + serviceFee (the NTS refuses
 * anything else at filing, TS4). Our `supply` already includes the tax-free part (src/domain/money.ts),
 * so a mixed receipt goes as 과세 with it in supplyCost (one taxationType per receipt); a receipt with
 * no taxable part as 비과세.
 */
function amountFields(a: { total: number; supply: number; vat: number; taxFree: number; serviceFee: number }) {
  const taxable = a.vat > 0 || a.supply - a.taxFree > 0
  return {
    taxationType: taxable ? '과세' : '비과세',
    supplyCost: won(a.supply),
    tax: won(a.vat),
    serviceFee: won(a.serviceFee),
    totalAmount: won(a.total),
  }
}

export function createPopbillProvider(deps: ProviderDeps<PopbillCredentials>): CashReceiptProvider {
  const now = deps.now ?? Date.now
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const { authUrl, serviceId } = popbillEndpoints(base)
  const creds = deps.credentials
  const corpNum = creds.corpNum.replace(/\D/g, '')
  const budget = deps.retry ?? DEFAULT_RETRY

  const tokens = new TokenCache(async () => {
    const text = JSON.stringify({ access_id: corpNum, scope: ['member', '140'] })
    const date = new Date(now()).toISOString().replace(/\.\d{3}Z$/, 'Z')
    const path = `/${serviceId}/Token`
    const digest = createHash('sha256').update(text, 'utf8').digest('base64')
    const target = `POST\n${digest}\n${date}\n${LINKHUB_VERSION}\n${path}`
    const signature = createHmac('sha256', Buffer.from(creds.secretKey, 'base64')).update(target, 'utf8').digest('base64')
    const r = await send(http, deps.logger, {
      method: 'POST',
      url: `${authUrl}${path}`,
      headers: { 'x-lh-date': date, 'x-lh-version': LINKHUB_VERSION, authorization: `LINKHUB ${creds.linkId} ${signature}`, 'content-type': 'Application/json' },
      body: text,
    })
    const b = r.ok ? body(r) : null
    const token = b ? str(b.session_token) : null
    if (!r.ok || r.status !== 200 || !token) return tokenFailure(r, b ? str(b.code) : null, b ? str(b.message) : null)
    const expiresAt = Date.parse(str(b!.expiration) ?? '')
    return { token, ttlMs: Number.isNaN(expiresAt) ? FALLBACK_TOKEN_TTL_MS : Math.max(0, expiresAt - now()) }
  }, now)

  /**
   * One API exchange with the cached token, refreshed once — and the call repeated once — when the
   * answer is a 401 or carries a token error code (-10000033 not readable/expired, -10000034 missing)
   * whatever its status: Popbill does not document which status those come with.
   */
  async function call(req: Omit<HttpRequest, 'url' | 'headers'> & { path: string; headers?: Record<string, string> }): Promise<HttpResult | ProviderOutcome> {
    const first = await exchange(req)
    if ('kind' in first || !first.ok || first.status === 200 || first.status === 401 || !TOKEN_ERROR_CODES.has(popbillCode(first).code ?? '')) return first
    tokens.invalidate()
    return exchange(req)
  }
  function exchange(req: Omit<HttpRequest, 'url' | 'headers'> & { path: string; headers?: Record<string, string> }): Promise<HttpResult | ProviderOutcome> {
    const { path, headers, ...rest } = req
    return withTokenRefresh(tokens, (token) =>
      send(http, deps.logger, {
        ...rest,
        url: `${base}${path}`,
        headers: {
          authorization: `Bearer ${token}`,
          ...(creds.userId ? { 'x-pb-userid': creds.userId } : {}),
          'content-type': 'application/json;charset=utf-8',
          ...headers,
        },
      }),
    )
  }
  const isOutcome = (x: HttpResult | ProviderOutcome): x is ProviderOutcome => 'kind' in x

  /** The Cashbill object of one receipt. */
  function cashbillOf(req: IssueRequest) {
    const paidMs = Date.parse(req.paidAt)
    const today = kstToday(now())
    // tradeDT may only be today or yesterday (KST); an older payment is receipted at the issue time.
    const tradeDT = !Number.isNaN(paidMs) && kstStamp(paidMs).slice(0, 8) >= addDays(today, -1).replace(/-/g, '') ? kstStamp(paidMs) : undefined
    return {
      mgtKey: req.providerKey,
      ...(tradeDT ? { tradeDT } : {}),
      tradeType: '승인거래',
      tradeUsage: req.purpose === 'expense' ? '지출증빙용' : '소득공제용',
      tradeOpt: '일반',
      ...amountFields(req.amounts),
      franchiseCorpNum: corpNum,
      identityNum: req.identifierType === 'self' ? '010-000-1234' : req.identifier.replace(/\D/g, ''),
      itemName: req.orderName.slice(0, 100),
      smssendYN: false,
    }
  }

  /** The CashbillInfos of these keys (GetInfos), or the failure. Keys Popbill does not hold are absent. */
  async function infos(keys: readonly string[], ctx: { signal?: AbortSignal } | undefined): Promise<{ list: CashbillInfo[]; meta: CallMeta } | ProviderOutcome> {
    const r = await call({ method: 'POST', path: '/Cashbill/States', body: JSON.stringify(keys), ...requestIo('lookup', ctx) })
    if (isOutcome(r)) return r
    if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
    const parsed = r.status === 200 ? safeArray(r.text) : null
    if (!parsed) return classifyPopbill('lookup', r)
    return { list: parsed.map(cashbillInfoOf).filter((x): x is CashbillInfo => x !== null), meta: meta(r, null, null) }
  }

  /** One receipt's CashbillInfo (GetInfo), or not_found / the failure. */
  async function info(key: string, ctx: CallContext | undefined): Promise<{ info: CashbillInfo; meta: CallMeta } | ProviderOutcome> {
    const r = await call({ method: 'GET', path: `/Cashbill/${encodeURIComponent(key)}`, ...requestIo('lookup', ctx) })
    if (isOutcome(r)) return r
    if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
    const i = r.status === 200 ? cashbillInfoOf(body(r)) : null
    if (!i) return classifyPopbill('lookup', r)
    return { info: i, meta: meta(r, null, null) }
  }

  const keysOf = (key: string) => [key, ...Array.from({ length: POPBILL_MAX_REVOCATIONS }, (_, i) => revocationKey(key, i + 1))]
  const outcomeFrom = (key: string, list: readonly CashbillInfo[], m: CallMeta) =>
    popbillReceiptOutcome(
      list.find((i) => i.mgtKey === key) ?? null,
      list.filter((i) => i.mgtKey !== key && i.mgtKey.startsWith(`${key.slice(0, 21)}-C`)),
      m,
    )

  /** A mutating exchange (fenced), as an outcome: the caller parses a 200 with `ok`. */
  async function mutate(
    operation: 'issue' | 'cancel',
    path: string,
    override: string,
    payload: unknown,
    ctx: CallContext | undefined,
    ok: (b: Record<string, unknown>, r: Extract<HttpResult, { ok: true }>) => ProviderOutcome | null,
  ): Promise<ProviderOutcome> {
    const r = await call({ method: 'POST', path, headers: { 'x-http-method-override': override }, body: JSON.stringify(payload), ...requestIo(operation, ctx) })
    if (isOutcome(r)) return r
    if (!r.ok) return transportOutcome(r)
    const b = r.status === 200 ? body(r) : null
    const good = b && num(b.code) === 1 ? ok(b, r) : null
    return good ?? classifyPopbill(operation, r)
  }

  const bulk: BulkIssuer = {
    maxItems: POPBILL_BULK_MAX,
    async submitBulk(req: BulkIssueRequest, ctx?: BulkCallContext): Promise<BulkSubmitOutcome> {
      const local = (message: string): BulkSubmitOutcome => ({ kind: 'permanent', meta: { httpStatus: null, providerCode: 'INVALID_BULK', message, latencyMs: 0 } })
      if (req.items.length === 0 || req.items.length > POPBILL_BULK_MAX) return local(`a submission carries 1 to ${POPBILL_BULK_MAX} receipts, not ${req.items.length}`)
      if (!/^[A-Za-z0-9_-]{1,36}$/.test(req.submitId)) return local('the SubmitID must be at most 36 characters of [A-Za-z0-9_-]')
      const text = JSON.stringify({ cashbills: req.items.map(cashbillOf) })
      const r = await call({
        method: 'POST',
        path: '/Cashbill',
        headers: {
          'x-http-method-override': 'BULKISSUE',
          'x-pb-submit-id': req.submitId,
          'x-pb-message-digest': createHash('sha1').update(text, 'utf8').digest('base64'),
        },
        body: text,
        ...requestIo('issue', ctx),
      })
      let out: BulkSubmitOutcome
      if (isOutcome(r)) out = r as BulkSubmitOutcome
      else if (!r.ok) out = transportOutcome(r) as BulkSubmitOutcome
      else {
        const { code, message } = popbillCode(r)
        const m = meta(r, code, message)
        if (r.status === 200 && code === '1') out = { kind: 'accepted', meta: m }
        else if (r.status !== 200 && code === SUBMIT_ID_USED_CODE) out = { kind: 'already_submitted', meta: m }
        else out = classifyPopbill('bulk_submit', r) as BulkSubmitOutcome
      }
      ctx?.onCall?.('bulk_submit', out.meta)
      return out
    },
    async bulkResult(submitId: string, ctx?: BulkCallContext): Promise<BulkResultOutcome> {
      const r = await call({ method: 'GET', path: `/Cashbill/BULK/${encodeURIComponent(submitId)}/State`, ...requestIo('lookup', ctx) })
      const out = bulkResultOf(r)
      ctx?.onCall?.('bulk_result', out.meta)
      return out
    },
    async lookupMany(reqs: readonly LookupRequest[], ctx?: BulkCallContext) {
      const out = new Map<string, ProviderOutcome>()
      const perCall = Math.floor(GET_INFOS_MAX / KEYS_PER_RECEIPT)
      for (let i = 0; i < reqs.length; i += perCall) {
        const chunk = reqs.slice(i, i + perCall)
        const got = await infos(
          chunk.flatMap((q) => keysOf(q.providerKey)),
          ctx,
        )
        ctx?.onCall?.('lookup_many', 'kind' in got ? got.meta : got.meta)
        if ('kind' in got) return got
        for (const q of chunk) out.set(q.providerKey, outcomeFrom(q.providerKey, got.list, got.meta))
      }
      return out
    },
  }

  function bulkResultOf(r: HttpResult | ProviderOutcome): BulkResultOutcome {
    if (isOutcome(r)) return r as BulkResultOutcome
    if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
    const b = r.status === 200 ? body(r) : null
    const txState = b ? num(b.txState) : null
    if (!b || txState === null) {
      const o = classifyPopbill('bulk_result', r)
      return (o.kind === 'not_found' ? { kind: 'not_found', meta: o.meta } : o) as BulkResultOutcome
    }
    const m = meta(r, `txState=${txState}`, str(b.message))
    if (txState !== 2) return { kind: 'processing', meta: m }
    const items = new Map<string, ProviderOutcome>()
    for (const raw of Array.isArray(b.issueResult) ? (b.issueResult as unknown[]) : []) {
      const o = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : null
      const key = o ? str(o.mgtKey) : null
      if (!o || !key) continue
      const code = o.code === undefined || o.code === null ? null : String(o.code)
      const im: CallMeta = { ...m, providerCode: code, message: str(o.message)?.slice(0, 500) ?? null }
      if (code === '1') {
        const receipt: ProviderReceipt = {
          status: 'issued',
          approvalNumber: str(o.confirmNum),
          providerReceiptId: key,
          receiptUrl: null,
          amount: null,
          issuedAt: isoFromKst(str(o.issueDT)),
          cancelledAt: null,
          provisional: true,
        }
        items.set(key, { kind: 'issued', meta: im, receipt })
      } else if (code !== null && DUPLICATE_CODES.has(code)) items.set(key, { kind: 'already_issued', meta: im })
      else items.set(key, { kind: 'permanent', meta: im })
    }
    return { kind: 'done', items, meta: m }
  }

  const fail = (providerCode: string, message: string): ProviderOutcome => ({ kind: 'permanent', meta: { httpStatus: null, providerCode, message, latencyMs: 0 } })

  return {
    name: 'popbill',
    // The seller's 사업자번호 is stored encrypted elsewhere: limiter keys and logs carry a digest of it.
    credentialId: `popbill-${createHash('sha256').update(`${creds.linkId}\u0000${corpNum}`, 'utf8').digest('hex').slice(0, 16)}`,
    capabilities: { partialCancel: true, partialCancelOnlyFinal: true, naverCashAmount: false, deferredResults: true },
    bulk,
    async issue(req: IssueRequest, ctx?: CallContext) {
      const registIssue = () =>
        withRetry(
          () =>
            mutate('issue', '/Cashbill', 'ISSUE', { ...cashbillOf(req), memo: '' }, ctx, (b, r) => {
              const confirmNum = str(b.confirmNum)
              if (!confirmNum) return null
              return {
                kind: 'issued',
                meta: meta(r, '1', str(b.message)),
                // 300 issued: the NTS filing result comes after midnight (304 final, 305 refused).
                receipt: {
                  status: 'issued',
                  approvalNumber: confirmNum,
                  providerReceiptId: req.providerKey,
                  receiptUrl: null,
                  amount: req.amounts.total,
                  issuedAt: new Date(now()).toISOString(),
                  cancelledAt: null,
                  provisional: true,
                },
              }
            }),
          { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('issue', o) },
        )
      const first = await registIssue()
      if (first.kind !== 'already_issued') return first
      // The mgtKey is taken. If what holds it is a receipt the NTS refused at filing (305) — a
      // re-drive of a tax_authority failure — nothing is live under it: delete it (Popbill frees a
      // mgtKey only by deletion) and issue again under the same key, so lookups keep finding it.
      const got = await info(req.providerKey, ctx)
      if ('kind' in got) {
        ctx?.onCall?.('lookup', got)
        return first
      }
      ctx?.onCall?.('lookup', popbillReceiptOutcome(got.info, [], got.meta))
      if (got.info.stateCode !== STATE_FILING_FAILED || got.info.tradeType !== '승인거래') return first
      const r = await call({
        method: 'POST',
        path: `/Cashbill/${encodeURIComponent(req.providerKey)}`,
        headers: { 'x-http-method-override': 'DELETE' },
        body: '{}',
        ...requestIo('issue', ctx),
      })
      const deleted: ProviderOutcome = isOutcome(r)
        ? r
        : !r.ok
          ? transportOutcome(r)
          : r.status === 200 && popbillCode(r).code === '1'
            ? { kind: 'not_found', meta: meta(r, '1', 'deleted (refused by the NTS)') }
            : classifyPopbill('issue', r)
      ctx?.onCall?.('issue', deleted)
      // Anything but a confirmed deletion leaves the question to the caller's read-back (it finds the 305).
      return deleted.kind === 'not_found' ? registIssue() : first
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return withRetry(
        async (): Promise<ProviderOutcome> => {
          const got = await infos(keysOf(req.providerKey), ctx)
          return 'kind' in got ? got : outcomeFrom(req.providerKey, got.list, got.meta)
        },
        { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('lookup', o) },
      )
    },
    async cancel(req: CancelRequest, ctx?: CallContext) {
      const n = cancelNumber(req.idempotencyKey)
      if (n === null || n < 1) return fail('NO_CANCEL_NUMBER', 'the cancel has no number to derive its revocation key from')
      if (n > POPBILL_MAX_REVOCATIONS) return fail('TOO_MANY_REVOCATIONS', `Popbill receipts take at most ${POPBILL_MAX_REVOCATIONS} cancellations here; this one needs a person`)
      // GetInfo of the original: its confirmNum and tradeDate as Popbill holds them, and whether it is filed.
      const held: { got?: { info: CashbillInfo; meta: CallMeta } } = {}
      const read = await withRetry(
        async () => {
          const got = await info(req.providerKey, ctx)
          if ('kind' in got) return got
          held.got = got
          return popbillReceiptOutcome(got.info, [], got.meta)
        },
        { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('lookup', o) },
      )
      if (!held.got) return read
      const { info: original, meta: readMeta } = held.got
      const state = original.stateCode
      if (state !== null && state >= 400 && state < 500) {
        return {
          kind: 'cancelled',
          meta: readMeta,
          receipt: {
            status: 'cancelled',
            approvalNumber: original.confirmNum,
            providerReceiptId: original.mgtKey,
            receiptUrl: null,
            amount: original.totalAmount,
            issuedAt: null,
            cancelledAt: isoFromKst(original.stateDT),
          },
        }
      }
      if (state === STATE_FILING_FAILED) return rejected(original, readMeta)
      const cancelledNow = (m: CallMeta, approval: string | null, id: string): ProviderOutcome => ({
        kind: 'cancelled',
        meta: m,
        receipt: {
          status: 'cancelled',
          approvalNumber: approval,
          providerReceiptId: id,
          receiptUrl: null,
          amount: req.amounts.total,
          issuedAt: null,
          cancelledAt: new Date(now()).toISOString(),
        },
      })
      if (state === STATE_ISSUED && !req.partial) {
        // Not filed yet: withdraw it from the filing (CancelIssue). Refused because midnight filing
        // got there first → a revocation below, like any filed receipt.
        const withdrawn = await withRetry(
          () =>
            mutate('cancel', `/Cashbill/${encodeURIComponent(req.providerKey)}`, 'CANCELISSUE', { memo: '' }, ctx, (_b, r) =>
              cancelledNow(meta(r, '1', null), original.confirmNum, req.providerKey),
            ),
          { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('cancel', o) },
        )
        if (!(withdrawn.kind === 'permanent' && withdrawn.meta.providerCode === ALREADY_FILED_CODE)) return withdrawn
      }
      const key = revocationKey(req.providerKey, n)
      const payload = {
        mgtKey: key,
        orgConfirmNum: original.confirmNum ?? req.original.approvalNumber,
        orgTradeDate: original.tradeDate ?? req.original.tradeDate.replace(/-/g, ''),
        smssendYN: false,
        isPartCancel: req.partial,
        cancelType: req.reason,
        ...(req.partial ? (({ taxationType: _t, ...a }) => a)(amountFields(req.amounts)) : {}),
      }
      const revoked = await withRetry(() => mutate('cancel', '/Cashbill', 'REVOKEISSUE', payload, ctx, (b, r) => cancelledNow(meta(r, '1', null), str(b.confirmNum), key)), {
        budget,
        signal: ctx?.signal,
        onCall: (o) => ctx?.onCall?.('cancel', o),
      })
      if (revoked.kind === 'permanent' && revoked.meta.providerCode === NOT_FILED_CODE) {
        return {
          ...revoked,
          meta: { ...revoked.meta, message: `${revoked.meta.message ?? ''} (a part of a receipt can be cancelled once it is filed with the NTS, after midnight)`.slice(0, 500) },
        }
      }
      if (revoked.kind === 'permanent' && revoked.meta.providerCode !== null && DUPLICATE_CODES.has(revoked.meta.providerCode)) {
        // This revocation was made before (its answer lost): read it back.
        const again = await info(key, ctx)
        ctx?.onCall?.(
          'lookup',
          'kind' in again
            ? again
            : {
                kind: 'issued',
                meta: again.meta,
                receipt: { status: 'issued', approvalNumber: null, providerReceiptId: null, receiptUrl: null, amount: null, issuedAt: null, cancelledAt: null },
              },
        )
        if ('kind' in again) return again.kind === 'not_found' ? revoked : again
        if (again.info.tradeType === '취소거래' && again.info.orgConfirmNum === payload.orgConfirmNum) return cancelledNow(again.meta, again.info.confirmNum, key)
        return revoked
      }
      return revoked
    },
  }
}

function safeArray(text: string): unknown[] | null {
  if (!text || text.length > 4 * 1024 * 1024) return null
  try {
    const v = JSON.parse(text) as unknown
    return Array.isArray(v) ? v : null
  } catch {
    return null
  }
}
