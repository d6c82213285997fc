/**
 * The composition root: the only place that wires config → logger → Postgres → Redis → providers →
 * throttles → jobs. Commands ask for what they need; nothing connects at import time.
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { DelayedError, UnrecoverableError, Worker, type Job, type Telemetry } from 'bullmq'
import type { Redis } from 'ioredis'
import type { AppConfig, MerchantConfig, ProviderName } from './config.ts'
import { createDb, ensureDatabase, migrateToLatest, type DbHandle } from './db/database.ts'
import { createLogger, type Logger } from './logger.ts'
import { encryptText, decryptText } from './crypto/pii.ts'
import { maskIdentifier } from './domain/index.ts'
import { createProvider } from './providers/registry.ts'
import type { CashReceiptProvider } from './providers/types.ts'
import { ThrottleRegistry, type Throttle } from './throttle/throttle.ts'
import { connectionOf, createControlQueue, createReceiptsQueue, createRedis, RECEIPTS_QUEUE } from './queue/queues.ts'
import { createIssueHandler, type ReceiptJobInfo } from './jobs/issue-receipt.ts'
import { createCancelHandler } from './jobs/cancel-receipt.ts'
import type { ProviderSource } from './jobs/provider-source.ts'
import { failOrphaned } from './db/ledger.ts'
import { createLedgerBatcher } from './db/ledger-batcher.ts'
import { callBudgetMs } from './jobs/lease.ts'
import { createHttpClient, DEFAULT_RETRY, type HttpClient } from './providers/http.ts'
import { registerLimiter } from './throttle/limiter-stats.ts'

export interface App {
  readonly config: AppConfig
  readonly logger: Logger
  /** bullmq-otel telemetry for every Queue and Worker, when tracing is on (see telemetry/tracing.ts). */
  readonly telemetry: Telemetry | undefined
  db(): DbHandle['db']
  redis(): Redis
  receiptsQueue(): ReturnType<typeof createReceiptsQueue>
  controlQueue(): ReturnType<typeof createControlQueue>
  providers(): ProviderSource
  /** Creates the database if missing, runs migrations, and syncs configured merchants. */
  prepareDatabase(): Promise<{ created: boolean; migrations: string[] }>
  startWorker(opts?: { concurrency?: number }): Worker
  close(): Promise<void>
}

export interface AppOverrides {
  readonly logger?: Logger
  readonly fetch?: typeof globalThis.fetch
  readonly telemetry?: Telemetry
}

export function createApp(config: AppConfig, overrides: AppOverrides = {}): App {
  const logger = overrides.logger ?? createLogger(config.log)
  const closers: (() => Promise<unknown>)[] = []
  let dbHandle: DbHandle | undefined
  let redis: Redis | undefined
  let receiptsQueue: ReturnType<typeof createReceiptsQueue> | undefined
  let controlQueue: ReturnType<typeof createControlQueue> | undefined
  let providerSource: ProviderSource | undefined
  let throttles: ThrottleRegistry | undefined
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`

  const telemetry = overrides.telemetry
  const app: App = {
    config,
    logger,
    telemetry,
    db() {
      if (!dbHandle) {
        dbHandle = createDb(config.databaseUrl, { max: config.dbPoolMax, preparedStatements: config.dbPreparedStatements })
        const h = dbHandle
        closers.push(() => h.close())
      }
      return dbHandle.db
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
        receiptsQueue = createReceiptsQueue(app.redis(), config.queuePrefix, config.worker.attempts, config.worker.backoffMs, telemetry)
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
    providers() {
      if (!providerSource) {
        throttles = new ThrottleRegistry({ redis: app.redis(), prefix: config.queuePrefix, logger, highWater: Math.max(8, config.worker.concurrency) })
        const t = throttles
        closers.unshift(() => t.close())
        providerSource = createProviderSource(config, app.db(), throttles, logger, overrides.fetch, (limiter, provider) =>
          registerLimiter(app.redis(), config.queuePrefix, limiter, provider).catch((err) =>
            logger.warn({ err: (err as Error).message, limiter }, 'could not register limiter for /metrics'),
          ),
        )
      }
      return providerSource
    },
    async prepareDatabase() {
      const created = await ensureDatabase(config.databaseUrl)
      const result = await migrateToLatest(app.db())
      if (result.error) throw result.error instanceof Error ? result.error : new Error(String(result.error))
      await syncMerchants(app.db(), config)
      return { created, migrations: (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) }
    },
    startWorker(opts = {}) {
      const deps = {
        db: app.db(),
        providers: app.providers(),
        logger,
        workerId,
        leaseMs: config.worker.leaseMs,
        callBudgetMs: callBudgetMs(config.http, DEFAULT_RETRY.maxRetryTimeMs),
      }
      const ledger = createLedgerBatcher(app.db(), { workerId, leaseMs: config.worker.leaseMs })
      const issue = createIssueHandler({ ...deps, ledger, dataKeys: config.dataKeys })
      const cancel = createCancelHandler(deps)
      const worker = new Worker(
        RECEIPTS_QUEUE,
        async (job: Job, token?: string, signal?: AbortSignal) => {
          const started = performance.now()
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
            if (err instanceof DelayedError) {
              logger.debug(line('delayed'), 'receipt job delayed')
            } else {
              const final = err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
              const fields = line(final ? 'failed' : 'retry', { attempt: job.attemptsMade + 1, err: (err as Error).message })
              if (final) logger.warn(fields, 'receipt outcome')
              else logger.info(fields, 'receipt outcome')
            }
            throw err
          }
        },
        {
          connection: connectionOf(app.redis().duplicate()),
          prefix: config.queuePrefix,
          concurrency: opts.concurrency ?? config.worker.concurrency,
          lockDuration: config.worker.lockDurationMs,
          stalledInterval: config.worker.stalledIntervalMs,
          // A stalled job is safe to hand out again (the ledger and lookups make it idempotent).
          maxStalledCount: 10,
          autorun: true,
          telemetry,
        },
      )
      worker.on('failed', (job, err) => {
        // The processor logged the outcome; what is left is a job BullMQ itself gave up on (stalled
        // too often, lock lost): make sure the ledger says failed.
        const receiptId = (job?.data as { receiptId?: number } | undefined)?.receiptId
        if (job && receiptId && job.finishedOn) {
          void failOrphaned(app.db(), receiptId, 'queue', err.message)
            .then((orphaned) => {
              if (orphaned) logger.warn({ jobId: job.id, receiptId, outcome: 'failed', err: err.message }, 'receipt job given up by the queue')
            })
            .catch((e) => logger.error({ err: (e as Error).message }, 'could not record orphaned job'))
        }
      })
      worker.on('error', (err) => logger.error({ err: err.message }, 'worker error'))
      closers.unshift(() => worker.close())
      return worker
    },
    async close() {
      for (const c of closers.splice(0)) await c().catch((err) => logger.warn({ err: (err as Error).message }, 'close failed'))
    },
  }
  return app
}

/** Upserts configured merchants into the merchants table (business number encrypted). */
export async function syncMerchants(db: DbHandle['db'], config: AppConfig): Promise<void> {
  for (const m of config.merchants) {
    const digits = m.businessNumber.replace(/\D/g, '')
    const enc = encryptText(digits, config.dataKeys, `merchant:${m.id}`)
    await db
      .insertInto('merchants')
      .values({
        id: m.id,
        name: m.name,
        business_number_enc: enc.value,
        business_number_masked: maskIdentifier(digits, 'business'),
        data_key_id: enc.keyId,
        mandatory_issuer: m.mandatoryIssuer,
        providers: Object.keys(m.providers),
      })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          // The configured business number wins (it may have been corrected), under the active key.
          business_number_enc: eb.ref('excluded.business_number_enc'),
          business_number_masked: eb.ref('excluded.business_number_masked'),
          data_key_id: eb.ref('excluded.data_key_id'),
          name: eb.ref('excluded.name'),
          mandatory_issuer: eb.ref('excluded.mandatory_issuer'),
          providers: eb.ref('excluded.providers'),
          updated_at: new Date(),
        })),
      )
      .execute()
  }
}

function createProviderSource(
  config: AppConfig,
  db: DbHandle['db'],
  throttles: ThrottleRegistry,
  logger: Logger,
  fetchImpl?: typeof globalThis.fetch,
  onLimiter?: (limiterKey: string, provider: ProviderName) => unknown,
): ProviderSource {
  const merchants = new Map<string, MerchantConfig>(config.merchants.map((m) => [m.id, m]))
  const cache = new Map<string, { provider: CashReceiptProvider; throttle: Throttle }>()
  // One keep-alive transport for every merchant and provider of this process.
  const http: HttpClient | undefined = fetchImpl ? undefined : createHttpClient({ connectTimeoutMs: config.http.connectTimeoutMs, readTimeoutMs: config.http.readTimeoutMs })
  const brn = new Map<string, string>()
  return {
    get(merchantId: string, name: ProviderName) {
      const key = `${merchantId}/${name}`
      let entry = cache.get(key)
      if (!entry) {
        const merchant = merchants.get(merchantId)
        if (!merchant) throw new Error(`merchant ${merchantId} is not configured`)
        const credentials = merchant.providers[name]
        if (!credentials) throw new Error(`merchant ${merchantId} has no ${name} credentials configured`)
        const provider = createProvider(name, {
          baseUrl: config.providerBaseUrls[name],
          credentials: credentials as never,
          http,
          fetch: fetchImpl,
          logger: logger.child({ provider: name, merchant: merchantId }),
          timeouts: { connectMs: config.http.connectTimeoutMs, readMs: config.http.readTimeoutMs },
        })
        const limits = { ...config.providerDefaults[name], ...(credentials.limits ?? {}) }
        const throttleKey = `${name}-${provider.credentialId}`
        const throttle = throttles.get(throttleKey, limits)
        onLimiter?.(throttleKey, name)
        entry = { provider, throttle }
        cache.set(key, entry)
      }
      return entry
    },
    async merchantBusinessNumber(merchantId: string) {
      let v = brn.get(merchantId)
      if (!v) {
        const row = await db.selectFrom('merchants').select('business_number_enc').where('id', '=', merchantId).executeTakeFirstOrThrow()
        v = decryptText(row.business_number_enc, config.dataKeys, `merchant:${merchantId}`)
        brn.set(merchantId, v)
      }
      return v
    },
  }
}
