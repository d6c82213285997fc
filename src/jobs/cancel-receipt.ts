/**
 * Cancellation (취소 현금영수증) with the same exactly-once care as issuance. A cancel is its own
 * receipts row (kind cancel, seq 1, 2, … for partial cancels) pointing at the issued receipt.
 *
 * `requestCancellation` creates the row and enqueues it; the handler claims it, marks the issued
 * receipt `cancelling` (full cancel), calls the provider, and on success marks the issue receipt
 * `cancelled` (full) or adds to its cancelled_amount (partial).
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { beginFullCancel, claimReceipt, insertCancelReceipt, recordCancelOutcome, type AttemptRecord, type Transition } from '../db/ledger.ts'
import type { Receipt } from '../db/schema.ts'
import { cancelIdempotencyKey } from '../providers/keys.ts'
import { splitAmounts, type ProviderOutcome } from '../domain/index.ts'
import { cancelJobId, type JobPayloads, type ReceiptsQueue } from '../queue/queues.ts'
import { delay, noteReceipt, recorder, RetryableJobError, type IssueJobResult, type ReceiptJobInfo } from './issue-receipt.ts'
import type { ProviderSource } from './provider-source.ts'
import { ThrottleDeferError } from '../throttle/throttle.ts'
import { LeaseLostError, leaseGuard } from './lease.ts'

export class CancelInputError extends Error {
  override name = 'CancelInputError'
}

export interface CancelRequestInput {
  readonly transactionId: string
  /** KRW to cancel; omitted = everything still receipted. */
  readonly amount?: number
  readonly reason: 1 | 2 | 3
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
export async function requestCancellation(
  deps: { db: Db; queue: ReceiptsQueue; providers: Pick<ProviderSource, 'get'> },
  input: CancelRequestInput,
): Promise<CancelRequested> {
  const created = await deps.db.transaction().execute(async (trx) => {
    const issue = await trx
      .selectFrom('receipts')
      .selectAll()
      .where('transaction_id', '=', input.transactionId)
      .where('kind', '=', 'issue')
      .forUpdate()
      .executeTakeFirst()
    if (!issue) throw new CancelInputError(`transaction ${input.transactionId} has no receipt (not imported or not settled yet)`)
    if (issue.state !== 'issued') {
      throw new CancelInputError(`receipt for ${input.transactionId} is ${issue.state}; only issued receipts can be cancelled`)
    }
    const open = await trx
      .selectFrom('receipts')
      .select('id')
      .where('parent_receipt_id', '=', issue.id)
      .where('state', 'in', ['pending', 'issuing'])
      .executeTakeFirst()
    if (open) throw new CancelInputError(`a cancellation for ${input.transactionId} is already in progress (receipt ${open.id})`)
    const remaining = issue.total_amount - issue.cancelled_amount
    const amount = input.amount ?? remaining
    if (!Number.isSafeInteger(amount) || amount < 1) throw new CancelInputError(`--amount: must be a whole number of won ≥ 1`)
    if (amount > remaining) throw new CancelInputError(`--amount: ${amount} exceeds the ${remaining} still receipted for ${input.transactionId}`)
    const partial = amount < issue.total_amount || issue.cancelled_amount > 0
    if (partial && !deps.providers.get(issue.merchant_id, issue.provider).provider.capabilities.partialCancel) {
      throw new CancelInputError(
        `--amount: ${issue.provider} cannot cancel part of a receipt; cancel it fully and issue a new receipt for the remainder`,
      )
    }
    const split = partialSplit(issue, amount)
    const seq = Number(
      (await trx.selectFrom('receipts').select((eb) => eb.fn.max('seq').as('m')).where('parent_receipt_id', '=', issue.id).executeTakeFirst())?.m ?? 0,
    ) + 1
    const id = await insertCancelReceipt(trx, {
      parentId: issue.id,
      seq,
      idempotencyKey: cancelIdempotencyKey(issue.idempotency_key, seq),
      amounts: split,
      reason: input.reason,
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
  readonly now?: () => number
}

export function createCancelHandler(deps: CancelDeps) {
  const now = deps.now ?? Date.now
  return async function handleCancel(
    job: Job<JobPayloads['cancel-receipt']>,
    token: string | undefined,
    signal?: AbortSignal,
    info?: ReceiptJobInfo,
  ): Promise<IssueJobResult> {
    const claimedAt = performance.now()
    const claim = await claimReceipt(deps.db, job.data.receiptId, deps.workerId, deps.leaseMs)
    if (claim.status === 'missing') throw new UnrecoverableError(`receipt ${job.data.receiptId} does not exist`)
    if (claim.status === 'done') return { state: claim.state, detail: 'already settled' }
    if (claim.status === 'leased') return delay(job, token, claim.retryInMs)
    const cancel = claim.receipt
    const ensureLease = leaseGuard(deps.db, cancel.id, deps.workerId, { leaseMs: deps.leaseMs, callBudgetMs: deps.callBudgetMs, claimedAt })
    noteReceipt(info, { provider: cancel.provider, runId: cancel.last_run_id ?? cancel.run_id })
    const parent = await deps.db.selectFrom('receipts').selectAll().where('id', '=', cancel.parent_receipt_id!).executeTakeFirstOrThrow()
    const full = cancel.total_amount === parent.total_amount && parent.cancelled_amount === 0
    const calls: AttemptRecord[] = []
    const ctx = { signal, onCall: recorder(calls, now) }
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)

    const record = async (t: Transition) =>
      (await recordCancelOutcome(deps.db, { item: { receiptId: cancel.id, workerId: deps.workerId, transition: t, attempts: { receipt: cancel, jobId: job.id, rows: calls } }, parentId: parent.id, full })).owned
    const complete = async (o: Extract<ProviderOutcome, { kind: 'cancelled' }> | null) => record({ state: 'issued', needsLookup: false, receipt: o?.receipt, error: null })

    try {
      const { provider, throttle: t } = deps.providers.get(cancel.merchant_id, cancel.provider)
      if (full) await beginFullCancel(deps.db, parent.id)
      const lookupReq = { providerKey: cancel.provider_key, portonePayment: cancel.portone_payment, amounts: amountsOf(parent) }
      if (cancel.needs_lookup && full) {
        const found = await t.schedule(() => provider.lookup(lookupReq, ctx))
        if (found.kind === 'cancelled') return (await complete(found)) ? { state: 'cancelled', detail: 'found by lookup' } : { state: 'taken-over' }
      }
      const o = await t.schedule(async () => {
        await ensureLease()
        return provider.cancel(
          {
            providerKey: cancel.provider_key,
            portonePayment: cancel.portone_payment,
            idempotencyKey: cancel.idempotency_key,
            original: { approvalNumber: parent.approval_number, tradeDate: parent.trade_date, amounts: amountsOf(parent) },
            amounts: amountsOf(cancel),
            partial: !full,
            reason: (cancel.cancel_reason ?? 1) as 1 | 2 | 3,
            purpose: cancel.purpose,
          },
          ctx,
        )
      })
      if (o.kind === 'cancelled') return (await complete(o)) ? { state: 'cancelled' } : { state: 'taken-over' }
      if (o.kind === 'unknown_outcome' && full) {
        const found = await t.schedule(() => provider.lookup(lookupReq, ctx))
        if (found.kind === 'cancelled') return (await complete(found)) ? { state: 'cancelled', detail: 'unknown outcome, found by lookup' } : { state: 'taken-over' }
      }
      const error = { errorClass: o.kind, code: o.meta.providerCode ?? (o.meta.httpStatus ? String(o.meta.httpStatus) : null), message: o.meta.message }
      const permanent = o.kind === 'permanent' || o.kind === 'not_found' || o.kind === 'issued' || o.kind === 'already_issued'
      if (o.kind === 'rate_limited') {
        t.penalize(o.retryAfterMs)
        await record({ state: 'pending', error })
        return delay(job, token, o.retryAfterMs)
      }
      const final = permanent || lastAttempt
      // Failed for good on a full cancel: the ledger puts the parent back to issued (the provider still holds it).
      await record({ state: final ? 'failed' : 'pending', needsLookup: o.kind === 'unknown_outcome', error })
      if (final) throw new UnrecoverableError(`cancel: ${o.kind} ${error.code ?? ''} ${error.message ?? ''}`.trim())
      throw new RetryableJobError(`cancel: ${o.kind} ${error.code ?? ''}`.trim())
    } catch (err) {
      if (err instanceof ThrottleDeferError) {
        await record({ state: 'pending' })
        return delay(job, token, err.retryInMs)
      }
      // Another worker owns the row now; it finishes the work. No call was made.
      if (err instanceof LeaseLostError) return { state: 'taken-over', detail: err.message }
      if (err instanceof DelayedError || err instanceof UnrecoverableError || err instanceof RetryableJobError) throw err
      const e = err as Error
      await record({ state: lastAttempt ? 'failed' : 'pending', needsLookup: true, error: { errorClass: 'internal', code: e?.name ?? 'Error', message: e?.message ?? String(err) } }).catch(() => {})
      throw err
    }
  }
}

function amountsOf(r: Receipt) {
  return { total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee }
}
