/**
 * A provider's per-second limit, shared by every process through Redis, kept the way providers count
 * it: at most N requests in any one-second window (the sandbox, API gateways). One sorted set per
 * credential holds a permit per call, scored by when the call stops counting.
 *
 * Why this and not an even pace below the limit. The earlier pacer (pacer.ts, GCRA) sent one call
 * every 1/(0.97 N) s and relied on the 3 % to absorb the spread between our send times and the
 * provider's arrival times: any call that reached the provider more than ~31 ms late, followed by
 * on-time ones, put N+1 arrivals into one second (a 429), whatever N. On a busy machine that happens,
 * and the margin also capped the rate at 97 % (and a deferred job that came back a little late lost
 * its slot for good: the pace never catches up).
 *
 * What holds here, by causality rather than by a margin:
 * - a call's arrival at the provider is no later than its answer reaching us, so a permit counts
 *   until `WINDOW_MS` after its call finished (`done`), on Redis' clock: Redis dates the end from when
 *   it reads the report, less the time the report waited in this process (Reports, below), which is
 *   never before the answer came;
 * - a new call is granted at a Redis time t and sent after it, so it arrives after t;
 * - a permit is granted only when fewer than N permits count at t.
 * So the arrivals of any N+1 calls span more than a second: no 429 from our own traffic, however
 * late a process, its timers or the network were. The price is the answer's latency: a credential
 * makes at most N calls per (1 s + latency), ~99 % of the limit against the sandbox (answers in a
 * few ms) and less against a slow provider (below).
 * - A call still in flight counts until it finishes, however long that takes: between its grant and
 *   its request leaving there is the send fence (a Postgres write, hundreds of ms on a busy machine),
 *   so no bound from the grant would be safe. (An earlier version counted an unanswered call only
 *   until 250 ms after its grant; a loaded bench run then sent a request 250 ms after its grant and
 *   drew a 429.) So a credential whose calls hang holds its permits until they time out, and one
 *   whose answers take L gets N / (1 s + L): 83 % of its limit at L = 200 ms. Should a process die
 *   mid-call, its permit stops counting IN_FLIGHT_TTL_MS after the grant.
 * - Bursts: N calls may leave together, which a window-counting provider accepts.
 *
 * A worker slot must not wait here for a slow credential (docs/dispatch.md): `tryAcquire(maxWaitMs)`
 * takes a permit only when one is free within maxWaitMs, otherwise takes nothing and gives the caller
 * its place in the credential's deferral line (as pacer.ts does): never before a permit frees, one
 * spacing after the previous place.
 */
import { performance } from 'node:perf_hooks'
import type { Redis } from 'ioredis'

/** The provider's window, plus 2 ms for the millisecond clocks on both sides. */
export const WINDOW_MS = 1_002

/** How long the permit of a call that never reports back (its process died) keeps counting. */
export const IN_FLIGHT_TTL_MS = 60_000

/**
 * Deferred jobs come back this much more often than permits free, so a freed permit rarely waits for
 * a job; one that finds nothing free is deferred again (cheap). The spacing is also kept within the
 * dispatch wait, so that a permit freeing between two returns is met by the second.
 */
export const DEFER_HEADROOM = 1.2

/**
 * How far back a report may date its call's end (see Reports). A report that waited longer counts its
 * call from this long before Redis reads it: later than the call ended, so only a shorter rate, never
 * a call too many. The bound is what lets a process say how soon a permit still in flight can free
 * (a window from now, less this), so it is kept small: reports wait a few ms, tens on a loaded
 * process whose 1 ms timer fires late.
 */
export const MAX_REPORT_AGE_MS = 30
const MAX_REPORT_AGE_US = MAX_REPORT_AGE_MS * 1000

// The reports of finished calls (see Reports below), applied at Redis time `now`: KEYS[first..]
// the permits' sets, ARGV[a..] per key its member, '1' (sent) or '0' (never sent: given back), and
// how long ago the call ended, µs (≤ MAX_REPORT_AGE_MS). A sent call counts until a window after it
// ended: `now - age + window` (XX: a permit already expired, its process dead, stays gone; LT: a
// report repeated later never lengthens it).
const REPORT_LUA = `
local function report(now, window, first, a)
  for i = first, #KEYS do
    local j = a + 3 * (i - first)
    local member = ARGV[j]
    if ARGV[j + 1] == '1' then
      redis.call('ZADD', KEYS[i], 'XX', 'LT', string.format('%.0f', now - tonumber(ARGV[j + 2]) + window), member)
    else
      redis.call('ZREM', KEYS[i], member)
    end
  end
end
`

// Times are µs since the epoch on Redis' clock (exact in Lua's doubles). KEYS[1] the permits (sorted
// set: member → when it stops counting), KEYS[2] the deferral line, KEYS[3..] reports carried along
// (ARGV[8..]). ARGV: limit, window µs, in-flight TTL µs, max wait µs, line spread µs, member, the
// reports' max age µs. The
// reports go first, so a permit a carried report frees is free for this caller. Returns {0, µs to
// wait, grant time} or {1, µs until the place in line, µs until the permit that would have been
// next frees}.
const TRY_SCRIPT = `${REPORT_LUA}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
report(now, tonumber(ARGV[2]), 3, 8)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  -- The permit whose end brings the count below the limit.
  local e = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  local free = tonumber(e[2])
  if free - now > tonumber(ARGV[4]) then
    local spread = tonumber(ARGV[5])
    -- A permit still in flight ends a window after its call finishes; its report, read now or
    -- later, dates that end at most ARGV[7] µs back (its score until then is only the crash TTL).
    local due = free
    local soonest = now + window - tonumber(ARGV[7])
    if due > soonest then due = soonest end
    local place = tonumber(redis.call('GET', KEYS[2]) or '0')
    if place < due then place = due end
    redis.call('SET', KEYS[2], string.format('%.0f', place + spread), 'PX', math.ceil((place + spread - now) / 1000) + 1000)
    return {1, math.floor(place - now), math.floor(free - now)}
  end
  redis.call('ZREM', KEYS[1], e[1])
  at = free
end
local ends = at + ttl + window
redis.call('ZADD', KEYS[1], string.format('%.0f', ends), ARGV[6])
redis.call('PEXPIRE', KEYS[1], math.ceil((ends - now) / 1000) + 1000)
return {0, math.floor(at - now), string.format('%.0f', at)}
`

// Reports alone, when no try came to carry them: ARGV[1] window µs, then as REPORT_LUA from ARGV[2].
const REPORT_SCRIPT = `${REPORT_LUA}
local t = redis.call('TIME')
report(tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(ARGV[1]), 1, 2)
return 1
`

// Both scripts take their number of keys first (a try carries any number of reports).
type WithWindow = Redis & {
  crWindowTry2(numKeys: number, ...args: (string | number)[]): Promise<[number, number, (string | number)?]>
  crWindowReport(numKeys: number, ...args: (string | number)[]): Promise<number>
}

/**
 * A call's end is reported to Redis by the next try this process sends (any credential's), within the
 * same script, or after REPORT_DELAY_MS by a script of its own if no try came: one script per call
 * instead of two while a process is busy.
 *
 * A report carries how long ago its call ended, measured on this process's monotonic clock up to the
 * moment the script's arguments are built, and Redis dates the end that much before its own `now`.
 * Redis' clock stays the only clock the permits are scored on: the age is a duration, and the script
 * runs after its arguments were built, so `now - age` is no earlier than the call's end whatever the
 * wait in between (a timer that fired late on a busy event loop, the socket, Redis' queue). So a report
 * carried late costs the credential nothing, up to MAX_REPORT_AGE_MS, and a permit never stops counting
 * before a window after its call's answer came.
 */
export const REPORT_DELAY_MS = 1

/** At most this many reports ride on one script (the rest wait for the next one). */
const MAX_REPORTS = 64

interface Report {
  readonly key: string
  readonly member: string
  readonly sent: boolean
  /** performance.now() when the call ended (its answer or failure was in). */
  readonly endedAt: number
}

/** The reports waiting on one Redis connection (one per process in a worker). */
class Reports {
  #pending: Report[] = []
  #timer: NodeJS.Timeout | undefined
  /** Counters: reports carried by a try, and scripts sent for reports alone. */
  carried = 0
  alone = 0

  readonly #redis: WithWindow
  readonly #windowUs: number

  constructor(redis: WithWindow, windowUs: number) {
    this.#redis = redis
    this.#windowUs = windowUs
  }

  add(r: Report): void {
    this.#pending.push(r)
    this.#timer ??= setTimeout(() => this.#flush(), REPORT_DELAY_MS)
  }

  /** Takes up to MAX_REPORTS for a try to carry: the reports, and their keys and arguments as of now. */
  take(): { batch: Report[]; keys: string[]; args: string[] } {
    const batch = this.#pending.splice(0, MAX_REPORTS)
    if (!this.#pending.length && this.#timer) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    this.carried += batch.length
    return { batch, ...unpack(batch) }
  }

  /** Puts reports back when the try that carried them failed (sent nothing, or nothing known). */
  restore(batch: readonly Report[]): void {
    for (const r of batch) this.add(r)
  }

  #flush(): void {
    this.#timer = undefined
    while (this.#pending.length) {
      const { keys, args } = unpack(this.#pending.splice(0, MAX_REPORTS))
      this.alone++
      // Best effort: a lost report leaves its permit counting until the in-flight TTL.
      this.#redis.crWindowReport(keys.length, ...keys, this.#windowUs, ...args).catch(() => {})
    }
  }
}

/** The reports' keys and arguments, their ages taken now: call it right before the script is sent. */
function unpack(batch: readonly Report[]): { keys: string[]; args: string[] } {
  const keys: string[] = []
  const args: string[] = []
  const now = performance.now()
  for (const r of batch) {
    keys.push(r.key)
    // Floored, and capped: a shorter age only dates the end later (safe).
    const ageUs = Math.min(MAX_REPORT_AGE_US, Math.max(0, Math.floor((now - r.endedAt) * 1000)))
    args.push(r.member, r.sent ? '1' : '0', String(ageUs))
  }
  return { keys, args }
}

const reportsOf = new WeakMap<Redis, Reports>()

/** A granted call: `done(true)` once it has finished (answered or failed), `done(false)` if nothing was sent. */
export interface Permit {
  done(sent: boolean): void
}

export type TryWindow =
  | { readonly go: true; readonly permit: Permit }
  /**
   * `closedForMs`: no permit can free sooner than this, whatever happens meanwhile (other processes
   * only take permits; a finished call's end is final, one in flight ends a window after it finishes
   * at the earliest, which its report may date up to MAX_REPORT_AGE_MS back from when Redis reads
   * it). A process may put off callers until then without asking Redis.
   */
  | { readonly go: false; readonly retryInMs: number; readonly closedForMs: number }

export interface RateWindowLimiter {
  /** A permit now or within maxWaitMs (waited for), or nothing and when to come back. */
  tryAcquire(maxWaitMs: number): Promise<TryWindow>
  /** Waits for a permit (the calls that must not be put off: the read-back after a send, reconcile). */
  acquire(signal?: AbortSignal): Promise<Permit>
  /** Mean spacing of the credential's calls at its limit, ms. */
  readonly intervalMs: number
  /** Spacing of the deferral line's places, ms, for a dispatch wait of maxWaitMs. */
  spreadMs(maxWaitMs: number): number
}

let seq = 0
const processTag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`

/** `perSecond` calls in any one-second window; `key` is shared by every process. */
export function createRateWindow(redis: Redis, key: string, perSecond: number, opts: { readonly maxWaitMs?: number } = {}): RateWindowLimiter {
  const r = redis as WithWindow
  if (typeof r.crWindowTry2 !== 'function') r.defineCommand('crWindowTry2', { lua: TRY_SCRIPT })
  if (typeof r.crWindowReport !== 'function') r.defineCommand('crWindowReport', { lua: REPORT_SCRIPT })
  const limit = Math.max(1, Math.floor(perSecond))
  const windowUs = WINDOW_MS * 1000
  let reports = reportsOf.get(redis)
  if (!reports) reportsOf.set(redis, (reports = new Reports(r, windowUs)))
  const pending = reports
  const ttlUs = IN_FLIGHT_TTL_MS * 1000
  const intervalMs = WINDOW_MS / limit
  const spreadFor = (maxWaitMs: number) => Math.round(Math.min(intervalMs / DEFER_HEADROOM, Math.max(1, maxWaitMs * 0.8)) * 1000)
  const lineKey = `${key}:line`

  const permitOf = (member: string): Permit => {
    let finished = false
    return {
      done(sent) {
        if (finished) return
        finished = true
        pending.add({ key, member, sent, endedAt: performance.now() })
      },
    }
  }

  async function attempt(maxWaitMs: number): Promise<TryWindow> {
    const member = `${processTag}-${++seq}`
    const carry = pending.take()
    let answer: [number, number, (string | number)?]
    try {
      answer = await r.crWindowTry2(
        2 + carry.keys.length,
        key,
        lineKey,
        ...carry.keys,
        limit,
        windowUs,
        ttlUs,
        Math.round(maxWaitMs * 1000),
        spreadFor(opts.maxWaitMs ?? maxWaitMs),
        member,
        MAX_REPORT_AGE_US,
        ...carry.args,
      )
    } catch (err) {
      // Whether the script ran is unknown: reporting again is harmless (a report sets an end, LT;
      // its age is taken anew from the same end).
      pending.restore(carry.batch)
      throw err
    }
    const [deferred, us, at] = answer
    if (deferred) {
      const freeUs = Number(at)
      // A finished call's end (≤ a window from now) is final; one still in flight ends no sooner than
      // a window from now, less the age its report may carry.
      const closedUs = Math.min(freeUs, windowUs - MAX_REPORT_AGE_US)
      return { go: false, retryInMs: Math.max(1, Math.ceil(us / 1000)), closedForMs: Math.max(0, Math.floor(closedUs / 1000)) }
    }
    // The permit counts from its grant time: sending a little after it is always safe.
    if (us >= 1000) await new Promise((res) => setTimeout(res, Math.ceil(us / 1000)))
    return { go: true, permit: permitOf(member) }
  }

  return {
    intervalMs,
    spreadMs: (maxWaitMs) => spreadFor(maxWaitMs) / 1000,
    tryAcquire: (maxWaitMs) => attempt(maxWaitMs),
    async acquire(signal) {
      for (;;) {
        signal?.throwIfAborted()
        const got = await attempt(intervalMs)
        if (got.go) return got.permit
        await new Promise((res) => setTimeout(res, Math.min(got.retryInMs, Math.ceil(intervalMs))))
      }
    },
  }
}
