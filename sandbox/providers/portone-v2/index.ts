/**
 * PortOne V2 (api.portone.io) simulator, per docs/providers.md §2 and @portone/server-sdk 0.19.0.
 *
 * - Auth: `Authorization: PortOne <secret>` on every call, or `Bearer <accessToken>` from
 *   `POST /login/api-secret` (access 30 min, refresh 1 day, rotated on every login or refresh).
 *   Missing or wrong → 401 `UNAUTHORIZED`. Valid secrets are `v2-secret-<x>`; their store is
 *   `store-<x>`, and a request naming another store → 403 `FORBIDDEN`.
 * - Bodies are parsed as JSON whatever the Content-Type (the SDK sends text/plain).
 * - `POST /cash-receipts`: a second issue for a paymentId whose receipt is ISSUED → 409
 *   `CASH_RECEIPT_ALREADY_ISSUED`; `amount.vat` defaults to (total − taxFree)/11 rounded half up; a
 *   channelKey not starting `channel` → 404 `CHANNEL_NOT_FOUND`.
 * - `Idempotency-Key` on any POST (16–256 ASCII characters, RFC 8941 quoted; GET ignores it): a completed
 *   request is replayed with its original answer for 3 hours, errors included (a 502 PG_PROVIDER of
 *   fault `5xx` too); one still running → 409 `IDEMPOTENCY_OUTSTANDING_REQUEST`; another body → 422.
 *   Scope: credential + method + path + key.
 * - A PG failure on issue (fault `5xx`) leaves the receipt `ISSUE_FAILED` (IssueFailedCashReceipt); on
 *   cancel it leaves the receipt `ISSUED` (the 502 kept for the key). Only an `ISSUED` receipt can be
 *   cancelled: any other → 404 `CASH_RECEIPT_NOT_ISSUED`, so a second cancel is refused whatever its key.
 * - `GET /payments/{paymentId}/cash-receipt` (404 `CASH_RECEIPT_NOT_FOUND`); `POST …/cash-receipt/cancel`
 *   (full only; 404 `CASH_RECEIPT_NOT_FOUND` / `CASH_RECEIPT_NOT_ISSUED`); `GET /cash-receipts` (paged list,
 *   body or `requestBody` query).
 * Errors are `{type, message}`; the HTTP status follows the type.
 *
 * This file routes a request to auth.ts (credentials, tokens), idempotency.ts (Idempotency-Key) and
 * receipts.ts (issue, lookup, cancel, list).
 */
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from '../../sim.ts'
import { emptyCounters } from '../../sim.ts'
import { error, unauthorized } from './answers.ts'
import { createV2Auth } from './auth.ts'
import { createV2Idempotency } from './idempotency.ts'
import { createV2Receipts } from './receipts.ts'

const PAYMENT = /^\/payments\/([^/]+)\/cash-receipt(\/cancel)?$/

export function createPortoneV2Sim(): ProviderSim {
  const counters = emptyCounters()
  const auth = createV2Auth()
  const idempotency = createV2Idempotency(auth.secretOf)
  const receipts = createV2Receipts(counters)

  const serverError = (req: SimRequest): SimResponse =>
    req.method === 'GET'
      ? error(500, 'INTERNAL_SERVER_ERROR', '일시적인 오류가 발생했습니다.')
      : error(502, 'PG_PROVIDER', 'PG사에서 오류가 발생했습니다.', {
          pgCode: 'SBX500',
          pgMessage: '일시적인 오류',
        })

  return {
    name: 'portone-v2',
    counters,
    idempotency,
    classify(req) {
      if (req.path === '/login/api-secret') {
        return {
          receiptOp: false,
          credential: typeof req.body?.apiSecret === 'string' ? req.body.apiSecret : null,
        }
      }
      if (req.path === '/token/refresh') {
        return { receiptOp: false, credential: auth.secretOfRefresh(req.body?.refreshToken) }
      }
      return {
        receiptOp: req.path === '/cash-receipts' || PAYMENT.test(req.path),
        credential: auth.secretOf(req),
      }
    },
    handle(req) {
      if (req.path === '/login/api-secret' && req.method === 'POST') return auth.login(req)
      if (req.path === '/token/refresh' && req.method === 'POST') return auth.refresh(req)
      const m = req.path === '/cash-receipts' ? null : PAYMENT.exec(req.path)
      if (req.path !== '/cash-receipts' && !m) {
        return error(404, 'NOT_FOUND', '요청한 경로가 존재하지 않습니다.')
      }
      const secret = auth.secretOf(req)
      if (!secret) return unauthorized()
      if (!m) {
        if (req.method === 'POST') return receipts.issue(req, secret)
        if (req.method === 'GET') return receipts.list(req, secret)
      } else {
        const cancel = m[2] !== undefined
        if (req.method === (cancel ? 'POST' : 'GET')) return receipts.byPayment(req, secret, m[1]!, cancel)
      }
      return error(405, 'METHOD_NOT_ALLOWED', '허용되지 않는 메서드입니다.')
    },
    serverError: (req) => serverError(req),
    failedCall(req) {
      const secret = auth.secretOf(req)
      if (secret && req.method === 'POST' && req.path === '/cash-receipts') receipts.recordIssueFailed(req, secret)
      return serverError(req)
    },
    rateLimited: (s) => ({
      ...error(429, 'TOO_MANY_REQUESTS', '요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.'),
      headers: { 'retry-after': String(s) },
    }),
    maxLivePerKey: () => receipts.maxLivePerKey(),
    maxReceiptsPerKey: () => receipts.maxReceiptsPerKey(),
    receipts: (): HeldReceipt[] => receipts.held(),
    reset() {
      receipts.reset()
      idempotency.reset()
      auth.reset()
      Object.assign(counters, emptyCounters())
    },
  }
}
