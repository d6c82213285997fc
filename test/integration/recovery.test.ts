/**
 * Receipts whose work is due or in flight but whose job is gone or finished, on real Postgres, Redis
 * and the sandbox: the recovery pass (and settle, re-drive) put them back on the queue exactly once,
 * leave receipts a live job holds alone, and their runs finish.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Worker } from 'bullmq'
import { afterEach, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { App } from '../../src/app.ts'
import { beginFullCancel, claimReceipts } from '../../src/db/ledger.ts'
import { requestCancellation } from '../../src/jobs/cancel-receipt.ts'
import { enqueueReceipts } from '../../src/jobs/enqueue-receipts.ts'
import { deletePrefixKeys } from '../../src/queue/prefix-keys.ts'
import { connectionOf, issueJobId, RECEIPTS_QUEUE } from '../../src/queue/queues.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, ROOT, runCli, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox | undefined
let env: TestEnv | undefined

afterEach(async () => {
  await env?.close()
  await sandbox?.close()
  env = undefined
  sandbox = undefined
})

/** An environment whose own app runs no periodic pass; pending rows are old enough at once. */
async function setup(extra: Record<string, string> = {}) {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { RECOVERY_INTERVAL_MS: '0', RECOVERY_GRACE_MS: '0', ...extra } })
  return { env, sandbox, app: env.app }
}

/** A worker process of its own (closed with the environment, or earlier by the test). */
function startWorker(e: TestEnv, extra: Record<string, string> = {}): App {
  const app = e.newApp(extra)
  app.startWorker({ concurrency: 4 })
  return app
}

async function receiptsOf(app: App, runId: number) {
  return app.db().selectFrom('receipts').selectAll().where('run_id', '=', runId).where('kind', '=', 'issue').where('state', '!=', 'skipped').orderBy('id').execute()
}

/** Completes every job it takes without touching the ledger: a job "finished" while its row still needs work. */
async function finishJobsWithoutWork(app: App, count: number): Promise<void> {
  let done = 0
  const worker = new Worker(RECEIPTS_QUEUE, async () => 'nothing', { connection: connectionOf(app.redis().duplicate()), prefix: app.config.queuePrefix })
  worker.on('completed', () => done++)
  await eventually(async () => done >= count, 20_000, 50)
  await worker.close()
}

describe('recovery pass', () => {
  it('re-enqueues a row left issuing past its lease with its job lost; the handler looks up first and issues once', async () => {
    const { app, sandbox } = await setup()
    await importDay(app, { businessDate: '2026-07-01', count: 6, seed: 21, providers: ['payssam'], idPrefix: 'ORPH' })
    const s = await settle(app, '2026-07-01')
    const rows = await receiptsOf(app, s.runId!)
    expect(rows.length).toBeGreaterThan(1)
    // A worker claimed the first row and vanished; then Redis lost everything.
    const claimed = await claimReceipts(app.db(), [rows[0]!.id], 'vanished-worker', 1)
    expect(claimed.get(rows[0]!.id)?.status).toBe('claimed')
    await new Promise((r) => setTimeout(r, 20))
    await deletePrefixKeys(app.redis(), app.config.queuePrefix)

    const pass = await app.recover()
    expect(pass).toMatchObject({ ran: true, checked: rows.length, live: 0, requeued: 1, added: rows.length - 1, raced: 0 })
    const orphan = await app.db().selectFrom('receipts').select(['state', 'needs_lookup', 'requeue_count']).where('id', '=', rows[0]!.id).executeTakeFirstOrThrow()
    expect(orphan).toEqual({ state: 'issuing', needs_lookup: true, requeue_count: 1 })
    expect(await app.receiptsQueue().getJobState(issueJobId(rows[0]!.id, 0, 1))).toBe('prioritized')

    // Nothing is left that a second pass would take: every row (the issuing one too) is held by a live job now.
    expect(await app.recover()).toMatchObject({ checked: rows.length, live: rows.length, added: 0, requeued: 0 })

    startWorker(env!)
    const report = await waitForRun(app, s.runId!)
    expect(report.totals.issued).toBe(rows.length)
    expect(sandbox.stats().providers.payssam.issued).toBe(rows.length)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
    const ops = await app.db().selectFrom('issuance_attempts').select('operation').where('receipt_id', '=', rows[0]!.id).orderBy('started_at').orderBy('id').execute()
    expect(ops.map((o) => o.operation)).toEqual(['lookup', 'issue'])

    // The run's status in the ledger follows once a pass sees every receipt done.
    const after = await app.recover()
    expect(after.finishedRuns).toContain(s.runId!)
    const run = await app.db().selectFrom('settlement_runs').select(['status', 'finished_at']).where('id', '=', s.runId!).executeTakeFirstOrThrow()
    expect(run.status).toBe('finished')
    expect(run.finished_at).not.toBeNull()
  })

  it('`cash-receipts recover`, the one command the README names, puts receipts with no live job back and finishes the run', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    expect(readme).toMatch(/^cash-receipts recover \[--date D\] \[--json\]/m)
    const { app, sandbox } = await setup()
    await importDay(app, { businessDate: '2026-07-07', count: 6, seed: 27, providers: ['payssam'], idPrefix: 'CLIREC' })
    const s = await settle(app, '2026-07-07')
    const rows = await receiptsOf(app, s.runId!)
    expect(rows.length).toBeGreaterThan(1)
    // One row claimed by a worker that vanished, then Redis lost every job: no worker fleet runs a pass.
    await claimReceipts(app.db(), [rows[0]!.id], 'vanished-worker', 1)
    await new Promise((r) => setTimeout(r, 20))
    await deletePrefixKeys(app.redis(), app.config.queuePrefix)

    const r = await runCli(['recover', '--date', '2026-07-07', '--json'], env!.env())
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ran: true, checked: rows.length, live: 0, requeued: 1, added: rows.length - 1 })
    expect(await app.receiptsQueue().getJobState(issueJobId(rows[0]!.id, 0, 1))).toBe('prioritized')
    for (const row of rows.slice(1)) expect(await app.receiptsQueue().getJobState(issueJobId(row.id, 0))).toBe('prioritized')

    startWorker(env!)
    const report = await waitForRun(app, s.runId!)
    expect(report.totals.issued).toBe(rows.length)
    expect(sandbox.stats().providers.payssam.issued).toBe(rows.length)
    expect(sandbox.stats().max_receipts_per_key).toBe(1)
    // Run again once the receipts are done: nothing is left to put back, and the run is finished in the ledger.
    const again = await runCli(['recover', '--json'], env!.env())
    expect(again.code, again.stderr).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ ran: true, added: 0, requeued: 0 })
    expect((await app.db().selectFrom('settlement_runs').select('status').where('id', '=', s.runId!).executeTakeFirstOrThrow()).status).toBe('finished')
  })

  it('recovers a cancel whose job was lost; the cancel completes once and another cancel is refused', async () => {
    const { app, sandbox } = await setup()
    await importDay(app, { businessDate: '2026-07-02', count: 4, seed: 22, providers: ['payssam'], idPrefix: 'CANC' })
    const s = await settle(app, '2026-07-02')
    const firstWorker = startWorker(env!)
    await waitForRun(app, s.runId!)
    await firstWorker.close()
    const [a, b] = (await receiptsOf(app, s.runId!)).filter((r) => r.state === 'issued')
    expect(a && b).toBeTruthy()
    const deps = { db: app.db(), queue: app.receiptsQueue(), providers: app.providers() }

    // a: the cancel's job is lost before any worker saw it (Redis flushed).
    const lost = await requestCancellation(deps, { transactionId: a!.transaction_id, reason: 1 })
    // b: a worker claimed the cancel, marked the receipt cancelling, and died; its job is lost too.
    const dying = await requestCancellation(deps, { transactionId: b!.transaction_id, reason: 1 })
    await claimReceipts(app.db(), [dying.cancelReceiptId], 'vanished-worker', 1)
    expect(await beginFullCancel(app.db(), b!.id)).toBe(true)
    await new Promise((r) => setTimeout(r, 20))
    await deletePrefixKeys(app.redis(), app.config.queuePrefix)
    await expect(requestCancellation(deps, { transactionId: a!.transaction_id, reason: 1 })).rejects.toThrow(/already in progress/)
    await expect(requestCancellation(deps, { transactionId: b!.transaction_id, reason: 1 })).rejects.toThrow(/is cancelling/)

    const pass = await app.recover()
    expect(pass).toMatchObject({ checked: 2, added: 1, requeued: 1, live: 0 })
    startWorker(env!)
    for (const t of [a!, b!]) {
      await eventually(async () => (await app.db().selectFrom('receipts').select('state').where('id', '=', t.id).executeTakeFirstOrThrow()).state === 'cancelled')
    }
    const cancels = await app.db().selectFrom('receipts').select(['id', 'state']).where('kind', '=', 'cancel').orderBy('id').execute()
    expect(cancels).toEqual([
      { id: lost.cancelReceiptId, state: 'issued' },
      { id: dying.cancelReceiptId, state: 'issued' },
    ])
    expect(sandbox.stats().providers.payssam.cancelled).toBe(2)
    await expect(requestCancellation(deps, { transactionId: a!.transaction_id, reason: 1 })).rejects.toThrow(/is cancelled/)
  })

  it('settle, re-drive and recover put a pending row whose job id is finished back under a fresh id', async () => {
    const { app, sandbox } = await setup()
    await importDay(app, { businessDate: '2026-07-03', count: 6, seed: 23, providers: ['payssam'], idPrefix: 'FIN' })
    const s = await settle(app, '2026-07-03')
    const rows = await receiptsOf(app, s.runId!)
    expect(rows.length).toBeGreaterThanOrEqual(3)
    await finishJobsWithoutWork(app, rows.length)
    for (const r of rows) expect(await app.receiptsQueue().getJobState(issueJobId(r.id, 0))).toBe('completed')

    // settle again: the carry-over phase finds the rows pending and their ids finished.
    const again = await settle(app, '2026-07-03')
    expect(again.enqueued).toBe(rows.length)
    for (const r of rows) expect(await app.receiptsQueue().getJobState(issueJobId(r.id, 0, 1))).toBe('prioritized')
    await finishJobsWithoutWork(app, rows.length)

    // recover: the same for the first row; re-drive: the second row failed, and its re-drive id already finished.
    const [viaRecover, viaRedrive] = rows
    await app.db().updateTable('receipts').set({ state: 'failed', error_class: 'retryable' }).where('id', '=', viaRedrive!.id).execute()
    await app.receiptsQueue().add('issue-receipt', { receiptId: viaRedrive!.id, businessDate: '2026-07-03' }, { jobId: issueJobId(viaRedrive!.id, 1, 1) })
    await finishJobsWithoutWork(app, 1)
    const redriven = await app.redrive({ runId: s.runId! })
    expect(redriven.count).toBe(1)
    expect(await app.receiptsQueue().getJobState(issueJobId(viaRedrive!.id, 1, 2))).toBe('prioritized')

    const pass = await app.recover()
    expect(pass).toMatchObject({ requeued: rows.length - 1, live: 1, added: 0 })
    expect(await app.receiptsQueue().getJobState(issueJobId(viaRecover!.id, 0, 2))).toBe('prioritized')

    startWorker(env!)
    const report = await waitForRun(app, s.runId!)
    expect(report.totals.issued).toBe(rows.length)
    expect(sandbox.stats().providers.payssam.issued).toBe(rows.length)
    expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
  })

  it('leaves a row alone while a live job (delayed, waiting) holds it, and respects the grace period', async () => {
    const { app } = await setup()
    await importDay(app, { businessDate: '2026-07-04', count: 4, seed: 24, providers: ['payssam'], idPrefix: 'LIVE' })
    const s = await settle(app, '2026-07-04')
    const rows = await receiptsOf(app, s.runId!)
    const first = rows[0]!
    await app.receiptsQueue().remove(issueJobId(first.id, 0))
    await app.receiptsQueue().add('issue-receipt', { receiptId: first.id, businessDate: '2026-07-04' }, { jobId: issueJobId(first.id, 0), delay: 600_000 })
    expect(await app.receiptsQueue().getJobState(issueJobId(first.id, 0))).toBe('delayed')

    const pass = await app.recover()
    expect(pass).toMatchObject({ checked: rows.length, live: rows.length, added: 0, requeued: 0 })
    expect(await app.receiptsQueue().getJobState(issueJobId(first.id, 0, 1))).toBe('unknown')
    // Settled jobs wait in the prioritized set (their rank per credential: docs/dispatch.md).
    const counts = await app.receiptsQueue().getJobCounts('waiting', 'prioritized', 'delayed')
    expect(counts).toEqual({ waiting: 0, prioritized: rows.length - 1, delayed: 1 })
    const row = await app.db().selectFrom('receipts').select(['requeue_count', 'needs_lookup']).where('id', '=', first.id).executeTakeFirstOrThrow()
    expect(row).toEqual({ requeue_count: 0, needs_lookup: false })

    // With a grace period, a pending row just written is not even a candidate, job or no job.
    await deletePrefixKeys(app.redis(), app.config.queuePrefix)
    const patient = env!.newApp({ RECOVERY_GRACE_MS: '600000' })
    expect(await patient.recover()).toMatchObject({ ran: true, checked: 0, added: 0, requeued: 0 })
  })

  it('two concurrent recovery passes, or two enqueuers racing without the lock, enqueue at most one job per receipt', async () => {
    const { app } = await setup()
    await importDay(app, { businessDate: '2026-07-05', count: 30, seed: 25, providers: ['payssam'], idPrefix: 'RACE' })
    const s = await settle(app, '2026-07-05')
    const rows = await receiptsOf(app, s.runId!)
    await finishJobsWithoutWork(app, rows.length)
    const other = env!.newApp()

    const [p, q] = await Promise.all([app.recover(), other.recover()])
    expect(p.requeued + q.requeued).toBe(rows.length)
    expect(p.added + q.added).toBe(0)
    await expectOneLiveJobPerReceipt(app, rows.length)

    // Without the lock: the ledger's guard on requeue_count lets one of two racing callers enqueue.
    await finishJobsWithoutWork(app, rows.length)
    const fresh = await receiptsOf(app, s.runId!)
    const [x, y] = await Promise.all([
      enqueueReceipts({ db: app.db(), queue: app.receiptsQueue() }, fresh),
      enqueueReceipts({ db: other.db(), queue: other.receiptsQueue() }, fresh),
    ])
    expect(x.requeued + y.requeued).toBe(rows.length)
    expect(x.raced + y.raced).toBe(rows.length)
    await expectOneLiveJobPerReceipt(app, rows.length)
  })

  it('the worker fleet runs the pass on its own and the run finishes', async () => {
    const { app, sandbox } = await setup()
    await importDay(app, { businessDate: '2026-07-06', count: 8, seed: 26, providers: ['payssam'], idPrefix: 'FLEET' })
    const s = await settle(app, '2026-07-06')
    const rows = await receiptsOf(app, s.runId!)
    await deletePrefixKeys(app.redis(), app.config.queuePrefix)
    startWorker(env!, { RECOVERY_INTERVAL_MS: '200' })
    startWorker(env!, { RECOVERY_INTERVAL_MS: '200' })
    const report = await waitForRun(app, s.runId!)
    expect(report.status).toBe('finished')
    expect(report.totals.issued).toBe(rows.length)
    expect(sandbox.stats().providers.payssam.issued).toBe(rows.length)
    await eventually(async () => (await app.db().selectFrom('settlement_runs').select('status').where('id', '=', s.runId!).executeTakeFirstOrThrow()).status === 'finished')
  })
})

async function expectOneLiveJobPerReceipt(app: App, receipts: number): Promise<void> {
  const jobs = await app.receiptsQueue().getJobs(['waiting', 'delayed', 'active', 'prioritized'])
  const perReceipt = new Map<number, number>()
  for (const j of jobs) perReceipt.set((j.data as { receiptId: number }).receiptId, (perReceipt.get((j.data as { receiptId: number }).receiptId) ?? 0) + 1)
  expect(perReceipt.size).toBe(receipts)
  expect([...perReceipt.values()].every((n) => n === 1)).toBe(true)
}
