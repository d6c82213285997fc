/**
 * Queue names, the typed job-name → payload map shared by producers and workers, and Redis
 * connection factories. Job data holds ids and dates only — never personal data.
 */
import { Queue, type ConnectionOptions, type DefaultJobOptions, type Telemetry } from 'bullmq'
import { Redis, type RedisOptions } from 'ioredis'

export const RECEIPTS_QUEUE = 'receipts'
export const CONTROL_QUEUE = 'control'

export interface JobPayloads {
  /** Issue the receipt row `receiptId` (kind issue). */
  'issue-receipt': { readonly receiptId: number; readonly businessDate: string }
  /** Cancel: `receiptId` is the kind=cancel row. */
  'cancel-receipt': { readonly receiptId: number }
  /** Settlement run for a KST business date (the scheduler computes "yesterday" when absent). */
  'settle-day': { readonly businessDate?: string; readonly trigger: 'schedule' | 'manual' }
  /** D+1 reconcile for a business date. */
  'reconcile-day': { readonly businessDate?: string }
}
export type JobName = keyof JobPayloads
export type ReceiptsQueue = Queue<JobPayloads[JobName], unknown, string>

/** Custom BullMQ ids: no ':' and never all digits. Re-drive appends -r<n> so a fresh job is created. */
export function issueJobId(receiptId: number, redriveCount: number): string {
  return redriveCount > 0 ? `issue-${receiptId}-r${redriveCount}` : `issue-${receiptId}`
}
export function cancelJobId(receiptId: number, redriveCount: number): string {
  return redriveCount > 0 ? `cancel-${receiptId}-r${redriveCount}` : `cancel-${receiptId}`
}

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

export function createReceiptsQueue(redis: Redis, prefix: string, attempts: number, backoffMs: number, telemetry?: Telemetry) {
  return new Queue<JobPayloads[JobName], unknown, string>(RECEIPTS_QUEUE, {
    connection: connectionOf(redis),
    prefix,
    telemetry,
    defaultJobOptions: receiptJobOptions(attempts, backoffMs),
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
