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
 * bottleneck still caps concurrency and releases calls a little faster than the rate (PACER_HEADROOM in
 * throttle.ts), so a call is always waiting here and the pacer alone sets the pace.
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

type WithPacer = Redis & { crReserve(key: string, intervalUs: number): Promise<number> }

export interface PacerStats {
  /** Slots reserved in Redis by this process. */
  readonly reserved: number
  /** Reserved slots given up because the timer fired too late to use them. */
  readonly forfeited: number
}

export interface Pacer {
  /** Resolves when a call may be sent now (its slot has come). */
  acquire(signal?: AbortSignal): Promise<void>
  stats(): PacerStats
}

/** `perSecond` calls a second; `key` is shared by every process. */
export function createPacer(redis: Redis, key: string, perSecond: number): Pacer {
  const r = redis as WithPacer
  if (typeof r.crReserve !== 'function') r.defineCommand('crReserve', { numberOfKeys: 1, lua: SCRIPT })
  const intervalUs = Math.round(1_000_000 / perSecond)
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
    stats: () => ({ reserved, forfeited }),
  }
}
