/**
 * Provider call throttling shared by every worker process, per (provider, credential): a bottleneck
 * limiter for the concurrency cap (on the Redis datastore), a send-time GCRA pacer in Redis for
 * spacing and per-second limits (pacer.ts), a per-KST-day issue quota counter and 429 holds; per
 * provider in each process a circuit breaker and an in-flight cap (circuit.ts). A job's calls run in
 * `defer` mode: a call that cannot start within the dispatch wait (tens of ms) is refused before
 * anything is sent, and the job is delayed without using an attempt (docs/dispatch.md).
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
import { createCircuit, isFailureOutcome, type Circuit, type CircuitStateName } from './circuit.ts'
import { createDispatchStatsWriter, type DeferReason, type DispatchStatsWriter } from './dispatch-stats.ts'
import { createPacerEvery } from './pacer.ts'
import { createRateWindow, type Permit } from './rate-window.ts'

export type { DeferReason } from './dispatch-stats.ts'

/** The call was not made and is safe to put off: the job goes back to the queue without using an attempt. */
export abstract class ThrottleDeferError extends Error {
  readonly retryInMs: number
  abstract readonly reason: DeferReason
  constructor(message: string, retryInMs: number) {
    super(message)
    this.retryInMs = retryInMs
  }
}

export class QueueFullError extends ThrottleDeferError {
  override name = 'QueueFullError'
  readonly reason = 'queue_full'
  constructor(retryInMs: number) {
    super(`throttle queue full; retry in ${retryInMs} ms`, retryInMs)
  }
}

export class QuotaExhaustedError extends ThrottleDeferError {
  override name = 'QuotaExhaustedError'
  readonly reason = 'quota'
  constructor(retryInMs: number) {
    super(`daily issue quota exhausted; retry in ${retryInMs} ms`, retryInMs)
  }
}

/** The limiter did not start the call in time (its Redis state is stuck, or the wait is very long). */
export class ThrottleTimeoutError extends ThrottleDeferError {
  override name = 'ThrottleTimeoutError'
  readonly reason = 'timeout'
  constructor(waitedMs: number, retryInMs: number) {
    super(`throttle did not start the call within ${waitedMs} ms; retry in ${retryInMs} ms`, retryInMs)
  }
}

/**
 * The credential (or its provider) cannot take the call within the dispatch wait: at its rate or
 * concurrency limit, on a 429 hold, behind an open circuit, or its provider at its in-flight cap.
 */
export class NotNowError extends ThrottleDeferError {
  override name = 'NotNowError'
  readonly reason: DeferReason
  constructor(reason: DeferReason, retryInMs: number) {
    super(`credential cannot take a call now (${reason}); retry in ${retryInMs} ms`, retryInMs)
    this.reason = reason
  }
}

export interface ScheduleOptions {
  readonly expirationMs?: number
  /**
   * Never wait longer than the dispatch wait (tens of ms): a call that cannot start by then rejects
   * with a ThrottleDeferError and fn never runs. The jobs' issue, cancel and lookup calls made before
   * anything was sent use it; without it the call waits for its turn (reconcile, and the read-back
   * after a send, which must not be put off).
   */
  readonly defer?: boolean
  /** Count the call against the daily quota once it has its slot (an issue call). */
  readonly quota?: { readonly kstDate: string; readonly msUntilKstMidnight: number }
}

export interface Throttle {
  readonly id: string
  /**
   * Runs fn when the shared limits allow. Rejects with a ThrottleDeferError (fn never ran) when the
   * call cannot start: in `defer` mode as soon as it cannot start within the dispatch wait; otherwise
   * when too many wait locally or the limiter does not start fn within startTimeoutMs.
   */
  schedule<T>(fn: () => Promise<T>, opts?: ScheduleOptions): Promise<T>
  /**
   * Without asking Redis: a refusal when this process already knows the credential cannot take a call
   * within the dispatch wait (its circuit or its provider's is open, a 429 hold, its provider's
   * in-flight cap stuck full, or its rate window surely closed), with when to come back; else
   * undefined, and schedule decides. Lets a job be put off before it claims its receipt.
   */
  precheck(): ThrottleDeferError | undefined
  /** Counts one issue against the daily quota; rejects with QuotaExhaustedError past it. */
  takeQuota(kstDate: string, msUntilKstMidnight: number): Promise<void>
  /** A provider said 429: hold every process's calls for this credential for `ms`. */
  penalize(ms: number): void
  /** Holds this process's calls for `ms` (another process was told 429; the registry relays it). */
  hold(ms: number): void
  /** Calls waiting in this process. */
  queued(): number
  /** The credential's circuit breaker state in this process. */
  circuit(): CircuitStateName
  /**
   * The provider is not answering, as far as this process knows: its or the credential's circuit is
   * not closed, or a call of the provider has been in flight longer than the slow-call time. A
   * read-back after an unknown outcome is then skipped (it would hang as long again, holding the
   * worker slot): the outcome stays open and the next attempt looks the key up first.
   */
  unresponsive(): boolean
  /**
   * Drops the Redis limiter if it has had nothing to do for idleMs (it is rebuilt on next use): an
   * idle limiter still runs a heartbeat script, and a worker may see thousands of credentials a night.
   */
  releaseIfIdle(idleMs: number): boolean
  close(): Promise<void>
}

/** What a provider's credentials share in one process: its circuit breaker and its in-flight cap. */
export interface ProviderGate {
  readonly name: string
  readonly circuit: Circuit
  readonly inFlight: InFlight
}

export interface DispatchOptions {
  /** Longest wait inside the limiter in defer mode (default 50 ms). */
  readonly maxWaitMs: number
  readonly circuitFailures: number
  /** Consecutive unknown outcomes (timeouts after sending) that open a circuit sooner (default: circuitFailures). */
  readonly circuitUnknownOutcomes?: number
  readonly circuitHalfOpenMs: number
  /** A call in flight this long makes its provider slow: no further call until it ends (default: never). */
  readonly slowCallMs?: number
  /** The in-flight window and the slow-call rule (InFlight); false: the fixed cap only. Default true. */
  readonly adaptiveInFlight?: boolean
  /** Calls in flight per provider in this process; a provider missing here has no cap. */
  readonly providerMaxInFlight: Readonly<Record<string, number>>
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
  /** Circuit breakers, the provider's in-flight cap and the dispatch wait; without it none of them. */
  readonly dispatch?: DispatchOptions
  /** The provider's shared gate (the registry's), when dispatch is configured. */
  readonly providerGate?: ProviderGate
  /** Told of every deferral and circuit change (the registry publishes them for /metrics). */
  readonly onDefer?: (reason: DeferReason) => void
  readonly onCircuit?: (state: CircuitStateName) => void
}

/**
 * Spacing between two sends of one credential, across all processes: minTimeMs (0: none). The GCRA
 * pacer (pacer.ts) keeps it. The per-second limit is the rate window's (rate-window.ts), at the full
 * documented rate: it counts calls the way the provider does, so it needs no safety margin.
 */
export function paceIntervalMs(limits: ProviderLimits): number {
  return limits.minTimeMs
}

/**
 * Whether a credential has a bottleneck limiter: only for a concurrency cap (shared on Redis unless
 * local mode). Spacing and rate are the pacer's: two limiters pacing the same calls in series lose
 * throughput, and a spacing slot bottleneck hands to a call that is then deferred would be lost.
 */
function hasLimiter(limits: ProviderLimits): boolean {
  return limits.maxConcurrent !== null
}

const isSettingsLost = (err: unknown) => /SETTINGS_KEY_NOT_FOUND|UNKNOWN_CLIENT/.test(String((err as Error)?.message))

/** bottleneck's disconnect returns a promise, or undefined on a shared connection. */
const quietly = (p: unknown) => Promise.resolve(p).catch(() => {})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const jitter = (ms: number) => Math.floor(Math.random() * Math.max(1, ms))

export function newConnection(redis: Redis): Bottleneck.IORedisConnection {
  return new Bottleneck.IORedisConnection({ client: redis.duplicate() })
}

export function createThrottle(id: string, limits: ProviderLimits, opts: ThrottleFactoryOptions): Throttle {
  const limiterId = `${opts.prefix}-${id}`
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000
  const maxWaitMs = opts.dispatch?.maxWaitMs ?? 50
  const holds = createHold()
  const penalize = (ms: number) => {
    if (holds.extend(ms)) opts.publishHold?.(id, ms)
  }
  const gate = opts.providerGate
  const own = opts.dispatch
    ? createCircuit({
        failures: opts.dispatch.circuitFailures,
        unknownOutcomes: opts.dispatch.circuitUnknownOutcomes,
        halfOpenMs: opts.dispatch.circuitHalfOpenMs,
        onChange: opts.onCircuit,
      })
    : undefined
  // The send-time pacer keeps a minimum spacing across processes (pacer.ts); the rate window the
  // per-second limit (rate-window.ts).
  const interval = paceIntervalMs(limits)
  const pacer = interval > 0 ? createPacerEvery(opts.redis, `${opts.prefix}:pace:${id}`, interval) : undefined
  const window = limits.maxPerSecond ? createRateWindow(opts.redis, `${opts.prefix}:rate:${id}`, limits.maxPerSecond, { maxWaitMs }) : undefined
  // bottleneck shares a concurrency cap through Redis (local mode: in this process only).
  const withLimiter = hasLimiter(limits)
  const onRedis = withLimiter && opts.datastore !== 'local'
  const ownConnection = onRedis && !opts.connection ? newConnection(opts.redis) : undefined
  const connection = opts.connection ?? ownConnection
  const build = (): Bottleneck => {
    const common = {
      id: limiterId,
      maxConcurrent: limits.maxConcurrent,
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
  // How long this credential's calls take (moving average): when its concurrency is full, about
  // when one of them will be done.
  let callMs = 100
  const timed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      callMs = callMs * 0.8 + (performance.now() - t0) * 0.2
    }
  }
  const concurrencyRetryMs = () => Math.round(Math.max(50, callMs) + jitter(Math.max(50, callMs)))

  /** Runs `run` under the concurrency cap; `onTimeout` is the error when it has not started within `timeoutMs`. */
  async function underCap<T>(run: () => Promise<T>, expiration: number, timeoutMs: number, onTimeout: () => ThrottleDeferError): Promise<T> {
    if (!withLimiter) return run()
    // A limiter built just now first registers in Redis; that is not waiting for a slot.
    if (onRedis) await current().ready()
    let started = false
    let abandoned = false
    const job = current().schedule({ expiration }, async () => {
      // Started after we gave up: the caller has moved on, so the call must not happen.
      if (abandoned) return undefined as T
      started = true
      return run()
    })
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (started) return
        abandoned = true
        job.catch(() => {})
        reject(onTimeout())
      }, timeoutMs)
    })
    try {
      return await Promise.race([job, deadline])
    } catch (err) {
      if (err instanceof Bottleneck.BottleneckError && /dropped/i.test(err.message)) throw new QueueFullError(Math.min(30_000, 50 * opts.highWater + 250))
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  // What this process learnt from the rate window's last refusal (Date.now() ms): no permit frees
  // before rateClosedUntil. Callers put off on that knowledge get places on a local line.
  let rateClosedUntil = 0
  let localLine = 0
  function precheck(): ThrottleDeferError | undefined {
    const closed = circuitWait()
    if (closed > 0) return new NotNowError('circuit', closed + jitter(Math.min(1_000, closed)))
    const held = holds.remainingMs()
    if (held > maxWaitMs) return new NotNowError('hold', held + jitter(Math.min(1_000, held)))
    // Full and no place freed for half a second: a provider that hangs, not one that is busy.
    if (gate?.inFlight.stuckFor(500)) return new NotNowError('provider_cap', gate.inFlight.retryInMs() + jitter(400))
    const now = Date.now()
    if (window && rateClosedUntil - now > maxWaitMs) {
      const place = Math.max(localLine, rateClosedUntil)
      localLine = place + window.spreadMs(maxWaitMs)
      return new NotNowError('rate', place - now + jitter(Math.min(10, window.intervalMs / 4)))
    }
    return undefined
  }

  /** ms before the provider's and this credential's circuits may let a call through (0: now). */
  const circuitWait = () => Math.max(gate?.circuit.waitMs() ?? 0, own?.waitMs() ?? 0)
  /** Through both breakers; started in the same tick as a circuitWait() of 0, so no caller waits on a probe. */
  const throughCircuits = <T>(fn: () => Promise<T>): Promise<T> => {
    const inner = own ? () => own.run(fn) : fn
    return gate ? gate.circuit.run(inner) : inner()
  }
  const quota = async (o: ScheduleOptions) => {
    if (o.quota) await takeQuota(opts, id, limits, o.quota.kstDate, o.quota.msUntilKstMidnight)
  }

  /**
   * Runs `send` under a rate-window permit: the permit is given back untouched when nothing was sent
   * (quota exhausted, a circuit opened meanwhile: fn never ran), and otherwise counts until a window
   * after the call finished, the moment its arrival is certainly behind us.
   */
  async function sending<T>(permit: Permit | undefined, send: () => Promise<T>): Promise<T> {
    let sent = true
    try {
      return await send()
    } catch (err) {
      // A refusal of ours (quota, circuit) comes before fn: nothing left.
      if (err instanceof ThrottleDeferError) sent = false
      throw err
    } finally {
      permit?.done(sent)
    }
  }

  /** The call waits for its turn (bounded by startTimeoutMs): reconcile, and the read-back after a send. */
  async function waiting<T>(fn: () => Promise<T>, o: ScheduleOptions): Promise<T> {
    await holds.waitOut()
    const expiration = o.expirationMs ?? 60_000
    return underCap(
      async () => {
        // A hold that began while this call waited for its slot still applies: checked at send time.
        await holds.waitOut()
        await pacer?.acquire()
        const permit = await window?.acquire()
        return sending(permit, async () => {
          await quota(o)
          return timed(fn)
        })
      },
      expiration,
      startTimeoutMs,
      () => new ThrottleTimeoutError(startTimeoutMs, 1_000 + jitter(2_000)),
    )
  }

  /**
   * The call starts within maxWaitMs or not at all (NotNowError: fn never ran). Cheapest refusals
   * first: circuits and holds are local; concurrency and pacing ask Redis; the in-flight cap (local)
   * comes last, so that a provider's place is held only from the permit to the answer.
   */
  async function deferring<T>(fn: () => Promise<T>, o: ScheduleOptions): Promise<T> {
    const closed = circuitWait()
    if (closed > 0) throw new NotNowError('circuit', closed + jitter(Math.min(1_000, closed)))
    const held = holds.remainingMs()
    if (held > maxWaitMs) throw new NotNowError('hold', held + jitter(Math.min(1_000, held)))
    if (held > 0) await sleep(held)
    // What the provider answered, for the in-flight window: a result the breakers count as a failure
    // (a timeout, a 5xx) or any other answer; 'none' when fn never ran or threw (our own failure).
    let answer: CallAnswer = 'none'
    const observed = async (): Promise<T> => {
      const v = await fn()
      answer = isFailureOutcome(v) ? 'failed' : 'ok'
      return v
    }
    // Someone already waits for this credential's concurrency here: do not queue behind them.
    if (withLimiter && current().counts().QUEUED > 0) throw new NotNowError('concurrency', concurrencyRetryMs())
    return await underCap(
      async () => {
        if (pacer) {
          const slot = await pacer.tryAcquire(maxWaitMs)
          if (!slot.go) throw new NotNowError('rate', slot.retryInMs + jitter(Math.min(20, pacer.intervalMs)))
        }
        let permit: Permit | undefined
        if (window) {
          const got = await window.tryAcquire(maxWaitMs)
          if (!got.go) {
            rateClosedUntil = Math.max(rateClosedUntil, Date.now() + got.closedForMs)
            throw new NotNowError('rate', got.retryInMs + jitter(Math.min(10, window.intervalMs / 4)))
          }
          permit = got.permit
        }
        // The provider's in-flight place is taken after the permit's round trip to Redis, not before:
        // the place then covers only what a hanging provider can stretch (the send fence, the request
        // and its answer), and a process whose slots all go to one provider waits less for a place.
        // Refused here, nothing was sent and the permit is given back untouched.
        const ticket = gate ? await gate.inFlight.tryTake(maxWaitMs) : undefined
        if (gate && ticket === undefined) {
          permit?.done(false)
          throw new NotNowError('provider_cap', gate.inFlight.retryInMs() + jitter(400))
        }
        try {
          return await sending(permit, async () => {
            await quota(o)
            // A probe may have started while this call waited for its slot.
            const w = circuitWait()
            if (w > 0) throw new NotNowError('circuit', w + jitter(Math.min(1_000, w)))
            return timed(() => throughCircuits(observed))
          })
        } finally {
          if (ticket !== undefined) gate?.inFlight.release(ticket, answer)
        }
      },
      o.expirationMs ?? 60_000,
      maxWaitMs,
      () => new NotNowError('concurrency', concurrencyRetryMs()),
    )
  }

  const attempt = <T>(fn: () => Promise<T>, o: ScheduleOptions) => (o.defer ? deferring(fn, o) : waiting(fn, o))

  return {
    id: limiterId,
    async schedule(fn, o = {}) {
      try {
        try {
          return await attempt(fn, o)
        } catch (err) {
          if (!isSettingsLost(err)) throw err
          // The settings key vanished (FLUSH, failover without persistence, TTL): rebuild and retry once.
          // The old limiter leaves first: its unsubscribe is queued before the new one's subscribe on
          // the shared connection, so the new limiter keeps its channel.
          opts.logger.warn({ limiter: limiterId }, 'throttle settings lost in Redis; rebuilding limiter')
          if (built) void quietly(built.disconnect(false))
          built = build()
          return await attempt(fn, o)
        }
      } catch (err) {
        if (err instanceof ThrottleDeferError) opts.onDefer?.(err.reason)
        throw err
      }
    },
    precheck() {
      const err = precheck()
      if (err) opts.onDefer?.(err.reason)
      return err
    },
    takeQuota: (kstDate, msUntil) => takeQuota(opts, id, limits, kstDate, msUntil),
    penalize,
    hold: (ms) => holds.extend(ms),
    queued: () => built?.counts().QUEUED ?? 0,
    circuit: () => own?.state() ?? 'closed',
    unresponsive: () => (own !== undefined && own.state() !== 'closed') || (gate !== undefined && (gate.circuit.state() !== 'closed' || gate.inFlight.slowCalls() > 0)),
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

/** How a call that held an in-flight place ended, for the window: answered, failed (a timeout, a 5xx), or neither (never sent, our own error). */
export type CallAnswer = 'ok' | 'failed' | 'none'

export interface InFlightOptions {
  /**
   * A call in flight for longer than this makes the provider *slow*: while one is, the cap is 1, so
   * no further call is started until it ends (default: never slow).
   */
  readonly slowCallMs?: number
  /** The window a provider starts with (and the floor it never shrinks below is 1). Default 2. */
  readonly initial?: number
  /** false: no window and no cap of 1 while a call is slow, only `max` (slowCalls() still counts). */
  readonly adaptive?: boolean
  readonly now?: () => number
}

/**
 * Calls in flight to one provider from this process: a hanging provider holds few worker slots and,
 * above all, gets few requests whose outcome it then leaves unknown (each such receipt waits out the
 * provider's commit window before it may be looked up and sent again). Three bounds:
 * - `max`, the configured cap (<PROVIDER>_MAX_IN_FLIGHT, default half the process's slots);
 * - a window that starts small (2) and grows by one per call answered within `slowCallMs`, and halves
 *   (never below 1) on a failure (timeout, 5xx, refused connection) or a slow answer: a provider that
 *   hangs from the start gets 2 calls, not `max`; a healthy one reaches `max` after a few answers;
 * - while any call has been in flight longer than `slowCallMs`, a cap of 1: a provider that starts to
 *   hang mid-stream gets no new call until the slow one ends (only the calls already on their way
 *   when it stopped answering, at most the window, are caught).
 * Hand-written (a counter and a queue) because a waiter must give up after a bound, which cockatiel's
 * bulkhead queue does not offer.
 */
export class InFlight {
  /** Settable: the composition root learns the process's slots only when its workers start. */
  max: number
  readonly #waiters: (() => void)[] = []
  readonly #now: () => number
  readonly #slowCallMs: number
  /** Start time of each call in flight, by ticket. */
  readonly #calls = new Map<number, number>()
  #nextTicket = 1
  #window: number
  readonly #adaptive: boolean
  /** Since when no place has come free while all were taken (the later of: last release, cap reached). */
  #stuckSince: number
  constructor(max: number, opts: InFlightOptions = {}) {
    this.max = max
    this.#now = opts.now ?? Date.now
    this.#slowCallMs = opts.slowCallMs ?? Number.POSITIVE_INFINITY
    this.#window = Math.max(1, opts.initial ?? 2)
    this.#adaptive = opts.adaptive ?? true
    this.#stuckSince = this.#now()
  }
  get active(): number {
    return this.#calls.size
  }
  /** Calls in flight for longer than slowCallMs: slots a hanging provider holds without using CPU. */
  slowCalls(): number {
    if (this.#slowCallMs === Number.POSITIVE_INFINITY) return 0
    const since = this.#now() - this.#slowCallMs
    let n = 0
    for (const t of this.#calls.values()) if (t <= since) n++
    return n
  }
  /** The cap in force now: 1 while a call is slow, else the window (at most `max`). */
  cap(): number {
    if (!this.#adaptive) return this.max
    return this.slowCalls() > 0 ? 1 : Math.max(1, Math.min(this.max, this.#window))
  }
  /**
   * How long a caller refused at the cap should stay away: as long as no place has come free, from
   * 100 ms (a busy but answering provider frees places within milliseconds) up to 5 s (a hanging one
   * frees none until its calls time out). Without it, every refused job of a hanging provider comes
   * back several times a second, each time a claim, a give-back and a move through BullMQ's delayed
   * set, and that churn takes the CPU the healthy providers' jobs need. 5 s also bounds how late the
   * held jobs notice that the provider answers again.
   */
  retryInMs(): number {
    return Math.min(5_000, Math.max(100, this.#now() - this.#stuckSince))
  }
  /** Full now, and no place has come free for `ms`: a provider that hangs rather than one that is busy. */
  stuckFor(ms: number): boolean {
    return this.active >= this.cap() && this.#now() - this.#stuckSince >= ms
  }
  #take(): number {
    const ticket = this.#nextTicket++
    this.#calls.set(ticket, this.#now())
    if (this.active >= this.cap()) this.#stuckSince = this.#now()
    return ticket
  }
  /** Takes a place, waiting at most maxWaitMs: its ticket, or undefined when none came free in time. */
  async tryTake(maxWaitMs: number): Promise<number | undefined> {
    if (this.active < this.cap()) return this.#take()
    if (maxWaitMs <= 0) return undefined
    return new Promise<number | undefined>((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        resolve(this.#take())
      }
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(wake)
        if (i >= 0) this.#waiters.splice(i, 1)
        resolve(undefined)
      }, maxWaitMs)
      this.#waiters.push(wake)
    })
  }
  /** Gives the place back; `answer` moves the window (see the class). */
  release(ticket: number, answer: CallAnswer = 'none'): void {
    const started = this.#calls.get(ticket)
    if (started === undefined) return
    this.#calls.delete(ticket)
    const now = this.#now()
    const slow = now - started >= this.#slowCallMs
    if (answer === 'ok' && !slow) this.#window = Math.min(Math.max(1, this.max), this.#window + 1)
    else if (answer === 'failed' || (answer === 'ok' && slow)) this.#window = Math.max(1, Math.floor(this.#window / 2))
    this.#stuckSince = now
    while (this.#waiters.length > 0 && this.active < this.cap()) this.#waiters.shift()!()
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

interface Hold {
  /** Extends the hold to now + ms; false when it already lasts longer. */
  extend(ms: number): boolean
  /** Resolves once no hold is in force (a hold may be extended while waiting). */
  waitOut(): Promise<void>
  /** ms left of the hold in force (0: none). */
  remainingMs(): number
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
    remainingMs: () => Math.max(0, until - Date.now()),
  }
}

/**
 * One throttle per (provider, credential), created on first use, all on one shared connection; with
 * dispatch options also one gate per provider (its circuit breaker and in-flight cap) shared by that
 * provider's credentials, and the deferral counts and circuit states published for /metrics.
 */
export class ThrottleRegistry {
  readonly #throttles = new Map<string, Throttle>()
  readonly #gates = new Map<string, ProviderGate>()
  #opts: ThrottleFactoryOptions
  readonly #lifecycle = { closing: false }
  #connection: Bottleneck.IORedisConnection | undefined
  readonly #sweep: NodeJS.Timeout
  /** Receives the holds other processes publish after a 429 (one connection per process). */
  readonly #holds: Redis | undefined
  readonly #stats: DispatchStatsWriter | undefined
  constructor(opts: ThrottleFactoryOptions & { readonly idleMs?: number; readonly processName?: string }) {
    const channel = `${opts.prefix}:throttle-holds`
    this.#opts = {
      ...opts,
      lifecycle: this.#lifecycle,
      publishHold: (id, ms) => void opts.redis.publish(channel, JSON.stringify({ id, ms })).catch(() => {}),
    }
    if (opts.dispatch) this.#stats = createDispatchStatsWriter(opts.redis, opts.prefix, opts.processName ?? `pid-${process.pid}`)
    const idleMs = opts.idleMs ?? 120_000
    this.#sweep = setInterval(
      () => {
        for (const t of this.#throttles.values()) t.releaseIfIdle(idleMs)
      },
      Math.min(60_000, idleMs),
    ).unref()
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

  /** The throttle of credential `key` (`<provider>-<credential id>`); `provider` names its gate. */
  get(key: string, limits: ProviderLimits, provider?: string): Throttle {
    let t = this.#throttles.get(key)
    if (!t) {
      if (hasLimiter(limits) && this.#opts.datastore !== 'local') this.#connection ??= newConnection(this.#opts.redis)
      const name = provider ?? key
      const stats = this.#stats
      t = createThrottle(key, limits, {
        ...this.#opts,
        connection: this.#connection,
        providerGate: provider ? this.gate(provider) : undefined,
        onDefer: stats ? (reason) => stats.deferred(name, reason) : undefined,
        onCircuit: stats ? (state) => stats.circuit({ name: key, provider: name, scope: 'credential', state }) : undefined,
      })
      this.#throttles.set(key, t)
    }
    return t
  }

  /**
   * Sets the in-flight caps (the composition root, once it knows how many worker slots the process
   * runs); gates made before take the new cap at once.
   */
  setProviderMaxInFlight(caps: Readonly<Record<string, number>>): void {
    const d = this.#opts.dispatch
    if (!d) return
    this.#opts = { ...this.#opts, dispatch: { ...d, providerMaxInFlight: caps } }
    for (const [provider, g] of this.#gates) g.inFlight.max = caps[provider] ?? Number.MAX_SAFE_INTEGER
  }

  /**
   * Calls of this process in flight for longer than the slow-call time, over all providers: worker
   * slots that wait on a hanging provider without using CPU (the worker lends that many extra slots).
   */
  slowCalls(): number {
    let n = 0
    for (const g of this.#gates.values()) n += g.inFlight.slowCalls()
    return n
  }

  /** The provider's circuit and in-flight cap in this process (undefined without dispatch options). */
  gate(provider: string): ProviderGate | undefined {
    const d = this.#opts.dispatch
    if (!d) return undefined
    let g = this.#gates.get(provider)
    if (!g) {
      const stats = this.#stats
      g = {
        name: provider,
        circuit: createCircuit({
          failures: d.circuitFailures,
          unknownOutcomes: d.circuitUnknownOutcomes,
          halfOpenMs: d.circuitHalfOpenMs,
          onChange: (state) => {
            this.#opts.logger.warn({ provider, circuit: state }, `provider circuit ${state}`)
            stats?.circuit({ name: provider, provider, scope: 'provider', state })
          },
        }),
        inFlight: new InFlight(d.providerMaxInFlight[provider] ?? Number.MAX_SAFE_INTEGER, { slowCallMs: d.slowCallMs, adaptive: d.adaptiveInFlight }),
      }
      this.#gates.set(provider, g)
    }
    return g
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep)
    this.#lifecycle.closing = true
    await this.#stats?.close()
    // Connection first (see Throttle.close), then the limiters, which then only drop local state.
    if (this.#connection) await quietly(this.#connection.disconnect(true))
    this.#connection = undefined
    if (this.#holds) await quietly(this.#holds.quit())
    await Promise.all([...this.#throttles.values()].map((t) => t.close()))
    this.#throttles.clear()
  }
}
