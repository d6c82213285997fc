/**
 * The one outcome policy of the receipt jobs: what each thing an attempt runs into — a provider
 * answer, a claim that found nothing to do, a local refusal, our own failure — means for the ledger
 * (the transition to record) and for the queue (complete, retry with backoff, delay without using an
 * attempt, or fail for good). `decide` is pure; the issue and cancel handlers only perform what it
 * returns through `perform`, the only place BullMQ's semantics are carried out.
 *
 * | event                                   | ledger                                  | queue                              |
 * |-----------------------------------------|-----------------------------------------|------------------------------------|
 * | claim: missing / done / leased          | —                                       | fail / complete / delay            |
 * | issued (issue), cancelled (cancel)      | issued (a cancel row: accepted)         | complete                           |
 * | lookup found issued/cancelled (issue)   | issued / cancelled                      | complete                           |
 * | lookup not_found, commit window open    | pending + needs_lookup                  | delay until it closes, no attempt  |
 * | lookup: only a receipt the tax authority | failed (class tax_authority, TSx code), | fail                               |
 * |   refused (Toss FAILED)                 |   lookup question answered              |                                    |
 * | lookup not cancelled yet (cancel),      | pending + needs_lookup                  | delay until it closes, no attempt  |
 * |   commit window open                    |                                         |                                    |
 * | lookup (partial cancel): provider holds | issued (accepted)                       | complete                           |
 * |   ledger's cancelled + this part        |                                         |                                    |
 * | lookup (partial cancel): provider holds | failed (CANCELLED_AMOUNT_MISMATCH),     | fail                               |
 * |   any other cancelled amount            |   question still open                   |                                    |
 * | already_issued, unknown_outcome         | — (read back first; not a partial       | —                                  |
 * |                                         |   cancel: its next attempt looks up)    |                                    |
 * | read back finds nothing                 | as unknown_outcome                      |                                    |
 * | unknown_outcome                         | pending + needs_lookup; failed at last  | retry; fail after the last attempt |
 * | retryable, not_found (a call), other    | pending; failed at last                 | retry; fail after the last attempt |
 * | rate_limited                            | pending (the limiter is held)           | delay, no attempt used             |
 * | permanent (cancel: also not_found,      | failed                                  | fail                               |
 * |   issued, already_issued)               |                                         |                                    |
 * | nothing to issue (cancelled, refunded)  | skipped                                 | complete                           |
 * | invalid request (local)                 | failed (permanent)                      | fail                               |
 * | deferred by the throttle                | pending, claim uncounted (no call made; | delay, no attempt used             |
 * |                                         |   after a send: + needs_lookup)         |                                    |
 * | lease lost                              | — (the new owner finishes)              | complete (taken-over)              |
 * | internal error                          | pending + needs_lookup; failed at last  | rethrow (BullMQ retries or fails)  |
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq'
import { TAX_AUTHORITY_ERROR_CLASS, type ClaimResult, type Transition } from '../db/ledger.ts'
import type { ProviderOutcome, ProviderReceipt } from '../domain/index.ts'
import { ThrottleDeferError, type Throttle } from '../throttle/throttle.ts'
import { LeaseLostError } from './lease.ts'
import { MerchantNotConfiguredError } from './provider-source.ts'

/** The job an attempt belongs to. */
export type Operation = 'issue' | 'cancel'

export interface AttemptContext {
  readonly operation: Operation
  /** This attempt's number (1 = first) and how many BullMQ allows. */
  readonly attempt: number
  readonly attemptsAllowed: number
  /** An earlier call may have reached the provider and its answer was never read back. */
  readonly needsLookup: boolean
  /**
   * A partial cancel is not read back right after its call: a lookup sees the whole receipt, and
   * only the next attempt's lookup compares the amount the provider holds cancelled with the ledger's.
   */
  readonly partialCancel?: boolean
  /** Added to a rate-limit delay so the jobs held together do not all return at once. */
  readonly jitterMs?: number
}

export type PolicyEvent =
  /**
   * Before the claim, the job's credential is known to be unable to take a call now (the throttle's
   * precheck): nothing was claimed and nothing sent.
   */
  | { readonly type: 'put_off'; readonly retryInMs: number }
  | { readonly type: 'claim'; readonly receiptId: number; readonly claim: Exclude<ClaimResult, { status: 'claimed' }> }
  /**
   * The lookup made before any call because of needs_lookup. `commitWindowLeftMs`: how long an
   * earlier issue (or cancel) request may still commit at the provider (0 or absent: none can).
   */
  | {
      readonly type: 'lookup'
      readonly outcome: ProviderOutcome
      readonly commitWindowLeftMs?: number
      readonly amounts?: Transition['amounts']
      /**
       * A partial cancel's lookup: what the ledger holds cancelled of the receipt before this cancel
       * (cancels of one receipt run one at a time) and this cancel's amount, in KRW. The provider's
       * cancelled amount tells whether this cancel took effect.
       */
      readonly partialCancel?: { readonly cancelledBefore: number; readonly amount: number }
    }
  /** The issue or cancel call itself; `amounts` are what an issue call receipted. */
  | { readonly type: 'call'; readonly outcome: ProviderOutcome; readonly amounts?: Transition['amounts'] }
  /** The lookup made right after a call whose answer did not settle it (`after`). */
  | { readonly type: 'read_back'; readonly outcome: ProviderOutcome; readonly after: ProviderOutcome; readonly amounts?: Transition['amounts'] }
  /** PortOne's answer when asked for a Naver Pay payment's cash part, when it is not an amount. */
  | { readonly type: 'naver_cash_amount'; readonly outcome: ProviderOutcome }
  | { readonly type: 'nothing_to_issue'; readonly reason: string }
  /** A request that cannot be made and never will (a local check). */
  | { readonly type: 'invalid'; readonly code: string; readonly message: string }
  /**
   * The throttle did not start the call (the credential or provider cannot take it now, local queue
   * full): that call was not made. `afterSend`: an issue or cancel request went out earlier in this
   * attempt (only its read-back was put off), so its outcome is open.
   */
  | { readonly type: 'deferred'; readonly retryInMs: number; readonly afterSend?: boolean }
  | { readonly type: 'lease_lost'; readonly message: string }
  /** Our own failure mid-attempt (configuration, database, decryption, Redis, abort). */
  | { readonly type: 'internal'; readonly error: unknown }

export type QueueAction =
  /** The job completes with this result (`taken-over` instead when the ledger transition did not apply). */
  | { readonly type: 'complete'; readonly state: string; readonly detail?: string }
  /** Another BullMQ attempt after backoff: the error thrown is `error` when given (our own failure). */
  | { readonly type: 'retry'; readonly message: string; readonly error?: unknown }
  /** Back to delayed for `ms` without using an attempt. */
  | { readonly type: 'delay'; readonly ms: number }
  /** No further attempt. */
  | { readonly type: 'fail'; readonly message: string }

export interface Settle {
  readonly type: 'settle'
  /** The transition to record on the receipt row (null: nothing to record). */
  readonly ledger: Transition | null
  readonly queue: QueueAction
  /** Hold the provider's shared limiter this long (a rate limit). */
  readonly penalizeMs?: number
  /** A failure to record must not hide the error being reported. */
  readonly bestEffort?: boolean
}

export type Decision =
  /** Nothing settled: the attempt goes on to its next step. */
  | { readonly type: 'proceed' }
  /** Look the key up before deciding anything. */
  | { readonly type: 'read_back' }
  | Settle

const PROCEED: Decision = { type: 'proceed' }
const READ_BACK: Decision = { type: 'read_back' }

export function decide(e: PolicyEvent, ctx: AttemptContext): Decision {
  const issue = ctx.operation === 'issue'
  switch (e.type) {
    case 'put_off':
      // No ledger change (the row was never claimed), no attempt used: the job waits in the delayed set.
      return settle(null, { type: 'delay', ms: e.retryInMs })
    case 'claim':
      if (e.claim.status === 'missing') return settle(null, { type: 'fail', message: `receipt ${e.receiptId} does not exist` })
      if (e.claim.status === 'done') return settle(null, { type: 'complete', state: e.claim.state, detail: 'already settled' })
      return settle(null, { type: 'delay', ms: e.claim.retryInMs })
    case 'lookup': {
      const o = e.outcome
      if (issue) {
        if (o.kind === 'issued') return settle({ ...issued(o.receipt), amounts: e.amounts }, complete('issued', 'found by lookup'))
        if (o.kind === 'cancelled') return settle(cancelled(o.receipt), complete('cancelled', 'found cancelled at provider'))
        if (o.kind === 'not_found') {
          // An earlier request may still commit: nothing proves it will not, so the receipt waits
          // (marked for lookup, no attempt used) and is looked up again once the window has passed.
          const left = e.commitWindowLeftMs ?? 0
          if (left > 0) return settle({ state: 'pending', needsLookup: true }, { type: 'delay', ms: left + (ctx.jitterMs ?? 0) })
          return PROCEED
        }
        if (o.kind === 'permanent' && o.taxAuthorityRejected) {
          // The earlier request did reach the provider, and the tax authority refused that receipt
          // (Toss FAILED): nothing is live there, the question is answered. Failed as reconcile
          // fails a refused provisional receipt; a re-drive issues again without looking up.
          const code = o.meta.providerCode ?? 'XXX'
          return settle(
            { state: 'failed', needsLookup: false, error: { errorClass: TAX_AUTHORITY_ERROR_CLASS, code, message: o.meta.message } },
            { type: 'fail', message: `lookup: tax authority refused the receipt (${code})` },
          )
        }
        return failure(o, 'lookup', ctx)
      }
      // A cancel looks up only to avoid a second cancel; anything but "cancelled" lets the call decide.
      if (o.kind === 'cancelled') return settle(accepted(o.receipt), complete('cancelled', 'found by lookup'))
      const part = e.partialCancel
      if (part && o.kind === 'issued' && o.receipt.cancelledAmount !== undefined && o.receipt.cancelledAmount !== null) {
        // A partial cancel leaves the receipt live: only the amount the provider holds cancelled
        // tells whether an earlier request of this cancel took effect (NTS takes a second one).
        const held = o.receipt.cancelledAmount
        if (held === part.cancelledBefore + part.amount) return settle(accepted(o.receipt), complete('cancelled', 'partial cancel found by lookup'))
        if (held !== part.cancelledBefore) {
          // Neither before nor after this cancel: something else was cancelled at the provider.
          // Sending could cancel too much; a person decides (the row keeps its lookup question).
          const message = `the provider holds ${held} KRW cancelled; the ledger ${part.cancelledBefore} KRW before this cancel of ${part.amount} KRW`
          return settle(
            { state: 'failed', needsLookup: true, error: { errorClass: 'permanent', code: 'CANCELLED_AMOUNT_MISMATCH', message } },
            { type: 'fail', message: `lookup: ${message}` },
          )
        }
      }
      // "Not cancelled yet" inside the commit window of the last cancel sent proves nothing: that
      // cancel may still take effect, and a second one would be refused (and failed) then. Wait.
      if (o.kind === 'issued' && (e.commitWindowLeftMs ?? 0) > 0) {
        return settle({ state: 'pending', needsLookup: true }, { type: 'delay', ms: e.commitWindowLeftMs! + (ctx.jitterMs ?? 0) })
      }
      return PROCEED
    }
    case 'call': {
      const o = e.outcome
      if (issue) {
        if (o.kind === 'issued') return settle({ ...issued(o.receipt), amounts: e.amounts }, complete('issued'))
        // Read back before anything else: the provider may hold a receipt for this key.
        if (o.kind === 'already_issued' || o.kind === 'unknown_outcome') return READ_BACK
        return failure(o, 'issue', ctx)
      }
      if (o.kind === 'cancelled') return settle(accepted(o.receipt), complete('cancelled'))
      if (o.kind === 'unknown_outcome' && !ctx.partialCancel) return READ_BACK
      return failure(o, 'cancel', ctx)
    }
    case 'read_back': {
      const o = e.outcome
      if (issue) {
        if (o.kind === 'issued') return settle({ ...issued(o.receipt), amounts: e.amounts }, complete('issued', e.after.kind))
        if (o.kind === 'cancelled') return settle(cancelled(o.receipt), complete('cancelled', e.after.kind))
        // Not found right after an unknown outcome may only mean the provider is still processing it
        // (NTS-style APIs do not deduplicate): stay marked for lookup and look again after backoff.
        return failure({ kind: 'unknown_outcome', meta: e.after.kind === 'unknown_outcome' ? e.after.meta : o.meta }, 'issue', ctx)
      }
      if (o.kind === 'cancelled') return settle(accepted(o.receipt), complete('cancelled', 'unknown outcome, found by lookup'))
      return failure(e.after, 'cancel', ctx)
    }
    case 'naver_cash_amount':
      return failure(e.outcome, 'naver_cash_amount', ctx)
    case 'nothing_to_issue':
      return settle({ state: 'skipped', needsLookup: false, skipReason: e.reason, error: null }, complete('skipped'))
    case 'invalid':
      return settle({ state: 'failed', error: { errorClass: 'permanent', code: e.code, message: e.message } }, { type: 'fail', message: `${e.code}: ${e.message}` })
    case 'deferred':
      // Back to pending, the claim not counted; the job waits without using a BullMQ attempt. Put off
      // after a send, the request's outcome is unknown: looked up first next time.
      // Otherwise the mark is what this attempt knows: cleared only by a trusted lookup made in it.
      return settle({ state: 'pending', needsLookup: e.afterSend === true || ctx.needsLookup, uncounted: true }, { type: 'delay', ms: e.retryInMs })
    case 'lease_lost':
      // Another worker owns the row now; it finishes the work. No call was made.
      return settle(null, complete('taken-over', e.message))
    case 'internal': {
      // We cannot know whether a call was sent: marked for lookup; failed after the last attempt so
      // re-drive can take it.
      const err = e.error as Error | undefined
      return {
        ...settle(
          { state: last(ctx) ? 'failed' : 'pending', needsLookup: true, error: { errorClass: 'internal', code: err?.name ?? 'Error', message: err?.message ?? String(e.error) } },
          { type: 'retry', message: err?.message ?? String(e.error), error: e.error },
        ),
        bestEffort: true,
      }
    }
  }
}

/** What a non-success answer to `step` means. */
function failure(o: ProviderOutcome, step: 'lookup' | 'issue' | 'cancel' | 'naver_cash_amount', ctx: AttemptContext): Settle {
  const code = o.meta.providerCode ?? (o.meta.httpStatus ? String(o.meta.httpStatus) : null)
  // A receipt the tax authority refused after the provider accepted it (Toss FAILED) is recorded
  // under the class reconcile gives such refusals, so one re-drive selector finds them all.
  const errorClass = o.kind === 'permanent' && o.taxAuthorityRejected ? TAX_AUTHORITY_ERROR_CLASS : o.kind
  const error = { errorClass, code, message: o.meta.message }
  if (o.kind === 'rate_limited') {
    // Slow every process down for this credential; the job waits without using an attempt.
    return { ...settle({ state: 'pending', error }, { type: 'delay', ms: o.retryAfterMs + (ctx.jitterMs ?? 0) }), penalizeMs: o.retryAfterMs }
  }
  // An unknown outcome opens the question, a failed lookup leaves it open, and a call that surely did
  // not take effect leaves it as it was.
  const needsLookup = o.kind === 'unknown_outcome' || step === 'lookup' || ctx.needsLookup
  // A cancel refused as not found, or for a receipt that is not cancelled, will not change by retrying.
  const permanent = o.kind === 'permanent' || (step === 'cancel' && (o.kind === 'not_found' || o.kind === 'issued' || o.kind === 'already_issued'))
  if (permanent) {
    const message = step === 'cancel' ? `cancel: ${o.kind} ${code ?? ''} ${error.message ?? ''}` : `${step}: permanent ${code ?? ''} ${error.message ?? ''}`
    return settle({ state: 'failed', needsLookup, error }, { type: 'fail', message: message.trim() })
  }
  const final = last(ctx)
  const ledger: Transition = { state: final ? 'failed' : 'pending', needsLookup, error }
  if (step === 'cancel') {
    const message = final ? `cancel: ${o.kind} ${code ?? ''} ${error.message ?? ''}` : `cancel: ${o.kind} ${code ?? ''}`
    return settle(ledger, final ? { type: 'fail', message: message.trim() } : { type: 'retry', message: message.trim() })
  }
  if (o.kind === 'unknown_outcome') {
    // After the last attempt it is failed/unknown_outcome, and re-drive looks it up first.
    return settle(
      ledger,
      final
        ? { type: 'fail', message: `${step}: outcome unknown after last attempt` }
        : { type: 'retry', message: `${step}: unknown outcome (${code ?? 'no code'}); will look up first` },
    )
  }
  return settle(
    ledger,
    final ? { type: 'fail', message: `${step}: ${o.kind} after last attempt (${code ?? ''})` } : { type: 'retry', message: `${step}: ${o.kind} ${code ?? ''}`.trim() },
  )
}

const last = (ctx: AttemptContext) => ctx.attempt >= ctx.attemptsAllowed
const settle = (ledger: Transition | null, queue: QueueAction): Settle => ({ type: 'settle', ledger, queue })
const complete = (state: string, detail?: string): QueueAction => (detail === undefined ? { type: 'complete', state } : { type: 'complete', state, detail })
const issued = (receipt: ProviderReceipt): Transition => ({ state: 'issued', needsLookup: false, receipt, error: null })
const cancelled = (receipt: ProviderReceipt): Transition => ({ state: 'cancelled', needsLookup: false, receipt, error: null })
/** A cancel row whose cancellation the provider accepted: its `issued`. */
const accepted = (receipt: ProviderReceipt): Transition => ({ state: 'issued', needsLookup: false, receipt, error: null })

/**
 * The attempt a BullMQ job is on, and how many it is allowed: the running worker's own
 * WORKER_ATTEMPTS (`workerAttempts`), capped by what the job carries (a ceiling set at enqueue).
 */
export function attemptOf(job: Pick<Job, 'attemptsMade' | 'opts'>, workerAttempts?: number): Pick<AttemptContext, 'attempt' | 'attemptsAllowed'> {
  const carried = job.opts.attempts ?? 1
  return { attempt: job.attemptsMade + 1, attemptsAllowed: workerAttempts === undefined ? carried : Math.min(workerAttempts, carried) }
}

/**
 * The read-back after a send whose outcome is unknown. It is never put off: it waits for its turn.
 * Unless the provider is not answering (Throttle.unresponsive: a circuit open, its other calls
 * hanging): then it would hang as long again holding the worker slot, so it is not made and counts
 * as a read-back that found nothing — the outcome stays open (pending + needs_lookup, retried after
 * backoff, the attempt used) and the next attempt looks the key up before anything else.
 */
export function readBack(t: Pick<Throttle, 'unresponsive' | 'schedule'>, lookup: () => Promise<ProviderOutcome>): Promise<ProviderOutcome> {
  if (!t.unresponsive()) return t.schedule(lookup)
  return Promise.resolve({ kind: 'unknown_outcome', meta: { httpStatus: null, providerCode: null, message: 'read-back skipped: the provider is not answering', latencyMs: 0 } })
}

/** Thrown for outcomes worth another BullMQ attempt (backoff); the message carries the class. */
export class RetryableJobError extends Error {
  override name = 'RetryableJobError'
}

export type JobResult = { readonly state: string; readonly detail?: string }

/** What an exception thrown during an attempt is, for the policy; `afterSend`: an issue or cancel request went out in it. */
export function failureEvent(err: unknown, afterSend = false): PolicyEvent {
  if (err instanceof ThrottleDeferError) return afterSend ? { type: 'deferred', retryInMs: err.retryInMs, afterSend } : { type: 'deferred', retryInMs: err.retryInMs }
  if (err instanceof LeaseLostError) return { type: 'lease_lost', message: err.message }
  // Raised before any call is made; retrying cannot help until the worker restarts with the merchant.
  if (err instanceof MerchantNotConfiguredError) return { type: 'invalid', code: err.code, message: err.message }
  return { type: 'internal', error: err }
}

/** A decision at a point where only a settled one can come back (a programming error otherwise). */
export function settled(d: Decision): Settle {
  if (d.type !== 'settle') throw new Error(`outcome policy: expected a settled decision, got ${d.type}`)
  return d
}

export interface DecisionEffects {
  /** Records the decided transition on the job's receipt row; false when the row was taken over. */
  record(t: Transition): Promise<boolean>
  penalize?(ms: number): void
  /** The decision for an error thrown while recording (the policy's answer to our own failure). */
  onRecordError?(err: unknown): Settle
}

/**
 * Performs a settled decision for `job`: holds the limiter, records the transition, then returns the
 * job's result or throws what BullMQ acts on. A completion whose row was taken over meanwhile
 * reports `taken-over` (its new owner completes the work). When recording fails, the decision for
 * that failure is performed instead.
 */
export async function perform(d: Settle, job: Job, token: string | undefined, effects: DecisionEffects, decidedAt = Date.now()): Promise<JobResult> {
  if (d.penalizeMs !== undefined) effects.penalize?.(d.penalizeMs)
  let recorded = true
  if (d.ledger !== null) {
    try {
      recorded = await effects.record(d.ledger)
    } catch (err) {
      if (d.bestEffort) recorded = false
      else if (effects.onRecordError) return perform(effects.onRecordError(err), job, token, { record: effects.record }, decidedAt)
      else throw err
    }
  }
  return performQueueAction(d.queue, job, token, recorded, decidedAt)
}

/**
 * What BullMQ does with the error a handler threw: the job went back to delayed (no attempt used),
 * will be retried, or has failed for good (unrecoverable, or its last attempt).
 */
export function thrownOutcome(err: unknown, job: Pick<Job, 'attemptsMade' | 'opts'>, workerAttempts?: number): 'delayed' | 'retry' | 'failed' {
  if (err instanceof DelayedError) return 'delayed'
  const { attempt, attemptsAllowed } = attemptOf(job, workerAttempts)
  return err instanceof UnrecoverableError || attempt >= attemptsAllowed ? 'failed' : 'retry'
}

/**
 * A delay counts from `decidedAt`, the moment of the decision, not from after the ledger write: a
 * deferral's retry time is the caller's place in its credential's deferral line (throttle), and the
 * write (tens of ms on a busy machine) must not make every returning job late for its place.
 */
async function performQueueAction(action: QueueAction, job: Job, token: string | undefined, recorded: boolean, decidedAt: number): Promise<JobResult> {
  switch (action.type) {
    case 'complete':
      if (!recorded) return { state: 'taken-over' }
      return action.detail === undefined ? { state: action.state } : { state: action.state, detail: action.detail }
    case 'delay':
      await job.moveToDelayed(Math.max(Date.now() + 1, decidedAt + Math.round(action.ms)), token)
      throw new DelayedError()
    case 'fail':
      throw new UnrecoverableError(action.message)
    case 'retry':
      throw action.error ?? new RetryableJobError(action.message)
  }
}
