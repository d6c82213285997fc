/**
 * Queue names, the typed job-name → payload map shared by producers and workers, and Redis
 * connection factories. Job data holds ids and dates only — never personal data.
 */
import { Queue, type ConnectionOptions, type DefaultJobOptions, type Telemetry } from 'bullmq'
import { Redis, type RedisOptions } from 'ioredis'
import type { ProviderName } from '../domain/index.ts'

export const RECEIPTS_QUEUE = 'receipts'
export const CONTROL_QUEUE = 'control'
/** Buyer notifications (docs/notifications.md): their own queue, so they never wait behind or delay issuance. */
export const NOTIFICATIONS_QUEUE = 'notifications'

/** A notification job: the outbox row's id only; the sender reads and decrypts everything else at send time. */
export interface NotifyPayload {
  readonly notificationId: number
}
export type NotificationsQueue = Queue<NotifyPayload, unknown, 'notify'>

/** One job id per outbox row and re-drive generation: a row is on the queue once however often it is offered. */
export function notifyJobId(notificationId: number, redriveCount: number): string {
  return `notify-${notificationId}${redriveCount > 0 ? `-r${redriveCount}` : ''}`
}

export function createNotificationsQueue(redis: Redis, prefix: string, attempts: number, backoffMs: number, telemetry?: Telemetry): NotificationsQueue {
  return new Queue<NotifyPayload, unknown, 'notify'>(NOTIFICATIONS_QUEUE, {
    connection: connectionOf(redis),
    prefix,
    telemetry,
    defaultJobOptions: {
      attempts,
      backoff: { type: 'exponential', delay: backoffMs, jitter: 0.5 },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 14 * 24 * 3600, count: 100_000 },
    },
  })
}

export interface JobPayloads {
  /** Issue the receipt row `receiptId` (kind issue). */
  'issue-receipt': {
    readonly receiptId: number
    readonly businessDate: string
    /**
     * The receipt's credential, so the worker can put the job off before claiming the row when the
     * credential surely cannot take a call (docs/dispatch.md). Absent in jobs enqueued before it was
     * added, and in the re-issue after a cancel: the check is then made after the claim only.
     */
    readonly merchantId?: string
    readonly provider?: ProviderName
  }
  /**
   * Issue the members of one bulk batch (provider_batches `batchId`) in one provider request, then
   * poll its result: the job delays itself between polls (docs/exactly-once.md, Bulk issuance).
   */
  'issue-batch': { readonly batchId: number; readonly businessDate: string }
  /** Cancel: `receiptId` is the kind=cancel row. */
  'cancel-receipt': { readonly receiptId: number }
  /** Settlement run for a KST business date (the scheduler computes "yesterday" when absent). */
  'settle-day': { readonly businessDate?: string; readonly trigger: 'schedule' | 'manual' }
  /** D+1 reconcile for a business date. */
  'reconcile-day': { readonly businessDate?: string }
}
export type JobName = keyof JobPayloads
export type ReceiptsQueue = Queue<JobPayloads[JobName], unknown, string>

/**
 * Custom BullMQ ids: no ':' and never all digits. One id per job generation of a receipt: a re-drive
 * appends -r<n> and a re-enqueue after the previous job finished appends -q<n> (the receipt's
 * redrive_count and requeue_count), so a fresh job is created rather than a silent no-op on an id
 * BullMQ still holds.
 */
export function issueJobId(receiptId: number, redriveCount: number, requeueCount = 0): string {
  return `issue-${receiptId}${generation(redriveCount, requeueCount)}`
}
export function cancelJobId(receiptId: number, redriveCount: number, requeueCount = 0): string {
  return `cancel-${receiptId}${generation(redriveCount, requeueCount)}`
}
/** A bulk batch's job: `batch-<id>`, `-q<n>` after the recovery pass put it back under a fresh id. */
export function batchJobId(batchId: number, requeueCount = 0): string {
  return `batch-${batchId}${generation(0, requeueCount)}`
}
function generation(redriveCount: number, requeueCount: number): string {
  return `${redriveCount > 0 ? `-r${redriveCount}` : ''}${requeueCount > 0 ? `-q${requeueCount}` : ''}`
}

/** The job of a receipt row's current generation, by its kind, with its queue priority when given. */
export function receiptJob(
  r: {
    readonly id: number
    readonly kind: 'issue' | 'cancel'
    readonly trade_date: string
    readonly redrive_count: number
    readonly requeue_count: number
    readonly merchant_id?: string
    readonly provider?: string
  },
  priority?: number,
) {
  const p = priority === undefined ? {} : { priority }
  const credential = r.merchant_id && r.provider ? { merchantId: r.merchant_id, provider: r.provider as ProviderName } : {}
  return r.kind === 'issue'
    ? {
        name: 'issue-receipt' as const,
        data: { receiptId: r.id, businessDate: r.trade_date, ...credential },
        opts: { jobId: issueJobId(r.id, r.redrive_count, r.requeue_count), ...p },
      }
    : { name: 'cancel-receipt' as const, data: { receiptId: r.id }, opts: { jobId: cancelJobId(r.id, r.redrive_count, r.requeue_count), ...p } }
}

/**
 * BullMQ's lowest priority (its largest number). BullMQ serves its plain wait list (no priority) first,
 * then prioritized jobs lowest number first, and among equal numbers in the order they were added.
 */
export const MAX_PRIORITY = 2_097_152

/**
 * The priority bands (docs/dispatch.md, Priorities), served in this order:
 * - no priority (the wait list): single urgent jobs — a cancellation an operator or a refund import
 *   asked for, the re-issue that follows an accepted full cancel;
 * - `operator`, 1 … OPERATOR_BAND: re-drive and the recovery pass, repair work that an operator is
 *   waiting for or that has already waited; ranked by credential within one re-drive or pass;
 * - `settle`, OPERATOR_BAND + 1 … MAX_PRIORITY: the night's settlement, ranked by credential within
 *   one run. A re-drive enqueued behind a whole night's backlog is therefore served next.
 * A deferred job (docs/dispatch.md, section 1) comes back with the priority it had, so in its band.
 */
export const OPERATOR_BAND = 1_048_576
export type PriorityBand = 'operator' | 'settle'

/**
 * Fair order across credentials (docs/dispatch.md, Fairness): numbers each job by its place among the
 * jobs of the same (merchant, provider) seen so far by this ranker, inside its band. Used as BullMQ
 * priority, the queue hands out every credential's first job, then every credential's second, …,
 * whatever order the rows were enqueued in; a credential's later jobs never hold back another
 * credential's early ones. A credential's ranks beyond its band's width share the band's last number.
 */
export function createRanker(band: PriorityBand = 'settle'): (merchantId: string, provider: string) => number {
  const [first, last] = band === 'operator' ? [1, OPERATOR_BAND] : [OPERATOR_BAND + 1, MAX_PRIORITY]
  // By merchant, then provider: no key string to build and hash for every job settle enqueues.
  const seen = new Map<string, Map<string, number>>()
  return (merchantId, provider) => {
    let byProvider = seen.get(merchantId)
    if (!byProvider) seen.set(merchantId, (byProvider = new Map()))
    const n = (byProvider.get(provider) ?? 0) + 1
    byProvider.set(provider, n)
    return Math.min(first + n - 1, last)
  }
}

/** BullMQ states of a job that will still run (or is running): its receipt is in hand. */
export const LIVE_JOB_STATES: ReadonlySet<string> = new Set(['waiting', 'delayed', 'active', 'prioritized', 'waiting-children'])

/**
 * The state of each job id: a BullMQ state, or 'unknown' when Redis holds no such job (never added,
 * removed by retention, or Redis lost its data).
 */
export async function jobStates(queue: ReceiptsQueue, jobIds: readonly string[]): Promise<string[]> {
  return Promise.all(jobIds.map((id) => queue.getJobState(id)))
}

/**
 * The attempts every receipt job carries: a ceiling, not the setting. The worker that runs a job
 * decides its last attempt from its own WORKER_ATTEMPTS (≤ this ceiling; the outcome policy's
 * attemptOf), so changing it takes effect where the work is done, whoever enqueued.
 */
export const MAX_JOB_ATTEMPTS = 100

export function receiptJobOptions(attempts: number, backoffMs: number): DefaultJobOptions {
  return {
    attempts,
    backoff: { type: 'exponential', delay: backoffMs, jitter: 0.5 },
    // Postgres is the ledger; Redis keeps a bounded tail for inspection (Bull Board).
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 14 * 24 * 3600, count: 100_000 },
  }
}

export function createRedis(url: string, opts: { worker?: boolean; name?: string } = {}): Redis {
  const options: RedisOptions = {
    // Workers must wait out Redis restarts instead of failing commands (BullMQ requirement).
    maxRetriesPerRequest: opts.worker ? null : 3,
    enableReadyCheck: true,
    connectionName: opts.name,
    retryStrategy: (times) => Math.min(200 * 2 ** Math.min(times, 6), 5_000),
    lazyConnect: false,
  }
  return new Redis(url, options)
}

export function connectionOf(redis: Redis): ConnectionOptions {
  return redis as unknown as ConnectionOptions
}

export function createReceiptsQueue(redis: Redis, prefix: string, backoffMs: number, telemetry?: Telemetry) {
  return new Queue<JobPayloads[JobName], unknown, string>(RECEIPTS_QUEUE, {
    connection: connectionOf(redis),
    prefix,
    telemetry,
    defaultJobOptions: receiptJobOptions(MAX_JOB_ATTEMPTS, backoffMs),
  })
}

export function createControlQueue(redis: Redis, prefix: string, telemetry?: Telemetry) {
  return new Queue<JobPayloads[JobName], unknown, string>(CONTROL_QUEUE, {
    connection: connectionOf(redis),
    prefix,
    telemetry,
    defaultJobOptions: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 60_000 },
      removeOnComplete: { age: 30 * 24 * 3600, count: 1_000 },
      removeOnFail: { age: 90 * 24 * 3600 },
    },
  })
}

export class RedisUnreachableError extends Error {
  override name = 'RedisUnreachableError'
}

/** The URL without its password, for messages. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString().replace(/\/$/, '')
  } catch {
    return '(unparseable URL)'
  }
}

/**
 * One PING on a connection of its own that neither retries nor queues commands: a short-lived
 * command (settle, redrive, cancel, recover) fails fast naming REDIS_URL instead of waiting for a
 * Redis that is not there, as the worker connections (maxRetriesPerRequest: null) would.
 */
export async function pingRedis(url: string, timeoutMs = 3_000): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs, enableOfflineQueue: false })
  let last: Error | undefined
  r.on('error', (err: Error) => (last = err))
  try {
    await r.connect()
    await r.ping()
  } catch (err) {
    const reason = (last ?? (err as Error)).message
    throw new RedisUnreachableError(`Redis at ${redactedUrl(url)} does not answer (REDIS_URL): ${reason}`)
  } finally {
    r.disconnect()
  }
}
