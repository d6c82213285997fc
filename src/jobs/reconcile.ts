/**
 * D+1 reconcile: compare the ledger with what each provider holds for a business date's receipts.
 * - provider holds a live receipt, ledger says failed/pending → recorded as issued (repaired)
 * - ledger says issued, provider has none → flagged (reconcile_flag), never silently changed
 * - ledger says issued, provider says cancelled → recorded as cancelled, unless a cancel of it is
 *   open (the worker records it, with the cancelled amount)
 * - ledger and provider agree on issued but not on the amount → the ledger takes the provider's
 *   amount when it is the same receipt (approval number) never partly cancelled (correctAmountsFromProvider);
 *   left alone while a cancel of it is open or once the ledger has caught up (a partial cancel in
 *   flight or recorded during the pass); flagged otherwise
 * Also lists receipts past their legal deadline (business date + 4 days) that are not issued.
 *
 * Duplicates: at a provider that does not deduplicate by our key (NTS, `lookupAll`), every receipt it
 * holds for the key is read. The one the ledger recorded (its approval number) is kept; every other
 * live one is a duplicate: recorded once in provider_duplicates and, unless switched off
 * (`cancelDuplicates`), cancelled at the provider with reason 2 (오류발급취소). The cancel is
 * exactly-once: it names the duplicate's own approval number (never the kept one, which the ledger
 * refuses to record as a duplicate), one reconcile at a time holds it (a claim), every cancel
 * request — p-retry's tries and the repeat after a token refresh included — goes out only after the
 * send fence (lease.ts sendFence, ledger.ts fenceDuplicateCancel) has confirmed that the claim is
 * still this reconcile's, and the provider refuses a second full cancel of one receipt. A duplicate
 * found cancelled later is closed as such.
 *
 * Deferred results (Toss): a receipt recorded issued + provisional is final only once the tax
 * authority has answered, one to two days after the issue. Reconcile of a date also revisits every
 * receipt still provisional from the 60 days before it, so the daily D+1 run finalises each one as
 * soon as its answer is in: COMPLETED → final (finalizeProvisional); FAILED with NTS_ERROR "[TSx] …"
 * → failed with class `tax_authority`, code TSx and the message (failProvisional), which the report,
 * the metrics and re-drive's selectors then see; still IN_PROGRESS → left as it is, counted.
 *
 * Reading the provider: where its API lists receipts by date (Toss, `listReceipts`), each
 * credential's dates are read once, every page through its throttle, and each row takes the
 * listing's answer for its key (listProviders); the rows it cannot settle are looked up one by one,
 * as every row of the other providers is. Either way a row gets the answer `lookup` gives, from a
 * read begun after the row was read, so everything above holds alike (docs/providers.md, Toss, Cost
 * of a lookup).
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import type { Receipt } from '../db/schema.ts'
import {
  claimDuplicateCancel,
  closeCancelledDuplicates,
  failProvisional,
  finalizeProvisional,
  fenceDuplicateCancel,
  finishDuplicateRepair,
  flagReconcile,
  markReconciled,
  recordDuplicates,
  releaseDuplicateCancel,
  repairFromProvider,
  correctAmountsFromProvider,
} from '../db/ledger.ts'
import { addDays, kstToday, type ProviderOutcome, type ProviderReceipt, type ReceiptAmounts } from '../domain/index.ts'
import type { CashReceiptProvider, LookupRequest } from '../providers/types.ts'
import type { Throttle } from '../throttle/throttle.ts'
import type { ProviderSource } from './provider-source.ts'
import { heldAmounts } from './receipt-amounts.ts'
import { LeaseLostError, sendFence } from './lease.ts'

/**
 * A duplicate's cancel claim older than this belongs to a reconcile that died mid-call. The fence
 * renews the claim before each request, so it must exceed the longest call (the call budget).
 */
const DUPLICATE_CLAIM_STALE_MS = 10 * 60_000
/** 2 = 오류발급취소: the receipt was issued in error (a second receipt for one payment). */
const DUPLICATE_CANCEL_REASON = 2

export interface ReconcileDuplicate {
  readonly transaction_id: string
  readonly provider: string
  readonly provider_receipt_id: string
  readonly approval_number: string | null
  readonly amount: number | null
  /** cancelled (now, at the provider) · recorded (cancelling off or not possible) · cancel_failed · cancel_in_progress */
  readonly outcome: 'cancelled' | 'recorded' | 'cancel_failed' | 'cancel_in_progress'
}

export interface ReconcileResult {
  readonly businessDate: string
  readonly checked: number
  readonly matched: number
  readonly repaired: { transaction_id: string; provider: string; from: string; to: string }[]
  readonly flagged: { transaction_id: string; provider: string; flag: string }[]
  readonly lookupErrors: number
  readonly overdue: { transaction_id: string; state: string; deadline: string }[]
  /** Further live receipts found at the provider for one of our receipts, and what was done. */
  readonly duplicates: ReconcileDuplicate[]
  /** Provisional receipts (Toss) the tax authority accepted: now final. */
  readonly finalized: { transaction_id: string; provider: string; business_date: string }[]
  /** Provisional receipts the tax authority refused: now failed (class tax_authority). */
  readonly rejected: { transaction_id: string; provider: string; business_date: string; code: string; message: string }[]
  /** Receipts still provisional after this pass (their result is not in yet). */
  readonly provisional: number
  /**
   * Issued receipts whose ledger amount differed from the amount the provider holds for the same
   * receipt (same approval number, no partial cancel): the ledger now has the provider's amount.
   */
  readonly amounts_corrected: { transaction_id: string; provider: string; ledger_amount: number; provider_amount: number }[]
}

/** How far back reconcile revisits receipts still waiting for the tax authority's result. */
const PROVISIONAL_LOOKBACK_DAYS = 60

type Held =
  | { readonly kind: 'issued' | 'cancelled'; readonly receipt: ProviderReceipt }
  | { readonly kind: 'not_found' }
  /** The provider holds only a receipt the tax authority refused (Toss FAILED). */
  | { readonly kind: 'rejected'; readonly code: string; readonly message: string }
  | { readonly kind: 'error' }

/** What the provider holds for a row: with `lookupAll`, every receipt; else the one `lookup` returns. */
async function readProvider(provider: CashReceiptProvider, throttle: Throttle, r: Receipt): Promise<{ held: Held; all: readonly ProviderReceipt[] | null }> {
  const req: LookupRequest = { providerKey: r.provider_key, portonePayment: r.portone_payment, amounts: amountsOf(r), sentSince: sentSinceOf(r) }
  if (provider.lookupAll) {
    const got = await throttle.schedule(() => provider.lookupAll!(req))
    if (!Array.isArray(got)) return { held: { kind: 'error' }, all: null }
    const all = got as readonly ProviderReceipt[]
    // The receipt the ledger recorded stands for the key; without one, the first live receipt.
    const kept = (r.approval_number !== null ? all.find((x) => x.approvalNumber === r.approval_number) : undefined) ?? all.find((x) => x.status === 'issued') ?? all[0]
    return { held: kept ? { kind: kept.status, receipt: kept } : { kind: 'not_found' }, all }
  }
  const o: ProviderOutcome = await throttle.schedule(() => provider.lookup(req))
  return { held: heldOf(o), all: null }
}

/** The answer a lookup gives, as reconcile reads it. */
function heldOf(o: ProviderOutcome): Held {
  return o.kind === 'issued' || o.kind === 'cancelled'
    ? { kind: o.kind, receipt: o.receipt }
    : o.kind === 'not_found'
      ? { kind: 'not_found' }
      : o.kind === 'permanent' && o.taxAuthorityRejected
        ? { kind: 'rejected', code: o.meta.providerCode ?? 'XXX', message: o.meta.message ?? 'NTS_ERROR' }
        : { kind: 'error' }
}

/**
 * Reads each credential's list of receipts once (providers with `listReceipts`: Toss) and settles
 * from it what it can, instead of one lookup per receipt (each of which reads every list page of
 * its dates). Per row: the listing's answer for its key; a key the listing does not hold settles a
 * row that is pending or failed (nothing at the provider: the answer a lookup gives from the same
 * pages); every other row — a key the listing holds `unsettled`, an issued or cancelled row whose
 * key the listing lacks (a flag for a person, so it is read once more on its own), every row of a
 * credential whose listing failed — is left out and looked up as before.
 *
 * Rows must be read before this is called: every listing then begins after its rows were read, as
 * each lookup did. Providers with `lookupAll` (duplicates) are not listed: the listing gives one
 * answer per key, not every receipt.
 */
async function listProviders(rows: readonly Receipt[], providers: ProviderSource, concurrency: number, logger: Logger): Promise<{ held: Map<number, Held>; requests: number }> {
  const groups = new Map<CashReceiptProvider, { throttle: Throttle; rows: Receipt[] }>()
  for (const r of rows) {
    let source: ReturnType<ProviderSource['get']>
    try {
      source = providers.get(r.merchant_id, r.provider)
    } catch {
      continue // a merchant this process does not know: its row fails in the lookup, as before
    }
    const { provider, throttle } = source
    if (!provider.listReceipts || provider.lookupAll) continue
    const g = groups.get(provider)
    if (g) g.rows.push(r)
    else groups.set(provider, { throttle, rows: [r] })
  }
  const held = new Map<number, Held>()
  let requests = 0
  const queue = [...groups]
  const lister = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [provider, { throttle, rows: mine }] = next
      const sentSince = mine.map(sentSinceOf).reduce((a, b) => (a < b ? a : b))
      let got: Awaited<ReturnType<NonNullable<CashReceiptProvider['listReceipts']>>>
      try {
        got = await provider.listReceipts!({ sentSince, keys: new Set(mine.map((r) => r.provider_key)) }, { schedule: (call) => throttle.schedule(call) })
      } catch (err) {
        logger.warn({ provider: provider.name, credential: provider.credentialId, err: (err as Error).message }, 'reconcile: listing failed; looking receipts up one by one')
        continue
      }
      if ('kind' in got) {
        if (got.kind === 'rate_limited') throttle.penalize(got.retryAfterMs)
        logger.warn({ provider: provider.name, credential: provider.credentialId, outcome: got.kind }, 'reconcile: listing failed; looking receipts up one by one')
        continue
      }
      requests += got.requests
      for (const r of mine) {
        const o = got.held.get(r.provider_key)
        if (o === undefined) {
          if (r.state === 'pending' || r.state === 'failed') held.set(r.id, { kind: 'not_found' })
        } else if (o.kind !== 'unsettled') {
          const h = heldOf(o)
          if (h.kind !== 'error') held.set(r.id, h)
        }
      }
      logger.info(
        { provider: provider.name, credential: provider.credentialId, rows: mine.length, settled: mine.filter((r) => held.has(r.id)).length, requests: got.requests },
        'reconcile: listing read',
      )
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, queue.length)) }, lister))
  return { held, requests }
}

const sentSinceOf = (r: Receipt): string => kstToday(new Date(r.created_at).getTime())

const amountsOf = (r: Receipt): ReceiptAmounts => ({ total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee })

export async function reconcileDay(
  deps: {
    db: Db
    providers: ProviderSource
    logger: Logger
    concurrency?: number
    cancelDuplicates?: boolean
    /** A claim on a duplicate's cancel older than this may be taken over (default 10 minutes). */
    duplicateClaimStaleMs?: number
  },
  businessDate: string,
  todayKst: string,
): Promise<ReconcileResult> {
  const { db } = deps
  const cancelDuplicates = deps.cancelDuplicates ?? true
  const staleMs = deps.duplicateClaimStaleMs ?? DUPLICATE_CLAIM_STALE_MS
  // Who holds this reconcile's claims on duplicate cancels (checked by the send fence).
  const owner = `reconcile:${randomUUID()}`
  // The fence's answer is the id it vouches for, or null when the claim is no longer ours. Duplicate
  // cancels write no issuance_attempts row (they belong to no receipt row's attempts), so the
  // attempt the fence is told about is not recorded.
  const fence = async (duplicateId: number) => ((await fenceDuplicateCancel(db, duplicateId, owner)) ? duplicateId : null)
  const NO_ATTEMPT = { operation: 'cancel', attemptNo: 0, jobId: null } as const
  const rows = await db
    .selectFrom('receipts')
    .selectAll()
    .where('kind', '=', 'issue')
    .where('trade_date', '=', businessDate)
    .where('state', 'in', ['issued', 'failed', 'pending', 'cancelled'])
    .orderBy('id')
    .execute()
  // Receipts of earlier dates still waiting for the tax authority's answer.
  rows.push(
    ...(await db
      .selectFrom('receipts')
      .selectAll()
      .where('kind', '=', 'issue')
      .where('provisional', '=', true)
      .where('state', '=', 'issued')
      .where('trade_date', '<', businessDate)
      .where('trade_date', '>=', addDays(businessDate, -PROVISIONAL_LOOKBACK_DAYS))
      .orderBy('id')
      .execute()),
  )
  const result: { -readonly [K in keyof ReconcileResult]: ReconcileResult[K] } = {
    businessDate,
    checked: 0,
    matched: 0,
    repaired: [],
    flagged: [],
    lookupErrors: 0,
    overdue: [],
    duplicates: [],
    finalized: [],
    rejected: [],
    provisional: 0,
    amounts_corrected: [],
  }
  const concurrency = deps.concurrency ?? 8
  // Each credential's list read once (after the rows, so it is as fresh as a lookup); what it
  // cannot settle is looked up below, one receipt at a time, as before.
  const listed = await listProviders(rows, deps.providers, concurrency, deps.logger)
  let i = 0
  const worker = async () => {
    while (i < rows.length) {
      const r = rows[i++]!
      const { provider, throttle } = deps.providers.get(r.merchant_id, r.provider)
      const fromList = listed.held.get(r.id)
      const { held, all } = fromList ? { held: fromList, all: null } : await readProvider(provider, throttle, r)
      result.checked++
      const at = { transaction_id: r.transaction_id, provider: r.provider }
      // Whether the ledger row names the receipt it keeps (so the others at the provider are duplicates).
      let recorded = r.approval_number !== null && (r.state === 'issued' || r.state === 'cancelled')
      const waiting = r.state === 'issued' && r.provisional
      if (waiting && held.kind === 'issued' && held.receipt.provisional) {
        // The tax authority has not answered yet: nothing to compare but the amount, next pass again.
        result.provisional++
        continue
      }
      if (waiting && held.kind === 'issued') {
        if (await finalizeProvisional(db, r.id, held.receipt)) result.finalized.push({ ...at, business_date: r.trade_date })
        else result.provisional++
        continue
      }
      if (held.kind === 'rejected') {
        if (waiting && (await failProvisional(db, r.id, { code: held.code, message: held.message }))) {
          result.rejected.push({ ...at, business_date: r.trade_date, code: held.code, message: held.message })
          deps.logger.warn({ receiptId: r.id, provider: r.provider, code: held.code }, 'tax authority refused a provisional receipt')
        } else if (r.state === 'issued' || r.state === 'cancelled') {
          // A final receipt the provider now shows refused, or a partly cancelled one: for a person.
          result.flagged.push({ ...at, flag: `ledger ${r.state}, tax authority refused (${held.code})` })
          await flagReconcile(db, r.id, r.state, `tax authority refused (${held.code}): ${held.message}`.slice(0, 200))
        } else {
          result.matched++
        }
        continue
      }
      if (held.kind === 'issued' || held.kind === 'cancelled') {
        const state = held.kind
        const live = r.total_amount - r.cancelled_amount
        if (r.state === state && state === 'issued' && held.receipt.amount !== null && held.receipt.amount !== live) {
          // The very receipt the ledger recorded (same approval number), never partly cancelled: the
          // provider's amount is what was receipted, so the ledger is provably wrong and takes it.
          // Anything else (another receipt, partial cancels in the ledger or at the provider) is for a
          // person: flagged, never changed.
          const same = r.approval_number !== null && held.receipt.approvalNumber === r.approval_number && r.cancelled_amount === 0 && !(held.receipt.cancelledAmount ?? 0)
          if (same && (await correctAmountsFromProvider(db, r.id, r.total_amount, heldAmounts(held.receipt, amountsOf(r))))) {
            result.amounts_corrected.push({ ...at, ledger_amount: live, provider_amount: held.receipt.amount })
            deps.logger.warn(
              { receiptId: r.id, provider: r.provider, ledgerAmount: live, providerAmount: held.receipt.amount },
              "reconcile: ledger amount corrected to the provider's",
            )
          } else if (await amountMoving(r.id, held.receipt.amount)) {
            // A cancel of this receipt is in flight (the provider may hold it before the ledger
            // records it), or one was recorded since the row was read and the ledger now says what
            // the provider does: no disagreement to flag. The next pass compares again.
            result.matched++
          } else {
            const flag = `amount mismatch: ledger ${live}, provider ${held.receipt.amount}`
            result.flagged.push({ ...at, flag })
            await flagReconcile(db, r.id, r.state, flag)
          }
        } else if (r.state === state) {
          result.matched++
          await markReconciled(db, r.id, state)
        } else if (r.state === 'issued' && state === 'cancelled' && (await cancelOpen(r.id))) {
          // A cancel of it is in flight (a partial one of the rest leaves the row issued): the
          // provider holds it cancelled before the worker records it, cancelled amount included.
          // Moving the row now would make that record miss it; the next pass compares again.
          result.matched++
        } else if (r.state === 'failed' || r.state === 'pending' || (r.state === 'issued' && state === 'cancelled')) {
          // Only rows nobody is working on move (the state read, never issuing); see repairFromProvider.
          if (await repairFromProvider(db, r.id, r.state, state, held.receipt)) {
            result.repaired.push({ ...at, from: r.state, to: state })
            recorded = held.receipt.approvalNumber !== null
          } else {
            recorded = false
          }
        } else {
          result.flagged.push({ ...at, flag: `ledger ${r.state}, provider ${state}` })
          await flagReconcile(db, r.id, r.state, `provider ${state}`)
        }
        if (all && recorded) await handleDuplicates(r, held.receipt, all, provider, throttle)
      } else if (held.kind === 'not_found') {
        if (r.state === 'issued' || r.state === 'cancelled') {
          result.flagged.push({ ...at, flag: `ledger ${r.state}, provider has no receipt` })
          await flagReconcile(db, r.id, r.state, 'missing at provider')
        } else {
          result.matched++
        }
      } else {
        result.lookupErrors++
      }
    }
  }

  /**
   * Whether an amount the provider holds that differs from the row as read is explained by a cancel
   * of the receipt: one open (pending or issuing: its call may have committed, its record not yet),
   * or one recorded since the row was read, so that what the ledger holds now equals `providerAmount`.
   */
  async function amountMoving(receiptId: number, providerAmount: number): Promise<boolean> {
    if (await cancelOpen(receiptId)) return true
    const now = await db.selectFrom('receipts').select(['total_amount', 'cancelled_amount']).where('id', '=', receiptId).executeTakeFirst()
    return now !== undefined && now.total_amount - now.cancelled_amount === providerAmount
  }

  /** Whether a cancel of the issue row is open (pending or issuing): its call may have committed unrecorded. */
  async function cancelOpen(receiptId: number): Promise<boolean> {
    const open = await db
      .selectFrom('receipts')
      .select('id')
      .where('parent_receipt_id', '=', receiptId)
      .where('kind', '=', 'cancel')
      .where('state', 'in', ['pending', 'issuing'])
      .limit(1)
      .executeTakeFirst()
    return open !== undefined
  }

  async function handleDuplicates(r: Receipt, kept: ProviderReceipt, all: readonly ProviderReceipt[], provider: CashReceiptProvider, throttle: Throttle): Promise<void> {
    const others = all.filter((x) => x !== kept && x.approvalNumber !== kept.approvalNumber && (x.providerReceiptId ?? x.approvalNumber) !== null)
    const idOf = (x: ProviderReceipt) => (x.providerReceiptId ?? x.approvalNumber)!
    const gone = others.filter((x) => x.status === 'cancelled').map(idOf)
    if (gone.length) await closeCancelledDuplicates(db, r.id, gone)
    const live = others.filter((x) => x.status === 'issued')
    if (!live.length) return
    const open = await recordDuplicates(
      db,
      r.id,
      r.provider,
      live.map((x) => ({ providerReceiptId: idOf(x), approvalNumber: x.approvalNumber, amount: x.amount })),
    )
    for (const d of open) {
      const report = (outcome: ReconcileDuplicate['outcome']) =>
        result.duplicates.push({
          transaction_id: r.transaction_id,
          provider: r.provider,
          provider_receipt_id: d.provider_receipt_id,
          approval_number: d.approval_number,
          amount: d.amount,
          outcome,
        })
      if (!cancelDuplicates) {
        await releaseDuplicateCancel(db, d.id, 'not cancelled: cancelling duplicates is switched off')
        report('recorded')
        continue
      }
      if (!(await claimDuplicateCancel(db, d.id, staleMs, owner))) {
        report('cancel_in_progress')
        continue
      }
      const amounts = { ...amountsOf(r), total: d.amount ?? r.total_amount - r.cancelled_amount }
      // Every cancel request (each try, the repeat after a token refresh) goes out only while the
      // claim is still ours: a reconcile frozen past the claim's staleness and overtaken sends nothing.
      const ctx = { beforeSend: sendFence((id) => fence(id), d.id, { callBudgetMs: 0, attempt: NO_ATTEMPT }) }
      let c: ProviderOutcome
      try {
        c = await throttle.schedule(() =>
          provider.cancel(
            {
              providerKey: r.provider_key,
              portonePayment: r.portone_payment,
              idempotencyKey: `dup-cancel:${r.id}:${d.provider_receipt_id}`,
              original: { approvalNumber: d.approval_number, tradeDate: r.trade_date, amounts },
              amounts,
              partial: false,
              reason: DUPLICATE_CANCEL_REASON,
              purpose: r.purpose,
            },
            ctx,
          ),
        )
      } catch (err) {
        if (!(err instanceof LeaseLostError)) {
          await releaseDuplicateCancel(db, d.id, `cancel failed: ${(err as Error).message}`, owner)
          throw err
        }
        // Another reconcile holds the cancel now; it sends it (or has).
        report('cancel_in_progress')
        deps.logger.warn({ receiptId: r.id, provider: r.provider, duplicate: d.id }, 'duplicate cancel taken over by another reconcile; not sent')
        continue
      }
      if (c.kind === 'cancelled') {
        await finishDuplicateRepair(db, d.id, 'cancelled at provider (reason 2, 오류발급취소)')
        report('cancelled')
      } else {
        // Unknown or refused: the next reconcile reads the provider again before anything else.
        await releaseDuplicateCancel(db, d.id, `cancel ${c.kind}${c.meta.providerCode ? ` ${c.meta.providerCode}` : ''}`, owner)
        report('cancel_failed')
      }
      deps.logger.warn({ receiptId: r.id, provider: r.provider, duplicate: d.id, outcome: c.kind }, 'duplicate receipt at provider')
    }
  }

  await Promise.all(Array.from({ length: concurrency }, worker))

  const overdue = await db
    .selectFrom('receipts')
    .select(['transaction_id', 'state', 'deadline'])
    .where('kind', '=', 'issue')
    .where('state', 'in', ['pending', 'issuing', 'failed'])
    .where('deadline', '<', todayKst)
    .orderBy('deadline')
    .limit(1_000)
    .execute()
  result.overdue.push(...overdue)
  deps.logger.info(
    {
      businessDate,
      checked: result.checked,
      repaired: result.repaired.length,
      flagged: result.flagged.length,
      duplicates: result.duplicates.length,
      finalized: result.finalized.length,
      rejected: result.rejected.length,
      provisional: result.provisional,
      listRequests: listed.requests,
      lookedUp: rows.length - listed.held.size,
    },
    'reconcile done',
  )
  return result
}
