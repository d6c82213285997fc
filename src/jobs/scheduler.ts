/**
 * `cash-receipts scheduler`: BullMQ job schedulers (upserted by id, safe on every deploy) for the
 * nightly settlement (default 00:30 Asia/Seoul, for yesterday) and the D+1 reconcile, plus the
 * worker that runs them. The business date is computed when the job runs and travels in the result.
 */
import { Worker, type Job, type Telemetry } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Logger } from '../logger.ts'
import { kstToday, kstYesterday, addDays } from '../domain/index.ts'
import { CONTROL_QUEUE, connectionOf, type JobPayloads, type ReceiptsQueue } from '../queue/queues.ts'
import type { SettleOptions, SettleSummary } from './settle.ts'
import type { ReconcileResult } from './reconcile.ts'

export interface SchedulerDeps {
  readonly controlQueue: Pick<ReceiptsQueue, 'upsertJobScheduler'>
  /** The scheduler worker's own Redis connection (BullMQ blocks on it). */
  readonly connection: Redis
  readonly queuePrefix: string
  /** Six-field crons, in Asia/Seoul. */
  readonly cron: { readonly settle: string; readonly reconcile: string }
  readonly logger: Logger
  readonly telemetry?: Telemetry
  settle(opts: SettleOptions): Promise<SettleSummary>
  reconcile(businessDate: string, todayKst: string): Promise<ReconcileResult>
}

export interface RunningScheduler {
  close(): Promise<void>
}

export async function startScheduler(deps: SchedulerDeps): Promise<RunningScheduler> {
  const { controlQueue: queue, logger } = deps
  await queue.upsertJobScheduler('nightly-settlement', { pattern: deps.cron.settle, tz: 'Asia/Seoul' }, { name: 'settle-day', data: { trigger: 'schedule' } })
  await queue.upsertJobScheduler('daily-reconcile', { pattern: deps.cron.reconcile, tz: 'Asia/Seoul' }, { name: 'reconcile-day', data: {} })
  const worker = new Worker(
    CONTROL_QUEUE,
    async (job: Job) => {
      const now = Date.now()
      if (job.name === 'settle-day') {
        const data = job.data as JobPayloads['settle-day']
        return deps.settle({ businessDate: data.businessDate ?? kstYesterday(now), trigger: data.trigger })
      }
      if (job.name === 'reconcile-day') {
        const data = job.data as JobPayloads['reconcile-day']
        // D+1: reconcile the day before yesterday's settlement date, once the provider has had a day.
        return deps.reconcile(data.businessDate ?? addDays(kstToday(now), -2), kstToday(now))
      }
      throw new Error(`unknown control job ${job.name}`)
    },
    { connection: connectionOf(deps.connection), prefix: deps.queuePrefix, concurrency: 1, lockDuration: 300_000, telemetry: deps.telemetry },
  )
  worker.on('failed', (job, err) => logger.error({ job: job?.name, err: err.message }, 'control job failed'))
  logger.info({ settle: deps.cron.settle, reconcile: deps.cron.reconcile, tz: 'Asia/Seoul' }, 'scheduler started')
  return { close: () => worker.close() }
}
