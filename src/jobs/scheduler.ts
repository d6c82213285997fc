/**
 * `cash-receipts scheduler`: BullMQ job schedulers (upserted by id, safe on every deploy) for the
 * nightly settlement (default 00:30 Asia/Seoul, for yesterday) and the D+1 reconcile, plus the
 * worker that runs them. The business date is computed when the job runs and travels in the result.
 */
import { Worker, type Job } from 'bullmq'
import type { App } from '../app.ts'
import { kstToday, kstYesterday, addDays } from '../domain/index.ts'
import { CONTROL_QUEUE, connectionOf, type JobPayloads } from '../queue/queues.ts'
import { settleDay } from './settle.ts'
import { reconcileDay } from './reconcile.ts'

export async function runScheduler(app: App): Promise<void> {
  // Signals are taken from the first moment: a stop during start-up is still a clean stop.
  let stop: () => void = () => {}
  const stopped = new Promise<void>((resolve) => (stop = resolve))
  process.once('SIGTERM', () => stop())
  process.once('SIGINT', () => stop())
  await app.prepareDatabase()
  const queue = app.controlQueue()
  await queue.upsertJobScheduler(
    'nightly-settlement',
    { pattern: app.config.settle.cron, tz: 'Asia/Seoul' },
    { name: 'settle-day', data: { trigger: 'schedule' } },
  )
  await queue.upsertJobScheduler(
    'daily-reconcile',
    { pattern: app.config.settle.reconcileCron, tz: 'Asia/Seoul' },
    { name: 'reconcile-day', data: {} },
  )
  const worker = new Worker(
    CONTROL_QUEUE,
    async (job: Job) => {
      const now = Date.now()
      if (job.name === 'settle-day') {
        const data = job.data as JobPayloads['settle-day']
        return settleDay(
          { db: app.db(), queue: app.receiptsQueue(), logger: app.logger, chunkSize: app.config.settle.chunkSize, maxWaiting: app.config.settle.maxWaiting },
          { businessDate: data.businessDate ?? kstYesterday(now), trigger: data.trigger },
        )
      }
      if (job.name === 'reconcile-day') {
        const data = job.data as JobPayloads['reconcile-day']
        // D+1: reconcile the day before yesterday's settlement date, once the provider has had a day.
        return reconcileDay({ db: app.db(), providers: app.providers(), logger: app.logger }, data.businessDate ?? addDays(kstToday(now), -2), kstToday(now))
      }
      throw new Error(`unknown control job ${job.name}`)
    },
    { connection: connectionOf(app.redis().duplicate()), prefix: app.config.queuePrefix, concurrency: 1, lockDuration: 300_000, telemetry: app.telemetry },
  )
  worker.on('failed', (job, err) => app.logger.error({ job: job?.name, err: err.message }, 'control job failed'))
  app.logger.info({ settle: app.config.settle.cron, reconcile: app.config.settle.reconcileCron, tz: 'Asia/Seoul' }, 'scheduler started')
  await stopped
  await worker.close()
}
