/**
 * The issue-receipt job: one receipt row, exactly-once at the provider.
 *
 * 1. Claim the row in Postgres (pending → issuing, lease) and commit: the intent is durable. The
 *    claim reads the transaction in the same statement.
 * 2. If a previous call's outcome is unknown (needs_lookup), look the key up first; issue only when
 *    the provider holds nothing.
 * 3. Call the provider through the shared throttle with the deterministic key, only while the lease
 *    covers the call (src/jobs/lease.ts).
 * 4. Record the outcome and every call (issuance_attempts) in one atomic statement. An issue
 *    request's attempt row was already written ('sent') by the fence before it left; it is completed.
 *
 * Claims and completions of concurrent jobs share statements (src/db/ledger-batcher.ts). What each
 * outcome means for the ledger and the queue is decided by the outcome policy (outcome-policy.ts);
 * this handler only makes the calls and performs its decisions.
 */
import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { commitWindowLeftMs } from '../db/ledger.ts'
import type { AttemptRecord, Transition } from '../db/ledger.ts'
import type { LedgerBatcher } from '../db/ledger-batcher.ts'
import type { Receipt } from '../db/schema.ts'
import type { CashReceiptProvider, IssueRequest } from '../providers/types.ts'
import { decryptPii, type DataKeys } from '../crypto/pii.ts'
import type { Throttle } from '../throttle/throttle.ts'
import { SELF_ISSUE_NUMBER, kstToday, msUntilKstMidnight, type ProviderName, type ProviderOutcome } from '../domain/index.ts'
import { heldAmounts, receiptAmountsFor } from './receipt-amounts.ts'
import type { JobPayloads } from '../queue/queues.ts'
import type { ProviderSource } from './provider-source.ts'
import { sendFence } from './lease.ts'
import { attemptOf, decide, failureEvent, perform, readBack, settled, type JobResult, type PolicyEvent, type Settle } from './outcome-policy.ts'

/** What every job that sends issue requests needs (one receipt here, a batch in issue-batch.ts). */
export interface IssueCallDeps {
  readonly db: Db
  readonly providers: ProviderSource
  readonly dataKeys: DataKeys
  readonly logger: Logger
  readonly workerId: string
  readonly leaseMs: number
  /** Worst-case duration of one provider call; the lease must cover it before a call is made. */
  readonly callBudgetMs: number
  /** This worker's WORKER_ATTEMPTS: the last attempt is decided here, not by whoever enqueued. */
  readonly attempts?: number
  readonly now?: () => number
}

export interface IssueDeps extends IssueCallDeps {
  /** Claims and completions, batched with the other jobs of this process. */
  readonly ledger: LedgerBatcher
  /**
   * Per provider, the longest time an issue request may still commit after it was sent. A lookup
   * that finds nothing within that time since the row's last send proves nothing: the receipt waits.
   */
  readonly commitWindowMs?: Readonly<Partial<Record<ProviderName, number>>>
}

export type IssueJobResult = JobResult

/** A job's calls made before anything is sent: started within the dispatch wait or deferred (docs/dispatch.md). */
export const DEFER = { defer: true } as const

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

export function createIssueHandler(deps: IssueDeps) {
  const now = deps.now ?? Date.now
  /** The throttle's local refusal for the job's credential, when the job names it. */
  const precheck = (d: JobPayloads['issue-receipt']) => {
    if (!d.merchantId || !d.provider) return undefined
    try {
      return deps.providers.get(d.merchantId, d.provider).throttle.precheck()
    } catch {
      // An unknown merchant or provider: the claimed path records that as it always did.
      return undefined
    }
  }
  return async function handleIssue(job: Job<JobPayloads['issue-receipt']>, token: string | undefined, signal?: AbortSignal, info?: ReceiptJobInfo): Promise<IssueJobResult> {
    const { receiptId } = job.data
    // A credential this process already knows cannot take a call now: put off before the claim, so
    // a job that comes back too early costs no ledger write (docs/dispatch.md).
    const early = precheck(job.data)
    if (early) {
      return perform(
        settled(decide({ type: 'put_off', retryInMs: early.retryInMs }, { operation: 'issue', ...attemptOf(job, deps.attempts), needsLookup: false, jitterMs: 0 })),
        job,
        token,
        { record: async () => true },
      )
    }
    const claim = await deps.ledger.claim(receiptId)
    // Whether an earlier call may have reached the provider; cleared only by a lookup that finds nothing.
    let needsLookup = claim.status === 'claimed' && claim.receipt.needs_lookup
    const decideNow = (e: PolicyEvent) => decide(e, { operation: 'issue', ...attemptOf(job, deps.attempts), needsLookup, jitterMs: Math.floor(Math.random() * 250) })
    if (claim.status !== 'claimed') return perform(settled(decideNow({ type: 'claim', receiptId, claim })), job, token, { record: async () => true })

    const { receipt, tx } = claim
    noteReceipt(info, { provider: receipt.provider, runId: receipt.last_run_id ?? receipt.run_id })
    const log = attemptLog(now)
    const calls = log.calls
    // The issue request (every try of it) goes out only while this worker owns the row, and only
    // after its attempt row ('sent') has committed.
    const fenceOpts = { callBudgetMs: deps.callBudgetMs, signal, attempt: { operation: 'issue' as const, attemptNo: receipt.attempts, jobId: job.id ?? null }, onSent: log.onSent }
    const ctx = { signal, onCall: log.onCall, beforeSend: sendFence(deps.ledger.fence, receipt.id, fenceOpts) }
    const finish = (t: Transition) => deps.ledger.transition({ receiptId: receipt.id, transition: t, attempts: { receipt, jobId: job.id, rows: calls } })
    // Assigned inside the attempt so a configuration error is recorded like any other failure.
    let throttle: Throttle | undefined
    /** Whether the issue request went out in this attempt (a deferral after it leaves the outcome open). */
    let sent = false

    /** Runs the attempt up to the policy's decision; performs nothing itself. */
    async function attempt(): Promise<Settle> {
      const source = deps.providers.get(receipt.merchant_id, receipt.provider)
      const provider = source.provider
      const t = (throttle = source.throttle)
      // 2. Unknown outcome of an earlier call: the provider's records decide.
      if (needsLookup) {
        // Read before the lookup is sent: a request sent earlier than the window may still commit
        // after this lookup has answered, so only a lookup made after the window can clear the mark.
        const windowLeftMs = await commitWindowLeftMs(deps.db, receipt.id, deps.commitWindowMs?.[receipt.provider] ?? 0)
        const found = await t.schedule(() => provider.lookup(lookupRequest(receipt), ctx), DEFER)
        // A receipt found is recorded for what the provider holds (a Naver Pay cash part, a refund).
        const held = found.kind === 'issued' ? heldAmounts(found.receipt, amountsOfRow(receipt)) : undefined
        const d = decideNow({ type: 'lookup', outcome: found, commitWindowLeftMs: windowLeftMs, amounts: held })
        if (d.type === 'settle') return d
        needsLookup = false
      }

      // The transaction may have been cancelled or refunded since settlement.
      const receiptable = tx.amount - tx.refunded_amount
      if (tx.status === 'cancelled' || receiptable <= 0) return settled(decideNow({ type: 'nothing_to_issue', reason: 'transaction cancelled or refunded before issuance' }))

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
          return settled(decideNow({ type: 'invalid', code: 'NAVERPAY_UNSUPPORTED', message: 'naverpay needs provider portone and a payment_ref' }))
        }
        const cash = await t.schedule(() => provider.naverCashAmount!(tx.payment_ref!, ctx), DEFER)
        if ('kind' in cash) return settled(decideNow({ type: 'naver_cash_amount', outcome: cash }))
        if (cash.amountTotal <= 0) return settled(decideNow({ type: 'nothing_to_issue', reason: 'naver pay cash amount is 0' }))
        amounts = { total: cash.amountTotal, supply: cash.amountSupply, vat: cash.amountVat, taxFree: 0, serviceFee: 0 }
      } else if (receiptable !== receipt.total_amount) {
        // A refund imported after settlement: receipt what remains.
        const split = receiptAmountsFor(tx)
        if (!split) return settled(decideNow({ type: 'invalid', code: 'AMOUNT_INVALID', message: `cannot split ${receiptable} into receipt amounts` }))
        amounts = split
      }

      const pii = tx.pii_enc ? decryptPii(tx.pii_enc, deps.dataKeys, tx.transaction_id) : {}
      const identifier = receipt.self_issued ? SELF_ISSUE_NUMBER : pii.identifier
      if (!identifier) return settled(decideNow({ type: 'invalid', code: 'IDENTIFIER_MISSING', message: 'no buyer identifier and not self-issued' }))

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
        paymentMethod: tx.method,
        merchantBusinessNumber: await deps.providers.merchantBusinessNumber(receipt.merchant_id),
      }
      // Deferred (no slot within the dispatch wait, circuit open, …) the request is not sent. The
      // daily quota is counted once the call has its slot.
      const nowMs = now()
      const issued = await t.schedule(() => provider.issue(req, ctx), { defer: true, quota: { kstDate: kstToday(nowMs), msUntilKstMidnight: msUntilKstMidnight(nowMs) } })
      sent = true
      const d = decideNow({ type: 'call', outcome: issued, amounts: issued.kind === 'issued' ? heldAmounts(issued.receipt, amounts) : amounts })
      if (d.type === 'settle') return d
      const found = await readBack(t, () => provider.lookup(lookupRequest(receipt, amounts), ctx))
      return settled(decideNow({ type: 'read_back', outcome: found, after: issued, amounts: found.kind === 'issued' ? heldAmounts(found.receipt, amounts) : amounts }))
    }

    let d: Settle
    try {
      d = await attempt()
    } catch (err) {
      d = settled(decideNow(failureEvent(err, sent)))
    }
    return perform(d, job, token, { record: finish, penalize: (ms) => throttle?.penalize(ms), onRecordError: (err) => settled(decideNow(failureEvent(err))) })
  }
}

function amountsOfRow(r: Receipt) {
  return { total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee }
}

function lookupRequest(r: Receipt, amounts?: Transition['amounts']) {
  return {
    providerKey: r.provider_key,
    portonePayment: r.portone_payment,
    // Every request for the key was sent after the row was created (Toss lists by request date).
    sentSince: kstToday(new Date(r.created_at).getTime()),
    amounts: amounts ?? amountsOfRow(r),
  }
}

/**
 * The attempt rows of one job: one per HTTP exchange the adapter reports (onCall). An issue or cancel
 * request already has its row, written as 'sent' by the send fence before the request left
 * (onSent); its answer completes that row instead of adding one. Two fenced sends before one answer
 * happen only when the first was answered 401 and repeated with a fresh token (withTokenRefresh in
 * src/providers/common.ts): the earlier row is completed as that refusal. A row whose answer never
 * comes (the worker died, the job was aborted) stays 'sent': the provider may have seen it.
 */
export function attemptLog(now: () => number) {
  const calls: AttemptRecord[] = []
  const sent: number[] = []
  return {
    calls,
    onSent: (attemptId: number) => void sent.push(attemptId),
    onCall: (operation: AttemptRecord['operation'], o: ProviderOutcome) => {
      const finishedAt = new Date(now())
      const rec: AttemptRecord = {
        operation,
        startedAt: new Date(finishedAt.getTime() - o.meta.latencyMs),
        finishedAt,
        outcome: o.kind,
        httpStatus: o.meta.httpStatus,
        providerCode: o.meta.providerCode,
        message: o.meta.message,
        latencyMs: o.meta.latencyMs,
      }
      if ((operation === 'issue' || operation === 'cancel') && sent.length) {
        const ids = sent.splice(0)
        const last = ids.pop()!
        for (const id of ids) {
          calls.push({ ...rec, id, outcome: 'permanent', httpStatus: 401, providerCode: 'UNAUTHORIZED', message: 'token refused; repeated with a fresh token', latencyMs: 0 })
        }
        calls.push({ ...rec, id: last })
      } else {
        calls.push(rec)
      }
    },
  }
}

export type { Throttle, CashReceiptProvider }
