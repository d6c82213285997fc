/**
 * Exactly-once under real-world faults, on real Postgres, Redis and the sandbox over HTTP:
 *
 * - a slow commit at NTS (which does not deduplicate): the issue request outlives the read timeout and
 *   commits later; a lookup finding nothing inside the commit window only delays the job, so the
 *   sandbox ends with one receipt for the key;
 * - the send fence: a worker whose row is taken over between p-retry's tries, or between a token
 *   refresh and the repeated call, sends nothing more; an aborted job sends nothing more.
 *
 * The takeover is made from the test inside the transport the worker's adapters use (a fetch that
 * forwards to the sandbox), right after the answer the test wants to interleave with.
 */
import pino from 'pino'
import { sql } from 'kysely'
import type { Worker } from 'bullmq'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Sandbox } from '../../sandbox/index.ts'
import { createApp, type App } from '../../src/app.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { importDay, settle } from '../helpers/pipeline.ts'
import { eventually, type TestEnv } from '../helpers/test-env.ts'
import { useSandboxEnv } from '../helpers/sandbox-env.ts'

let sandbox: Sandbox
let env: TestEnv
/** Added to the sandbox's clock (a token expiring in flight). */
let sandboxSkewMs = 0

useSandboxEnv({ sandbox: { clock: () => Date.now() + sandboxSkewMs }, beforeEach: () => (sandboxSkewMs = 0) }, (s, e) => ((sandbox = s), (env = e)))

const db = () => env.app.db()

/** The receipts of one provider's rows of a run, by id. */
async function rowsOf(runId: number) {
  return db().selectFrom('receipts').selectAll().where('run_id', '=', runId).where('kind', '=', 'issue').orderBy('id').execute()
}

async function jobsOf(app: App) {
  return app.receiptsQueue().getJobs(['completed', 'failed', 'delayed', 'waiting', 'active'])
}

describe('a slow commit at a provider that does not deduplicate', () => {
  it('waits out the commit window instead of issuing again: one receipt per key, the job delayed and never failed', async () => {
    const window = 6_000
    // Two attempts only: a wait that used one would fail the job before the window closed.
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '1000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: String(window), WORKER_ATTEMPTS: '2', WORKER_BACKOFF_MS: '100' })
    await importDay(env.app, { businessDate: '2026-11-02', count: 6, seed: 5, providers: ['nts'], idPrefix: 'SC' })
    // Every issue request commits 4 s after it arrives, long after the client's 1 s read timeout.
    sandbox.setFaults('nts:latency=4000')
    const summary = await settle(app, '2026-11-02')
    const worker = app.startWorker({ concurrency: 8 })
    try {
      const eligible = (await rowsOf(summary.runId!)).filter((r) => r.state !== 'skipped')
      expect(eligible.length).toBeGreaterThan(0)
      // Once every issue request has gone out (its send time is written before it leaves), later
      // requests — the lookups — are answered at once.
      await eventually(async () => (await rowsOf(summary.runId!)).filter((r) => r.state !== 'skipped').every((r) => r.last_sent_at !== null), 10_000, 20)
      await new Promise((r) => setTimeout(r, 200))
      sandbox.setFaults('')

      // While the window is open the rows wait: pending, marked for lookup, their jobs delayed.
      const waiting = await eventually(
        async () => {
          const rows = await rowsOf(summary.runId!)
          const open = rows.filter((r) => r.state === 'pending' && r.needs_lookup)
          const delayed = await app.receiptsQueue().getJobs(['delayed'])
          return open.length > 0 && delayed.length > 0 ? { open, delayed } : undefined
        },
        window,
        50,
      )
      expect(waiting.open.length).toBeGreaterThan(0)

      const done = await eventually(
        async () => {
          const rows = await rowsOf(summary.runId!)
          return rows.every((r) => r.state === 'issued' || r.state === 'skipped') ? rows : undefined
        },
        30_000,
        200,
      )
      const issued = done.filter((r) => r.state === 'issued')
      expect(issued.length).toBe(eligible.length)

      // One issue request per key, and the sandbox holds one receipt per key.
      const attempts = await db()
        .selectFrom('issuance_attempts')
        .select(['receipt_id', 'operation', 'outcome', 'started_at'])
        .where(
          'receipt_id',
          'in',
          issued.map((r) => r.id),
        )
        .orderBy('id')
        .execute()
      for (const r of issued) {
        const mine = attempts.filter((a) => a.receipt_id === r.id)
        expect(mine.filter((a) => a.operation === 'issue').map((a) => a.outcome)).toEqual(['unknown_outcome'])
        // A lookup found nothing while the window was open, and one after it found the receipt.
        expect(mine.some((a) => a.operation === 'lookup' && a.outcome === 'not_found')).toBe(true)
        expect(mine.at(-1)).toMatchObject({ operation: 'lookup', outcome: 'issued' })
      }
      const stats = sandbox.stats()
      expect(stats.providers.nts!.issued).toBe(eligible.length)
      expect(stats.max_live_receipts_per_key).toBe(1)

      const jobs = await jobsOf(app)
      expect(await app.receiptsQueue().getJobs(['failed'])).toHaveLength(0)
      expect(jobs.filter((j) => (j.returnvalue as { state?: string } | null)?.state === 'issued')).toHaveLength(eligible.length)
    } finally {
      await worker.close()
    }
  }, 90_000)
})

describe('a slow cancel at a provider that does not deduplicate', () => {
  it('waits out the commit window instead of cancelling again: one cancel request, accepted, never failed', async () => {
    const window = 6_000
    const app = env.newApp({ HTTP_READ_TIMEOUT_MS: '1000', HTTP_CONNECT_TIMEOUT_MS: '500', NTS_COMMIT_WINDOW_MS: String(window), WORKER_ATTEMPTS: '2', WORKER_BACKOFF_MS: '100' })
    await importDay(env.app, { businessDate: '2026-11-03', count: 8, seed: 6, providers: ['nts'], idPrefix: 'SX' })
    const summary = await settle(app, '2026-11-03')
    const worker = app.startWorker({ concurrency: 4 })
    try {
      const issued = await eventually(
        async () => {
          const rows = await rowsOf(summary.runId!)
          return rows.every((r) => r.state === 'issued' || r.state === 'skipped') ? rows.filter((r) => r.state === 'issued') : undefined
        },
        30_000,
        100,
      )
      const victim = issued[0]!
      // The cancel request commits 4 s after it arrives, long after the client's 1 s read timeout;
      // once it has gone out, the lookups are answered at once (and say "not cancelled yet").
      sandbox.setFaults('nts:latency=4000')
      const requested = await app.cancel({ transactionId: victim.transaction_id, reason: 1 })
      const cancelRow = () => db().selectFrom('receipts').selectAll().where('id', '=', requested.cancelReceiptId).executeTakeFirstOrThrow()
      await eventually(async () => (await cancelRow()).last_sent_at !== null, 10_000, 20)
      await new Promise((r) => setTimeout(r, 200))
      sandbox.setFaults('')

      // Inside the window the cancel waits: pending, marked for lookup, its job delayed.
      await eventually(
        async () => {
          const row = await cancelRow()
          return row.state === 'pending' && row.needs_lookup && (await app.receiptsQueue().getJobs(['delayed'])).length > 0
        },
        window,
        50,
      )

      const done = await eventually(
        async () => {
          const row = await cancelRow()
          return row.state === 'issued' ? row : undefined
        },
        30_000,
        200,
      )
      expect(done.error_class).toBeNull()
      const parent = await db().selectFrom('receipts').select(['state']).where('id', '=', victim.id).executeTakeFirstOrThrow()
      expect(parent.state).toBe('cancelled')
      // One cancel request; a lookup saw it not cancelled yet inside the window, and one after it saw it cancelled.
      const attempts = await db().selectFrom('issuance_attempts').select(['operation', 'outcome']).where('receipt_id', '=', done.id).orderBy('id').execute()
      expect(attempts.filter((a) => a.operation === 'cancel').map((a) => a.outcome)).toEqual(['unknown_outcome'])
      expect(attempts.some((a) => a.operation === 'lookup' && a.outcome === 'issued')).toBe(true)
      expect(attempts.at(-1)).toMatchObject({ operation: 'lookup', outcome: 'cancelled' })
      expect(await app.receiptsQueue().getJobs(['failed'])).toHaveLength(0)
      const held = (await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as { receipts: { approvalNumber: string; status: string }[] }
      expect(held.receipts.find((h) => h.approvalNumber === victim.approval_number)?.status).toBe('cancelled')
    } finally {
      await worker.close()
    }
  }, 90_000)
})

describe('the send fence', () => {
  /** What the worker's transport saw, per provider key: issue requests sent, and token fetches. */
  let issueSends: Map<string, number>
  let tokenFetches: number
  /** Runs after the answer to an issue request, before the adapter sees it. */
  let afterIssueAnswer: (key: string, status: number) => Promise<void>
  /** Runs before an issue request is forwarded. */
  let beforeIssue: (key: string) => void
  let app: App
  let worker: Worker | undefined

  const ISSUE = /\/portone\/receipts\/(?:external\/)?([^/?]+)$/

  beforeAll(() => {
    const config = loadDemoConfig(env.env({ WORKER_ATTEMPTS: '1', WORKER_BACKOFF_MS: '100' }))
    const fetchThrough: typeof globalThis.fetch = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input)
      const m = init?.method === 'POST' ? ISSUE.exec(url) : null
      if (url.endsWith('/users/getToken')) tokenFetches++
      if (m) {
        const key = decodeURIComponent(m[1]!)
        beforeIssue(key)
        issueSends.set(key, (issueSends.get(key) ?? 0) + 1)
        const res = await fetch(input, init)
        await afterIssueAnswer(key, res.status)
        return res
      }
      return fetch(input, init)
    }
    app = createApp(config, { logger: pino({ level: config.log.level }), fetch: fetchThrough })
  })

  afterAll(async () => {
    await app?.close()
  })

  beforeEach(() => {
    issueSends = new Map()
    tokenFetches = 0
    afterIssueAnswer = async () => {}
    beforeIssue = () => {}
  })

  /** Another worker takes the row over: it owns the lease now. */
  const stealLease = (key: string) =>
    sql`UPDATE receipts SET locked_by = 'worker-thief', locked_until = now() + interval '5 minutes' WHERE provider_key = ${key} AND state = 'issuing'`.execute(db())

  async function runDay(businessDate: string, idPrefix: string, seed: number) {
    await importDay(env.app, { businessDate, count: 4, seed, providers: ['portone'], idPrefix }, (p) =>
      sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))),
    )
    const summary = await settle(app, businessDate)
    worker ??= app.startWorker({ concurrency: 4 })
    const rows = (await rowsOf(summary.runId!)).filter((r) => r.state !== 'skipped')
    expect(rows.length).toBeGreaterThan(0)
    const finished = await eventually(
      async () => {
        const jobs = (await app.receiptsQueue().getJobs(['completed', 'failed'])).filter((j) => rows.some((r) => r.id === (j.data as { receiptId: number }).receiptId))
        return jobs.length === rows.length ? jobs : undefined
      },
      30_000,
      100,
    )
    return { rows, jobs: finished }
  }

  it('sends no p-retry retry once the row was taken over between tries, and reports taken-over', async () => {
    // V1 documents a 500 as "the PG failed to issue": p-retry sends the issue again, after its fence.
    sandbox.setFaults('portone:5xx=1')
    afterIssueAnswer = async (key, status) => {
      if (status >= 500) await stealLease(key)
    }
    const { rows, jobs } = await runDay('2026-11-03', 'FR', 9)
    const issuing = rows.filter((r) => issueSends.has(r.provider_key))
    expect(issuing.length).toBeGreaterThan(0)
    for (const r of issuing) expect(issueSends.get(r.provider_key)).toBe(1)
    const byReceipt = new Map(jobs.map((j) => [(j.data as { receiptId: number }).receiptId, j]))
    for (const r of issuing) expect(byReceipt.get(r.id)!.returnvalue).toMatchObject({ state: 'taken-over' })
    expect(sandbox.stats().providers.portone!.issued).toBe(0)
    // The thief's lease stands: the fence never overwrote it.
    const after = await db()
      .selectFrom('receipts')
      .select(['locked_by'])
      .where(
        'id',
        'in',
        issuing.map((r) => r.id),
      )
      .execute()
    expect(after.every((r) => r.locked_by === 'worker-thief')).toBe(true)
  }, 60_000)

  it('does not repeat the call after a token refresh once the row was taken over', async () => {
    // The token expires in flight: the sandbox's clock jumps past its lifetime as the issue is sent,
    // so the issue is answered 401, the adapter fetches a new token and would repeat the call.
    beforeIssue = () => {
      sandboxSkewMs += 24 * 3600_000
    }
    afterIssueAnswer = async (key, status) => {
      if (status === 401) await stealLease(key)
    }
    const { rows, jobs } = await runDay('2026-11-04', 'TR', 10)
    const issuing = rows.filter((r) => issueSends.has(r.provider_key))
    expect(issuing.length).toBeGreaterThan(0)
    for (const r of issuing) expect(issueSends.get(r.provider_key)).toBe(1)
    // The refresh itself happened (a read, not fenced): only the repeated issue was held back.
    expect(tokenFetches).toBeGreaterThanOrEqual(2)
    const byReceipt = new Map(jobs.map((j) => [(j.data as { receiptId: number }).receiptId, j]))
    for (const r of issuing) expect(byReceipt.get(r.id)!.returnvalue).toMatchObject({ state: 'taken-over' })
    expect(sandbox.stats().providers.portone!.issued).toBe(0)
  }, 60_000)

  it('sends nothing more once the job is aborted', async () => {
    sandbox.setFaults('portone:5xx=1')
    let cancelled = 0
    afterIssueAnswer = async (key) => {
      const row = await db().selectFrom('receipts').select('id').where('provider_key', '=', key).executeTakeFirstOrThrow()
      const job = (await app.receiptsQueue().getJobs(['active'])).find((j) => (j.data as { receiptId: number }).receiptId === row.id)
      if (job && worker!.cancelJob(job.id!, 'test: lock lost')) cancelled++
    }
    const { rows, jobs } = await runDay('2026-11-05', 'AB', 11)
    const issuing = rows.filter((r) => issueSends.has(r.provider_key))
    expect(issuing.length).toBeGreaterThan(0)
    for (const r of issuing) expect(issueSends.get(r.provider_key)).toBe(1)
    const byReceipt = new Map(jobs.map((j) => [(j.data as { receiptId: number }).receiptId, j]))
    expect(cancelled).toBe(issuing.length)
    for (const r of issuing) expect(byReceipt.get(r.id)!.failedReason).toBeTruthy()
    expect(sandbox.stats().providers.portone!.issued).toBe(0)
    // Whether a call reached the provider is unknown to the ledger: the row is marked for lookup.
    const after = await db()
      .selectFrom('receipts')
      .select(['state', 'needs_lookup'])
      .where(
        'id',
        'in',
        issuing.map((r) => r.id),
      )
      .execute()
    expect(after.every((r) => r.needs_lookup)).toBe(true)
  }, 60_000)

  afterAll(async () => {
    await worker?.close()
  })
})
