/**
 * A send-time pacer for a provider's per-second limit, shared by every process through Redis: GCRA
 * (the generic cell rate algorithm, a leaky bucket kept as one "theoretical arrival time" per key, on
 * the Redis clock). Each call reserves the next free slot (one script call), sleeps until it, and is
 * sent only if its timer fired on time: a wake-up later than MAX_LATE of an interval gives the slot up
 * and reserves another. So calls leave evenly spaced, at most a millisecond early (timers have
 * millisecond resolution; a slot less than 1 ms away is taken at once), and never late enough to bunch.
 *
 * Why on top of bottleneck's minTime: bottleneck reserves evenly spaced start slots in Redis, but each
 * process starts its calls on local timers, and a timer that fires late followed by one on time puts
 * two calls a few ms apart; calls that waited out a 429 hold inside their slots all start together. A
 * provider that counts a sliding window (the sandbox, most API gateways) sees that bunching as a burst
 * over its limit, even when the calls are paced below it. Checking the wake-up against the slot leaves
 * only the network's jitter between our spacing and what the provider counts.
 * The pacer alone sets the pace: bottleneck only caps concurrency (throttle.ts).
 *
 * A worker slot must not sit here waiting for a slow credential (docs/dispatch.md), so a job asks
 * `tryAcquire(maxWaitMs)` instead: the slot is reserved only when it comes within maxWaitMs (tens of
 * ms); otherwise nothing is reserved — no slot is left reserved and unused — and the answer is when
 * to come back. Those times are spread out on a second key per credential (the deferral line): each
 * deferred job gets its own place, one pacing interval (divided by DEFER_HEADROOM) after the
 * previous one and never before the next free slot, so N jobs deferred together come back one by one
 * at about the rate the credential can take them instead of all at once (which would send N-1 of them
 * back again: a hot loop).
 *
 * Why reserve rather than poll: if each process's first waiter asked "may I send now?" and slept
 * until the answer could change, every process would ask at every slot and all but one be refused —
 * one script call per process per call sent, and each refusal a wake-up that competes with the
 * process about to send. Reserving costs one script call per call sent, and a slot given up late is
 * rare. The figures are in docs/performance.md (Fidelity).
 */
import type { Redis } from 'ioredis'

// Microseconds since the epoch (≈ 1.8e15) are exact in Lua's doubles. Reserves the next slot and
// returns the µs until it (0: now); the key expires a second after the last reserved slot.
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return math.floor(tat - now)
`

/**
 * How late (in intervals) a reserved slot may still be used. A slot reached more than half an
 * interval late is given up: a late send followed by on-time ones forms a burst, since it can land
 * within one second of the provider's window together with every on-time call after it, whereas
 * giving the slot up costs one slot of throughput. The bound is part of what the 3 % rate margin
 * (RATE_SAFETY) must absorb: at 97 req/s (10.3 ms apart) up to ~31 ms of spread between our slots and
 * the provider's count keeps a sliding second at ≤ 100, and half an interval leaves ~25 ms of it for
 * the network and the provider's own stalls. A looser bound uses more slots but lets 429s through,
 * and a 429 costs more than a slot (every process holds the credential for its Retry-After).
 * The experiments behind the choice are in docs/performance.md (Fidelity).
 */
export const MAX_LATE = 0.5

// The same reservation, taken only when the slot is at most ARGV[2] µs away. Otherwise the deferral
// line (KEYS[2]) gives the caller its place: never before the next free slot, ARGV[3] µs after the
// previous deferral. Returns {0, µs to wait} (reserved) or {1, µs until the place} (not reserved).
const TRY_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
  return {0, math.floor(tat - now)}
end
local spread = tonumber(ARGV[3])
local place = tonumber(redis.call('GET', KEYS[2]) or '0')
if place < tat then place = tat end
redis.call('SET', KEYS[2], string.format('%.0f', place + spread), 'PX', math.ceil((place + spread - now) / 1000) + 1000)
return {1, math.floor(place - now)}
`

/**
 * Deferred jobs are given places a little closer together than the pacing interval: a job that comes
 * back late (the queue was busy) must not leave its slot unused, and one that finds its slot taken
 * is simply deferred again, which is cheap.
 */
export const DEFER_HEADROOM = 1.2

type WithPacer = Redis & {
  crReserve(key: string, intervalUs: number): Promise<number>
  crTryReserve(key: string, lineKey: string, intervalUs: number, maxWaitUs: number, spreadUs: number): Promise<[number, number]>
}

/** What tryAcquire decided: go now (the slot is reserved and has come), or come back in `retryInMs`. */
export type TryAcquire = { readonly go: true } | { readonly go: false; readonly retryInMs: number }

export interface PacerStats {
  /** Slots reserved in Redis by this process. */
  readonly reserved: number
  /** Reserved slots given up because the timer fired too late to use them. */
  readonly forfeited: number
}

export interface Pacer {
  /** Resolves when a call may be sent now (its slot has come). */
  acquire(signal?: AbortSignal): Promise<void>
  /**
   * Reserves the next slot only if it comes within maxWaitMs, and waits for it; otherwise reserves
   * nothing and says when to come back (the caller's place in the credential's deferral line).
   */
  tryAcquire(maxWaitMs: number): Promise<TryAcquire>
  /** The pacing interval, ms. */
  readonly intervalMs: number
  stats(): PacerStats
}

/** `perSecond` calls a second; `key` is shared by every process. */
export function createPacer(redis: Redis, key: string, perSecond: number): Pacer {
  return createPacerEvery(redis, key, 1000 / perSecond)
}

/** One call every `intervalMs`; `key` is shared by every process. */
export function createPacerEvery(redis: Redis, key: string, intervalMs: number): Pacer {
  const r = redis as WithPacer
  if (typeof r.crReserve !== 'function') r.defineCommand('crReserve', { numberOfKeys: 1, lua: SCRIPT })
  if (typeof r.crTryReserve !== 'function') r.defineCommand('crTryReserve', { numberOfKeys: 2, lua: TRY_SCRIPT })
  const intervalUs = Math.round(intervalMs * 1000)
  const maxLateMs = (intervalUs * MAX_LATE) / 1000
  let reserved = 0
  let forfeited = 0
  const take = async (signal?: AbortSignal) => {
    for (;;) {
      signal?.throwIfAborted()
      const waitUs = await r.crReserve(key, intervalUs)
      reserved++
      if (waitUs < 1000) return
      const due = performance.now() + waitUs / 1000
      await new Promise((res) => setTimeout(res, Math.round(waitUs / 1000)))
      if (performance.now() - due <= maxLateMs) return
      forfeited++
    }
  }
  // Waiters of this process line up locally and only the first holds a reservation: a slot is
  // reserved only when a call is ready to use it.
  let tail: Promise<void> = Promise.resolve()
  return {
    acquire(signal) {
      const mine = tail.then(() => take(signal))
      tail = mine.catch(() => {})
      return mine
    },
    async tryAcquire(maxWaitMs) {
      // A slot reached too late is given up (see MAX_LATE) and one more is tried at once.
      for (let tries = 0; ; tries++) {
        const [deferred, us] = await r.crTryReserve(key, `${key}:line`, intervalUs, Math.round(maxWaitMs * 1000), Math.round(intervalUs / DEFER_HEADROOM))
        if (deferred) return { go: false, retryInMs: Math.max(1, Math.ceil(us / 1000)) }
        reserved++
        if (us < 1000) return { go: true }
        const due = performance.now() + us / 1000
        await new Promise((res) => setTimeout(res, Math.round(us / 1000)))
        if (performance.now() - due <= maxLateMs) return { go: true }
        forfeited++
        if (tries >= 1) return { go: false, retryInMs: Math.ceil(intervalUs / 1000) }
      }
    },
    intervalMs: intervalUs / 1000,
    stats: () => ({ reserved, forfeited }),
  }
}
