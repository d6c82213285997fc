/**
 * What settle promises about its enqueues while it overlaps its Postgres work with its Redis work
 * (src/jobs/settle.ts, phase 1), checked at every addBulk on the real queue, Postgres and Redis:
 * - a job is added only after its receipt row is committed (read back on another connection);
 * - the queue never holds more than maxWaiting jobs (the backpressure), here with a stand-in for the
 *   workers that empties the queue whenever settle waits for room;
 * - every pending receipt gets exactly one job, and no skipped receipt gets one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.ts'
import { settleDay } from '../../src/jobs/settle.ts'
import type { ReceiptsQueue } from '../../src/queue/queues.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay } from '../helpers/pipeline.ts'

let env: TestEnv
let app: App

beforeAll(async () => {
  env = await createTestEnv()
  app = env.app
})
afterAll(async () => {
  await env?.close()
})

const DAY = '2026-08-11'

describe('settle overlapping its inserts with its enqueues', () => {
  it('adds a job only for a committed pending receipt, once each, and keeps the queue under maxWaiting', async () => {
    await importDay(app, { businessDate: DAY, count: 700, seed: 19 })
    const real = app.receiptsQueue()
    const chunkSize = 40
    const maxWaiting = 130
    const added: string[] = []
    const uncommitted: string[] = []
    let overLimit = 0
    let calls = 0
    const observedAddBulk = async (jobs: Parameters<ReceiptsQueue['addBulk']>[0]) => {
      calls++
      const ids = jobs.map((j) => (j.data as { receiptId: number }).receiptId)
      // The pool hands out another connection than the INSERT's: it sees committed rows only.
      const rows = await app.db().selectFrom('receipts').select(['id', 'state']).where('id', 'in', ids).execute()
      const pending = new Set(rows.filter((r) => r.state === 'pending').map((r) => r.id))
      for (const id of ids) if (!pending.has(id)) uncommitted.push(String(id))
      const waiting = await real.getJobCountByTypes('waiting', 'prioritized')
      if (waiting + jobs.length > maxWaiting) overLimit++
      added.push(...jobs.map((j) => j.opts!.jobId!))
      return real.addBulk(jobs)
    }
    const queue = new Proxy(real, {
      get(target, prop) {
        if (prop === 'addBulk') return observedAddBulk
        const v = Reflect.get(target, prop, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    let drains = 0
    const summary = await settleDay(
      {
        db: app.db(),
        queue,
        logger: app.logger,
        chunkSize,
        maxWaiting,
        // The workers' stand-in: while settle waits for room, the waiting jobs are taken away.
        sleep: async () => {
          drains++
          await real.drain()
        },
      },
      { businessDate: DAY, trigger: 'manual' },
    )

    const receipts = await app.db().selectFrom('receipts').select(['id', 'state']).where('kind', '=', 'issue').execute()
    const pendingIds = receipts
      .filter((r) => r.state === 'pending')
      .map((r) => `issue-${r.id}`)
      .sort()
    expect(receipts.length).toBe(700 - summary.rejected)
    expect(pendingIds.length).toBeGreaterThan(maxWaiting * 2)
    expect(uncommitted).toEqual([])
    expect(overLimit).toBe(0)
    expect(drains).toBeGreaterThan(0)
    expect(calls).toBeGreaterThan(700 / chunkSize / 2)
    expect([...added].sort()).toEqual(pendingIds)
    expect(summary.enqueued).toBe(pendingIds.length)
  })
})
