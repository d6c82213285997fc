/**
 * Toss Payments cash-receipt adapter (api.tosspayments.com, docs/providers.md §5).
 *
 * - Auth `Authorization: Basic base64(secretKey + ":")`.
 * - Issue `POST /v1/cash-receipts` with our deterministic key as `orderId` and the receipt's
 *   Idempotency-Key (≤ 300 characters, derived from the receipt, replayed by Toss for 15 days). A
 *   second issue for the orderId answers `DUPLICATED_CASH_RECEIPT` → already_issued → read back.
 * - The answer is provisional: `issueStatus` IN_PROGRESS until the tax authority's result one to two
 *   days later; the receipt is recorded issued + provisional and reconcile reads the result.
 * - There is no get-one endpoint: a lookup pages `GET /v1/cash-receipts?requestDate=…` (cursor = the
 *   previous `lastCursor`) over every KST date a request for the key may have been sent on
 *   (`sentSince` to today) and matches `orderId`. Pages are small (PAGE entries, well under the
 *   body cap of src/providers/common.ts `body`): a merchant's day can hold thousands of receipts, and
 *   one 10,000-entry page of several MB was unreadable, so every lookup of a busy credential failed.
 *   Lookups of one adapter share their scans (see `scans` below), so a night of lookups reads each
 *   day's list once per batch of lookups instead of once per receipt. Reconcile reads the list once
 *   for all its receipts of the credential (`listReceipts`) and looks up only what that leaves open.
 * - Cancel `POST /v1/cash-receipts/{receiptKey}/cancel`, `{amount}` for a partial cancel; the answer's
 *   receiptKey is `c_<receiptKey>` (kept on the cancel row).
 *
 * Toss ships no server SDK for Node (only browser SDKs on npm), so this is plain HTTP through the
 * shared transport, like the other adapters.
 */
import type { TossCredentials } from './toss-credentials.ts'
import DataLoader from 'dataloader'
import { DEFAULT_RETRY, httpClientFor, requestIo, transportMeta, transportOutcome, withRetry } from '../http.ts'
import { meta, send } from '../common.ts'
import { addDays, kstToday, type CallMeta, type ProviderOutcome } from '../../domain/index.ts'
import type {
  CallContext,
  CancelRequest,
  CashReceiptProvider,
  IssueRequest,
  ListContext,
  ListedOutcome,
  ListRequest,
  LookupRequest,
  ProviderDeps,
  ReceiptListing,
} from '../types.ts'
import { classifyToss, tossListedOutcome, tossListPage, tossOrderOutcome, type TossPage, type TossReceipt } from './toss-errors.ts'

/** How far back a lookup reads at most (the list API is per request date). */
const MAX_LOOKUP_DAYS = 62
/**
 * Entries per list page. A list entry is about 600 bytes of JSON, so a page stays near 150 KB, well
 * under the 256 KB a body is parsed up to.
 */
const PAGE = 250

interface ScanKey {
  readonly orderId: string
  readonly since: string | undefined
}
type ScanResult = { entries: TossReceipt[]; last: ProviderOutcome } | ProviderOutcome

export function createTossProvider(deps: ProviderDeps<TossCredentials>): CashReceiptProvider {
  const now = deps.now ?? Date.now
  const http = httpClientFor(deps)
  const base = deps.baseUrl.replace(/\/+$/, '')
  const creds = deps.credentials
  const budget = deps.retry ?? DEFAULT_RETRY
  const auth = { authorization: `Basic ${Buffer.from(`${creds.secretKey}:`, 'utf8').toString('base64')}` }

  function post(operation: 'issue' | 'cancel', path: string, payload: unknown, idempotencyKey: string, ctx: CallContext | undefined, amount?: number) {
    return withRetry(
      async (): Promise<ProviderOutcome> => {
        const r = await send(http, deps.logger, {
          method: 'POST',
          url: `${base}${path}`,
          headers: { ...auth, 'idempotency-key': idempotencyKey },
          body: payload,
          ...requestIo(operation, ctx),
        })
        return r.ok ? classifyToss(operation, r, amount) : transportOutcome(r)
      },
      { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.(operation, o) },
    )
  }

  /** The request dates a read from `since` covers: up to today, at most MAX_LOOKUP_DAYS back. */
  function firstDate(since: string | undefined): { from: string; today: string } {
    const today = kstToday(now())
    const floor = addDays(today, -MAX_LOOKUP_DAYS)
    return { from: since && since > floor ? (since > today ? today : since) : since ? floor : addDays(today, -1), today }
  }

  /** One list page of a request date, with the meta of its answer, or the failure. */
  async function listPage(date: string, cursor: number | null): Promise<{ page: TossPage; meta: CallMeta } | ProviderOutcome> {
    const q = `requestDate=${date}&limit=${PAGE}${cursor !== null ? `&cursor=${cursor}` : ''}`
    const r = await send(http, deps.logger, { method: 'GET', url: `${base}/v1/cash-receipts?${q}`, headers: auth, ...requestIo('lookup', undefined) })
    if (!r.ok) return { kind: 'retryable', meta: transportMeta(r) }
    const page = tossListPage(r)
    return 'kind' in page ? page : { page, meta: meta(r, null, null) }
  }

  /** Every list entry of the given orderIds over the request dates from `since` to today, or the failure. */
  async function scan(orderIds: ReadonlySet<string>, since: string | undefined): Promise<{ byOrder: Map<string, TossReceipt[]>; last: ProviderOutcome } | ProviderOutcome> {
    const { from, today } = firstDate(since)
    const byOrder = new Map<string, TossReceipt[]>()
    let last: ProviderOutcome | null = null
    for (let date = from; date <= today; date = addDays(date, 1)) {
      let cursor: number | null = null
      for (;;) {
        const got = await listPage(date, cursor)
        if ('kind' in got) return got
        const { page } = got
        for (const e of page.data) {
          if (e.orderId === null || !orderIds.has(e.orderId)) continue
          const list = byOrder.get(e.orderId)
          if (list) list.push(e)
          else byOrder.set(e.orderId, [e])
        }
        last = { kind: 'not_found', meta: got.meta }
        if (!page.hasNext || page.lastCursor === null || page.lastCursor === cursor) break
        cursor = page.lastCursor
      }
    }
    return { byOrder, last: last! }
  }

  /**
   * Lookups share list scans. A scan answers every lookup queued before it started, and lookups that
   * arrive while one runs wait for the next (DataLoader's batch is dispatched only once the running
   * scan has finished). So every answer comes from a read that began after its lookup was asked —
   * what a lookup after an unknown outcome needs — and a busy night costs one scan per batch of
   * lookups, not one per receipt. The scan reads from the earliest `since` of its batch; entries of
   * an order on earlier dates than its own `since` cannot exist (nothing was sent for it then).
   * A scan is not aborted by one caller's signal: its pages are bounded by the read timeout.
   */
  let scanning: Promise<unknown> | null = null
  const scans = new DataLoader<ScanKey, ScanResult, string>(
    async (keys) => {
      const since = keys.some((k) => k.since === undefined) ? undefined : keys.map((k) => k.since!).reduce((a, b) => (a < b ? a : b))
      const run = scan(new Set(keys.map((k) => k.orderId)), since)
      scanning = run
      try {
        const got = await run
        if ('kind' in got) return keys.map(() => got)
        return keys.map((k) => ({ entries: got.byOrder.get(k.orderId) ?? [], last: got.last }))
      } finally {
        scanning = null
      }
    },
    {
      cache: false,
      cacheKeyFn: (k) => `${k.orderId}\u0000${k.since ?? ''}`,
      batchScheduleFn: (dispatch) => {
        const running = scanning
        if (running) void running.then(dispatch, dispatch)
        else setImmediate(dispatch)
      },
    },
  )

  return {
    name: 'toss',
    credentialId: `toss-${creds.secretKey.slice(0, 16)}`,
    capabilities: { partialCancel: true, naverCashAmount: false, deferredResults: true },
    issue(req: IssueRequest, ctx?: CallContext) {
      const payload = {
        amount: req.amounts.total,
        orderId: req.providerKey,
        orderName: req.orderName.slice(0, 100),
        type: req.purpose === 'expense' ? '지출증빙' : '소득공제',
        customerIdentityNumber: req.identifier.replace(/\D/g, ''),
        taxFreeAmount: req.amounts.taxFree,
      }
      return post('issue', '/v1/cash-receipts', payload, req.idempotencyKey, ctx, req.amounts.total)
    },
    lookup(req: LookupRequest, ctx?: CallContext) {
      return withRetry(
        async (): Promise<ProviderOutcome> => {
          const got = await scans.load({ orderId: req.providerKey, since: req.sentSince })
          if ('kind' in got) return got
          return tossOrderOutcome(got.entries, got.last.meta)
        },
        { budget, signal: ctx?.signal, onCall: (o) => ctx?.onCall?.('lookup', o) },
      )
    },
    /**
     * Every list page of the request dates from `sentSince` to today, each page one call through
     * `ctx.schedule` (a page answered retryable is asked again, within the retry budget). Of a page
     * only the entries of `keys` are kept — a busy credential's day may list 50,000 entries, the keys
     * of one reconcile are its ledger rows — and folded per orderId as the lookup folds them.
     */
    async listReceipts(req: ListRequest, ctx: ListContext): Promise<ReceiptListing | ProviderOutcome> {
      const { from, today } = firstDate(req.sentSince)
      const byOrder = new Map<string, TossReceipt[]>()
      let requests = 0
      let last: CallMeta | null = null
      for (let date = from; date <= today; date = addDays(date, 1)) {
        let cursor: number | null = null
        for (;;) {
          const at: { readonly date: string; readonly cursor: number | null } = { date, cursor }
          const got: { page?: TossPage } = {}
          const o = await ctx.schedule(() =>
            withRetry(
              async (): Promise<ProviderOutcome> => {
                requests++
                const p = await listPage(at.date, at.cursor)
                if ('kind' in p) return p
                got.page = p.page
                return { kind: 'not_found', meta: p.meta }
              },
              { budget, signal: ctx.signal },
            ),
          )
          const page = got.page
          if (!page) return o
          last = o.meta
          for (const e of page.data) {
            if (e.orderId === null || !req.keys.has(e.orderId)) continue
            const list = byOrder.get(e.orderId)
            if (list) list.push(e)
            else byOrder.set(e.orderId, [e])
          }
          if (!page.hasNext || page.lastCursor === null || page.lastCursor === cursor) break
          cursor = page.lastCursor
        }
      }
      const held = new Map<string, ListedOutcome>()
      for (const [orderId, entries] of byOrder) held.set(orderId, tossListedOutcome(entries, last!))
      return { held, requests }
    },
    cancel(req: CancelRequest, ctx?: CallContext) {
      const receiptKey = req.original.providerReceiptId
      if (!receiptKey) {
        return Promise.resolve<ProviderOutcome>({
          kind: 'permanent',
          meta: { httpStatus: null, providerCode: 'NO_RECEIPT_KEY', message: 'the receipt key of the original receipt is unknown', latencyMs: 0 },
        })
      }
      return post('cancel', `/v1/cash-receipts/${encodeURIComponent(receiptKey)}/cancel`, req.partial ? { amount: req.amounts.total } : {}, req.idempotencyKey, ctx)
    },
  }
}
