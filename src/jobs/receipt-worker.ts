/**
 * The receipts worker: a BullMQ Worker on the receipts queue that runs the issue and cancel handlers
 * and writes one log line per receipt outcome. A job BullMQ itself gives up on (stalled too often,
 * lock lost) is recorded as failed in the ledger, so no receipt is left behind as issuing.
 */
import { Worker, type Job, type Telemetry } from 'bullmq'
import type { Redis } from 'ioredis'
import type { AppConfig } from '../config.ts'
import type { Db } from '../db/database.ts'
import { failOrphaned } from '../db/ledger.ts'
import { createLedgerBatcher } from '../db/ledger-batcher.ts'
import type { Logger } from '../logger.ts'
import { DEFAULT_RETRY } from '../providers/http.ts'
import { connectionOf, issueJobId, RECEIPTS_QUEUE, type ReceiptsQueue } from '../queue/queues.ts'
import { createCancelHandler } from './cancel-receipt.ts'
import { createBatchHandler } from './issue-batch.ts'
import { enqueueReceipts } from './enqueue-receipts.ts'
import { createIssueHandler, type ReceiptJobInfo } from './issue-receipt.ts'
import { callBudgetMs } from './lease.ts'
import { thrownOutcome } from './outcome-policy.ts'
import type { ProviderSource } from './provider-source.ts'

export interface ReceiptWorkerDeps {
  readonly config: Pick<AppConfig, 'queuePrefix' | 'worker' | 'http' | 'dataKeys' | 'providerCommitWindowMs'>
  readonly db: Db
  /** Where the ledger batcher runs its statements (a pool of generic plans, see App.ledgerDb); default db. */
  readonly ledgerDb?: Db
  readonly providers: ProviderSource
  readonly logger: Logger
  /** The worker's own Redis connection (BullMQ blocks on it). */
  readonly connection: Redis
  /** Owner name of the receipt leases this process takes. */
  readonly workerId: string
  readonly telemetry?: Telemetry
  /** Where a re-issue created by an accepted full cancel is enqueued (else the recovery pass does it). */
  readonly queue?: ReceiptsQueue
}

export function startReceiptWorker(deps: ReceiptWorkerDeps, opts: { concurrency?: number; autorun?: boolean } = {}): Worker {
  const { config, db, logger } = deps
  const handlerDeps = {
    db,
    providers: deps.providers,
    logger,
    workerId: deps.workerId,
    leaseMs: config.worker.leaseMs,
    callBudgetMs: callBudgetMs(config.http, DEFAULT_RETRY.maxRetryTimeMs),
    attempts: config.worker.attempts,
  }
  const ledger = createLedgerBatcher(deps.ledgerDb ?? db, { workerId: deps.workerId, leaseMs: config.worker.leaseMs })
  const issue = createIssueHandler({ ...handlerDeps, ledger, dataKeys: config.dataKeys, commitWindowMs: config.providerCommitWindowMs })
  const queue = deps.queue
  const cancel = createCancelHandler({
    ...handlerDeps,
    commitWindowMs: config.providerCommitWindowMs,
    enqueueIssue: queue ? (receiptId) => queue.add('issue-receipt', { receiptId }, { jobId: issueJobId(receiptId, 0, 0) }) : undefined,
  })
  const batch = createBatchHandler({
    ...handlerDeps,
    dataKeys: config.dataKeys,
    enqueueSingle: queue ? (rows) => enqueueReceipts({ db, queue }, rows) : undefined,
    pollMs: config.worker.bulkPollMs,
  })
  const worker = new Worker(
    RECEIPTS_QUEUE,
    async (job: Job, token?: string, signal?: AbortSignal) => {
      const started = performance.now()
      if (job.name === 'issue-batch') {
        // One line per batch run that ends it; its receipts' outcomes are in the ledger.
        try {
          const result = await batch(job, token, signal)
          logger.info(
            { batchId: (job.data as { batchId: number }).batchId, jobId: job.id, outcome: result.state, detail: result.detail, latencyMs: Math.round(performance.now() - started) },
            'batch outcome',
          )
          return result
        } catch (err) {
          const outcome = thrownOutcome(err, job, config.worker.attempts)
          if (outcome !== 'delayed') logger.warn({ batchId: (job.data as { batchId: number }).batchId, jobId: job.id, outcome, err: (err as Error).message }, 'batch outcome')
          throw err
        }
      }
      const info: ReceiptJobInfo = {}
      // One line per receipt outcome: run, receipt, provider, outcome, latency (the job's wall time).
      const line = (outcome: string, extra: Record<string, unknown> = {}) => ({
        runId: info.runId ?? null,
        receiptId: (job.data as { receiptId: number }).receiptId,
        provider: info.provider ?? null,
        outcome,
        latencyMs: Math.round(performance.now() - started),
        jobId: job.id,
        job: job.name,
        ...extra,
      })
      try {
        const result = job.name === 'cancel-receipt' ? await cancel(job, token, signal, info) : await issue(job, token, signal, info)
        logger.info(line(result.state, result.detail ? { detail: result.detail } : {}), 'receipt outcome')
        return result
      } catch (err) {
        const outcome = thrownOutcome(err, job, config.worker.attempts)
        if (outcome === 'delayed') {
          logger.debug(line('delayed'), 'receipt job delayed')
        } else {
          const fields = line(outcome, { attempt: job.attemptsMade + 1, err: (err as Error).message })
          if (outcome === 'failed') logger.warn(fields, 'receipt outcome')
          else logger.info(fields, 'receipt outcome')
        }
        throw err
      }
    },
    {
      connection: connectionOf(deps.connection),
      prefix: config.queuePrefix,
      concurrency: opts.concurrency ?? config.worker.concurrency,
      lockDuration: config.worker.lockDurationMs,
      stalledInterval: config.worker.stalledIntervalMs,
      // A stalled job is safe to hand out again (the ledger and lookups make it idempotent).
      maxStalledCount: 10,
      autorun: opts.autorun ?? true,
      telemetry: deps.telemetry,
    },
  )
  worker.on('failed', (job, err) => {
    // The processor logged the outcome; what is left is a job BullMQ itself gave up on (stalled
    // too often, lock lost): make sure the ledger says failed.
    const receiptId = (job?.data as { receiptId?: number } | undefined)?.receiptId
    if (job && receiptId && job.finishedOn) {
      void failOrphaned(db, receiptId, 'queue', err.message)
        .then((orphaned) => {
          if (orphaned) logger.warn({ jobId: job.id, receiptId, outcome: 'failed', err: err.message }, 'receipt job given up by the queue')
        })
        .catch((e) => logger.error({ err: (e as Error).message }, 'could not record orphaned job'))
    }
  })
  worker.on('error', (err) => logger.error({ err: err.message }, 'worker error'))
  return worker
}

/**
 * Lends `worker` one BullMQ slot for each provider call of this process that has been in flight longer
 * than the slow-call time (DISPATCH_SLOW_CALL_MS), at most `base` more: a job waiting on a hanging
 * provider holds its slot but no CPU, so the other merchants' jobs get the slot back. Checked every
 * 250 ms; BullMQ takes a raised concurrency at its next fetch, a lowered one as jobs end (a job is
 * never cut short). The in-flight window (throttle.ts InFlight) keeps the slow calls few, so what is
 * lent stays small; the rest of the process (Postgres pool, Redis) sees at most `base` busy jobs.
 */
export function lendSlots(worker: Pick<Worker, 'concurrency'>, base: number, calls: { slowCalls(): number }, everyMs = 250): NodeJS.Timeout {
  return setInterval(() => {
    const want = base + Math.min(base, calls.slowCalls())
    if (worker.concurrency !== want) worker.concurrency = want
  }, everyMs).unref()
}
