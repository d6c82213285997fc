/**
 * Fair, bulkheaded dispatch through real workers, Postgres, Redis and the sandbox over HTTP
 * (docs/dispatch.md):
 *
 * - a credential at its rate limit holds no worker slot: with ONE slot and a slow-limited merchant's
 *   receipts queued first, the fast merchant's receipts are all issued long before the slow one's;
 *   the slow merchant's jobs were deferred many times yet used one BullMQ attempt each (the worker
 *   allows only one: a deferral that used an attempt would fail the job) and one ledger attempt;
 * - an outage at one provider (every call hangs to the read timeout) and a 429 storm at another
 *   leave a third provider's receipts flowing; the failing provider's receipts stay pending, none
 *   failed, behind an open circuit; once it recovers a probe closes the circuit and they issue, one
 *   receipt per key.
 *
 * Assertions are on orders and counts, never on throughput.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import type { ProviderName } from '../../src/domain/index.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { readDispatchStats } from '../../src/throttle/dispatch-stats.ts'
import { importDay, settle } from '../helpers/pipeline.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'

let sandbox: Sandbox
let env: TestEnv

const merchant = (id: string, businessNumber: string, limits: Record<string, Record<string, number>> = {}) => ({
  id,
  name: id,
  businessNumber,
  mandatoryIssuer: true,
  providers: {
    'portone-v2': { apiSecret: `v2-secret-${id}`, channelKey: `channel-v2-${id}`, storeId: `store-${id}`, ...(limits['portone-v2'] ? { limits: limits['portone-v2'] } : {}) },
    payssam: { apikey: `apikey${id.replace(/-/g, '')}`, member: `member-${id}`, merchant: `shop-${id}`, ...(limits.payssam ? { limits: limits.payssam } : {}) },
    nts: { clientId: `nts-${id}`, clientSecret: `nts-secret-${id}` },
  },
})

useSandboxEnv(
  {
    env: async () => {
      const file = join(await mkdtemp(join(tmpdir(), 'crt-dispatch-')), 'merchants.json')
      await writeFile(
        file,
        JSON.stringify([
          // 2 req/s for its PaySsam credential: its 20 receipts need ≥ 9.5 s whatever the worker does.
          merchant('m-slow', '2208162517', { payssam: { maxPerSecond: 2 } }),
          merchant('m-fast', '1248100998'),
        ]),
      )
      return { MERCHANTS_FILE: file }
    },
    rateLimits: '',
  },
  (s, e) => ((sandbox = s), (env = e)),
)

/** Imports a generated day whose rows all belong to one merchant. */
async function importFor(merchantId: string, opts: { businessDate: string; count: number; seed: number; providers: ProviderName[]; idPrefix: string }) {
  const day = generateDay({ ...opts, merchants: [{ id: merchantId, mandatoryIssuer: true }] })
  const file = join(await mkdtemp(join(tmpdir(), 'crt-dispatch-')), 'day.csv')
  await writeFile(file, toCsv(day))
  const res = await importTransactions(env.app.db(), env.app.config.dataKeys, file, { nowMs: Date.now() })
  expect(res.written).toBeTruthy()
}

async function rowsOf(app: App, runIds: number[]) {
  return app.db().selectFrom('receipts').selectAll().where('run_id', 'in', runIds).where('kind', '=', 'issue').orderBy('id').execute()
}

it('a rate-limited credential holds no worker slot: one slot, the slow merchant queued first, the fast one still goes; deferrals use no attempt', async () => {
  const app = env.newApp({ WORKER_ATTEMPTS: '1', WORKER_CONCURRENCY: '1' })
  await importDay(env.app, { businessDate: '2026-11-09', count: 40, seed: 11, providers: ['payssam'], idPrefix: 'SL' })
  // The slow merchant's receipts enter the queue first, all of them ahead of the fast merchant's.
  const slow = await settle(app, '2026-11-09', { merchantId: 'm-slow' })
  const fast = await settle(app, '2026-11-09', { merchantId: 'm-fast' })
  const worker = app.startWorker({ concurrency: 1 })
  try {
    const rows = await eventually(
      async () => {
        const r = await rowsOf(app, [slow.runId!, fast.runId!])
        return r.every((x) => x.state === 'issued' || x.state === 'skipped') ? r : undefined
      },
      60_000,
      200,
    )
    const issued = (m: string) => rows.filter((r) => r.merchant_id === m && r.state === 'issued')
    expect(issued('m-slow').length).toBeGreaterThan(5)
    expect(issued('m-fast').length).toBeGreaterThan(5)
    const last = (m: string) => Math.max(...issued(m).map((r) => r.finished_at!.getTime()))
    const first = (m: string) => Math.min(...issued(m).map((r) => r.finished_at!.getTime()))
    // Every fast receipt was done before the slow merchant's last, although all of the slow ones
    // were queued first and the worker has one slot: the slot never sat out the slow credential's pace.
    expect(last('m-fast')).toBeLessThan(last('m-slow'))
    // And the fast ones did not wait for the slow ones: more of the slow merchant's were issued after the fast merchant's first than before it.
    expect(issued('m-slow').filter((r) => r.finished_at!.getTime() > first('m-fast')).length).toBeGreaterThan(issued('m-slow').length / 2)

    // A deferral uses no attempt: the slow merchant's jobs were put off (started more than once) and
    // still completed on the one attempt they were allowed; the ledger counts one claim each.
    const jobs = await app.receiptsQueue().getJobs(['completed', 'failed'])
    expect(jobs.filter((j) => j.failedReason)).toEqual([])
    const slowIds = new Set(issued('m-slow').map((r) => r.id))
    const slowJobs = jobs.filter((j) => slowIds.has((j.data as { receiptId: number }).receiptId))
    expect(slowJobs.length).toBe(slowIds.size)
    expect(slowJobs.filter((j) => j.attemptsStarted > 1).length).toBeGreaterThan(0)
    for (const j of slowJobs) expect(j.attemptsMade).toBe(1)
    for (const r of rows.filter((x) => x.state === 'issued')) expect(r.attempts).toBe(1)
    // Paced by our own limiter: the sandbox answered no 429 and holds one receipt per key.
    const stats = sandbox.stats()
    expect(stats.providers.payssam!.rate_limited ?? 0).toBe(0)
    expect(stats.max_live_receipts_per_key).toBe(1)
    const dispatch = await eventually(async () => {
      const d = await readDispatchStats(app.redis(), env.prefix)
      return d.deferred.some((x) => x.provider === 'payssam' && x.reason === 'rate') ? d : undefined
    }, 5_000)
    expect(dispatch.deferred.find((x) => x.provider === 'payssam' && x.reason === 'rate')!.n).toBeGreaterThan(0)
  } finally {
    await worker.close()
  }
}, 120_000)

it('fair order: a merchant settled after a much bigger one is not served after it; the queue interleaves credentials', async () => {
  const app = env.newApp({ WORKER_CONCURRENCY: '1' })
  // m-fast gets 80 rows, m-slow 8 (its PaySsam limit does not apply: these are PortOne V2).
  await importFor('m-slow', { businessDate: '2026-11-11', count: 8, seed: 13, providers: ['portone-v2'], idPrefix: 'FS' })
  await importFor('m-fast', { businessDate: '2026-11-11', count: 80, seed: 14, providers: ['portone-v2'], idPrefix: 'FB' })
  const big = await settle(app, '2026-11-11', { merchantId: 'm-fast' })
  const small = await settle(app, '2026-11-11', { merchantId: 'm-slow' })
  const worker = app.startWorker({ concurrency: 1 })
  try {
    const rows = await eventually(
      async () => {
        const r = await rowsOf(app, [big.runId!, small.runId!])
        return r.every((x) => x.state === 'issued' || x.state === 'skipped') ? r : undefined
      },
      90_000,
      200,
    )
    const done = rows.filter((r) => r.state === 'issued').sort((a, b) => a.finished_at!.getTime() - b.finished_at!.getTime() || a.id - b.id)
    const smallDone = done.filter((r) => r.merchant_id === 'm-slow')
    const bigDone = done.filter((r) => r.merchant_id === 'm-fast')
    expect(smallDone.length).toBeGreaterThan(2)
    expect(bigDone.length).toBeGreaterThan(5 * smallDone.length)
    // Enqueued after all of the big merchant's jobs, the small merchant's are served alongside its
    // first ones (ranks 1, 2, … of each credential), not after them: the last small receipt is done
    // before the big merchant's (small count + 2)th.
    const lastSmall = smallDone.at(-1)!.finished_at!.getTime()
    expect(bigDone.filter((r) => r.finished_at!.getTime() < lastSmall).length).toBeLessThanOrEqual(smallDone.length + 1)
  } finally {
    await worker.close()
  }
}, 120_000)

it('an outage at one provider and a 429 storm at another leave the third flowing; the failing receipts wait behind an open circuit and issue after recovery', async () => {
  const app = env.newApp({ WORKER_CONCURRENCY: '4', NTS_MAX_IN_FLIGHT: '1', CIRCUIT_FAILURES: '2', CIRCUIT_HALF_OPEN_MS: '1000' })
  await importDay(env.app, { businessDate: '2026-11-10', count: 60, seed: 12, providers: ['nts', 'portone-v2', 'payssam'], idPrefix: 'OU' })
  // NTS: every receipt operation hangs until the client's read timeout; nothing is committed.
  sandbox.setFaults('nts:timeout_before_commit=1')
  // PortOne V2: the provider allows 2 req/s per credential and none is configured here: 429s.
  sandbox.setRateLimits('portone-v2=2')
  // The failing provider's receipts go into the queue first.
  const runs = [] as number[]
  for (const m of ['m-slow', 'm-fast']) runs.push((await settle(app, '2026-11-10', { merchantId: m })).runId!)
  const worker = app.startWorker({ concurrency: 4 })
  try {
    const byProvider = async () => {
      const rows = await rowsOf(app, runs)
      const of = (p: string) => rows.filter((r) => r.provider === p && r.state !== 'skipped')
      return { rows, nts: of('nts'), v2: of('portone-v2'), payssam: of('payssam') }
    }
    // PaySsam (healthy) and PortOne V2 (after its 429s) finish while NTS is down.
    const during = await eventually(
      async () => {
        const b = await byProvider()
        return b.payssam.every((r) => r.state === 'issued') && b.v2.every((r) => r.state === 'issued') ? b : undefined
      },
      60_000,
      200,
    )
    expect(during.payssam.length).toBeGreaterThan(3)
    expect(during.v2.length).toBeGreaterThan(3)
    expect(during.nts.length).toBeGreaterThan(3)
    // The NTS receipts are waiting, none failed and none issued.
    expect(during.nts.filter((r) => r.state === 'failed' || r.state === 'issued')).toEqual([])
    expect(sandbox.stats().providers['portone-v2']!.rate_limited).toBeGreaterThan(0)
    const open = await readDispatchStats(app.redis(), env.prefix)
    expect(open.circuits.find((c) => c.name === 'nts')?.state).toMatch(/open|half_open/)
    expect(open.deferred.some((d) => d.provider === 'nts' && d.reason === 'circuit')).toBe(true)

    // Recovery: a probe gets through, the circuit closes, every NTS receipt is issued once.
    sandbox.setFaults('')
    const after = await eventually(
      async () => {
        const b = await byProvider()
        return b.nts.every((r) => r.state === 'issued') ? b : undefined
      },
      60_000,
      200,
    )
    expect(after.rows.filter((r) => r.state === 'failed')).toEqual([])
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    const closed = await eventually(async () => {
      const d = await readDispatchStats(app.redis(), env.prefix)
      return d.circuits.find((c) => c.name === 'nts')?.state === 'closed' ? d : undefined
    }, 10_000)
    expect(closed.circuits.find((c) => c.name === 'nts')).toMatchObject({ scope: 'provider', state: 'closed' })
    expect(await app.receiptsQueue().getJobs(['failed'])).toHaveLength(0)
  } finally {
    await worker.close()
  }
}, 150_000)

it('a hanging provider gets at most its in-flight window, its stuck calls are lent back as slots, and its held receipts issue after recovery on their first attempt', async () => {
  // 8 slots: NTS's cap is 4, but its window starts at 2 and, once a call runs past the slow-call
  // time (300 ms; the read timeout is 1.5 s), no further call is started until it ends.
  const app = env.newApp({
    WORKER_CONCURRENCY: '8',
    CIRCUIT_FAILURES: '5',
    CIRCUIT_UNKNOWN_OUTCOMES: '2',
    CIRCUIT_HALF_OPEN_MS: '1000',
    DISPATCH_SLOW_CALL_MS: '300',
    DISPATCH_ADAPTIVE_IN_FLIGHT: 'true',
  })
  await importFor('m-fast', { businessDate: '2026-11-11', count: 60, seed: 31, providers: ['nts', 'payssam'], idPrefix: 'HW' })
  sandbox.setFaults('nts:timeout_before_commit=1')
  const runId = (await settle(app, '2026-11-11', { merchantId: 'm-fast' })).runId!
  const worker = app.startWorker({ concurrency: 8 })
  // The worker's BullMQ concurrency while NTS hangs: raised by the calls stuck there.
  let lentMax = 0
  const sampler = setInterval(() => (lentMax = Math.max(lentMax, worker.concurrency)), 20)
  try {
    const byProvider = async () => {
      const rows = (await rowsOf(app, [runId])).filter((r) => r.state !== 'skipped')
      return { rows, nts: rows.filter((r) => r.provider === 'nts'), payssam: rows.filter((r) => r.provider === 'payssam') }
    }
    const during = await eventually(
      async () => {
        const b = await byProvider()
        return b.payssam.every((r) => r.state === 'issued') && lentMax > 8 ? b : undefined
      },
      60_000,
      100,
    )
    expect(during.payssam.length).toBeGreaterThan(5)
    expect(during.nts.length).toBeGreaterThan(5)
    expect(during.nts.filter((r) => r.state === 'issued' || r.state === 'failed')).toEqual([])
    // The healthy merchant kept its 8 slots: one more was lent per NTS call stuck past 300 ms.
    expect(lentMax).toBeGreaterThanOrEqual(9)
    expect(lentMax).toBeLessThanOrEqual(8 + 2)

    sandbox.setFaults('')
    const liftedAt = Date.now()
    const after = await eventually(
      async () => {
        const b = await byProvider()
        return b.nts.every((r) => r.state === 'issued') ? b : undefined
      },
      90_000,
      200,
    )
    expect(after.rows.filter((r) => r.state === 'failed')).toEqual([])
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)

    const ntsIds = after.nts.map((r) => r.id)
    const calls = await app
      .db()
      .selectFrom('issuance_attempts')
      .select(['receipt_id', 'operation', 'outcome', 'started_at', 'finished_at'])
      .where('receipt_id', 'in', ntsIds)
      .orderBy('id')
      .execute()
    // While NTS hung, at no moment were more than 2 of its calls (issue or lookup) in flight: the
    // window, not the cap of 4 (after the lift the window grows again with the quick answers).
    const edges = calls
      .filter((c) => new Date(c.started_at).getTime() < liftedAt)
      .flatMap((c) => [
        { t: new Date(c.started_at).getTime(), d: 1 },
        { t: c.finished_at ? new Date(c.finished_at).getTime() : Number.MAX_SAFE_INTEGER, d: -1 },
      ])
    edges.sort((a, b) => a.t - b.t || a.d - b.d)
    let inFlight = 0
    let maxInFlight = 0
    for (const e of edges) maxInFlight = Math.max(maxInFlight, (inFlight += e.d))
    expect(maxInFlight).toBeGreaterThanOrEqual(1)
    expect(maxInFlight).toBeLessThanOrEqual(2)
    // Unknown outcome: the issue request went out and timed out. Few of them (the 2 of the window, then
    // one per half-open probe), and each issued only after NTS's commit window (5 s) since that send.
    const unknownSent = new Map<number, number>()
    for (const c of calls) if (c.operation === 'issue' && c.outcome === 'unknown_outcome') unknownSent.set(c.receipt_id, new Date(c.started_at).getTime())
    expect(unknownSent.size).toBeGreaterThanOrEqual(1)
    expect(unknownSent.size).toBeLessThan(after.nts.length / 2)
    for (const r of after.nts.filter((x) => unknownSent.has(x.id))) {
      expect(new Date(r.issued_at!).getTime()).toBeGreaterThanOrEqual(unknownSent.get(r.id)! + 5_000)
    }
    // Held back (never sent during the outage): issued on the first attempt, one issue call each; every
    // deferral behind the window or the open circuit used no attempt.
    const held = after.nts.filter((r) => !unknownSent.has(r.id))
    expect(held.length).toBeGreaterThan(unknownSent.size)
    for (const r of held) {
      expect(r.attempts).toBe(1)
      expect(calls.filter((c) => c.receipt_id === r.id && c.operation === 'issue').map((c) => c.outcome)).toEqual(['issued'])
    }
    // Once nothing is stuck the lent slots are taken back.
    await eventually(async () => (worker.concurrency === 8 ? true : undefined), 10_000, 50)
  } finally {
    clearInterval(sampler)
    await worker.close()
  }
}, 180_000)

it('the in-flight cap follows the slots the process runs: `worker --concurrency N`, not WORKER_CONCURRENCY alone', async () => {
  // WORKER_CONCURRENCY says 16, but this process runs 4 slots: a hanging provider may hold 2 of them.
  const app = env.newApp({ WORKER_CONCURRENCY: '16', PAYSSAM_MAX_IN_FLIGHT: '3' })
  expect(app.config.dispatch.providerMaxInFlight.nts).toBeNull()
  const worker = app.startWorker({ concurrency: 4 })
  try {
    expect(app.providers().inFlightCap('nts')).toBe(2)
    expect(app.providers().inFlightCap('portone-v2')).toBe(2)
    // A cap set in the environment is kept whatever the slots.
    expect(app.providers().inFlightCap('payssam')).toBe(3)
    // A second worker in the same process (the demo runs two) adds its slots: 4 + 6 → 5.
    const second = app.startWorker({ concurrency: 6 })
    try {
      expect(app.providers().inFlightCap('nts')).toBe(5)
    } finally {
      await second.close()
    }
  } finally {
    await worker.close()
  }
  // Without a worker the default is half of WORKER_CONCURRENCY.
  expect(env.newApp({ WORKER_CONCURRENCY: '10' }).providers().inFlightCap('nts')).toBe(5)
}, 30_000)

it('priorities: a re-drive and a recovery pass enqueued behind a whole settled backlog are served next, interleaved by credential', async () => {
  const app = env.newApp({ WORKER_CONCURRENCY: '1', RECOVERY_GRACE_MS: '0' })
  await importFor('m-slow', { businessDate: '2026-11-12', count: 16, seed: 15, providers: ['portone-v2'], idPrefix: 'PR' })
  await importFor('m-fast', { businessDate: '2026-11-12', count: 80, seed: 16, providers: ['portone-v2'], idPrefix: 'PB' })
  const small = await settle(app, '2026-11-12', { merchantId: 'm-slow' })
  const smallIds = new Set((await rowsOf(app, [small.runId!])).filter((r) => r.state === 'pending').map((r) => r.id))
  expect(smallIds.size).toBeGreaterThan(4)
  // The small merchant's jobs are lost (a Redis flush) and half of its rows failed earlier.
  for (const j of await app.receiptsQueue().getJobs(['prioritized', 'waiting'])) {
    if (smallIds.has((j.data as { receiptId: number }).receiptId)) await j.remove()
  }
  const failed = [...smallIds].slice(0, Math.floor(smallIds.size / 2))
  await app.db().updateTable('receipts').set({ state: 'failed', error_class: 'retryable', error_code: 'HTTP_503' }).where('id', 'in', failed).execute()
  // Then the night's backlog is settled: every job of it is in the queue before the repair work.
  const big = await settle(app, '2026-11-12', { merchantId: 'm-fast' })
  const redriven = await app.redrive({ runId: small.runId! })
  expect(redriven.count).toBe(failed.length)
  const recovered = await app.recover()
  expect(recovered.added).toBe(smallIds.size - failed.length)
  // The repair work is in the operator band, ahead of every settled job.
  const queued = await app.receiptsQueue().getJobs(['prioritized'])
  const prio = (mine: boolean) => queued.filter((j) => smallIds.has((j.data as { receiptId: number }).receiptId) === mine).map((j) => j.opts.priority!)
  expect(prio(true)).toHaveLength(smallIds.size)
  expect(prio(false).length).toBeGreaterThan(20)
  expect(Math.max(...prio(true))).toBeLessThan(Math.min(...prio(false)))
  // Ranked by credential within the re-drive (1, 2, …) and within the recovery pass (1, 2, …).
  expect(Math.min(...prio(true))).toBe(1)

  const worker = app.startWorker({ concurrency: 1 })
  try {
    const rows = await eventually(
      async () => {
        const r = await rowsOf(app, [small.runId!, big.runId!])
        return r.every((x) => x.state === 'issued' || x.state === 'skipped') ? r : undefined
      },
      90_000,
      200,
    )
    const done = rows.filter((r) => r.state === 'issued').sort((a, b) => a.finished_at!.getTime() - b.finished_at!.getTime() || a.id - b.id)
    const smallDone = done.filter((r) => smallIds.has(r.id))
    expect(smallDone.length).toBe(smallIds.size)
    // With one slot, every re-driven or recovered receipt is issued before the backlog's second.
    const lastSmall = smallDone.at(-1)!.finished_at!.getTime()
    expect(done.filter((r) => !smallIds.has(r.id) && r.finished_at!.getTime() < lastSmall).length).toBeLessThanOrEqual(1)
  } finally {
    await worker.close()
  }
}, 120_000)
