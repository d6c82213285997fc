/**
 * Provider call throttling shared by every worker process: one bottleneck limiter per
 * (provider, credential) — on the Redis datastore when it caps concurrency or spacing — a send-time
 * pacer in Redis for per-second limits (pacer.ts), plus a per-KST-day issue quota counter.
 *
 * Known traps of bottleneck 2.19.5 (its last release; the Redis 7 one is its open issues #205 and
 * #219) handled here:
 * - Redis 7 prefixes script errors with "ERR ", so bottleneck's own SETTINGS_KEY_NOT_FOUND recovery
 *   never runs; we detect it, rebuild the limiter (which re-creates the settings) and retry once.
 * - every job gets an `expiration`, so a crashed process's running count is freed.
 * - bottleneck's reservoir intervals are anchored to limiter creation, not to midnight KST, so the
 *   daily quota is our own counter (INCR + EXPIREAT on a key per KST date).
 */
import Bottleneck from 'bottleneck'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { ProviderLimits } from '../domain/index.ts'
import { createPacer } from './pacer.ts'

/** The call was not made and is safe to put off: the job goes back to the queue without using an attempt. */
export abstract class ThrottleDeferError extends Error {
  readonly retryInMs: number
  constructor(message: string, retryInMs: number) {
    super(message)
    this.retryInMs = retryInMs
  }
}

export class QueueFullError extends ThrottleDeferError {
  override name = 'QueueFullError'
  constructor(retryInMs: number) {
    super(`throttle queue full; retry in ${retryInMs} ms`, retryInMs)
  }
}

export class QuotaExhaustedError extends ThrottleDeferError {
  override name = 'QuotaExhaustedError'
  constructor(retryInMs: number) {
    super(`daily issue quota exhausted; retry in ${retryInMs} ms`, retryInMs)
  }
}

/** The limiter did not start the call in time (its Redis state is stuck, or the wait is very long). */
export class ThrottleTimeoutError extends ThrottleDeferError {
  override name = 'ThrottleTimeoutError'
  constructor(waitedMs: number, retryInMs: number) {
    super(`throttle did not start the call within ${waitedMs} ms; retry in ${retryInMs} ms`, retryInMs)
  }
}

export interface Throttle {
  readonly id: string
  /**
   * Runs fn when the shared limits allow. Rejects with a ThrottleDeferError (fn never ran) when too
   * many wait locally or the limiter does not start fn within startTimeoutMs.
   */
  schedule<T>(fn: () => Promise<T>, opts?: { expirationMs?: number }): Promise<T>
  /** Counts one issue against the daily quota; rejects with QuotaExhaustedError past it. */
  takeQuota(kstDate: string, msUntilKstMidnight: number): Promise<void>
  /** A provider said 429: hold every process's calls for this credential for `ms`. */
  penalize(ms: number): void
  /** Holds this process's calls for `ms` (another process was told 429; the registry relays it). */
  hold(ms: number): void
  /** Calls waiting in this process. */
  queued(): number
  /**
   * Drops the Redis limiter if it has had nothing to do for idleMs (it is rebuilt on next use): an
   * idle limiter still runs a heartbeat script, and a worker may see thousands of credentials a night.
   */
  releaseIfIdle(idleMs: number): boolean
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
  /**
   * Longest wait for the limiter to start a call before giving up (default 30 s). A limiter whose
   * Redis state is broken never starts its jobs; this keeps a worker slot from hanging on it forever.
   */
  readonly startTimeoutMs?: number
  /** Set by the owner (the registry) when it starts shutting down: background failures are expected then. */
  readonly lifecycle?: { closing: boolean }
  /** Tells the other processes to hold this credential's calls for `ms` (the registry publishes it). */
  readonly publishHold?: (id: string, ms: number) => void
}

/** Share of a provider's documented rate we pace at: timer jitter must not cross its window. */
export const RATE_SAFETY = 0.97

/**
 * How much faster than the paced rate bottleneck releases calls to the pacer. Two limiters at the same
 * rate in series lose throughput: a call bottleneck starts on a late local timer reaches the pacer
 * after its slot has passed, and the pacer cannot give that time back. Released a little faster,
 * calls wait at the pacer (a local queue bounded by the worker's concurrency) and the pacer, which
 * decides at send time, is the one that sets the rate.
 */
export const PACER_HEADROOM = 1.25

/** Spacing between call starts in bottleneck: minTimeMs, and per-second limits loosely (the pacer is exact). */
export function minTimeOf(limits: ProviderLimits): number {
  const fromRate = limits.maxPerSecond ? 1000 / (limits.maxPerSecond * RATE_SAFETY * PACER_HEADROOM) : 0
  return Math.max(limits.minTimeMs, fromRate)
}

/**
 * Whether a credential's bottleneck limiter lives on Redis: only when it has a limit to share there, a
 * concurrency cap or a fixed spacing (a per-second limit alone is shared by the pacer).
 */
function limiterOnRedis(limits: ProviderLimits, datastore: ThrottleFactoryOptions['datastore']): boolean {
  return datastore !== 'local' && (limits.maxConcurrent !== null || limits.minTimeMs > 0)
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
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000
  const holds = createHold()
  const penalize = (ms: number) => {
    if (holds.extend(ms)) opts.publishHold?.(id, ms)
  }
  // No limit configured: nothing to coordinate across processes, so no Redis round trips per call.
  if (limits.maxConcurrent === null && minTime === 0) return unlimitedThrottle(limiterId, id, limits, opts, holds, penalize)

  // A documented per-second limit is also paced at send time (see pacer.ts).
  const pacer = limits.maxPerSecond ? createPacer(opts.redis, `${opts.prefix}:pace:${id}`, limits.maxPerSecond * RATE_SAFETY) : undefined
  // bottleneck shares a limit through Redis when it has one to share: a concurrency cap or a fixed
  // spacing. A per-second limit alone is shared by the pacer (Redis, at send time), so there bottleneck
  // only queues and smooths locally: a clustered limiter would add two scripts and a pub/sub wake-up
  // of every process per call, and the delay they add between a slot and its request, while enforcing
  // nothing the pacer does not (docs/performance.md, Fidelity).
  const onRedis = limiterOnRedis(limits, opts.datastore)
  const ownConnection = onRedis && !opts.connection ? newConnection(opts.redis) : undefined
  const connection = opts.connection ?? ownConnection
  const build = (): Bottleneck => {
    const common = {
      id: limiterId,
      maxConcurrent: limits.maxConcurrent,
      minTime,
      highWater: opts.highWater,
      strategy: Bottleneck.strategy.OVERFLOW,
    }
    if (!onRedis) return new Bottleneck(common)
    const limiter = new Bottleneck({
      ...common,
      datastore: 'ioredis',
      connection,
      clearDatastore: false,
      // bottleneck's defaults (5 s heartbeat, 10 s client timeout) cost one script per limiter every
      // 5 s. Every call refreshes a client's liveness anyway; the heartbeat only matters when idle.
      heartbeatInterval: 15_000,
      clientTimeout: 60_000,
      // No `timeout` (key TTL): bottleneck's Lua passes it to PEXPIRE together with minTime, and a
      // fractional minTime (maxPerSecond pacing) makes that TTL a float Redis rejects. The limiter
      // keys are a handful per credential, a bounded set.
    })
    limiter.on('error', (err: unknown) => opts.logger.warn({ err, limiter: limiterId }, 'throttle datastore error'))
    // Initialisation (settings script, subscribe, client registration) runs in the background; a
    // close before it finishes fails it with "Connection is closed", which must not go unhandled.
    limiter.ready().catch((err: unknown) => {
      if (!closing && !opts.lifecycle?.closing) opts.logger.warn({ err, limiter: limiterId }, 'throttle datastore not ready')
    })
    return limiter
  }
  // Built on first use: a credential that only counts its daily quota never needs a limiter.
  let built: Bottleneck | undefined
  let closing = false
  let lastUsed = Date.now()
  const current = () => {
    lastUsed = Date.now()
    return (built ??= build())
  }

  async function scheduleOnce<T>(fn: () => Promise<T>, expiration: number): Promise<T> {
    await holds.waitOut()
    let started = false
    let abandoned = false
    const run = current().schedule({ expiration }, async () => {
      // Started after we gave up: the caller has moved on, so the call must not happen.
      if (abandoned) return undefined as T
      started = true
      // A hold that began while this call waited for its slot still applies: checked at send time.
      await holds.waitOut()
      await pacer?.acquire()
      return fn()
    })
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (started) return
        abandoned = true
        run.catch(() => {})
        reject(new ThrottleTimeoutError(startTimeoutMs, 1_000 + Math.floor(Math.random() * 2_000)))
      }, startTimeoutMs)
    })
    try {
      return await Promise.race([run, deadline])
    } catch (err) {
      if (err instanceof Bottleneck.BottleneckError && /dropped/i.test(err.message)) {
        const per = Math.max(minTime, 50)
        throw new QueueFullError(Math.min(30_000, per * opts.highWater + 250))
      }
      throw err
    } finally {
      clearTimeout(timer)
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
        if (built) void quietly(built.disconnect(false))
        built = build()
        return scheduleOnce(fn, expiration)
      }
    },
    takeQuota: (kstDate, msUntil) => takeQuota(opts, id, limits, kstDate, msUntil),
    penalize,
    hold: (ms) => holds.extend(ms),
    queued: () => built?.counts().QUEUED ?? 0,
    releaseIfIdle(idleMs) {
      if (!built || Date.now() - lastUsed < idleMs) return false
      const c = built.counts()
      if ((c.RECEIVED ?? 0) + (c.QUEUED ?? 0) + (c.RUNNING ?? 0) + (c.EXECUTING ?? 0) > 0) return false
      // Its unsubscribe is queued before a rebuilt limiter's subscribe on the shared connection.
      void quietly(built.disconnect(false))
      built = undefined
      return true
    },
    async close() {
      closing = true
      // An owned connection goes first: once it is terminated the limiter's disconnect no longer
      // sends an unsubscribe that would race the quit ("Connection is closed").
      if (ownConnection) await quietly(ownConnection.disconnect(true))
      if (built) await quietly(built.disconnect(true))
    },
  }
}

/** A daily issue quota is our own counter per KST date (bottleneck's reservoir is not calendar-aligned). */
async function takeQuota(opts: ThrottleFactoryOptions, id: string, limits: ProviderLimits, kstDate: string, msUntilKstMidnight: number): Promise<void> {
  if (!limits.dailyQuota) return
  const key = `${opts.prefix}:quota:${id}:${kstDate}`
  const n = await opts.redis.incr(key)
  if (n === 1) await opts.redis.pexpire(key, msUntilKstMidnight + 3600_000)
  if (n > limits.dailyQuota) throw new QuotaExhaustedError(msUntilKstMidnight + 1_000)
}

/** A credential without concurrency or rate limits: calls go straight through (429 holds still apply). */
function unlimitedThrottle(limiterId: string, id: string, limits: ProviderLimits, opts: ThrottleFactoryOptions, holds: Hold, penalize: (ms: number) => void): Throttle {
  return {
    id: limiterId,
    async schedule(fn) {
      await holds.waitOut()
      return fn()
    },
    takeQuota: (kstDate, msUntil) => takeQuota(opts, id, limits, kstDate, msUntil),
    penalize,
    hold: (ms) => holds.extend(ms),
    queued: () => 0,
    releaseIfIdle: () => false,
    close: async () => {},
  }
}

interface Hold {
  /** Extends the hold to now + ms; false when it already lasts longer. */
  extend(ms: number): boolean
  /** Resolves once no hold is in force (a hold may be extended while waiting). */
  waitOut(): Promise<void>
}

/**
 * "Stop sending for a while", the answer to a 429: an instant before which calls wait. It replaces
 * holding every limiter slot with a job of weight maxConcurrent, which could only start once every
 * slot in every process was free — under load almost never — and meanwhile filled the local queue so
 * that new calls were dropped and bounced through the job queue.
 */
function createHold(): Hold {
  let until = 0
  return {
    extend(ms) {
      const t = Date.now() + ms
      if (t <= until) return false
      until = t
      return true
    },
    async waitOut() {
      for (let wait = until - Date.now(); wait > 0; wait = until - Date.now()) await new Promise((r) => setTimeout(r, wait))
    },
  }
}

/** One throttle per (provider, credential), created on first use, all on one shared connection. */
export class ThrottleRegistry {
  readonly #throttles = new Map<string, Throttle>()
  readonly #opts: ThrottleFactoryOptions
  readonly #lifecycle = { closing: false }
  #connection: Bottleneck.IORedisConnection | undefined
  readonly #sweep: NodeJS.Timeout
  /** Receives the holds other processes publish after a 429 (one connection per process). */
  readonly #holds: Redis | undefined
  constructor(opts: ThrottleFactoryOptions & { readonly idleMs?: number }) {
    const channel = `${opts.prefix}:throttle-holds`
    this.#opts = {
      ...opts,
      lifecycle: this.#lifecycle,
      publishHold: (id, ms) => void opts.redis.publish(channel, JSON.stringify({ id, ms })).catch(() => {}),
    }
    const idleMs = opts.idleMs ?? 120_000
    this.#sweep = setInterval(() => {
      for (const t of this.#throttles.values()) t.releaseIfIdle(idleMs)
    }, Math.min(60_000, idleMs)).unref()
    if (opts.datastore !== 'local') {
      const sub = (this.#holds = opts.redis.duplicate())
      sub.on('error', (err: Error) => {
        if (!this.#lifecycle.closing) opts.logger.warn({ err: err.message }, 'throttle hold channel error')
      })
      sub.subscribe(channel).catch(() => {})
      sub.on('message', (_channel: string, message: string) => {
        const m = JSON.parse(message) as { id: string; ms: number }
        this.#throttles.get(m.id)?.hold(m.ms)
      })
    }
  }

  get(key: string, limits: ProviderLimits): Throttle {
    let t = this.#throttles.get(key)
    if (!t) {
      if (limiterOnRedis(limits, this.#opts.datastore)) this.#connection ??= newConnection(this.#opts.redis)
      t = createThrottle(key, limits, { ...this.#opts, connection: this.#connection })
      this.#throttles.set(key, t)
    }
    return t
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep)
    this.#lifecycle.closing = true
    // Connection first (see Throttle.close), then the limiters, which then only drop local state.
    if (this.#connection) await quietly(this.#connection.disconnect(true))
    this.#connection = undefined
    if (this.#holds) await quietly(this.#holds.quit())
    await Promise.all([...this.#throttles.values()].map((t) => t.close()))
    this.#throttles.clear()
  }
}
