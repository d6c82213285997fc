/**
 * Buyer notification (docs/notifications.md): the outbox dispatcher, which puts outbox rows on the
 * notifications queue, and the queue's worker, which claims a row, decrypts the buyer's address,
 * renders the Korean message, waits for the (merchant, channel) throttle, fences and sends, and
 * records the outcome. It shares nothing with issuance but Postgres and Redis: its own queue, its own
 * BullMQ worker and limiters, so a slow SMTP server or gateway never holds a receipt back.
 *
 * Exactly once per (receipt event, channel): the outbox row is unique per event and channel and is
 * created in the ledger's transaction (migration 0440); a row is sent only by the worker that holds
 * its claim, after the send fence; SMS/Kakao carry an idempotency key per event, so an unknown
 * outcome is sent again safely; email carries a deterministic Message-ID, and SMTP's remaining
 * window is described in email.ts.
 */
import Bottleneck from 'bottleneck'
import { Worker, type Job } from 'bullmq'
import type { Redis } from 'ioredis'
import pRetry, { AbortError } from 'p-retry'
import type { AppConfig, MerchantConfig } from '../config.ts'
import { decryptPii, type DataKeys } from '../crypto/pii.ts'
import type { Db } from '../db/database.ts'
import {
  claimNotification,
  fenceNotificationSend,
  finishNotification,
  markEnqueued,
  notificationContext,
  notificationsToEnqueue,
  type ClaimedNotification,
  type NotificationFinish,
} from '../db/notifications.ts'
import type { Logger } from '../logger.ts'
import { connectionOf, NOTIFICATIONS_QUEUE, notifyJobId, type NotificationsQueue, type NotifyPayload } from '../queue/queues.ts'
import { newConnection } from '../throttle/throttle.ts'
import type { EmailSender } from './email.ts'
import type { GatewayMessage, MessageGateway } from './gateway.ts'
import { emailContent, kakaoContent, messageFacts, smsContent } from './templates.ts'

export interface NotifierDeps {
  readonly db: Db
  readonly redis: Redis
  readonly queue: NotificationsQueue
  readonly logger: Logger
  readonly workerId: string
  readonly config: Pick<AppConfig, 'notify' | 'merchants' | 'dataKeys' | 'queuePrefix' | 'worker'>
  /** Absent when SMTP_URL is unset (config refuses a merchant with email on without it). */
  readonly email: EmailSender | undefined
  readonly gateway: MessageGateway
}

/** What one job did, logged and returned as the job's value. */
export interface NotifyResult {
  readonly state: 'sent' | 'skipped' | 'failed' | 'already' | 'lost'
  readonly detail?: string
}

/** A send that may go again within this attempt (p-retry) or at the queue's next one. */
class SendAgain extends Error {
  override name = 'SendAgain'
  readonly kind: 'retryable' | 'unknown'
  readonly code: string
  constructor(kind: 'retryable' | 'unknown', code: string) {
    super(`${kind}: ${code}`)
    this.kind = kind
    this.code = code
  }
}

/** The row is held by another worker's live claim: the queue tries again after its backoff. */
export class NotificationBusyError extends Error {
  override name = 'NotificationBusyError'
}

const digitsOf = (s: string) => s.replace(/\D/g, '')

/** The email's Message-ID: the same for every attempt of one event, whoever sends it. */
export function notificationMessageId(n: Pick<ClaimedNotification, 'receiptId' | 'event' | 'merchantId'>, from: string): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? 'cash-receipts.invalid'
  return `<receipt-${n.receiptId}.${n.event}.${n.merchantId}@${domain}>`
}

/** The gateway's idempotency key: one per (receipt event, channel). */
export function notificationIdempotencyKey(n: Pick<ClaimedNotification, 'receiptId' | 'event' | 'channel' | 'merchantId'>): string {
  return `cr-${n.merchantId}-${n.receiptId}-${n.event}-${n.channel}`
}

export function createNotificationProcessor(deps: NotifierDeps) {
  const { db, logger, config } = deps
  const n = config.notify
  const merchants = new Map<string, MerchantConfig>(config.merchants.map((m) => [m.id, m]))
  const limiters = new Map<string, Bottleneck>()
  let connection: Bottleneck.IORedisConnection | undefined

  /** Per (channel, merchant), shared by every process through Redis: a pace of perSecond. */
  function limiterFor(channel: ClaimedNotification['channel'], merchantId: string): Bottleneck {
    const key = `${channel}:${merchantId}`
    let l = limiters.get(key)
    if (!l) {
      connection ??= newConnection(deps.redis)
      const perSecond = n.perSecond[channel]
      l = new Bottleneck({
        id: `${config.queuePrefix}-notify-${channel}-${merchantId}`,
        maxConcurrent: perSecond,
        minTime: Math.ceil(1000 / perSecond),
        datastore: 'ioredis',
        connection,
        clearDatastore: false,
        heartbeatInterval: 15_000,
        clientTimeout: 60_000,
      })
      l.on('error', (err: unknown) => logger.warn({ err: (err as Error).message, channel, merchantId }, 'notification throttle error'))
      limiters.set(key, l)
    }
    return l
  }

  /** Renders and sends once (fenced); throws SendAgain for p-retry, AbortError when the claim is lost. */
  async function sendOnce(row: ClaimedNotification, send: () => Promise<{ kind: string; code?: string; messageId?: string }>): Promise<NotificationFinish> {
    return limiterFor(row.channel, row.merchantId).schedule(async () => {
      if (!(await fenceNotificationSend(db, row.id, deps.workerId, n.leaseMs))) {
        throw new AbortError('claim lost')
      }
      const out = await send()
      if (out.kind === 'sent') return { state: 'sent', messageId: out.messageId ?? null }
      if (out.kind === 'permanent') {
        return { state: 'failed', errorClass: 'permanent', code: out.code ?? null }
      }
      throw new SendAgain(out.kind as 'retryable' | 'unknown', out.code ?? 'unknown')
    })
  }

  async function deliver(row: ClaimedNotification): Promise<NotificationFinish | 'lost'> {
    const merchant = merchants.get(row.merchantId)
    const settings = merchant?.notify
    if (!settings?.[row.channel]?.enabled) return { state: 'skipped', reason: 'channel_off' }
    const ctx = await notificationContext(db, row.receiptId)
    if (!ctx) return { state: 'failed', errorClass: 'missing', code: 'RECEIPT_NOT_FOUND' }
    // Decrypted here, at send time, and kept in this function only.
    const pii = ctx.piiEnc ? decryptPii(ctx.piiEnc, config.dataKeys as DataKeys, ctx.transactionId) : {}
    const facts = messageFacts(ctx, n.receiptBaseUrl)

    let send: () => Promise<{ kind: string; code?: string; messageId?: string }>
    if (row.channel === 'email') {
      const email = settings.email!
      if (!pii.buyerEmail) return { state: 'skipped', reason: 'no_email' }
      if (!deps.email) return { state: 'failed', errorClass: 'config', code: 'SMTP_URL_UNSET' }
      const sender = deps.email
      const message = {
        ...emailContent(facts),
        from: email.from,
        replyTo: email.replyTo,
        to: pii.buyerEmail,
        messageId: notificationMessageId(row, email.from),
      }
      send = () => sender.send(message)
    } else {
      const tel = pii.buyerTel ? digitsOf(pii.buyerTel) : ''
      if (!/^01\d{8,9}$/.test(tel)) {
        return { state: 'skipped', reason: pii.buyerTel ? 'not_mobile' : 'no_tel' }
      }
      let message: GatewayMessage
      if (row.channel === 'sms') {
        const sms = smsContent(facts)
        message = {
          channel: sms.type,
          to: tel,
          from: digitsOf(settings.sms!.sender),
          ...(sms.subject ? { subject: sms.subject } : {}),
          text: sms.text,
        }
      } else {
        const k = kakaoContent(facts, settings.kakao!.templateCode)
        message = {
          channel: 'kakao',
          to: tel,
          from: settings.kakao!.senderKey,
          text: k.text,
          templateCode: k.templateCode,
          variables: k.variables,
        }
      }
      const key = notificationIdempotencyKey(row)
      send = () => deps.gateway.send(message, key)
    }
    try {
      return await pRetry(() => sendOnce(row, send), {
        retries: 2,
        minTimeout: 200,
        maxTimeout: 2_000,
        shouldRetry: ({ error }) => error instanceof SendAgain,
      })
    } catch (err) {
      if (err instanceof AbortError || (err as Error).message === 'claim lost') return 'lost'
      if (err instanceof SendAgain) return { state: 'pending', errorClass: err.kind, code: err.code }
      throw err
    }
  }

  /** One job: claim, deliver, record. Throws for the queue to try again (busy row, retryable failure). */
  async function process(job: Job<NotifyPayload>): Promise<NotifyResult> {
    const id = job.data.notificationId
    const claim = await claimNotification(db, id, deps.workerId, n.leaseMs)
    if (!claim.claimed) {
      if (claim.busy) {
        logger.debug({ notificationId: id, outcome: 'busy', attempt: job.attemptsMade + 1 }, 'notification held by another worker; the queue tries again')
        throw new NotificationBusyError(`notification ${id} is held by another worker`)
      }
      return { state: 'already', detail: claim.state }
    }
    const row = claim.row
    const line = {
      notificationId: id,
      receiptId: row.receiptId,
      channel: row.channel,
      event: row.event,
      merchantId: row.merchantId,
      attempt: job.attemptsMade + 1,
    }
    let finish: NotificationFinish | 'lost'
    try {
      finish = await deliver(row)
    } catch (err) {
      // Unexpected (Postgres, a decrypt failure): hand the row back; the message names no address.
      await finishNotification(db, id, deps.workerId, {
        state: 'pending',
        errorClass: 'internal',
        code: (err as Error).name,
      }).catch(() => {})
      logger.warn({ ...line, outcome: 'error', err: (err as Error).name }, 'notification outcome')
      throw err
    }
    if (finish === 'lost') {
      logger.warn({ ...line, outcome: 'lost' }, 'notification claim taken over; left to its new owner')
      return { state: 'lost' }
    }
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
    if (finish.state === 'pending' && lastAttempt) {
      finish = { state: 'failed', errorClass: finish.errorClass, code: finish.code }
    }
    await finishNotification(db, id, deps.workerId, finish)
    if (finish.state === 'pending') {
      logger.info({ ...line, outcome: 'retry', code: finish.code }, 'notification outcome')
      throw new Error(`notification ${id}: ${finish.errorClass} ${finish.code ?? ''}; the queue tries again`)
    }
    const detail = finish.state === 'skipped' ? finish.reason : finish.state === 'failed' ? `${finish.errorClass}:${finish.code ?? ''}` : undefined
    const fields = { ...line, outcome: finish.state, ...(detail ? { detail } : {}) }
    if (finish.state === 'failed') logger.warn(fields, 'notification outcome')
    else logger.info(fields, 'notification outcome')
    return { state: finish.state, ...(detail ? { detail } : {}) }
  }

  return {
    process,
    async close() {
      for (const l of limiters.values()) await Promise.resolve(l.disconnect(false)).catch(() => {})
      limiters.clear()
      await Promise.resolve(connection?.disconnect(false)).catch(() => {})
    },
  }
}

/** Puts outbox rows not on the queue yet (or lost from it) on the queue; returns how many were offered. */
export async function dispatchOutbox(deps: Pick<NotifierDeps, 'db' | 'queue'>, staleMs: number, limit = 500): Promise<number> {
  const rows = await notificationsToEnqueue(deps.db, staleMs, limit)
  if (rows.length === 0) return 0
  for (const r of rows) {
    const jobId = notifyJobId(r.id, r.redriveCount)
    // A job that finished while its row is still pending (given up by the queue, Redis restored)
    // would make the add a no-op for ever: it is removed so the row gets a live job again.
    const state = await deps.queue.getJobState(jobId)
    if (state === 'completed' || state === 'failed') await deps.queue.remove(jobId).catch(() => 0)
  }
  await deps.queue.addBulk(
    rows.map((r) => ({
      name: 'notify' as const,
      data: { notificationId: r.id },
      opts: { jobId: notifyJobId(r.id, r.redriveCount) },
    })),
  )
  await markEnqueued(
    deps.db,
    rows.map((r) => r.id),
  )
  return rows.length
}

export interface RunningNotifier {
  readonly worker: Worker<NotifyPayload, NotifyResult, 'notify'>
  close(): Promise<void>
}

/** The notifications queue's worker and the outbox dispatcher loop; closed together. */
export function startNotifier(deps: NotifierDeps & { readonly connection: Redis }): RunningNotifier {
  const { logger, config } = deps
  const processor = createNotificationProcessor(deps)
  const worker = new Worker<NotifyPayload, NotifyResult, 'notify'>(NOTIFICATIONS_QUEUE, (job) => processor.process(job), {
    connection: connectionOf(deps.connection),
    prefix: config.queuePrefix,
    concurrency: config.notify.concurrency,
    lockDuration: config.worker.lockDurationMs,
    stalledInterval: config.worker.stalledIntervalMs,
    // A stalled job is safe to hand out again: the row's claim decides who sends.
    maxStalledCount: 10,
  })
  worker.on('error', (err) => logger.error({ err: err.message }, 'notification worker error'))
  // A row offered more than this long ago and still pending is offered again (lost add, lost Redis).
  const staleMs = Math.max(30_000, 2 * config.notify.leaseMs, 2 * config.notify.backoffMs)
  let stopped = false
  let running: Promise<unknown> = Promise.resolve()
  const tick = () => {
    running = dispatchOutbox(deps, staleMs).catch((err) => logger.warn({ err: (err as Error).message }, 'notification outbox dispatch failed'))
  }
  tick()
  const timer = setInterval(() => {
    if (!stopped) tick()
  }, config.notify.pollMs)
  timer.unref()
  return {
    worker,
    async close() {
      stopped = true
      clearInterval(timer)
      await running
      await worker.close()
      await processor.close()
      await deps.connection.quit().catch(() => deps.connection.disconnect())
    },
  }
}
