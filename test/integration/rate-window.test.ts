/**
 * The rate window's reports on real Redis: a call's end reaches Redis late when its process is busy
 * (the report rides on the next script, or on a 1 ms timer that fires late), and Redis dates the end
 * back by the time the report waited in the process, up to MAX_REPORT_AGE_MS. A late report then
 * costs the credential no permits, and a permit never stops counting before a window after its call
 * ended.
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, expect, it, vi } from 'vitest'
import { createRateWindow, MAX_REPORT_AGE_MS, WINDOW_MS } from '../../src/throttle/rate-window.ts'
import { redisUrl } from '../helpers/env.ts'
import { deleteKeys } from '../helpers/redis-keys.ts'

const prefix = `crw${randomBytes(4).toString('hex')}`
let redis: Redis

beforeAll(() => {
  redis = new Redis(redisUrl(), { maxRetriesPerRequest: null })
})
afterAll(async () => {
  await deleteKeys(prefix)
  redis.disconnect()
})

/** Redis' clock, µs: the clock the permits are scored on. */
async function redisNowUs(): Promise<number> {
  const [s, us] = await redis.time()
  return Number(s) * 1_000_000 + Number(us)
}

/** Keeps the event loop busy, as a loaded worker does: no timer fires meanwhile. */
function busy(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    /* spin */
  }
}

/** The permit's score once its report has landed (a score below the crash TTL's). */
async function landedScore(key: string): Promise<number> {
  let score = 0
  await vi.waitFor(
    async () => {
      const [, s] = await redis.zrange(key, 0, 0, 'WITHSCORES')
      score = Number(s)
      expect(score).toBeLessThan((await redisNowUs()) + 2 * WINDOW_MS * 1000)
    },
    { timeout: 10_000, interval: 5 },
  )
  return score
}

/** One call through a fresh process-like client: granted, ended at Redis time ≥ the returned one, reported after `stallMs` of busy loop. */
async function callThenStall(key: string, stallMs: number): Promise<{ endedAfterUs: number; client: Redis }> {
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: null })
  const window = createRateWindow(client, key, 10)
  const got = await window.tryAcquire(0)
  if (!got.go) throw new Error('the first call of an empty window was refused')
  const endedAfterUs = await redisNowUs()
  got.permit.done(true)
  busy(stallMs)
  return { endedAfterUs, client }
}

it('a report that waited on a busy event loop dates its call’s end back to when the call ended', async () => {
  const key = `${prefix}:rate:late`
  const stall = MAX_REPORT_AGE_MS - 5
  const { endedAfterUs, client } = await callThenStall(key, stall)
  const score = await landedScore(key)
  // Never before a window after the call ended: the safety of the window.
  expect(score).toBeGreaterThanOrEqual(endedAfterUs + WINDOW_MS * 1000)
  // Not a window after the report reached Redis, `stall` ms later: what the report's age buys
  // (the 10 ms are Redis' answer to TIME reaching this process, and the report's own trip).
  expect(stall).toBeGreaterThan(10)
  expect(score).toBeLessThan(endedAfterUs + (WINDOW_MS + 10) * 1000)
  client.disconnect()
})

it(`a report that waited longer than ${MAX_REPORT_AGE_MS} ms is dated back only that far`, async () => {
  const key = `${prefix}:rate:older`
  const stall = MAX_REPORT_AGE_MS + 100
  const { endedAfterUs, client } = await callThenStall(key, stall)
  const score = await landedScore(key)
  // Redis read the report after the stall; the end is dated at most MAX_REPORT_AGE_MS before that.
  expect(score).toBeGreaterThanOrEqual(endedAfterUs + (stall - MAX_REPORT_AGE_MS) * 1000 + WINDOW_MS * 1000)
  client.disconnect()
})

it('a refused caller is told no permit frees sooner than a window from now less the reports’ age, while a call is in flight', async () => {
  const key = `${prefix}:rate:inflight`
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: null })
  const window = createRateWindow(client, key, 1)
  const first = await window.tryAcquire(0)
  expect(first.go).toBe(true)
  // The call is still in flight: its permit counts until it ends, and its end may be reported dated back.
  const refused = await window.tryAcquire(0)
  expect(refused.go).toBe(false)
  if (refused.go) return
  expect(refused.closedForMs).toBeLessThanOrEqual(WINDOW_MS - MAX_REPORT_AGE_MS)
  expect(refused.closedForMs).toBeGreaterThanOrEqual(WINDOW_MS - MAX_REPORT_AGE_MS - 5)
  // Its place in line is no sooner than that either.
  expect(refused.retryInMs).toBeGreaterThanOrEqual(WINDOW_MS - MAX_REPORT_AGE_MS - 5)
  if (first.go) first.permit.done(true)
  client.disconnect()
})
