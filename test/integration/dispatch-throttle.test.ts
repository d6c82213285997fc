/**
 * The throttle's defer mode on real Redis: a call that cannot start within the dispatch wait is
 * refused before it runs (NotNowError, with when to come back), whatever holds it — the rate, the
 * concurrency cap, a 429 hold, an open circuit, the provider's in-flight cap — and nothing is left
 * reserved for it. Circuits open after consecutive failures, let one probe through after the
 * half-open delay and close on its success. Counts and states are published for /metrics.
 */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import pino from 'pino'
import { expect, it, vi } from 'vitest'
import { readDispatchStats } from '../../src/throttle/dispatch-stats.ts'
import { MAX_REPORT_AGE_MS, WINDOW_MS } from '../../src/throttle/rate-window.ts'
import { NotNowError, ThrottleRegistry } from '../../src/throttle/throttle.ts'
import { redisNowUs, useRedis } from '../helpers/redis-keys.ts'

const prefix = `crd${randomBytes(4).toString('hex')}`
let redis: Redis
useRedis(prefix, (r) => (redis = r))

const HALF_OPEN_MS = 400
const registry = (extra: { providerMaxInFlight?: Record<string, number> } = {}) =>
  new ThrottleRegistry({
    redis,
    prefix,
    logger: pino({ level: 'silent' }),
    highWater: 100,
    // The in-flight window (it starts at 2 calls and grows per answer) is off: these tests are about
    // the other checks, and a burst of calls must meet them, not the window (test/unit/in-flight.test.ts).
    dispatch: { maxWaitMs: 50, circuitFailures: 2, circuitHalfOpenMs: HALF_OPEN_MS, providerMaxInFlight: extra.providerMaxInFlight ?? {}, adaptiveInFlight: false },
  })
const unlimited = { maxConcurrent: null, minTimeMs: 0, maxPerSecond: null, dailyQuota: null }
const DEFER = { defer: true } as const
/** Waiting for something that is on its way: long enough for a loaded machine, polled often. */
const SOON = { timeout: 10_000, interval: 5 }

/** Runs fn in defer mode; the refusal if there was one. */
async function tryRun<T>(p: Promise<T>): Promise<{ ran: T } | { refused: NotNowError }> {
  try {
    return { ran: await p }
  } catch (err) {
    if (err instanceof NotNowError) return { refused: err }
    throw err
  }
}

it('at its rate limit a credential refuses at once, reserves nothing, and spreads the refused callers over its future permits', async () => {
  const reg = registry()
  const limits = { ...unlimited, maxPerSecond: 5 }
  const t = reg.get('portone-rate', limits, 'portone')
  let ran = 0
  // Redis' clock around the calls: each refusal was decided between t0 and t1.
  const t0 = await redisNowUs(redis)
  const results = await Promise.all(Array.from({ length: 12 }, () => tryRun(t.schedule(async () => ++ran, DEFER))))
  const t1 = await redisNowUs(redis)
  const refused = results.flatMap((r) => ('refused' in r ? [r.refused] : []))
  // 5 in any second: five went at once, the others found no permit free within 50 ms.
  expect(ran).toBe(5)
  expect(refused).toHaveLength(7)
  expect(new Set(refused.map((e) => e.reason))).toEqual(new Set(['rate']))
  // None comes back before the first permit can free (a window after the calls, all granted after
  // t0, less the age a late report of a call in flight may date its end back by), and each has its
  // own place in the deferral line, a spacing apart (the 40 ms of 0.8 × the 50 ms
  // wait here). A refusal tells the time until its place as seen when it was decided, plus up to
  // 10 ms of jitter and 1 ms of rounding; the refusals were decided up to t1 - t0 apart, on a loaded
  // machine tens of ms, so the bounds allow exactly that much, measured rather than guessed.
  const spreadMs = 40
  const apartMs = (t1 - t0) / 1000
  const places = refused.map((e) => e.retryInMs).sort((a, b) => a - b)
  expect(places[0]!).toBeGreaterThanOrEqual(WINDOW_MS - MAX_REPORT_AGE_MS - apartMs)
  expect(places.at(-1)! - places[0]!).toBeGreaterThanOrEqual(6 * spreadMs - apartMs - 11)
  // On Redis' clock the line moved seven spreads, from a first place no earlier than a window after t0.
  const line = Number(await redis.get(`${prefix}:rate:portone-rate:line`))
  expect(line - 7 * spreadMs * 1000).toBeGreaterThanOrEqual(t0 + (WINDOW_MS - MAX_REPORT_AGE_MS) * 1000)
  expect(line - 7 * spreadMs * 1000).toBeLessThanOrEqual(t1 + WINDOW_MS * 1000)
  // Nothing was taken for them: the window holds the five calls that went.
  expect(await redis.zcard(`${prefix}:rate:portone-rate`)).toBe(5)
  await reg.close()
})

it('at its concurrency cap a credential refuses instead of queueing the caller', async () => {
  const reg = registry()
  const t = reg.get('portone-conc', { ...unlimited, maxConcurrent: 1 }, 'portone')
  let release!: () => void
  // The first call waits for its turn (not deferred): on a loaded machine bottleneck's start may take
  // longer than the 50 ms dispatch wait, and this call only has to hold the one place.
  const holding = t.schedule(() => new Promise<string>((r) => (release = () => r('first'))))
  await vi.waitFor(() => expect(release).toBeDefined(), SOON) // the first call runs (holds the one place)
  let secondRan = false
  const second = await tryRun(t.schedule(async () => (secondRan = true), DEFER))
  expect(secondRan).toBe(false)
  expect('refused' in second && second.refused.reason).toBe('concurrency')
  release()
  expect(await holding).toBe('first')
  // The refused caller's place in bottleneck's queue starts and returns at once without running.
  await vi.waitFor(() => expect(t.queued()).toBe(0), SOON)
  expect(secondRan).toBe(false)
  // Once the first is done the credential takes a call again: a place still held would keep this
  // call from starting (waiting mode, as the first: in defer mode bottleneck's start can take longer
  // than the 50 ms dispatch wait on a loaded machine, which is refused as concurrency too).
  expect(await t.schedule(async () => 'third')).toBe('third')
  expect(secondRan).toBe(false)
  await reg.close()
})

it('during a 429 hold a credential refuses until the hold ends', async () => {
  const reg = registry()
  const t = reg.get('portone-held', unlimited, 'portone')
  t.penalize(2_000)
  let ran = false
  const r = await tryRun(t.schedule(async () => (ran = true), DEFER))
  expect(ran).toBe(false)
  expect('refused' in r && r.refused.reason).toBe('hold')
  expect('refused' in r && r.refused.retryInMs).toBeGreaterThanOrEqual(1_900)
  await reg.close()
})

it('a circuit opens after consecutive failures, refuses while open, lets one probe through half-open and closes on its success', async () => {
  const reg = registry()
  const a = reg.get('nts-a', unlimited, 'nts')
  const b = reg.get('nts-b', unlimited, 'nts')
  const other = reg.get('payssam-a', unlimited, 'payssam')
  const failure = async () => ({ kind: 'unknown_outcome' as const })
  const success = async () => ({ kind: 'issued' as const })
  await a.schedule(failure, DEFER)
  await a.schedule(failure, DEFER)
  expect(a.circuit()).toBe('open')
  expect(reg.gate('nts')!.circuit.state()).toBe('open')
  // Open: the credential and every other credential of the provider are refused; another provider is not.
  let calls = 0
  for (const t of [a, b]) {
    const r = await tryRun(t.schedule(async () => ++calls, DEFER))
    expect('refused' in r && r.refused.reason).toBe('circuit')
  }
  expect(calls).toBe(0)
  expect(await other.schedule(success, DEFER)).toEqual({ kind: 'issued' })

  // Half-open: one probe goes; while it is in flight the others are refused, not queued behind it.
  await new Promise((r) => setTimeout(r, HALF_OPEN_MS + 50))
  let finishProbe!: () => void
  const probe = a.schedule(() => new Promise<{ kind: 'issued' }>((r) => (finishProbe = () => r({ kind: 'issued' }))), DEFER)
  await vi.waitFor(() => expect(finishProbe).toBeDefined(), SOON) // the probe is in flight
  expect(reg.gate('nts')!.circuit.state()).toBe('half_open')
  const during = await tryRun(b.schedule(async () => ++calls, DEFER))
  expect('refused' in during && during.refused.reason).toBe('circuit')
  expect(calls).toBe(0)
  finishProbe()
  expect(await probe).toEqual({ kind: 'issued' })
  expect(reg.gate('nts')!.circuit.state()).toBe('closed')
  expect(a.circuit()).toBe('closed')
  expect(await b.schedule(success, DEFER)).toEqual({ kind: 'issued' })

  // Published for /metrics: the provider circuit's last change and the deferrals by reason.
  await reg.close()
  const stats = await readDispatchStats(redis, prefix)
  expect(stats.circuits.find((c) => c.name === 'nts')).toMatchObject({ scope: 'provider', state: 'closed' })
  expect(stats.circuits.find((c) => c.name === 'nts-a')).toMatchObject({ scope: 'credential', provider: 'nts', state: 'closed' })
  expect(stats.deferred.find((d) => d.provider === 'nts' && d.reason === 'circuit')?.n).toBe(3)
})

it('a failed probe opens the circuit again', async () => {
  const reg = registry()
  const t = reg.get('portone-v2-x', unlimited, 'portone-v2')
  const failure = async () => ({ kind: 'retryable' as const })
  await t.schedule(failure, DEFER)
  await t.schedule(failure, DEFER)
  expect(t.circuit()).toBe('open')
  await new Promise((r) => setTimeout(r, HALF_OPEN_MS + 50))
  await t.schedule(failure, DEFER) // the probe
  expect(t.circuit()).toBe('open')
  const r = await tryRun(t.schedule(async () => 'no', DEFER))
  expect('refused' in r && r.refused.reason).toBe('circuit')
  await reg.close()
})

it('a provider at its in-flight cap refuses further calls of any of its credentials; other providers go on', async () => {
  const reg = registry({ providerMaxInFlight: { nts: 1 } })
  const a = reg.get('nts-cap-a', unlimited, 'nts')
  const b = reg.get('nts-cap-b', unlimited, 'nts')
  const other = reg.get('portone-cap', unlimited, 'portone')
  let hangUp!: () => void
  const hanging = a.schedule(() => new Promise<string>((r) => (hangUp = () => r('late'))), DEFER)
  await vi.waitFor(() => expect(hangUp).toBeDefined(), SOON) // the first call is in flight
  let ran = false
  const r = await tryRun(b.schedule(async () => (ran = true), DEFER))
  expect(ran).toBe(false)
  expect('refused' in r && r.refused.reason).toBe('provider_cap')
  expect(await other.schedule(async () => 'flows', DEFER)).toBe('flows')
  hangUp()
  expect(await hanging).toBe('late')
  expect(await b.schedule(async () => 'now', DEFER)).toBe('now')
  await reg.close()
})

it('the in-flight place covers the call, not the rate window round trip; refused at the cap, the permit is given back', async () => {
  const reg = registry({ providerMaxInFlight: { nts: 1 } })
  const limits = { ...unlimited, maxPerSecond: 5 }
  const a = reg.get('nts-win-a', limits, 'nts')
  const b = reg.get('nts-win-b', limits, 'nts')
  const gate = reg.gate('nts')!
  let hangUp!: () => void
  let inCall!: () => void
  const called = new Promise<void>((r) => (inCall = r))
  const hanging = a.schedule(
    () =>
      new Promise<string>((r) => {
        inCall()
        hangUp = () => r('late')
      }),
    DEFER,
  )
  // The permit is being asked for in Redis: no place at the provider is taken for that.
  expect(gate.inFlight.active).toBe(0)
  await called
  expect(gate.inFlight.active).toBe(1)
  let ran = false
  const r = await tryRun(b.schedule(async () => (ran = true), DEFER))
  expect(ran).toBe(false)
  expect('refused' in r && r.refused.reason).toBe('provider_cap')
  // b got a permit before the cap refused it; nothing was sent, so the permit is given back (by the
  // process's next window script, or alone after REPORT_DELAY_MS).
  await vi.waitFor(async () => expect(await redis.zcard(`${prefix}:rate:nts-win-b`)).toBe(0), SOON)
  expect(await redis.zcard(`${prefix}:rate:nts-win-a`)).toBe(1)
  hangUp()
  expect(await hanging).toBe('late')
  expect(gate.inFlight.active).toBe(0)
  expect(await b.schedule(async () => 'now', DEFER)).toBe('now')
  expect(await redis.zcard(`${prefix}:rate:nts-win-b`)).toBe(1)
  await reg.close()
})

it('precheck: after a refusal the process puts callers off without Redis until a permit can free, each at its own place', async () => {
  const reg = registry()
  const t = reg.get('portone-pre', { ...unlimited, maxPerSecond: 2 }, 'portone')
  expect(t.precheck()).toBeUndefined()
  let ran = 0
  const started = Date.now()
  await Promise.all(Array.from({ length: 3 }, () => tryRun(t.schedule(async () => ++ran, DEFER))))
  expect(ran).toBe(2)
  // The third was refused while the two were in flight: their permits count until a second after
  // their calls end (after `started`), which their reports may date back by MAX_REPORT_AGE_MS. From
  // now on the process knows it and answers locally, never before that. Every command any Redis client of this process sends is watched, once
  // the completions of the two calls have gone out (within REPORT_DELAY_MS of their ends).
  const key = `${prefix}:rate:portone-pre`
  await vi.waitFor(
    async () => expect((await redis.zrange(key, 0, -1, 'WITHSCORES')).filter((_, i) => i % 2 === 1).every((s) => Number(s) < (Date.now() + 2_000) * 1000)).toBe(true),
    SOON,
  )
  const commands: string[] = []
  const send = Redis.prototype.sendCommand
  Redis.prototype.sendCommand = function (this: Redis, cmd: Parameters<typeof send>[0]) {
    if (cmd.args.some((x) => String(x).includes(key))) commands.push(cmd.name)
    return send.call(this, cmd)
  } as typeof send
  let a: NotNowError | undefined
  let b: NotNowError | undefined
  let answered = 0
  try {
    a = t.precheck() as NotNowError | undefined
    b = t.precheck() as NotNowError | undefined
    answered = Date.now()
    await new Promise((r) => setTimeout(r, 50)) // anything precheck might have sent later
  } finally {
    Redis.prototype.sendCommand = send
  }
  expect(commands).toEqual([])
  expect(a).toBeInstanceOf(NotNowError)
  expect(a!.reason).toBe('rate')
  expect(a!.retryInMs).toBeGreaterThanOrEqual(WINDOW_MS - MAX_REPORT_AGE_MS - (answered - started) - 2)
  expect(b!.retryInMs).toBeGreaterThan(a!.retryInMs)
  // Circuits are local knowledge too.
  const c = reg.get('portone-pre2', unlimited, 'portone')
  c.penalize(5_000)
  expect(c.precheck()?.reason).toBe('hold')
  await reg.close()
})

it('a busy process reports a call’s end with its next window script: one script per call, the permits counted from the reports', async () => {
  const reg = registry()
  const t = reg.get('payssam-carry', { ...unlimited, maxPerSecond: 1_000 }, 'payssam')
  const key = `${prefix}:rate:payssam-carry`
  await t.schedule(async () => 0, DEFER) // the scripts are loaded
  await vi.waitFor(async () => expect(Number(await redis.zscore(key, (await redis.zrange(key, 0, 0))[0]!))).toBeLessThan((Date.now() + 2_000) * 1000), SOON)
  const scripts: string[] = []
  const send = Redis.prototype.sendCommand
  Redis.prototype.sendCommand = function (this: Redis, cmd: Parameters<typeof send>[0]) {
    if (cmd.args.some((x) => String(x) === key)) scripts.push(cmd.name)
    return send.call(this, cmd)
  } as typeof send
  try {
    // Calls one after the other: each one's end rides on the next one's try.
    for (let i = 0; i < 20; i++) await t.schedule(async () => i, DEFER)
    // The last end goes out alone.
    await vi.waitFor(() => expect(scripts.length).toBeGreaterThanOrEqual(21), SOON)
    await new Promise((r) => setTimeout(r, 50))
  } finally {
    Redis.prototype.sendCommand = send
  }
  expect(scripts.every((s) => s === 'evalsha' || s === 'eval')).toBe(true)
  // 20 tries and the last report; before, a try and a report per call (40).
  expect(scripts.length).toBeLessThanOrEqual(24)
  // Every permit now counts until a window after its report, none until the in-flight TTL.
  const scores = (await redis.zrange(key, 0, -1, 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number)
  expect(scores).toHaveLength(21)
  const now = await redisNowUs(redis)
  for (const s of scores) expect(s).toBeLessThanOrEqual(now + WINDOW_MS * 1000)
  await reg.close()
})
