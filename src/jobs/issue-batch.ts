/**
 * The issue-batch job: up to `maxItems` receipts of one credential in ONE provider request (Popbill
 * BulkSubmit), exactly-once per receipt. docs/exactly-once.md, "Bulk issuance", is the protocol; in
 * short, one run of the job:
 *
 * 1. Claims the batch (its lease, this worker's) and its members (issuing under the batch's owner):
 *    src/db/ledger.ts claimBatch. A member that cannot be taken leaves the batch.
 * 2. A batch already `submitted` (a send may have reached the provider) is looked up first: the
 *    result under its submit id decides, receipt by receipt. Nothing is sent before that answer.
 * 3. An `open` batch hands the members the simple path cannot carry (a refund or cancel since
 *    settlement, Naver Pay, no identifier) to the single path, binds the rest to a submit id derived
 *    from their content, and sends them through the shared throttle as ONE call, fenced: before every
 *    request (each p-retry try) one statement proves the batch and every member are still ours and
 *    writes each member's attempt row (fenceBatchSend). A submit whose answer is lost is never sent
 *    blindly again: the next run asks for its result first, and re-sends only the very same content
 *    under the same submit id, which the provider refuses to take twice.
 * 4. While the provider processes the batch, the job delays itself (2–5 s) without holding a worker
 *    slot; its members stay held for the batch. Per-item results are recorded per receipt: issued,
 *    a duplicate key read back (lookupMany) as the receipt the provider holds, refused ones failed
 *    with their reason, and anything undecided (not processed, unknown, a failed read-back) handed
 *    to the single path with needs_lookup, which looks the key up before issuing.
 *
 * Every step is one ledger transaction (recordBatchStep) guarded by the batch's lease: a run that
 * lost it writes nothing and completes as `taken-over`.
 */
import { createHash } from 'node:crypto'
import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import {
  claimBatch,
  fenceBatchSend,
  recordBatchStep,
  type AttemptRecord,
  type BatchCallRecord,
  type BatchItemOutcome,
  type BatchMember,
  type BatchStep,
  type Transition,
} from '../db/ledger.ts'
import { decryptPii } from '../crypto/pii.ts'
import { SELF_ISSUE_NUMBER, kstToday, msUntilKstMidnight, type CallMeta, type ProviderOutcome } from '../domain/index.ts'
import type { BulkCallContext, BulkIssuer, IssueRequest, LookupRequest } from '../providers/types.ts'
import type { JobPayloads } from '../queue/queues.ts'
import { ThrottleDeferError, type Throttle } from '../throttle/throttle.ts'
import type { ReceiptToQueue } from './enqueue-receipts.ts'
import { LeaseLostError } from './lease.ts'
import { attemptOf, type JobResult } from './outcome-policy.ts'
import type { IssueCallDeps } from './issue-receipt.ts'

export interface BatchDeps extends IssueCallDeps {
  /** Puts receipts handed to the single path on the queue now (else the recovery pass does it). */
  readonly enqueueSingle?: (rows: readonly ReceiptToQueue[]) => Promise<unknown>
  /** Delay between result polls, ms (the provider asks for 2–5 s). */
  readonly pollMs?: { readonly min: number; readonly max: number }
  /** Polls after which the batch is decided by looking its keys up (lookupMany) instead. */
  readonly maxPolls?: number
}

const DEFAULT_POLL = { min: 2_000, max: 5_000 }
const DEFAULT_MAX_POLLS = 180
/** Slack for clock granularity and the round trip that records the outcome (as the single fence). */
const MARGIN_MS = 2_000

/** The content a submit id is bound to: every field of an item that the provider keeps, minus personal data. */
export function batchContentHash(items: readonly IssueRequest[]): string {
  const rows = items
    .map((i) => [
      i.providerKey,
      i.amounts.total,
      i.amounts.supply,
      i.amounts.vat,
      i.amounts.taxFree,
      i.amounts.serviceFee,
      i.purpose,
      i.identifierType,
      i.tradeDate,
      i.orderName.length,
    ])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])))
  return createHash('sha256').update(JSON.stringify(rows)).digest('hex')
}

/**
 * The batch's submit id: its row id and its content's hash, at most 36 characters of [A-Za-z0-9-]
 * (Popbill's SubmitID). Two batches never share one (row ids are unique), and one batch's id names
 * one content (the hash), so an id is never reused for different content.
 */
export function submitIdOf(batchId: number, contentHash: string): string {
  return `cr-${batchId.toString(36)}-${contentHash.slice(0, 20)}`
}

export function createBatchHandler(deps: BatchDeps) {
  const now = deps.now ?? Date.now
  const poll = deps.pollMs ?? DEFAULT_POLL
  const maxPolls = deps.maxPolls ?? DEFAULT_MAX_POLLS
  const pollDelay = () => poll.min + Math.floor(Math.random() * Math.max(0, poll.max - poll.min))

  return async function handleBatch(job: Job<JobPayloads['issue-batch']>, token: string | undefined, signal?: AbortSignal): Promise<JobResult> {
    const { batchId } = job.data
    const claim = await claimBatch(deps.db, batchId, deps.workerId, deps.leaseMs, job.id ?? null)
    if (claim.status === 'missing') throw new UnrecoverableError(`batch ${batchId} does not exist`)
    if (claim.status === 'done') return { state: claim.state, detail: 'already settled' }
    if (claim.status === 'leased') return delay(job, token, claim.retryInMs)
    const { batch } = claim
    let members = claim.members
    const jobId = job.id ?? null
    const { attempt, attemptsAllowed } = attemptOf(job, deps.attempts)

    // Every bulk exchange of this run: one provider_batch_calls row each (each p-retry try too).
    const calls: BatchCallRecord[] = []
    let open: BatchCallRecord[] = []
    const onCall: BulkCallContext['onCall'] = (operation, meta) => {
      const finishedAt = new Date(now())
      const rec = {
        operation,
        startedAt: new Date(finishedAt.getTime() - meta.latencyMs),
        finishedAt,
        outcome: 'tried',
        httpStatus: meta.httpStatus,
        providerCode: meta.providerCode,
        message: meta.message,
        latencyMs: meta.latencyMs,
      }
      calls.push(rec)
      open.push(rec)
    }
    /** Names the outcome of the call just made on its last exchange (earlier ones were retried). */
    const answered = (kind: string) => {
      const last = open.pop()
      if (last) calls[calls.indexOf(last)] = { ...last, outcome: kind }
      open = []
    }
    const ctx: BulkCallContext = { signal, onCall }
    let throttle: Throttle | undefined
    let polls = 0
    const handedOn: BatchMember[] = []
    const decided: BatchItemOutcome[] = []
    const stats = { issued: 0, failed: 0, single: 0 }

    /** What the member's submit attempt row (if any) is completed with, plus any lookup rows. */
    const attemptRows = (m: BatchMember, outcome: string, meta: CallMeta | null, extra: AttemptRecord[] = []): AttemptRecord[] => {
      const rows: AttemptRecord[] = []
      if (m.attemptId !== null) {
        const started = batch.submitted_at ? new Date(batch.submitted_at) : new Date(now())
        rows.push({
          id: m.attemptId,
          operation: 'issue',
          startedAt: started,
          finishedAt: new Date(now()),
          outcome: outcome as AttemptRecord['outcome'],
          httpStatus: meta?.httpStatus ?? null,
          providerCode: meta?.providerCode ?? null,
          message: meta?.message ?? null,
          latencyMs: Math.max(0, now() - started.getTime()),
        })
      }
      return [...rows, ...extra]
    }
    const decide = (m: BatchMember, transition: Transition, item: string, rows: AttemptRecord[]) => {
      decided.push({
        receiptId: m.receipt.id,
        transition,
        item,
        attempts: { receipt: m.receipt, jobId: jobId ?? undefined, rows },
      })
      if (item === 'issued' || item === 'cancelled') stats.issued++
      else if (item === 'failed') stats.failed++
      else stats.single++
    }
    /** Back to the single path: pending, looked up first when the provider may have seen it. */
    const handOn = (m: BatchMember, needsLookup: boolean, outcome: string, meta: CallMeta | null, extra: AttemptRecord[] = []) => {
      decide(
        m,
        {
          state: 'pending',
          needsLookup: needsLookup || m.receipt.needs_lookup,
          uncounted: m.attemptId === null,
          cause: 'bulk_handoff',
        },
        'single',
        attemptRows(m, outcome, meta, extra),
      )
      handedOn.push(m)
    }

    /** Records this run's step; `taken-over` when the batch was no longer ours (nothing written). */
    async function step(s: Omit<BatchStep, 'items' | 'calls' | 'jobId' | 'polls'>, result: () => Promise<JobResult> | JobResult): Promise<JobResult> {
      const applied = await recordBatchStep(deps.db, batchId, deps.workerId, {
        ...s,
        items: decided.splice(0),
        calls: calls.splice(0),
        polls,
        jobId,
      })
      polls = 0
      if (applied === null) {
        return { state: 'taken-over', detail: `batch ${batchId} was taken over by another worker` }
      }
      const single = handedOn.splice(0).filter((m) => applied.has(m.receipt.id))
      if (single.length && deps.enqueueSingle) {
        await deps.enqueueSingle(
          single.map((m) => ({
            id: m.receipt.id,
            kind: 'issue' as const,
            state: 'pending' as const,
            trade_date: m.receipt.trade_date,
            redrive_count: m.receipt.redrive_count,
            requeue_count: m.receipt.requeue_count,
            merchant_id: m.receipt.merchant_id,
            provider: m.receipt.provider,
          })),
        )
      }
      return result()
    }
    const finish = (reason?: { code: string | null; message: string | null }) =>
      step({ finish: batch.state === 'open' && !sentThisRun ? 'abandoned' : 'done', error: reason }, () => ({
        state: 'batch-done',
        detail: `${stats.issued} issued, ${stats.failed} failed, ${stats.single} to single issuance`,
      }))
    /** Later: the lease released, the members held for the batch while its job waits. */
    const later = (ms: number, why?: { code: string | null; message: string | null }) =>
      step({ holdMs: ms + deps.leaseMs + deps.callBudgetMs, error: why }, () => delay(job, token, ms))

    let sentThisRun = false

    async function run(): Promise<JobResult> {
      const source = deps.providers.get(batch.merchant_id, batch.provider)
      const t = (throttle = source.throttle)
      const bulk = source.provider.bulk
      if (!bulk) {
        // The adapter has no bulk call (configuration changed since settlement): one by one instead.
        for (const m of members) handOn(m, batch.state === 'submitted', 'not_sent', null)
        return finish({ code: 'BULK_UNSUPPORTED', message: `${batch.provider} adapter has no bulk issuance` })
      }
      if (members.length === 0) return finish()
      if (batch.state === 'submitted') {
        if (batch.polls >= maxPolls) return decideByLookup(t, bulk, members, 'result polls exhausted')
        // Look up first: the provider's record of this submit id decides.
        const r = await t.schedule(() => bulk.bulkResult(batch.submit_id!, ctx), { defer: true })
        polls++
        answered(r.kind)
        switch (r.kind) {
          case 'processing':
            return later(pollDelay())
          case 'done':
            return recordResults(t, bulk, r.items)
          case 'not_found':
            // Nothing arrived under this id: the same content is sent again under the same id.
            return submit(t, bulk)
          case 'rate_limited':
            t.penalize(r.retryAfterMs)
            return later(r.retryAfterMs)
          case 'permanent':
            return decideByLookup(t, bulk, members, `result refused: ${r.meta.providerCode ?? ''} ${r.meta.message ?? ''}`.trim())
          default:
            return later(pollDelay(), { code: r.meta.providerCode, message: r.meta.message })
        }
      }
      return submit(t, bulk)
    }

    async function submit(t: Throttle, bulk: BulkIssuer): Promise<JobResult> {
      const reqs = new Map<number, IssueRequest>()
      const simple: BatchMember[] = []
      for (const m of members) {
        const req = await simpleRequest(m)
        if (req) {
          reqs.set(m.receipt.id, req)
          simple.push(m)
        } else if (batch.state === 'open') {
          handOn(m, false, 'not_sent', null)
        }
      }
      const items = simple.map((m) => reqs.get(m.receipt.id)!)
      const contentHash = batchContentHash(items)
      if (batch.state === 'submitted' && (simple.length !== members.length || contentHash !== batch.content_hash)) {
        // The content bound to this submit id cannot be rebuilt (a member left or changed since):
        // a different content never goes out under it. Each receipt is decided on its own.
        for (const m of members) handOn(m, true, 'not_resent', null)
        return finish({
          code: 'BATCH_CONTENT_CHANGED',
          message: 'not found under its submit id and its content changed; issued one by one',
        })
      }
      if (simple.length === 0) return finish()
      if (simple.length > bulk.maxItems) {
        throw new Error(`batch ${batchId} has ${simple.length} members, more than ${bulk.maxItems}`)
      }
      if (decided.length) {
        // The members handed on leave the batch before the fence counts what it sends.
        const r = await step({}, () => ({ state: 'continue' }))
        if (r.state === 'taken-over') return r
        members = simple
      }
      const submitId = batch.submit_id ?? submitIdOf(batchId, contentHash)
      let attemptIds: Map<number, number> | null = null
      const beforeSend = async () => {
        signal?.throwIfAborted()
        attemptIds = await fenceBatchSend(deps.db, batchId, deps.workerId, {
          submitId,
          contentHash,
          itemCount: simple.length,
          coverMs: deps.callBudgetMs + MARGIN_MS,
          jobId,
        })
        if (attemptIds === null) {
          throw new LeaseLostError(`batch ${batchId}: the batch or one of its receipts is no longer this worker's; submit not sent`)
        }
        sentThisRun = true
        signal?.throwIfAborted()
      }
      // Deferred, nothing is sent. The daily quota counts the request once it has its slot: one per batch.
      const nowMs = now()
      const o = await t.schedule(() => bulk.submitBulk({ submitId, items }, { ...ctx, beforeSend }), {
        defer: true,
        quota: { kstDate: kstToday(nowMs), msUntilKstMidnight: msUntilKstMidnight(nowMs) },
      })
      answered(o.kind)
      const ids = attemptIds as Map<number, number> | null
      if (ids) members = members.map((m) => ({ ...m, attemptId: ids.get(m.receipt.id) ?? m.attemptId }))
      batch.submitted_at ??= new Date(now())
      switch (o.kind) {
        case 'accepted':
        case 'already_submitted':
        case 'unknown_outcome':
        case 'retryable':
          // Whatever happened, the next run asks for the result under this id before anything else.
          return later(pollDelay(), o.kind === 'accepted' || o.kind === 'already_submitted' ? undefined : { code: o.meta.providerCode, message: o.meta.message })
        case 'rate_limited':
          t.penalize(o.retryAfterMs)
          return later(o.retryAfterMs)
        case 'permanent':
          // Refused as a whole: nothing was issued by it. Each receipt goes its own way (looked up first).
          for (const m of members) handOn(m, true, 'permanent', o.meta)
          return finish({ code: o.meta.providerCode, message: o.meta.message })
      }
    }

    /**
     * A receipt the provider holds for the member (its per-item result, or found by a lookup),
     * recorded as the member's state: issued with the amounts it was issued for, or cancelled.
     */
    function recordHeld(m: BatchMember, o: Extract<ProviderOutcome, { kind: 'issued' | 'cancelled' }>, rows: AttemptRecord[]): void {
      if (o.kind === 'issued') {
        decide(m, { state: 'issued', needsLookup: false, receipt: o.receipt, error: null, amounts: amountsOfRow(m) }, 'issued', rows)
      } else {
        decide(m, { state: 'cancelled', needsLookup: false, receipt: o.receipt, error: null }, 'cancelled', rows)
      }
    }

    /** The per-item results of a processed batch, receipt by receipt. */
    async function recordResults(t: Throttle, bulk: BulkIssuer, results: ReadonlyMap<string, ProviderOutcome>): Promise<JobResult> {
      const readBack: BatchMember[] = []
      for (const m of members) {
        const o = results.get(m.receipt.provider_key)
        if (!o) {
          // Not processed: nothing issued by this batch; the single path looks it up, then issues.
          handOn(m, true, 'not_processed', null)
          continue
        }
        switch (o.kind) {
          case 'issued':
          case 'cancelled':
            recordHeld(m, o, attemptRows(m, o.kind, o.meta))
            break
          case 'already_issued':
            // A duplicate key: the provider holds a receipt for it (an earlier send). Read back below.
            readBack.push(m)
            break
          case 'permanent': {
            const code = o.meta.providerCode ?? (o.meta.httpStatus ? String(o.meta.httpStatus) : null)
            decide(
              m,
              {
                state: 'failed',
                needsLookup: false,
                error: { errorClass: 'permanent', code, message: o.meta.message },
              },
              'failed',
              attemptRows(m, 'permanent', o.meta),
            )
            break
          }
          default:
            handOn(m, o.kind !== 'retryable' && o.kind !== 'rate_limited', o.kind, o.meta)
        }
      }
      if (readBack.length) await lookUp(t, bulk, readBack, 'already_issued')
      return finish()
    }

    /** The batch could not be read back: every member is decided by looking its key up. */
    async function decideByLookup(t: Throttle, bulk: BulkIssuer, ms: readonly BatchMember[], why: string): Promise<JobResult> {
      await lookUp(t, bulk, ms, 'unknown_outcome')
      return finish({ code: 'BATCH_LOOKED_UP', message: why })
    }

    /** lookupMany for `ms`: a receipt found is recorded, anything else goes to the single path (looked up first). */
    async function lookUp(t: Throttle, bulk: BulkIssuer, ms: readonly BatchMember[], submitOutcome: string): Promise<void> {
      for (let i = 0; i < ms.length; i += bulk.maxItems) {
        const chunk = ms.slice(i, i + bulk.maxItems)
        // After a send the read-back is never put off: it waits for its turn.
        const found = await t.schedule(() => bulk.lookupMany(chunk.map(lookupRequest), ctx))
        const whole = found instanceof Map ? null : (found as ProviderOutcome)
        answered(whole ? whole.kind : 'answered')
        for (const m of chunk) {
          const o: ProviderOutcome | undefined = whole ?? (found as ReadonlyMap<string, ProviderOutcome>).get(m.receipt.provider_key)
          const lookupRow = (kind: string, meta: CallMeta | null): AttemptRecord => ({
            operation: 'lookup',
            startedAt: new Date(now() - (meta?.latencyMs ?? 0)),
            finishedAt: new Date(now()),
            outcome: kind as AttemptRecord['outcome'],
            httpStatus: meta?.httpStatus ?? null,
            providerCode: meta?.providerCode ?? null,
            message: meta?.message ?? null,
            latencyMs: meta?.latencyMs ?? 0,
          })
          if (o?.kind === 'issued' || o?.kind === 'cancelled') {
            recordHeld(m, o, attemptRows(m, submitOutcome, null, [lookupRow(o.kind, o.meta)]))
          } else {
            handOn(m, true, submitOutcome, null, [lookupRow(o?.kind ?? 'not_found', o?.meta ?? null)])
          }
        }
      }
    }

    /** The request of a member the bulk path can carry as settled; null: the single path handles it. */
    async function simpleRequest(m: BatchMember): Promise<IssueRequest | null> {
      const { receipt, tx } = m
      if (tx.status === 'cancelled' || tx.method === 'naverpay') return null
      if (tx.amount - tx.refunded_amount !== receipt.total_amount || receipt.total_amount <= 0) return null
      const pii = tx.pii_enc ? decryptPii(tx.pii_enc, deps.dataKeys, tx.transaction_id) : {}
      const identifier = receipt.self_issued ? SELF_ISSUE_NUMBER : pii.identifier
      if (!identifier) return null
      return {
        providerKey: receipt.provider_key,
        idempotencyKey: receipt.idempotency_key,
        portonePayment: receipt.portone_payment,
        orderName: tx.order_name ?? tx.order_id ?? tx.transaction_id,
        identifier,
        identifierType: receipt.self_issued ? 'self' : (tx.identifier_type ?? 'phone'),
        purpose: receipt.purpose,
        amounts: amountsOfRow(m),
        tradeDate: receipt.trade_date,
        paidAt: new Date(tx.paid_at).toISOString(),
        buyer: { name: pii.buyerName, email: pii.buyerEmail, tel: pii.buyerTel },
        paymentMethod: tx.method,
        merchantBusinessNumber: await deps.providers.merchantBusinessNumber(receipt.merchant_id),
      }
    }

    try {
      return await run()
    } catch (err) {
      if (err instanceof DelayedError) throw err
      if (err instanceof ThrottleDeferError) {
        // Nothing was sent by the deferred call; the batch waits without using an attempt.
        return later(err.retryInMs)
      }
      if (err instanceof LeaseLostError) {
        // A member left between the claim and the fence (or the batch was taken over): nothing was
        // sent by this try. The next run re-counts the members (or finds the batch not ours).
        calls.splice(0)
        return later(250)
      }
      deps.logger.warn({ batchId, err: (err as Error).message, attempt }, 'batch run failed')
      decided.splice(0)
      handedOn.splice(0)
      calls.splice(0)
      if (attempt >= attemptsAllowed) {
        // The last attempt: every member is decided on its own, looked up first (a send may have gone out).
        for (const m of members) handOn(m, true, 'internal', null)
        const r = await step(
          {
            finish: batch.state === 'open' && !sentThisRun ? 'abandoned' : 'done',
            error: { code: (err as Error).name, message: (err as Error).message },
          },
          () => ({ state: 'batch-done' }),
        )
        if (r.state === 'taken-over') return r
        throw new UnrecoverableError(`batch ${batchId}: ${(err as Error).message}; its receipts go to single issuance`)
      }
      await recordBatchStep(deps.db, batchId, deps.workerId, {
        holdMs: deps.leaseMs * 4,
        error: { code: (err as Error).name, message: (err as Error).message },
      }).catch(() => null)
      throw err
    } finally {
      void throttle
    }
  }
}

async function delay(job: Job, token: string | undefined, ms: number): Promise<never> {
  await job.moveToDelayed(Date.now() + Math.max(1, Math.round(ms)), token)
  throw new DelayedError()
}

function amountsOfRow(m: BatchMember) {
  const r = m.receipt
  return {
    total: r.total_amount,
    supply: r.supply_amount,
    vat: r.vat_amount,
    taxFree: r.tax_free_amount,
    serviceFee: r.service_fee,
  }
}

function lookupRequest(m: BatchMember): LookupRequest {
  return {
    providerKey: m.receipt.provider_key,
    portonePayment: m.receipt.portone_payment,
    amounts: amountsOfRow(m),
  }
}
