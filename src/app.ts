/**
 * The composition root: the only place that wires config → logger → Postgres → Redis → providers →
 * throttles → jobs, and the use cases built from them. Commands ask for what they need; nothing
 * connects at import time, and each connection is made once, on first use, and closed by close().
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { Telemetry, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { providerInFlightCaps, type AppConfig } from './config.ts'
import { createDb, ensureDatabase, migrateToLatest, type DbHandle } from './db/database.ts'
import { retryWhileUnavailable, waitForDatabase, watchDatabase, type DatabaseWatch } from './db/availability.ts'
import { checkDeployment, type DeploymentCheck } from './queue/deployment-guard.ts'
import { syncMerchants } from './db/merchants.ts'
import { recentAudit, recordAudit, type AuditEntry, type AuditRow } from './db/audit.ts'
import { createLogger, type Logger } from './logger.ts'
import { kstToday } from './domain/index.ts'
import { ThrottleRegistry } from './throttle/throttle.ts'
import { registerLimiter } from './throttle/limiter-stats.ts'
import { createControlQueue, createNotificationsQueue, createReceiptsQueue, createRedis, pingRedis, type NotificationsQueue } from './queue/queues.ts'
import { createProviderSource, type ProviderSource } from './jobs/provider-source.ts'
import { lendSlots, startReceiptWorker } from './jobs/receipt-worker.ts'
import { startScheduler, type RunningScheduler } from './jobs/scheduler.ts'
import { settleDay, type SettleDeps, type SettleOptions, type SettleSummary } from './jobs/settle.ts'
import { redrive, type RedriveFilter, type RedriveResult } from './jobs/redrive.ts'
import { requestCancellation, type CancelRequested, type CancelRequestInput } from './jobs/cancel-receipt.ts'
import { cancelChangedTransactions, type CancelChangedResult } from './jobs/cancel-changed.ts'
import { reconcileDay, type ReconcileResult } from './jobs/reconcile.ts'
import { rekey, type RekeySummary } from './jobs/rekey.ts'
import { recoverOrphans, startRecoveryLoop, type RecoverOptions, type RecoverResult } from './jobs/recover.ts'
import { importTransactions, type ImportOptions, type ImportRejects, type ImportResult } from './import/import-transactions.ts'
import { buildReport, type RunReport } from './report/report.ts'
import { buildReportDetails, type ReportDetails } from './report/report-details.ts'
import { findReceipts, type ReceiptLookup } from './report/receipt-history.ts'
import { buildPeriodTotals, type PeriodTotals } from './report/period-totals.ts'
import type { RunningDashboard } from './http/server.ts'
import { countNotifications, redriveFailedNotifications, type NotificationCounts, type NotificationFilter } from './db/notifications.ts'
import { startNotifier, type RunningNotifier } from './notify/notifier.ts'
import { createEmailSender } from './notify/email.ts'
import { createHttpGateway } from './notify/gateway.ts'

/**
 * Connections of a worker process's ledger batcher: it has at most three statements in flight per
 * batch window (claim, fence, outcome), so a few connections carry any concurrency.
 */
const LEDGER_POOL_MAX = 8

export type RunSelector = { readonly runId?: number; readonly date?: string }

export interface App {
  readonly config: AppConfig
  readonly logger: Logger
  /** bullmq-otel telemetry for every Queue and Worker, when tracing is on (see telemetry/tracing.ts). */
  readonly telemetry: Telemetry | undefined
  db(): DbHandle['db']
  /** The connections of the worker's ledger batcher (claims, fences, outcomes): app.db() when prepared statements are off. */
  ledgerDb(): DbHandle['db']
  redis(): Redis
  receiptsQueue(): ReturnType<typeof createReceiptsQueue>
  controlQueue(): ReturnType<typeof createControlQueue>
  /** Buyer notifications' own queue (docs/notifications.md). */
  notificationsQueue(): NotificationsQueue
  providers(): ProviderSource
  /** Creates the database if missing, runs migrations, and syncs configured merchants. */
  prepareDatabase(): Promise<{ created: boolean; migrations: string[] }>
  /**
   * The startup guard: refuses (DeploymentMismatchError) when the database and the Redis prefix
   * belong to different deployments. Passed once per app; everything that enqueues or takes jobs
   * awaits it. `adopt` makes Redis take the database's id (`migrate --adopt-redis`).
   */
  checkDeployment(opts?: { readonly adopt?: boolean }): Promise<DeploymentCheck>
  /** Rejects at once (RedisUnreachableError naming REDIS_URL) when Redis does not answer a PING; for short-lived commands. */
  requireRedis(): Promise<void>
  /** Rejects when Postgres stays unreachable longer than DB_UNREACHABLE_EXIT_MS; for long-running commands. */
  databaseLost(): Promise<never>

  /** Imports a CSV or JSON Lines file of completed transactions. */
  importFile(file: string, opts: ImportOptions): Promise<ImportResult & ImportRejects>
  /** Creates the receipts of a business date (plus carry-overs) and enqueues their issue jobs. */
  settle(opts: SettleOptions): Promise<SettleSummary>
  /** Receipts per bulk submission for a merchant's provider (0: one by one), as settlement groups them. */
  bulkSize(merchantId: string, provider: string): number
  /** Puts failed receipts back on the queue under fresh job ids. */
  redrive(filter: RedriveFilter, opts?: { readonly dryRun?: boolean }): Promise<RedriveResult>
  /** Creates and enqueues the cancellation of a transaction's issued receipt. */
  cancel(input: CancelRequestInput): Promise<CancelRequested>
  /** Cancels what re-imported transactions no longer pay for, where their receipt is issued. */
  cancelChanged(transactionIds: readonly string[]): Promise<CancelChangedResult[]>
  /** Compares the ledger with the providers for a business date, repairing and flagging. */
  reconcile(businessDate: string, todayKst?: string): Promise<ReconcileResult>
  /** Puts receipts that need work but have no live job back on the queue (one pass at a time across processes). */
  recover(opts?: RecoverOptions): Promise<RecoverResult>
  /** Re-encrypts personal data under the active data key. */
  rekey(opts?: { readonly batchSize?: number; readonly onProgress?: (done: number, total: number) => void }): Promise<RekeySummary>
  /** Records an operator action (re-drive, cancel, reconcile, import) in the audit log. */
  audit(entry: AuditEntry): Promise<void>
  recentAudit(limit?: number): Promise<AuditRow[]>
  report(sel: RunSelector, todayKst?: string): Promise<RunReport>
  reportDetails(sel: RunSelector, todayKst: string): Promise<ReportDetails>
  /** Transactions a transaction id, order id or approval number names, with their receipts and history. */
  findReceipts(query: string): Promise<ReceiptLookup>
  /** Counts and amounts per merchant, purpose and month of a period, issued minus cancelled. */
  periodTotals(sel: { readonly from: string; readonly to: string; readonly merchantId?: string }): Promise<PeriodTotals>
  merchantExists(id: string): Promise<boolean>
  /** Starts a receipts worker (issue and cancel jobs) and its periodic recovery pass; closed by close(). */
  startWorker(opts?: { concurrency?: number }): Worker
  /**
   * The buyer-notification worker and outbox dispatcher (SMTP and the SMS/Kakao gateway from config);
   * closed by close(). startWorker starts it when any merchant enables a channel.
   */
  startNotifier(): RunningNotifier
  /** Outbox counts per state, overall and per channel. */
  notificationCounts(): Promise<{ total: NotificationCounts; byChannel: Record<string, NotificationCounts> }>
  /** Failed notifications back to pending; the dispatcher puts them on the queue again. */
  redriveNotifications(filter: NotificationFilter, opts?: { readonly dryRun?: boolean }): Promise<{ channel: string; count: number }[]>
  /** Upserts the nightly settlement and reconcile schedules, starts their worker and the periodic recovery pass; closed by close(). */
  startScheduler(): Promise<RunningScheduler>
  /**
   * The dashboard, /metrics and health endpoints on this app's connections; `serve` overrides the
   * configured port and host. The caller closes it. Loaded on demand: other commands never load express.
   */
  startDashboard(serve?: Partial<AppConfig['serve']>): Promise<RunningDashboard>
  close(): Promise<void>
}

export interface AppOverrides {
  readonly logger?: Logger
  readonly fetch?: typeof globalThis.fetch
  readonly telemetry?: Telemetry
}

/** Once per process, however many apps it builds. */
let warnedDevelopmentKey = false

export function createApp(config: AppConfig, overrides: AppOverrides = {}): App {
  const logger = overrides.logger ?? createLogger(config.log)
  if (config.dataKeys.builtIn && config.nodeEnv === 'development' && !warnedDevelopmentKey) {
    warnedDevelopmentKey = true
    logger.warn(
      { variable: 'DATA_KEYS' },
      '!!! DATA_KEYS is not set: personal data is encrypted with the BUILT-IN DEVELOPMENT KEY, which is public. Never use this database for real data; set DATA_KEYS (production refuses to start without it) !!!',
    )
  }
  const closers: (() => Promise<unknown>)[] = []
  let dbHandle: DbHandle | undefined
  let ledgerHandle: DbHandle | undefined
  let redis: Redis | undefined
  let receiptsQueue: ReturnType<typeof createReceiptsQueue> | undefined
  let controlQueue: ReturnType<typeof createControlQueue> | undefined
  let notificationsQueue: NotificationsQueue | undefined
  let notifier: RunningNotifier | undefined
  let providerSource: ProviderSource | undefined
  let throttles: ThrottleRegistry | undefined
  /** Worker slots this process runs (the sum of its workers' effective concurrency); 0 before any starts. */
  let slots = 0
  /** Lends the first worker one slot per call stuck at a slow provider (lendSlots); one per process. */
  let lender: NodeJS.Timeout | undefined
  const slotsOrDefault = () => slots || config.worker.concurrency
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  const telemetry = overrides.telemetry
  let deploymentChecked: Promise<DeploymentCheck> | undefined
  let dbWatch: DatabaseWatch | undefined

  const bulkSizes = new Map<string, number>()
  // Built once; every connection in it is still opened on first use.
  const settleDeps: SettleDeps = {
    get db() {
      return app.db()
    },
    get queue() {
      return app.receiptsQueue()
    },
    logger,
    chunkSize: config.settle.chunkSize,
    maxWaiting: config.settle.maxWaiting,
    bulkSize: (merchantId, provider) => app.bulkSize(merchantId, provider),
  }
  /** Receipts per bulk submission: the merchant's configuration asks for bulk (`bulk: true`), the adapter says how many. */
  const bulkSizeOf = (merchantId: string, provider: string): number => {
    const key = `${merchantId}/${provider}`
    let size = bulkSizes.get(key)
    if (size === undefined) {
      const creds = (config.merchants.find((m) => m.id === merchantId)?.providers as Record<string, { bulk?: boolean } | undefined> | undefined)?.[provider]
      size = creds?.bulk === true ? (app.providers().get(merchantId, provider as Parameters<ProviderSource['get']>[1]).provider.bulk?.maxItems ?? 0) : 0
      bulkSizes.set(key, size)
    }
    return size
  }
  const cancelDeps = {
    get db() {
      return app.db()
    },
    get queue() {
      return app.receiptsQueue()
    },
    get providers() {
      return app.providers()
    },
  }

  const app: App = {
    config,
    logger,
    telemetry,
    db() {
      if (!dbHandle) {
        dbHandle = createDb(config.databaseUrl, {
          max: config.dbPoolMax,
          preparedStatements: config.dbPreparedStatements,
          onConnectionError: (err) => logger.warn({ err: err.message, code: (err as { code?: string }).code }, 'postgres connection lost; the pool replaces it'),
        })
        const h = dbHandle
        closers.push(() => h.close())
      }
      return dbHandle.db
    },
    ledgerDb() {
      // The worker's ledger batcher runs only its three prepared batch statements, so its own pool can
      // keep one generic plan per statement and connection (DbOptions.genericPlans); the recovery
      // pass and every other query stay on app.db(), planned for their values.
      if (!config.dbPreparedStatements || !config.dbLedgerGenericPlans) return app.db()
      if (!ledgerHandle) {
        ledgerHandle = createDb(config.databaseUrl, {
          max: Math.min(config.dbPoolMax, LEDGER_POOL_MAX),
          genericPlans: true,
          onConnectionError: (err) => logger.warn({ err: err.message, code: (err as { code?: string }).code }, 'postgres connection lost; the pool replaces it'),
        })
        const h = ledgerHandle
        closers.push(() => h.close())
      }
      return ledgerHandle.db
    },
    redis() {
      if (!redis) {
        redis = createRedis(config.redisUrl, { worker: true, name: 'cash-receipts' })
        redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'))
        const r = redis
        closers.push(() => r.quit().catch(() => r.disconnect()))
      }
      return redis
    },
    receiptsQueue() {
      if (!receiptsQueue) {
        receiptsQueue = createReceiptsQueue(app.redis(), config.queuePrefix, config.worker.backoffMs, telemetry)
        const q = receiptsQueue
        closers.unshift(() => q.close())
      }
      return receiptsQueue
    },
    controlQueue() {
      if (!controlQueue) {
        controlQueue = createControlQueue(app.redis(), config.queuePrefix, telemetry)
        const q = controlQueue
        closers.unshift(() => q.close())
      }
      return controlQueue
    },
    notificationsQueue() {
      if (!notificationsQueue) {
        notificationsQueue = createNotificationsQueue(app.redis(), config.queuePrefix, config.notify.attempts, config.notify.backoffMs, telemetry)
        const q = notificationsQueue
        closers.unshift(() => q.close())
      }
      return notificationsQueue
    },
    providers() {
      if (!providerSource) {
        const t = (throttles = new ThrottleRegistry({
          redis: app.redis(),
          prefix: config.queuePrefix,
          logger,
          highWater: Math.max(8, slotsOrDefault()),
          dispatch: { ...config.dispatch, providerMaxInFlight: providerInFlightCaps(config.dispatch, slotsOrDefault()) },
        }))
        closers.unshift(() => t.close())
        providerSource = createProviderSource({
          config,
          db: app.db(),
          throttles: t,
          logger,
          fetch: overrides.fetch,
          onLimiter: (limiter, provider) =>
            registerLimiter(app.redis(), config.queuePrefix, limiter, provider).catch((err) =>
              logger.warn({ err: (err as Error).message, limiter }, 'could not register limiter for /metrics'),
            ),
        })
      }
      return providerSource
    },
    async prepareDatabase() {
      await waitForDatabase(config.databaseUrl, config.dbUnreachableExitMs)
      return retryWhileUnavailable(config.databaseUrl, config.dbUnreachableExitMs, async () => {
        const created = await ensureDatabase(config.databaseUrl)
        const result = await migrateToLatest(app.db())
        if (result.error) throw result.error instanceof Error ? result.error : new Error(String(result.error))
        await syncMerchants(app.db(), config.merchants, config.dataKeys)
        return { created, migrations: (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) }
      })
    },
    checkDeployment(opts = {}) {
      const target = { databaseUrl: config.databaseUrl, redisUrl: config.redisUrl, queuePrefix: config.queuePrefix }
      if (opts.adopt) return checkDeployment(app.db(), app.redis(), target, opts)
      if (!deploymentChecked) {
        deploymentChecked = retryWhileUnavailable(config.databaseUrl, config.dbUnreachableExitMs, () => checkDeployment(app.db(), app.redis(), target))
        // A failed check (mismatch, or Postgres/Redis down) is asked again next time.
        deploymentChecked.catch(() => (deploymentChecked = undefined))
      }
      return deploymentChecked
    },
    requireRedis: () => pingRedis(config.redisUrl),
    databaseLost() {
      if (!dbWatch) {
        const w = (dbWatch = watchDatabase(config.databaseUrl, config.dbUnreachableExitMs))
        closers.push(async () => w.stop())
      }
      return dbWatch.lost
    },
    importFile: (file, opts) => importTransactions(app.db(), config.dataKeys, file, opts),
    bulkSize: (merchantId, provider) => bulkSizeOf(merchantId, provider),
    settle: async (opts) => {
      await app.checkDeployment()
      // A statement cut by a failover (57P01) or a lost connection runs settlement again from the
      // start once Postgres answers, within DB_UNREACHABLE_EXIT_MS: it is idempotent (one run per
      // date and scope, receipts inserted ON CONFLICT DO NOTHING, jobs enqueued under their
      // generation's id and live ones left alone), so a second pass only finishes what the first began.
      return retryWhileUnavailable(config.databaseUrl, config.dbUnreachableExitMs, () => settleDay(settleDeps, opts))
    },
    redrive: async (filter, opts = {}) => {
      await app.checkDeployment()
      return redrive({ db: app.db(), queue: app.receiptsQueue(), logger, todayKst: kstToday(Date.now()) }, filter, opts)
    },
    cancel: async (input) => {
      await app.checkDeployment()
      return requestCancellation(cancelDeps, { cause: 'operator:cancel', ...input })
    },
    cancelChanged: async (ids) => {
      if (ids.length) await app.checkDeployment()
      return cancelChangedTransactions(cancelDeps, ids)
    },
    reconcile: async (businessDate, todayKst = kstToday(Date.now())) => {
      // Cancelling duplicates enqueues cancellations: the same guard as everything that enqueues.
      if (config.settle.reconcileCancelDuplicates) await app.checkDeployment()
      return reconcileDay({ db: app.db(), providers: app.providers(), logger, cancelDuplicates: config.settle.reconcileCancelDuplicates }, businessDate, todayKst)
    },
    recover: async (opts) => {
      // A pass enqueues: the same guard as everything that enqueues, asked afresh on every pass (not
      // the answer memoized at start-up). A Redis that lost its data (no persistence, a flush) lost
      // the prefix's deployment id too: the pass writes the database's id back — the lost jobs are
      // rebuilt from the ledger by this very pass, no operator needed — and a prefix another
      // deployment has taken meanwhile stops the pass before it enqueues anything.
      await app.checkDeployment()
      const target = { databaseUrl: config.databaseUrl, redisUrl: config.redisUrl, queuePrefix: config.queuePrefix }
      const check = await checkDeployment(app.db(), app.redis(), target)
      if (check.adopted) {
        logger.warn(
          { deploymentId: check.deploymentId, queuePrefix: config.queuePrefix },
          'recovery: the queue prefix had no deployment id (Redis lost its data?); recorded it again',
        )
      }
      return recoverOrphans({ db: app.db(), queue: app.receiptsQueue(), logger, graceMs: config.recovery.graceMs }, opts)
    },
    rekey: (opts) => rekey(app.db(), config.dataKeys, opts),
    audit: (entry) => recordAudit(app.db(), entry),
    recentAudit: (limit) => recentAudit(app.db(), limit),
    report: (sel, todayKst) => buildReport(app.db(), sel, todayKst),
    reportDetails: (sel, todayKst) => buildReportDetails(app.db(), sel, todayKst),
    findReceipts: (query) => findReceipts(app.db(), query, { dataKeys: config.dataKeys }),
    periodTotals: (sel) => buildPeriodTotals(app.db(), sel),
    merchantExists: async (id) => (await app.db().selectFrom('merchants').select('id').where('id', '=', id).executeTakeFirst()) !== undefined,
    startWorker(opts = {}) {
      // The in-flight caps follow the slots this process really runs (`worker --concurrency N`, or
      // several workers in one process), not WORKER_CONCURRENCY alone.
      slots += opts.concurrency ?? config.worker.concurrency
      throttles?.setProviderMaxInFlight(providerInFlightCaps(config.dispatch, slots))
      const worker = startReceiptWorker(
        {
          config,
          db: app.db(),
          ledgerDb: app.ledgerDb(),
          providers: app.providers(),
          logger,
          connection: app.redis().duplicate(),
          workerId,
          telemetry,
          queue: app.receiptsQueue(),
        },
        { ...opts, autorun: false },
      )
      closers.unshift(() => worker.close())
      if (config.dispatch.lendSlots && !lender && throttles) {
        const timer = (lender = lendSlots(worker, opts.concurrency ?? config.worker.concurrency, throttles))
        closers.unshift(async () => clearInterval(timer))
      }
      // No job is taken before the startup guard has passed: on another deployment's database every
      // receipt would be missing and every job would fail for good.
      app.checkDeployment().then(
        () => void worker.run().catch((err) => logger.error({ err: (err as Error).message }, 'worker stopped')),
        (err) => logger.error({ err: (err as Error).message }, 'worker not started'),
      )
      const recovery = startRecoveryLoop(() => app.recover(), config.recovery.intervalMs, logger)
      closers.unshift(() => recovery.close())
      if (config.notify.enabled && config.notify.worker) app.startNotifier()
      return worker
    },
    startNotifier() {
      if (notifier) return notifier
      const email = config.notify.smtpUrl ? createEmailSender({ smtpUrl: config.notify.smtpUrl, timeoutMs: config.notify.timeoutMs }) : undefined
      const n = (notifier = startNotifier({
        db: app.db(),
        redis: app.redis(),
        connection: app.redis().duplicate(),
        queue: app.notificationsQueue(),
        logger,
        workerId,
        config,
        email,
        gateway: createHttpGateway({ baseUrl: config.notify.gatewayUrl, apiKey: config.notify.gatewayApiKey, timeoutMs: config.notify.timeoutMs, fetch: overrides.fetch }),
      }))
      closers.unshift(async () => {
        await n.close()
        email?.close()
      })
      return n
    },
    notificationCounts: () => countNotifications(app.db()),
    redriveNotifications: (filter, opts) => redriveFailedNotifications(app.db(), filter, opts),
    async startScheduler() {
      await app.checkDeployment()
      const scheduler = await startScheduler({
        controlQueue: app.controlQueue(),
        connection: app.redis().duplicate(),
        queuePrefix: config.queuePrefix,
        cron: { settle: config.settle.cron, reconcile: config.settle.reconcileCron },
        logger,
        telemetry,
        settle: app.settle,
        reconcile: app.reconcile,
      })
      closers.unshift(() => scheduler.close())
      const recovery = startRecoveryLoop(() => app.recover(), config.recovery.intervalMs, logger)
      closers.unshift(() => recovery.close())
      return scheduler
    },
    async startDashboard(serve = {}) {
      const { startDashboard } = await import('./http/server.ts')
      return startDashboard({
        db: app.db(),
        redis: app.redis(),
        receiptsQueue: app.receiptsQueue(),
        controlQueue: app.controlQueue(),
        notificationsQueue: config.notify.enabled ? app.notificationsQueue() : undefined,
        logger,
        serve: { ...config.serve, ...serve },
        queuePrefix: config.queuePrefix,
        dataKeys: config.dataKeys,
      })
    },
    async close() {
      for (const c of closers.splice(0)) await c().catch((err) => logger.warn({ err: (err as Error).message }, 'close failed'))
    },
  }
  return app
}
