/**
 * The rate window's reports on real Redis: a call's end reaches Redis late when its process is busy
 * (the report rides on the next script, or on a 1 ms timer that fires late), and Redis dates the end
 * back by the time the report waited in the process, up to MAX_REPORT_AGE_MS. A late report then
 * costs the credential no permits, and a permit never stops counting before a window after its call
 * ended.
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { expect, it, vi } from 'vitest'
import { createRateWindow, MAX_REPORT_AGE_MS, WINDOW_MS } from '../../src/throttle/rate-window.ts'
import { redisUrl } from '../helpers/env.ts'
import { redisNowUs, useRedis } from '../helpers/redis-keys.ts'

const prefix = `crw${randomBytes(4).toString('hex')}`
let redis: Redis
useRedis(prefix, (r) => (redis = r))

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
      expect(score).toBeLessThan((await redisNowUs(redis)) + 2 * WINDOW_MS * 1000)
    },
    { timeout: 10_000, interval: 5 },
  )
  return score
}

/**
 * One call through a fresh process-like client: granted, ended at a Redis time ≥ `endedAfterUs`, its
 * report held `stallMs` by a busy loop. `ageUs`: the age the report carried to Redis (its last
 * argument: a lone report's arguments end with member, sent, age).
 */
async function callThenStall(key: string, stallMs: number): Promise<{ endedAfterUs: number; ageUs: () => number; client: Redis }> {
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: null })
  const window = createRateWindow(client, key, 10)
  const got = await window.tryAcquire(0)
  if (!got.go) throw new Error('the first call of an empty window was refused')
  const sent: string[][] = []
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((cmd: Parameters<typeof send>[0]) => {
    sent.push(cmd.args.map(String))
    return send(cmd)
  }) as typeof send
  const endedAfterUs = await redisNowUs(redis)
  got.permit.done(true)
  busy(stallMs)
  return { endedAfterUs, ageUs: () => Number(sent.find((a) => a.includes(key))!.at(-1)), client }
}

it('a report that waited on a busy event loop dates its call’s end back to when the call ended', async () => {
  const key = `${prefix}:rate:late`
  const stall = MAX_REPORT_AGE_MS - 5
  const { endedAfterUs, ageUs, client } = await callThenStall(key, stall)
  const score = await landedScore(key)
  const landedBy = await redisNowUs(redis)
  // The report carried how long it waited: at least the stall, at most the cap.
  expect(ageUs()).toBeGreaterThanOrEqual(stall * 1000)
  expect(ageUs()).toBeLessThanOrEqual(MAX_REPORT_AGE_MS * 1000)
  // Never before a window after the call ended: the safety of the window.
  expect(score).toBeGreaterThanOrEqual(endedAfterUs + WINDOW_MS * 1000)
  // Redis scored the end that much before it read the report (which it did by `landedBy`): not a
  // window after the report reached Redis, `stall` ms after the call ended.
  expect(score).toBeLessThanOrEqual(landedBy - ageUs() + WINDOW_MS * 1000)
  client.disconnect()
})

it(`a report that waited longer than ${MAX_REPORT_AGE_MS} ms is dated back only that far`, async () => {
  const key = `${prefix}:rate:older`
  const stall = MAX_REPORT_AGE_MS + 100
  const { endedAfterUs, ageUs, client } = await callThenStall(key, stall)
  const score = await landedScore(key)
  expect(ageUs()).toBe(MAX_REPORT_AGE_MS * 1000)
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
