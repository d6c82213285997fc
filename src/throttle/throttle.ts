/**
 * Provider call throttling shared by every worker process: one bottleneck limiter per
 * (provider, credential) on the Redis datastore, plus a per-KST-day issue quota counter.
 *
 * Known traps handled here (reference/engineering.md §3):
 * - Redis 7 prefixes script errors with "ERR ", so bottleneck's own SETTINGS_KEY_NOT_FOUND recovery
 *   never runs; we detect it, rebuild the limiter (which re-creates the settings) and retry once.
 * - every job gets an `expiration`, so a crashed process's running count is freed.
 * - bottleneck's reservoir intervals are anchored to limiter creation, not to midnight KST, so the
 *   daily quota is our own counter (INCR + EXPIREAT on a key per KST date).
 */
import Bottleneck from 'bottleneck'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { ProviderLimits } from '../config.ts'

export class QueueFullError extends Error {
  override name = 'QueueFullError'
  readonly retryInMs: number
  constructor(retryInMs: number) {
    super(`throttle queue full; retry in ${retryInMs} ms`)
    this.retryInMs = retryInMs
  }
}

export class QuotaExhaustedError extends Error {
  override name = 'QuotaExhaustedError'
  readonly retryInMs: number
  constructor(retryInMs: number) {
    super(`daily issue quota exhausted; retry in ${retryInMs} ms`)
    this.retryInMs = retryInMs
  }
}

export interface Throttle {
  readonly id: string
  /** Runs fn when the shared limits allow. Rejects with QueueFullError when too many wait locally. */
  schedule<T>(fn: () => Promise<T>, opts?: { expirationMs?: number }): Promise<T>
  /** Counts one issue against the daily quota; rejects with QuotaExhaustedError past it. */
  takeQuota(kstDate: string, msUntilKstMidnight: number): Promise<void>
  /** A provider said 429: hold every process's calls for this credential for `ms`. */
  penalize(ms: number): void
  /** Calls waiting in this process. */
  queued(): number
  close(): Promise<void>
}

export interface ThrottleFactoryOptions {
  readonly redis: Redis
  /** Key prefix, shared by processes of one deployment (tests use one per file). */
  readonly prefix: string
  readonly logger: Logger
  /** Jobs waiting in one process's limiter before new ones are sent back to the queue as delayed. */
  readonly highWater: number
  /** Use Redis clustering (default). Local mode exists for benchmarks comparing the two. */
  readonly datastore?: 'ioredis' | 'local'
  /**
   * A bottleneck connection shared with other throttles (the registry's): two Redis connections per
   * process instead of two per credential. Without it the throttle opens and owns its own.
   */
  readonly connection?: Bottleneck.IORedisConnection
}

/** Share of a provider's documented rate we pace at: timer jitter must not cross its window. */
export const RATE_SAFETY = 0.97

/** Spacing between call starts that keeps one credential under both minTimeMs and maxPerSecond. */
export function minTimeOf(limits: ProviderLimits): number {
  const fromRate = limits.maxPerSecond ? 1000 / (limits.maxPerSecond * RATE_SAFETY) : 0
  return Math.max(limits.minTimeMs, fromRate)
}

const isSettingsLost = (err: unknown) => /SETTINGS_KEY_NOT_FOUND|UNKNOWN_CLIENT/.test(String((err as Error)?.message))

/** bottleneck's disconnect returns a promise, or undefined on a shared connection. */
const quietly = (p: unknown) => Promise.resolve(p).catch(() => {})

export function newConnection(redis: Redis): Bottleneck.IORedisConnection {
  return new Bottleneck.IORedisConnection({ client: redis.duplicate() })
}

export function createThrottle(id: string, limits: ProviderLimits, opts: ThrottleFactoryOptions): Throttle {
  const limiterId = `${opts.prefix}-${id}`
  const minTime = minTimeOf(limits)
  let penaltyUntil = 0
  const ownConnection = opts.datastore !== 'local' && !opts.connection ? newConnection(opts.redis) : undefined
  const connection = opts.connection ?? ownConnection
  const build = (): Bottleneck => {
    const common = {
      id: limiterId,
      maxConcurrent: limits.maxConcurrent,
      minTime,
      highWater: opts.highWater,
      strategy: Bottleneck.strategy.OVERFLOW,
    }
    if (opts.datastore === 'local') return new Bottleneck(common)
    const limiter = new Bottleneck({
      ...common,
      datastore: 'ioredis',
      connection,
      clearDatastore: false,
      // Idle limiter keys expire after a day; a lost settings key is recovered below.
      timeout: 24 * 3600 * 1000,
    })
    limiter.on('error', (err: unknown) => opts.logger.warn({ err, limiter: limiterId }, 'throttle datastore error'))
    return limiter
  }
  let limiter = build()

  async function scheduleOnce<T>(fn: () => Promise<T>, expiration: number): Promise<T> {
    const wait = penaltyUntil - Date.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    try {
      return await limiter.schedule({ expiration }, fn)
    } catch (err) {
      if (err instanceof Bottleneck.BottleneckError && /dropped/i.test(err.message)) {
        const per = Math.max(minTime, 50)
        throw new QueueFullError(Math.min(30_000, per * opts.highWater + 250))
      }
      throw err
    }
  }

  return {
    id: limiterId,
    async schedule(fn, o) {
      const expiration = o?.expirationMs ?? 60_000
      try {
        return await scheduleOnce(fn, expiration)
      } catch (err) {
        if (!isSettingsLost(err)) throw err
        // The settings key vanished (FLUSH, failover without persistence, TTL): rebuild and retry once.
        // The old limiter leaves first: its unsubscribe is queued before the new one's subscribe on
        // the shared connection, so the new limiter keeps its channel.
        opts.logger.warn({ limiter: limiterId }, 'throttle settings lost in Redis; rebuilding limiter')
        void quietly(limiter.disconnect(false))
        limiter = build()
        return scheduleOnce(fn, expiration)
      }
    },
    async takeQuota(kstDate, msUntilKstMidnight) {
      if (!limits.dailyQuota) return
      const key = `${opts.prefix}:quota:${id}:${kstDate}`
      const n = await opts.redis.incr(key)
      if (n === 1) await opts.redis.pexpire(key, msUntilKstMidnight + 3600_000)
      if (n > limits.dailyQuota) throw new QuotaExhaustedError(msUntilKstMidnight + 1_000)
    },
    penalize(ms) {
      const until = Date.now() + ms
      if (until <= penaltyUntil) return
      penaltyUntil = until
      // Hold every slot of the shared limiter for ms so other processes stop too.
      if (limits.maxConcurrent && opts.datastore !== 'local') {
        limiter
          .schedule({ weight: limits.maxConcurrent, priority: 0, expiration: ms + 5_000 }, () => new Promise((r) => setTimeout(r, ms)))
          .catch(() => {})
      }
    },
    queued: () => limiter.counts().QUEUED ?? 0,
    async close() {
      // An owned connection goes first: once it is terminated the limiter's disconnect no longer
      // sends an unsubscribe that would race the quit ("Connection is closed").
      if (ownConnection) await quietly(ownConnection.disconnect(true))
      await quietly(limiter.disconnect(true))
    },
  }
}

/** One throttle per (provider, credential), created on first use, all on one shared connection. */
export class ThrottleRegistry {
  readonly #throttles = new Map<string, Throttle>()
  readonly #opts: ThrottleFactoryOptions
  #connection: Bottleneck.IORedisConnection | undefined
  constructor(opts: ThrottleFactoryOptions) {
    this.#opts = opts
  }

  get(key: string, limits: ProviderLimits): Throttle {
    let t = this.#throttles.get(key)
    if (!t) {
      if (this.#opts.datastore !== 'local') this.#connection ??= newConnection(this.#opts.redis)
      t = createThrottle(key, limits, { ...this.#opts, connection: this.#connection })
      this.#throttles.set(key, t)
    }
    return t
  }

  async close(): Promise<void> {
    // Connection first (see Throttle.close), then the limiters, which then only drop local state.
    if (this.#connection) await quietly(this.#connection.disconnect(true))
    this.#connection = undefined
    await Promise.all([...this.#throttles.values()].map((t) => t.close()))
    this.#throttles.clear()
  }
}
