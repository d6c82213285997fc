/**
 * Cancellation (취소 현금영수증) with the same exactly-once care as issuance. A cancel is its own
 * receipts row (kind cancel, seq 1, 2, … for partial cancels) pointing at the issued receipt.
 *
 * `requestCancellation` creates the row and enqueues it; the handler claims it, marks the issued
 * receipt `cancelling` (full cancel), calls the provider, and on success marks the issue receipt
 * `cancelled` (full) or adds to its cancelled_amount (partial).
 */
import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import {
  beginFullCancel,
  claimReceipt,
  commitWindowLeftMs,
  insertCancelReceipt,
  recordCancelOutcome,
  type AttemptRecord,
  type CancelOutcome,
  type Transition,
} from '../db/ledger.ts'
import type { Receipt } from '../db/schema.ts'
import { cancelIdempotencyKey, reissueKeys } from '../providers/keys.ts'
import { kstToday, splitAmounts, type ProviderName } from '../domain/index.ts'
import { cancelJobId, type JobPayloads, type ReceiptsQueue } from '../queue/queues.ts'
import { attemptLog, DEFER, noteReceipt, type IssueJobResult, type ReceiptJobInfo } from './issue-receipt.ts'
import type { ProviderSource } from './provider-source.ts'
import type { Throttle } from '../throttle/throttle.ts'
import { fenceOf, sendFence } from './lease.ts'
import { attemptOf, decide, failureEvent, perform, readBack, settled, type PolicyEvent, type Settle } from './outcome-policy.ts'

export class CancelInputError extends Error {
  override name = 'CancelInputError'
}

export interface CancelRequestInput {
  readonly transactionId: string
  /** KRW to cancel; omitted = everything still receipted. */
  readonly amount?: number
  readonly reason: 1 | 2 | 3
  /**
   * Cancel in full and then issue a new receipt for this amount (what is still paid after a partial
   * refund at a provider that cancels only in full). The re-issue is created when the cancel is accepted.
   */
  readonly reissueAmount?: number
  /** Why, for the receipt's transition history: `operator:cancel` (the CLI), `refund` (a refund found by import). */
  readonly cause?: string
}

export interface CancelRequested {
  readonly transactionId: string
  readonly cancelReceiptId: number
  readonly amount: number
  readonly partial: boolean
  readonly jobId: string
}

/**
 * Creates the cancel row for an issued receipt and enqueues it. Refuses (CancelInputError) when
 * there is nothing issued to cancel, the amount exceeds what is still receipted, or the provider
 * cannot cancel partially.
 */
export async function requestCancellation(deps: { db: Db; queue: ReceiptsQueue; providers: Pick<ProviderSource, 'get'> }, input: CancelRequestInput): Promise<CancelRequested> {
  const created = await deps.db.transaction().execute(async (trx) => {
    const issue = await trx
      .selectFrom('receipts')
      .selectAll()
      .where('transaction_id', '=', input.transactionId)
      .where('kind', '=', 'issue')
      // The latest receipt of the transaction: a re-issue (seq 1, 2, …) replaces a cancelled one.
      .orderBy('seq', 'desc')
      .limit(1)
      .forUpdate()
      .executeTakeFirst()
    if (!issue) throw new CancelInputError(`transaction ${input.transactionId} has no receipt (not imported or not settled yet)`)
    if (issue.state !== 'issued') {
      throw new CancelInputError(`receipt for ${input.transactionId} is ${issue.state}; only issued receipts can be cancelled`)
    }
    const open = await trx.selectFrom('receipts').select('id').where('parent_receipt_id', '=', issue.id).where('state', 'in', ['pending', 'issuing']).executeTakeFirst()
    if (open) throw new CancelInputError(`a cancellation for ${input.transactionId} is already in progress (receipt ${open.id})`)
    // A cancel that failed with its outcome unknown may have taken effect at the provider: what is
    // still receipted there is not known, so no further cancel (whose amount would be judged against
    // the ledger's figure alone) until a re-drive has looked it up and recorded what the provider holds.
    const unknown = await trx
      .selectFrom('receipts')
      .select(['id', 'total_amount', 'error_class'])
      .where('parent_receipt_id', '=', issue.id)
      .where('kind', '=', 'cancel')
      .where('state', '=', 'failed')
      .where('needs_lookup', '=', true)
      .orderBy('id')
      .executeTakeFirst()
    if (unknown) {
      const left = issue.total_amount - issue.cancelled_amount
      throw new CancelInputError(
        `an earlier cancellation of ${unknown.total_amount} KRW for ${input.transactionId} (receipt ${unknown.id}) failed with its outcome unknown, so ` +
          `${Math.max(0, left - unknown.total_amount)} to ${left} of ${issue.total_amount} KRW may still be receipted at ${issue.provider}; ` +
          `re-drive it first (cash-receipts redrive --date ${issue.trade_date}${unknown.error_class ? ` --class ${unknown.error_class}` : ''}), which looks it up before anything is sent`,
      )
    }
    const remaining = issue.total_amount - issue.cancelled_amount
    const amount = input.amount ?? remaining
    if (!Number.isSafeInteger(amount) || amount < 1) throw new CancelInputError(`--amount: must be a whole number of won ≥ 1`)
    if (amount > remaining) throw new CancelInputError(`--amount: ${amount} exceeds the ${remaining} still receipted for ${input.transactionId}`)
    const partial = amount < issue.total_amount || issue.cancelled_amount > 0
    const reissueAmount = input.reissueAmount ?? null
    if (reissueAmount !== null) {
      // Cancel in full, then a new receipt for what is still paid (providers that cancel only in full).
      if (partial) throw new CancelInputError(`a re-issue follows a full cancel only; ${input.transactionId} has ${remaining} of ${issue.total_amount} still receipted`)
      if (!Number.isSafeInteger(reissueAmount) || reissueAmount < 1 || reissueAmount >= amount) {
        throw new CancelInputError(`re-issue amount ${reissueAmount} must be a whole number of won between 1 and ${amount - 1}`)
      }
      if (
        !reissueKeys({ provider: issue.provider, providerKey: issue.provider_key, idempotencyKey: issue.idempotency_key, portonePayment: issue.portone_payment }, issue.seq + 1)
      ) {
        throw new CancelInputError(`${issue.provider} cannot issue a second receipt for this payment under a key of its own; the refund needs a person`)
      }
    } else if (partial) {
      const caps = deps.providers.get(issue.merchant_id, issue.provider).provider.capabilities
      if (!caps.partialCancel) {
        throw new CancelInputError(`--amount: ${issue.provider} cannot cancel part of a receipt; cancel it fully and issue a new receipt for the remainder`)
      }
      if (caps.partialCancelOnlyFinal && issue.provisional) {
        throw new CancelInputError(
          `--amount: ${issue.provider} cancels part of a receipt only once the tax authority has it on file (after the nightly filing and reconcile); import the refund instead (the receipt is withdrawn and what is still paid re-issued), or cancel part later`,
        )
      }
    }
    const split = partialSplit(issue, amount)
    // Cancel rows are numbered per transaction ((transaction, kind, seq) is unique), across re-issues.
    const seq =
      Number(
        (
          await trx
            .selectFrom('receipts')
            .select((eb) => eb.fn.max('seq').as('m'))
            .where('transaction_id', '=', issue.transaction_id)
            .where('kind', '=', 'cancel')
            .executeTakeFirst()
        )?.m ?? 0,
      ) + 1
    const id = await insertCancelReceipt(trx, {
      parentId: issue.id,
      seq,
      idempotencyKey: cancelIdempotencyKey(issue.idempotency_key, seq),
      amounts: split,
      reason: input.reason,
      reissueAmount,
      cause: input.cause,
    })
    // The parent was read issued with no open cancel under FOR UPDATE, so the guard holds.
    if (id === null) throw new Error(`receipt ${issue.id} changed while its cancellation was being created`)
    const row = { id }
    return { id: row.id, amount, partial }
  })
  const jobId = cancelJobId(created.id, 0)
  await deps.queue.add('cancel-receipt', { receiptId: created.id }, { jobId })
  return { transactionId: input.transactionId, cancelReceiptId: created.id, amount: created.amount, partial: created.partial, jobId }
}

/** Amounts of a partial cancel: the same VAT rule applied to the cancelled part, taxable first. */
function partialSplit(issue: Receipt, amount: number) {
  if (amount === issue.total_amount - issue.cancelled_amount && issue.cancelled_amount === 0) {
    return { total: issue.total_amount, supply: issue.supply_amount, vat: issue.vat_amount, taxFree: issue.tax_free_amount, serviceFee: issue.service_fee }
  }
  const taxFree = Math.min(issue.tax_free_amount, Math.max(0, amount - (issue.total_amount - issue.tax_free_amount)))
  const split = splitAmounts({ total: amount, taxFree, serviceFee: 0 })
  if (!split.ok) throw new CancelInputError(`--amount: ${split.error.message}`)
  return split.value
}

export interface CancelDeps {
  readonly db: Db
  readonly providers: ProviderSource
  readonly logger: Logger
  readonly workerId: string
  readonly leaseMs: number
  /** Worst-case duration of one provider call; the lease must cover it before a call is made. */
  readonly callBudgetMs: number
  /**
   * Per provider: how long a cancel request may still take effect after it was sent (the commit
   * window, <PREFIX>_COMMIT_WINDOW_MS). A lookup that finds the receipt not cancelled yet sooner
   * than this after the cancel's last send proves nothing: the job waits instead of sending again.
   */
  readonly commitWindowMs?: Readonly<Partial<Record<ProviderName, number>>>
  /** This worker's WORKER_ATTEMPTS: the last attempt is decided here, not by whoever enqueued. */
  readonly attempts?: number
  readonly now?: () => number
  /**
   * Puts a re-issue row (created when a full cancel with `reissue_amount` is accepted) on the queue.
   * Without it, or if it fails, the recovery pass enqueues the pending row (docs/exactly-once.md).
   */
  readonly enqueueIssue?: (receiptId: number) => Promise<unknown>
}

export function createCancelHandler(deps: CancelDeps) {
  const now = deps.now ?? Date.now
  return async function handleCancel(job: Job<JobPayloads['cancel-receipt']>, token: string | undefined, signal?: AbortSignal, info?: ReceiptJobInfo): Promise<IssueJobResult> {
    const { receiptId } = job.data
    const claim = await claimReceipt(deps.db, receiptId, deps.workerId, deps.leaseMs)
    const base = { operation: 'cancel' as const, ...attemptOf(job, deps.attempts) }
    if (claim.status !== 'claimed') {
      return perform(settled(decide({ type: 'claim', receiptId, claim }, { ...base, needsLookup: false })), job, token, { record: async () => true })
    }
    const cancel = claim.receipt
    noteReceipt(info, { provider: cancel.provider, runId: cancel.last_run_id ?? cancel.run_id })
    const parent = await deps.db.selectFrom('receipts').selectAll().where('id', '=', cancel.parent_receipt_id!).executeTakeFirstOrThrow()
    const full = cancel.total_amount === parent.total_amount && parent.cancelled_amount === 0
    const log = attemptLog(now)
    const calls: AttemptRecord[] = log.calls
    // The cancel request (every try of it) goes out only while this worker owns the row, after its attempt row ('sent').
    const fenceOpts = { callBudgetMs: deps.callBudgetMs, signal, attempt: { operation: 'cancel' as const, attemptNo: cancel.attempts, jobId: job.id ?? null }, onSent: log.onSent }
    const ctx = { signal, onCall: log.onCall, beforeSend: sendFence(fenceOf(deps.db, deps.workerId), cancel.id, fenceOpts) }
    // Whether an earlier cancel call may have taken effect unread; cleared by a lookup that finds the receipt not cancelled.
    let needsLookup = cancel.needs_lookup
    const decideNow = (e: PolicyEvent) => decide(e, { ...base, needsLookup, partialCancel: !full, jitterMs: Math.floor(Math.random() * 250) })
    // The cancel row's transition and, in the same transaction, what it means for the issue row.
    const reissue = cancel.reissue_amount !== null && full ? await reissueOf(deps.db, parent, cancel.reissue_amount) : undefined
    const record = async (t: Transition) => {
      const r = await recordCancelOutcome(deps.db, {
        item: { receiptId: cancel.id, workerId: deps.workerId, transition: t, attempts: { receipt: cancel, jobId: job.id, rows: calls } },
        parentId: parent.id,
        full,
        reissue,
      })
      if (r.reissuedId !== null) {
        deps.logger.info({ receiptId: parent.id, reissueId: r.reissuedId, amount: cancel.reissue_amount }, 'receipt cancelled in full; re-issue for what is still paid created')
        await deps
          .enqueueIssue?.(r.reissuedId)
          .catch((err: unknown) => deps.logger.warn({ reissueId: r.reissuedId, err: (err as Error).message }, 're-issue not enqueued; the recovery pass will'))
      }
      return r.owned
    }
    let throttle: Throttle | undefined
    /** Whether the cancel request went out in this attempt. */
    let sent = false

    /** Runs the attempt up to the policy's decision; performs nothing itself. */
    async function attempt(): Promise<Settle> {
      const source = deps.providers.get(cancel.merchant_id, cancel.provider)
      const provider = source.provider
      const t = (throttle = source.throttle)
      if (full) await beginFullCancel(deps.db, parent.id)
      const lookupReq = {
        providerKey: cancel.provider_key,
        portonePayment: cancel.portone_payment,
        amounts: amountsOf(parent),
        sentSince: kstToday(new Date(parent.created_at).getTime()),
      }
      if (needsLookup) {
        // Read before the lookup is sent: a cancel sent earlier than the window may still take
        // effect after this lookup has answered "not cancelled yet" (see the issue handler).
        // A partial cancel is looked up too: NTS takes a second partial cancel of one receipt, so an
        // earlier request whose answer was lost (a timeout, a killed worker) is found by the amount
        // the provider holds cancelled, never sent again.
        const windowLeftMs = await commitWindowLeftMs(deps.db, cancel.id, deps.commitWindowMs?.[cancel.provider] ?? 0)
        const found = await t.schedule(() => provider.lookup(lookupReq, ctx), DEFER)
        const partialCancel = full ? undefined : { cancelledBefore: parent.cancelled_amount, amount: cancel.total_amount }
        const d = decideNow({ type: 'lookup', outcome: found, commitWindowLeftMs: windowLeftMs, partialCancel })
        if (d.type === 'settle') return d
        if (found.kind === 'issued' || found.kind === 'not_found') needsLookup = false
      }
      const o = await t.schedule(
        () =>
          provider.cancel(
            {
              providerKey: cancel.provider_key,
              portonePayment: cancel.portone_payment,
              idempotencyKey: cancel.idempotency_key,
              original: { approvalNumber: parent.approval_number, tradeDate: parent.trade_date, amounts: amountsOf(parent), providerReceiptId: parent.provider_receipt_id },
              amounts: amountsOf(cancel),
              partial: !full,
              reason: (cancel.cancel_reason ?? 1) as 1 | 2 | 3,
              purpose: cancel.purpose,
              attemptNo: cancel.attempts,
            },
            ctx,
          ),
        DEFER,
      )
      sent = true
      const d = decideNow({ type: 'call', outcome: o })
      if (d.type === 'settle') return d
      const found = await readBack(t, () => provider.lookup(lookupReq, ctx))
      return settled(decideNow({ type: 'read_back', outcome: found, after: o }))
    }

    let d: Settle
    try {
      d = await attempt()
    } catch (err) {
      d = settled(decideNow(failureEvent(err, sent)))
    }
    return perform(d, job, token, { record, penalize: (ms) => throttle?.penalize(ms), onRecordError: (err) => settled(decideNow(failureEvent(err))) })
  }
}

function amountsOf(r: Receipt) {
  return { total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee }
}

/**
 * The re-issue that follows a full cancel carrying `reissue_amount`: the next issue seq of the
 * transaction, keys derived from the cancelled receipt's, and the amount split like the original
 * (tax-free and service fee capped at the new total). Undefined when the provider takes no new key
 * (requestCancellation refuses those before a cancel is created).
 */
async function reissueOf(db: Db, parent: Receipt, total: number): Promise<CancelOutcome['reissue']> {
  const max = await db
    .selectFrom('receipts')
    .select((eb) => eb.fn.max('seq').as('m'))
    .where('transaction_id', '=', parent.transaction_id)
    .where('kind', '=', 'issue')
    .executeTakeFirst()
  const seq = Number(max?.m ?? 1) + 1
  const keys = reissueKeys({ provider: parent.provider, providerKey: parent.provider_key, idempotencyKey: parent.idempotency_key, portonePayment: parent.portone_payment }, seq)
  if (!keys) return undefined
  const taxFree = Math.min(parent.tax_free_amount, total)
  const split = splitAmounts({ total, taxFree, serviceFee: Math.min(parent.service_fee, total - taxFree) })
  if (!split.ok) return undefined
  return { seq, ...keys, amounts: split.value }
}
