/**
 * The shared throttle on real Redis: limits hold across two limiter instances (two processes'
 * worth), the Redis 7 SETTINGS_KEY_NOT_FOUND trap is recovered from, and the daily quota counts per
 * KST day.
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import pino from 'pino'
import { expect, it } from 'vitest'
import { createThrottle, paceIntervalMs, QuotaExhaustedError, ThrottleRegistry, type Throttle } from '../../src/throttle/throttle.ts'
import { WINDOW_MS } from '../../src/throttle/rate-window.ts'
import { createPacer, MAX_LATE } from '../../src/throttle/pacer.ts'
import { redisUrl } from '../helpers/env.ts'
import { useRedis } from '../helpers/redis-keys.ts'

const prefix = `crt${randomBytes(4).toString('hex')}`
let redis: Redis
useRedis(prefix, (r) => (redis = r))

const opts = () => ({ redis, prefix, logger: pino({ level: 'silent' }), highWater: 100 })

it('keeps minTime across two limiter instances sharing Redis', async () => {
  const limits = { maxConcurrent: 10, minTimeMs: 50, maxPerSecond: null, dailyQuota: null }
  const a = createThrottle('shared', limits, opts())
  const b = createThrottle('shared', limits, opts())
  const starts: number[] = []
  const job = () => Promise.resolve(starts.push(Date.now()))
  await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).schedule(job)))
  starts.sort((x, y) => x - y)
  // Redis spaces the reservations 50 ms apart across both instances; local timers may fire a little
  // late (a busy event loop), so individual gaps can bunch — the span cannot. Unlimited, all 12 would
  // start within a few ms.
  expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(11 * 50 * 0.6)
  await a.close()
  await b.close()
})

it('recovers when the limiter settings key disappears (Redis 7 "ERR SETTINGS_KEY_NOT_FOUND")', async () => {
  const t = createThrottle('lost', { maxConcurrent: 2, minTimeMs: 0, maxPerSecond: null, dailyQuota: null }, opts())
  expect(await t.schedule(async () => 'first')).toBe('first')
  const keys = await redis.keys(`b_${prefix}-lost_settings`)
  expect(keys).toHaveLength(1)
  await redis.del(keys[0]!)
  expect(await t.schedule(async () => 'after loss')).toBe('after loss')
  await t.close()
})

it('counts the daily quota per KST date and refuses past it', async () => {
  const t = createThrottle('quota', { maxConcurrent: 2, minTimeMs: 0, maxPerSecond: null, dailyQuota: 2 }, opts())
  await t.takeQuota('2026-11-22', 60_000)
  await t.takeQuota('2026-11-22', 60_000)
  await expect(t.takeQuota('2026-11-22', 60_000)).rejects.toBeInstanceOf(QuotaExhaustedError)
  await t.takeQuota('2026-11-23', 60_000) // a new KST day
  await t.close()
})

it('keeps a documented req/s limit in every one-second window across a registry and a second instance', async () => {
  const limits = { maxConcurrent: 50, minTimeMs: 0, maxPerSecond: 40, dailyQuota: null }
  // The rate window alone keeps the rate, at the full documented limit (no safety margin).
  expect(paceIntervalMs(limits)).toBe(0)
  const registry = new ThrottleRegistry(opts())
  await expectAtMost40PerSecond(registry.get('paced', limits), createThrottle('paced', limits, opts()))
  await registry.close()
})

/**
 * 100 calls split over two instances (two processes' worth) of a 40 req/s credential, each taking a
 * few ms; closes `b`. A call starts after its grant and a permit counts until a window after the
 * call ended, so no one-second window holds more than 40 starts — strictly, however late the timers.
 */
async function expectAtMost40PerSecond(a: Throttle, b: Throttle) {
  const calls: { start: number; end: number }[] = []
  const job = async () => {
    const start = Date.now()
    await new Promise((r) => setTimeout(r, 3))
    calls.push({ start, end: Date.now() })
  }
  await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).schedule(job)))
  const starts = calls.map((c) => c.start).sort((x, y) => x - y)
  // 100 calls at 40 per window need three windows: the last starts ≥ 2 windows after the first.
  expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(2 * (WINDOW_MS - 2))
  let maxInWindow = 0
  for (let i = 0, j = 0; i < starts.length; i++) {
    while (starts[i]! - starts[j]! >= 1000) j++
    maxInWindow = Math.max(maxInWindow, i - j + 1)
  }
  expect(maxInWindow).toBeLessThanOrEqual(40)
  await b.close()
}

it('a per-second limit alone is shared by the rate window: bottleneck stays local, the rate still holds across instances', async () => {
  const limits = { maxConcurrent: null, minTimeMs: 0, maxPerSecond: 40, dailyQuota: null }
  const registry = new ThrottleRegistry(opts())
  await expectAtMost40PerSecond(registry.get('rate-only', limits), createThrottle('rate-only', limits, opts()))
  // No clustered limiter state: only the rate window's key is in Redis for this credential.
  expect(await redis.keys(`b_${prefix}-rate-only*`)).toEqual([])
  expect(await redis.keys(`${prefix}:rate:rate-only`)).toHaveLength(1)
  await registry.close()
})

it('releases an idle limiter and rebuilds it on next use, with the limit still shared', async () => {
  const limits = { maxConcurrent: 1, minTimeMs: 0, maxPerSecond: null, dailyQuota: null }
  const registry = new ThrottleRegistry(opts())
  const t = registry.get('idle', limits)
  expect(t.releaseIfIdle(0)).toBe(false) // never used: nothing to release
  expect(await t.schedule(async () => 'first')).toBe('first')
  expect(t.releaseIfIdle(60_000)).toBe(false) // used just now
  expect(t.releaseIfIdle(0)).toBe(true)
  // Rebuilt on demand: maxConcurrent 1 still holds across it and a second instance.
  const other = createThrottle('idle', limits, opts())
  let running = 0
  let peak = 0
  const job = async () => {
    peak = Math.max(peak, ++running)
    await new Promise((r) => setTimeout(r, 20))
    running--
  }
  await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? t : other).schedule(job)))
  expect(peak).toBe(1)
  await registry.close()
  await other.close()
})

it('a 429 seen by one process holds the calls of every process for that credential', async () => {
  const limits = { maxConcurrent: 5, minTimeMs: 0, maxPerSecond: null, dailyQuota: null }
  const one = new ThrottleRegistry(opts())
  const two = new ThrottleRegistry(opts())
  const a = one.get('held', limits)
  const b = two.get('held', limits)
  await a.schedule(async () => 'warm') // both subscribed and built
  await b.schedule(async () => 'warm')
  await new Promise((r) => setTimeout(r, 100))
  const told = Date.now()
  a.penalize(2_000)
  // The 429'd process stops at once; the other as soon as the hold arrives over Redis pub/sub: from
  // then on, a call there waits for the rest of the hold.
  const startedA = a.schedule(async () => Date.now())
  // Polled until the hold has arrived, for most of the hold (a count of tries would depend on how
  // fast a try is on this machine); arriving within 1.5 s it still has ≥ 500 ms to run.
  let heldFor = 0
  while (heldFor < 300 && Date.now() - told < 1_500) {
    const before = Date.now()
    await b.schedule(async () => {})
    heldFor = Date.now() - before
  }
  expect(heldFor).toBeGreaterThanOrEqual(300)
  expect((await startedA) - told).toBeGreaterThanOrEqual(1_990)
  await one.close()
  await two.close()
})

it('the send-time pacer lets callers that arrive together leave one interval apart, across processes', async () => {
  // Two pacers on one key stand for two processes; 40 callers arrive at once (as after a 429 hold).
  const key = `${prefix}:pace:test`
  const one = timedConnection()
  const two = timedConnection()
  const a = createPacer(one.conn, key, 50)
  const b = createPacer(two.conn, key, 50)
  const sent: number[] = []
  await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).acquire().then(() => sent.push(performance.now()))))
  sent.sort((x, y) => x - y)
  // What holds, from the pacer's parameters: slots are ≥ 20 ms apart (50/s) on Redis' clock; a call
  // goes no earlier than its slot (1 ms of timer rounding) and no later than MAX_LATE × 20 = 10 ms
  // after it plus the round trip of its reservation (a late answer is not seen as a late timer; on
  // an idle machine ~1 ms, tens of ms under load — measured here, not guessed).
  const rttMs = Math.max(...[...one.scripts, ...two.scripts].map((c) => c.rttMs))
  const lateMs = MAX_LATE * 20 + rttMs
  // 40 calls take ≥ 39 intervals, less how late the first may have gone.
  expect(sent.at(-1)! - sent[0]!).toBeGreaterThanOrEqual(39 * 20 - 1 - lateMs)
  // No burst: the calls of any 100 ms had their slots within 100 + 1 + lateMs ms.
  let maxIn100 = 0
  for (let i = 0, j = 0; i < sent.length; i++) {
    while (sent[i]! - sent[j]! >= 100) j++
    maxIn100 = Math.max(maxIn100, i - j + 1)
  }
  expect(maxIn100).toBeLessThanOrEqual(Math.floor((100 + 1 + lateMs) / 20) + 1)
  one.conn.disconnect()
  two.conn.disconnect()
})

it('the pacer gives up a slot its timer reached too late, and reserves another instead of sending late', async () => {
  // 10/s: one slot per 100 ms, usable up to MAX_LATE of an interval (50 ms) after it.
  expect(MAX_LATE * 100).toBeLessThan(200)
  const timers = watchPacerTimers()
  try {
    // The second call must hold a slot ahead and sleep on a timer for it. On a loaded machine the
    // second reservation can come a whole interval after the first and find its slot already due
    // (no timer): then the set-up is tried again on a fresh key.
    let pacer = createPacer(redis, `${prefix}:pace:late`, 10)
    let second: Promise<void> | undefined
    for (let attempt = 0; attempt < 10 && !second; attempt++) {
      pacer = createPacer(redis, `${prefix}:pace:late${attempt}`, 10)
      timers.armed.length = 0
      await pacer.acquire()
      const next = pacer.acquire()
      while (pacer.stats().reserved < 2) await new Promise((r) => setImmediate(r))
      if (timers.armed.length === 1) second = next
      else await next
    }
    expect(second).toBeDefined()
    // This busy event loop makes the timer fire ≥ 200 ms after its slot, past MAX_LATE.
    const { armedAt, delayMs } = timers.armed[0]!
    const blockedUntil = armedAt + delayMs + 200
    while (performance.now() < blockedUntil) {
      // busy: no timer can run
    }
    await second
    expect(pacer.stats()).toEqual({ reserved: 3, forfeited: 1 })
    // The replacement slot is the next free one, already due (the slot given up ended a whole
    // interval before the block did): the call went at once, on no further timer. Counted, not
    // timed, so a slow Redis answer on a loaded machine cannot fail it.
    expect(timers.armed).toHaveLength(1)
    expect(timers.armed[0]!.lateMs).toBeGreaterThanOrEqual(200 - 1)
  } finally {
    timers.stop()
  }
})

it('the pacer costs one Redis reservation per call, and gives a slot up only when its timer fired late', async () => {
  // 50/s: a slot every 20 ms, given up when its timer fires more than MAX_LATE × 20 = 10 ms late.
  const key = `${prefix}:pace:count`
  // A connection of its own, whose script calls are counted as they leave for Redis: a count kept
  // outside the pacer (MONITOR is not used: ioredis can mistake a MONITOR line for a reply when
  // other clients flood the server).
  const { conn, scripts } = timedConnection()
  const maxLateMs = MAX_LATE * 20
  await createPacer(conn, `${key}:warm`, 50).acquire() // the script is in Redis' cache: no NOSCRIPT retry below
  scripts.length = 0
  const pacer = createPacer(conn, key, 50)
  const timers = watchPacerTimers()
  try {
    await Promise.all(Array.from({ length: 30 }, () => pacer.acquire()))
  } finally {
    timers.stop()
  }
  const { reserved, forfeited } = pacer.stats()
  // One script call per slot reserved, each used by a call or given up: no polling.
  expect(reserved).toBe(30 + forfeited)
  expect(scripts).toHaveLength(reserved)
  conn.disconnect()
  // A slot is given up exactly when its timer fired late, whatever the machine's load: so timers on
  // time cost one reservation per call. The pacer measures lateness from its own due time: the
  // timer's delay is rounded (±0.5 ms) and the pacer looks a microtask after the timer fired, so a
  // timer just under the bound (2 ms of slack for a GC pause there) may still be given up.
  const late = timers.armed.filter((t) => t.lateMs > maxLateMs + 0.5).length
  const maybeLate = timers.armed.filter((t) => t.lateMs > maxLateMs - 0.5 - 2).length
  expect(forfeited).toBeGreaterThanOrEqual(late)
  expect(forfeited).toBeLessThanOrEqual(maybeLate)
  // A reservation arms at most one timer (none when its slot has already come).
  expect(timers.armed.length).toBeLessThanOrEqual(reserved)
})

/** A connection whose script calls are recorded as they go out, with their round trips. */
function timedConnection() {
  const conn = new Redis(redisUrl(), { maxRetriesPerRequest: null })
  const scripts: { name: string; rttMs: number }[] = []
  const send = conn.sendCommand.bind(conn)
  conn.sendCommand = ((cmd: Parameters<typeof send>[0]) => {
    if (/^eval/i.test(cmd.name)) {
      const entry = { name: cmd.name, rttMs: Number.NaN }
      scripts.push(entry)
      const at = performance.now()
      cmd.promise.then(
        () => (entry.rttMs = performance.now() - at),
        () => {},
      )
    }
    return send(cmd)
  }) as typeof conn.sendCommand
  return { conn, scripts }
}

/**
 * Watches the timers the pacer arms (those set from pacer.ts), and how late each fired against the
 * delay it asked for: the pacer's own forfeits can then be checked against what its timers did,
 * instead of against a guess of how late timers are on this machine.
 */
function watchPacerTimers() {
  const original = globalThis.setTimeout
  const armed: { armedAt: number; delayMs: number; lateMs: number }[] = []
  const patched = ((fn: (...a: unknown[]) => void, delay?: number, ...rest: unknown[]) => {
    const at = performance.now() // first: the pacer took its due time just before
    if (!new Error().stack?.includes('throttle/pacer.ts')) return original(fn, delay, ...rest)
    const entry = { armedAt: at, delayMs: delay ?? 0, lateMs: Number.NaN }
    armed.push(entry)
    return original(
      (...a: unknown[]) => {
        entry.lateMs = performance.now() - at - entry.delayMs
        fn(...a)
      },
      delay,
      ...rest,
    )
  }) as typeof setTimeout
  globalThis.setTimeout = patched
  return {
    armed,
    stop: () => {
      globalThis.setTimeout = original
    },
  }
}
