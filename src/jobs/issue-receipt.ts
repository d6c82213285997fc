/**
 * The issue-receipt job: one receipt row, exactly-once at the provider.
 *
 * 1. Claim the row in Postgres (pending → issuing, lease) and commit: the intent is durable. The
 *    claim reads the transaction in the same statement.
 * 2. If a previous call's outcome is unknown (needs_lookup), look the key up first; issue only when
 *    the provider holds nothing.
 * 3. Call the provider through the shared throttle with the deterministic key, only while the lease
 *    covers the call (src/jobs/lease.ts).
 * 4. Record the outcome and every call (issuance_attempts) in one atomic statement.
 *
 * Claims and completions of concurrent jobs share statements (src/db/ledger-batcher.ts).
 *
 * This handler is the ONLY place provider outcomes become queue behaviour.
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import type { AttemptRecord, Transition } from '../db/ledger.ts'
import type { LedgerBatcher } from '../db/ledger-batcher.ts'
import type { Receipt } from '../db/schema.ts'
import type { CashReceiptProvider, IssueRequest } from '../providers/types.ts'
import { decryptPii, type DataKeys } from '../crypto/pii.ts'
import { ThrottleDeferError, type Throttle } from '../throttle/throttle.ts'
import { SELF_ISSUE_NUMBER, kstToday, msUntilKstMidnight, type ProviderOutcome, type ProviderReceipt } from '../domain/index.ts'
import { receiptAmountsFor } from './receipt-amounts.ts'
import type { JobPayloads } from '../queue/queues.ts'
import type { ProviderSource } from './provider-source.ts'
import { LeaseLostError, leaseGuard } from './lease.ts'

export interface IssueDeps {
  readonly db: Db
  /** Claims and completions, batched with the other jobs of this process. */
  readonly ledger: LedgerBatcher
  readonly providers: ProviderSource
  readonly dataKeys: DataKeys
  readonly logger: Logger
  readonly workerId: string
  readonly leaseMs: number
  /** Worst-case duration of one provider call; the lease must cover it before a call is made. */
  readonly callBudgetMs: number
  readonly now?: () => number
}

export type IssueJobResult = { readonly state: string; readonly detail?: string }

/**
 * What the worker's one outcome line per receipt names besides the job: filled by the handler as
 * soon as it knows the receipt row (no extra query), so it is there whether the job returns or throws.
 */
export interface ReceiptJobInfo {
  runId?: number | null
  provider?: string
}

/** The settlement run a receipt's latest job belongs to: the re-drive run after a re-drive. */
export function noteReceipt(info: ReceiptJobInfo | undefined, r: { provider: string; runId: number | null }): void {
  if (!info) return
  info.provider = r.provider
  info.runId = r.runId
}

/** Thrown for outcomes worth another BullMQ attempt (backoff); the message carries the class. */
export class RetryableJobError extends Error {
  override name = 'RetryableJobError'
}

export function createIssueHandler(deps: IssueDeps) {
  const now = deps.now ?? Date.now
  return async function handleIssue(
    job: Job<JobPayloads['issue-receipt']>,
    token: string | undefined,
    signal?: AbortSignal,
    info?: ReceiptJobInfo,
  ): Promise<IssueJobResult> {
    const { receiptId } = job.data
    const claimedAt = performance.now()
    const claim = await deps.ledger.claim(receiptId)
    if (claim.status === 'missing') throw new UnrecoverableError(`receipt ${receiptId} does not exist`)
    if (claim.status === 'done') return { state: claim.state, detail: 'already settled' }
    if (claim.status === 'leased') return delay(job, token, claim.retryInMs)

    const { receipt, tx } = claim
    noteReceipt(info, { provider: receipt.provider, runId: receipt.last_run_id ?? receipt.run_id })
    const calls: AttemptRecord[] = []
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
    const ctx = { signal, onCall: recorder(calls, now) }
    const ensureLease = leaseGuard(deps.db, receipt.id, deps.workerId, { leaseMs: deps.leaseMs, callBudgetMs: deps.callBudgetMs, claimedAt })
    const finish = (t: Transition) => deps.ledger.transition({ receiptId: receipt.id, transition: t, attempts: { receipt, jobId: job.id, rows: calls } })
    const result = (state: string, detail?: string): IssueJobResult => ({ state, detail })
    // Whether an earlier call may have reached the provider; cleared only by a lookup that finds nothing.
    let needsLookup = receipt.needs_lookup
    // Assigned inside the try so a configuration error is recorded like any other failure.
    let provider!: CashReceiptProvider
    let throttle!: Throttle

    try {
      ;({ provider, throttle } = deps.providers.get(receipt.merchant_id, receipt.provider))
      // 2. Unknown outcome of an earlier call: the provider's records decide.
      if (needsLookup) {
        const found = await throttle.schedule(() => provider.lookup(lookupRequest(receipt), ctx))
        if (found.kind === 'issued') return done(await finish(issuedT(found.receipt)), 'issued', 'found by lookup')
        if (found.kind === 'cancelled') return done(await finish(cancelledT(found.receipt)), 'cancelled', 'found cancelled at provider')
        if (found.kind !== 'not_found') return await failOrRetry(found, 'lookup')
        needsLookup = false
      }

      // The transaction may have been cancelled or refunded since settlement.
      const receiptable = tx.amount - tx.refunded_amount
      if (tx.status === 'cancelled' || receiptable <= 0) {
        await finish({ state: 'skipped', needsLookup: false, skipReason: 'transaction cancelled or refunded before issuance', error: null })
        return result('skipped')
      }

      let amounts = {
        total: receipt.total_amount,
        supply: receipt.supply_amount,
        vat: receipt.vat_amount,
        taxFree: receipt.tax_free_amount,
        serviceFee: receipt.service_fee,
      }
      if (tx.method === 'naverpay') {
        // Only the cash-funded part of a Naver Pay payment is receipted; PortOne tells how much.
        if (!provider.naverCashAmount || !tx.payment_ref) {
          return await failPermanent('NAVERPAY_UNSUPPORTED', 'naverpay needs provider portone and a payment_ref')
        }
        const cash = await throttle.schedule(() => provider.naverCashAmount!(tx.payment_ref!, ctx))
        if ('kind' in cash) return await failOrRetry(cash, 'naver_cash_amount')
        if (cash.amountTotal <= 0) {
          await finish({ state: 'skipped', needsLookup: false, skipReason: 'naver pay cash amount is 0', error: null })
          return result('skipped')
        }
        amounts = { total: cash.amountTotal, supply: cash.amountSupply, vat: cash.amountVat, taxFree: 0, serviceFee: 0 }
      } else if (receiptable !== receipt.total_amount) {
        // A refund imported after settlement: receipt what remains.
        const split = receiptAmountsFor(tx)
        if (!split) return await failPermanent('AMOUNT_INVALID', `cannot split ${receiptable} into receipt amounts`)
        amounts = split
      }

      const pii = tx.pii_enc ? decryptPii(tx.pii_enc, deps.dataKeys, tx.transaction_id) : {}
      const identifier = receipt.self_issued ? SELF_ISSUE_NUMBER : pii.identifier
      if (!identifier) return await failPermanent('IDENTIFIER_MISSING', 'no buyer identifier and not self-issued')

      const nowMs = now()
      await throttle.takeQuota(kstToday(nowMs), msUntilKstMidnight(nowMs))

      const req: IssueRequest = {
        providerKey: receipt.provider_key,
        idempotencyKey: receipt.idempotency_key,
        portonePayment: receipt.portone_payment,
        orderName: tx.order_name ?? tx.order_id ?? tx.transaction_id,
        identifier,
        identifierType: receipt.self_issued ? 'self' : (tx.identifier_type ?? 'phone'),
        purpose: receipt.purpose,
        amounts,
        tradeDate: receipt.trade_date,
        paidAt: new Date(tx.paid_at).toISOString(),
        buyer: { name: pii.buyerName, email: pii.buyerEmail, tel: pii.buyerTel },
        merchantBusinessNumber: await deps.providers.merchantBusinessNumber(receipt.merchant_id),
      }
      const issued = await throttle.schedule(async () => {
        await ensureLease()
        return provider.issue(req, ctx)
      })
      return await settleIssue(issued, amounts)
    } catch (err) {
      if (err instanceof ThrottleDeferError) {
        await finish({ state: 'pending' })
        return delay(job, token, err.retryInMs)
      }
      // Another worker owns the row now; it finishes the work. No call was made.
      if (err instanceof LeaseLostError) return result('taken-over', err.message)
      if (err instanceof DelayedError || err instanceof UnrecoverableError || err instanceof RetryableJobError) throw err
      // Our own failure (config, DB, decrypt, Redis, abort) mid-attempt: marked for lookup, since we
      // cannot know whether a call was sent; failed after the last attempt so re-drive can take it.
      const e = err as Error
      await finish({
        state: lastAttempt ? 'failed' : 'pending',
        needsLookup: true,
        error: { errorClass: 'internal', code: e?.name ?? 'Error', message: e?.message ?? String(err) },
      }).catch(() => {})
      throw err
    }

    async function settleIssue(o: ProviderOutcome, amounts: Transition['amounts']): Promise<IssueJobResult> {
      switch (o.kind) {
        case 'issued':
          return done(await finish({ ...issuedT(o.receipt), amounts }), 'issued')
        case 'already_issued':
        case 'unknown_outcome': {
          // Read back before anything else: the provider may hold a receipt for this key.
          const found = await throttle.schedule(() => provider.lookup(lookupRequest(receipt, amounts), ctx))
          if (found.kind === 'issued') return done(await finish({ ...issuedT(found.receipt), amounts }), 'issued', o.kind)
          if (found.kind === 'cancelled') return done(await finish(cancelledT(found.receipt)), 'cancelled', o.kind)
          // Not found right after an unknown outcome may only mean the provider is still processing
          // it (NTS-style APIs do not deduplicate): stay marked for lookup and look again after backoff.
          return await failOrRetry({ kind: 'unknown_outcome', meta: o.kind === 'unknown_outcome' ? o.meta : found.meta }, 'issue')
        }
        default:
          return await failOrRetry(o, 'issue')
      }
    }

    async function failPermanent(code: string, message: string): Promise<never> {
      await finish({ state: 'failed', error: { errorClass: 'permanent', code, message } })
      throw new UnrecoverableError(`${code}: ${message}`)
    }

    /** Maps a non-success outcome to queue behaviour. The only place this happens. */
    async function failOrRetry(o: ProviderOutcome, op: string): Promise<never> {
      const error = { errorClass: o.kind, code: o.meta.providerCode ?? (o.meta.httpStatus ? String(o.meta.httpStatus) : null), message: o.meta.message }
      switch (o.kind) {
        case 'permanent':
          await finish({ state: 'failed', error })
          throw new UnrecoverableError(`${op}: permanent ${error.code ?? ''} ${error.message ?? ''}`.trim())
        case 'rate_limited': {
          // Slow every process down for this credential; the job waits without burning an attempt.
          throttle.penalize(o.retryAfterMs)
          await finish({ state: 'pending', error })
          return delay(job, token, o.retryAfterMs + Math.floor(Math.random() * 250))
        }
        case 'unknown_outcome':
          // Stays marked for lookup; after the last attempt it is failed/unknown_outcome and re-drive looks up first.
          await finish({ state: lastAttempt ? 'failed' : 'pending', needsLookup: true, error })
          if (lastAttempt) throw new UnrecoverableError(`${op}: outcome unknown after last attempt`)
          throw new RetryableJobError(`${op}: unknown outcome (${error.code ?? 'no code'}); will look up first`)
        default:
          // A failed lookup leaves the question open; a call that surely did not take effect closes it.
          await finish({ state: lastAttempt ? 'failed' : 'pending', needsLookup: op === 'lookup' ? true : needsLookup, error })
          if (lastAttempt) throw new UnrecoverableError(`${op}: ${o.kind} after last attempt (${error.code ?? ''})`)
          throw new RetryableJobError(`${op}: ${o.kind} ${error.code ?? ''}`.trim())
      }
    }

    function done(owned: boolean, state: string, detail?: string): IssueJobResult {
      // Not owning the row any more means another worker took it over; it will complete the work.
      return result(owned ? state : 'taken-over', owned ? detail : undefined)
    }
  }
}

function issuedT(receipt: ProviderReceipt): Transition {
  return { state: 'issued', needsLookup: false, receipt, error: null }
}

function cancelledT(receipt: ProviderReceipt): Transition {
  return { state: 'cancelled', needsLookup: false, receipt, error: null }
}

function lookupRequest(r: Receipt, amounts?: Transition['amounts']) {
  return {
    providerKey: r.provider_key,
    portonePayment: r.portone_payment,
    amounts: amounts ?? {
      total: r.total_amount,
      supply: r.supply_amount,
      vat: r.vat_amount,
      taxFree: r.tax_free_amount,
      serviceFee: r.service_fee,
    },
  }
}

/** Records one attempt row per HTTP exchange reported by the adapter. */
export function recorder(calls: AttemptRecord[], now: () => number) {
  return (operation: AttemptRecord['operation'], o: ProviderOutcome) => {
    const finishedAt = new Date(now())
    calls.push({
      operation,
      startedAt: new Date(finishedAt.getTime() - o.meta.latencyMs),
      finishedAt,
      outcome: o.kind,
      httpStatus: o.meta.httpStatus,
      providerCode: o.meta.providerCode,
      message: o.meta.message,
      latencyMs: o.meta.latencyMs,
    })
  }
}

/** Moves the job back to delayed without consuming an attempt. */
export async function delay(job: Job, token: string | undefined, ms: number): Promise<never> {
  await job.moveToDelayed(Date.now() + Math.max(1, Math.round(ms)), token)
  throw new DelayedError()
}

export type { Throttle, CashReceiptProvider }
