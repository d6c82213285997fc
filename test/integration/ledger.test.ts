/**
 * The ledger's batched statements on real Postgres: claims of many rows in one statement (with the
 * transaction read alongside), transitions of many rows in one statement that skip rows another
 * worker took over, the batcher's row-by-row fallback, and the lease guard that never lets a call
 * go out once the row belongs to someone else; the claim and the transitions run as prepared
 * statements, and a column a migration adds does not break a cached claim.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { applyTransitions, claimReceipts, fenceSends, type AttemptRecord } from '../../src/db/ledger.ts'
import { createDb, prepared, type Db } from '../../src/db/database.ts'
import { createLedgerBatcher } from '../../src/db/ledger-batcher.ts'
import { fenceOf, LeaseLostError, sendFence } from '../../src/jobs/lease.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle } from '../helpers/pipeline.ts'

let env: TestEnv
let pendingIds: number[] = []

beforeAll(async () => {
  env = await createTestEnv()
  await importDay(env.app, { businessDate: '2026-11-20', count: 60, seed: 7, providers: ['payssam', 'nts'] })
  await settle(env.app, '2026-11-20')
  const rows = await env.app.db().selectFrom('receipts').select('id').where('state', '=', 'pending').orderBy('id').execute()
  pendingIds = rows.map((r) => r.id)
  expect(pendingIds.length).toBeGreaterThan(20)
})

afterAll(async () => {
  await env?.close()
})

const attempt = (): AttemptRecord => ({
  operation: 'issue',
  startedAt: new Date(Date.now() - 5),
  finishedAt: new Date(),
  outcome: 'issued',
  httpStatus: 200,
  providerCode: '0000',
  message: null,
  latencyMs: 5,
})

const sentIssue = { operation: 'issue', attemptNo: 1, jobId: null } as const

describe('claimReceipts', () => {
  it('claims a batch in one statement, returns each transaction, and tells why the others were not claimed', async () => {
    const db = env.app.db()
    const [a, b, c, d] = pendingIds
    await db.updateTable('receipts').set({ state: 'issued' }).where('id', '=', c!).execute()
    const first = await claimReceipts(db, [a!, b!, c!, 987_654_321], 'worker-1', 60_000)
    expect(first.get(a!)).toMatchObject({ status: 'claimed', prevState: 'pending' })
    const claimed = first.get(a!)
    if (claimed?.status !== 'claimed') throw new Error('not claimed')
    expect(claimed.tx.transaction_id).toBe(claimed.receipt.transaction_id)
    expect(claimed.tx.paid_at).toBeInstanceOf(Date)
    expect(typeof claimed.tx.amount).toBe('number')
    expect(claimed.receipt).toMatchObject({ state: 'issuing', locked_by: 'worker-1', attempts: 1 })
    expect(first.get(c!)).toEqual({ status: 'done', state: 'issued' })
    expect(first.get(987_654_321)).toEqual({ status: 'missing' })

    // Another worker: a live lease means "later"; an expired one is taken over and must be looked up.
    const second = await claimReceipts(db, [a!, d!], 'worker-2', 60_000)
    expect(second.get(a!)?.status).toBe('leased')
    expect(second.get(d!)?.status).toBe('claimed')
    await db
      .updateTable('receipts')
      .set({ locked_until: sql`now() - interval '1 second'` })
      .where('id', '=', b!)
      .execute()
    const third = await claimReceipts(db, [b!], 'worker-2', 60_000)
    expect(third.get(b!)).toMatchObject({ status: 'claimed', prevState: 'issuing', receipt: { needs_lookup: true, locked_by: 'worker-2', attempts: 2 } })
  })
})

describe('applyTransitions', () => {
  it('applies every owned row in one statement, skips a row taken over, and records all attempts', async () => {
    const db = env.app.db()
    const ids = pendingIds.slice(4, 8)
    const claims = await claimReceipts(db, ids, 'worker-3', 60_000)
    // The last row is taken over by someone else before worker-3 records its outcome.
    await db.updateTable('receipts').set({ locked_by: 'worker-4' }).where('id', '=', ids[3]!).execute()
    const items = ids.map((id) => {
      const c = claims.get(id)
      if (c?.status !== 'claimed') throw new Error(`row ${id} not claimed`)
      return {
        receiptId: id,
        workerId: 'worker-3',
        transition: {
          state: 'issued' as const,
          needsLookup: false,
          error: null,
          receipt: { status: 'issued' as const, approvalNumber: `A${id}`, providerReceiptId: null, receiptUrl: null, amount: null, issuedAt: 'not a date', cancelledAt: null },
        },
        attempts: { receipt: c.receipt, jobId: `issue-${id}`, rows: [attempt()] },
      }
    })
    const owned = await applyTransitions(db, items)
    expect([...owned].sort()).toEqual(ids.slice(0, 3).sort())
    const rows = await db.selectFrom('receipts').select(['id', 'state', 'approval_number', 'issued_at', 'locked_by']).where('id', 'in', ids).orderBy('id').execute()
    expect(rows.slice(0, 3).every((r) => r.state === 'issued' && r.approval_number === `A${r.id}` && r.issued_at instanceof Date && r.locked_by === null)).toBe(true)
    expect(rows[3]).toMatchObject({ state: 'issuing', locked_by: 'worker-4', approval_number: null })
    const attempts = await db.selectFrom('issuance_attempts').select('receipt_id').where('receipt_id', 'in', ids).execute()
    expect(attempts).toHaveLength(4)
  })
})

describe('createLedgerBatcher', () => {
  it('coalesces concurrent claims and transitions, and isolates a row whose update fails', async () => {
    const db = env.app.db()
    const ids = pendingIds.slice(8, 20)
    const batcher = createLedgerBatcher(db, { workerId: 'worker-5', leaseMs: 60_000 })
    const claims = await Promise.all(ids.map((id) => batcher.claim(id)))
    expect(claims.every((c) => c.status === 'claimed')).toBe(true)
    const results = await Promise.allSettled(
      claims.map((c, i) => {
        if (c.status !== 'claimed') throw new Error('not claimed')
        // Row 0 breaks a table constraint (supply < VAT): its statement fails, the others must not.
        const amounts = i === 0 ? { total: 100, supply: 1, vat: 99, taxFree: 0, serviceFee: 0 } : undefined
        return batcher.transition({ receiptId: c.receipt.id, transition: { state: 'issued', error: null, amounts }, attempts: { receipt: c.receipt, rows: [attempt()] } })
      }),
    )
    expect(results[0]!.status).toBe('rejected')
    expect(results.slice(1).every((r) => r.status === 'fulfilled' && r.value === true)).toBe(true)
    const states = await db.selectFrom('receipts').select(['id', 'state']).where('id', 'in', ids).orderBy('id').execute()
    expect(states[0]!.state).toBe('issuing')
    expect(states.slice(1).every((r) => r.state === 'issued')).toBe(true)
  })
})

describe('sendFence', () => {
  it('verifies the owner and covers the call at every send, never shortens the lease, records the send time, and refuses once the row is taken over', async () => {
    const db = env.app.db()
    const [id] = pendingIds.slice(20, 21)
    await claimReceipts(db, [id!], 'worker-6', 60_000)
    // The batched fence a worker's issue jobs use.
    const fence = sendFence(createLedgerBatcher(db, { workerId: 'worker-6', leaseMs: 60_000 }).fence, id!, { callBudgetMs: 20_000, attempt: sentIssue })
    const row = async () =>
      (await sql<{ ms: number; sent: Date | null }>`SELECT extract(epoch FROM locked_until - now()) * 1000 AS ms, last_sent_at AS sent FROM receipts WHERE id = ${id}`.execute(db))
        .rows[0]!

    expect((await row()).sent).toBeNull()
    await fence() // 60 s left ≥ 22 s needed: the lease stays as claimed, the send is recorded
    const first = await row()
    expect(Number(first.ms)).toBeGreaterThan(50_000)
    expect(first.sent).toBeInstanceOf(Date)

    await db
      .updateTable('receipts')
      .set({ locked_until: sql`now() + interval '5 seconds'` })
      .where('id', '=', id!)
      .execute()
    await fence() // 5 s left < 22 s: extended to 22 s from now
    const second = await row()
    expect(Number(second.ms)).toBeLessThan(23_000)
    expect(Number(second.ms)).toBeGreaterThan(15_000)
    expect(second.sent!.getTime()).toBeGreaterThanOrEqual(first.sent!.getTime())

    await db.updateTable('receipts').set({ locked_by: 'worker-7' }).where('id', '=', id!).execute()
    await expect(fence()).rejects.toBeInstanceOf(LeaseLostError)
    expect((await row()).sent!.getTime()).toBe(second.sent!.getTime())
  })

  it("writes the request's attempt row as sent before it leaves, and the answer completes that row", async () => {
    const db = env.app.db()
    const id = pendingIds[25]!
    const c = (await claimReceipts(db, [id], 'worker-10', 60_000)).get(id)
    if (c?.status !== 'claimed') throw new Error('not claimed')
    const sentIds: number[] = []
    const batcher = createLedgerBatcher(db, { workerId: 'worker-10', leaseMs: 60_000 })
    const fence = sendFence(batcher.fence, id, {
      callBudgetMs: 20_000,
      attempt: { operation: 'issue', attemptNo: c.receipt.attempts, jobId: 'job-x' },
      onSent: (a) => sentIds.push(a),
    })
    await fence()
    expect(sentIds).toHaveLength(1)
    const rows = () => db.selectFrom('issuance_attempts').selectAll().where('receipt_id', '=', id).orderBy('id').execute()
    const before = await rows()
    expect(before).toHaveLength(1)
    expect(before[0]).toMatchObject({
      id: sentIds[0],
      attempt_no: 1,
      operation: 'issue',
      outcome: 'sent',
      finished_at: null,
      latency_ms: null,
      worker_id: 'worker-10',
      job_id: 'job-x',
    })
    const sentRow = await db.selectFrom('receipts').select('last_sent_at').where('id', '=', id).executeTakeFirstOrThrow()
    expect(before[0]!.started_at.getTime()).toBe(sentRow.last_sent_at!.getTime())

    // The answer completes the row the fence wrote (same id, started when it was sent); a lookup is a row of its own.
    const lookup = { ...attempt(), operation: 'lookup' as const, outcome: 'issued' as const }
    expect(
      await batcher.transition({
        receiptId: id,
        transition: { state: 'issued', error: null },
        attempts: { receipt: c.receipt, jobId: 'job-x', rows: [{ ...attempt(), id: sentIds[0]! }, lookup] },
      }),
    ).toBe(true)
    const after = await rows()
    expect(after).toHaveLength(2)
    expect(after[0]).toMatchObject({ id: sentIds[0], outcome: 'issued', http_status: 200, latency_ms: 5, attempt_no: 1 })
    expect(after[0]!.started_at.getTime()).toBe(before[0]!.started_at.getTime())
    expect(after[0]!.finished_at).toBeInstanceOf(Date)
    expect(after[1]).toMatchObject({ operation: 'lookup', outcome: 'issued', attempt_no: 1 })
    // 'sent' and "no finish time" go together
    await expect(sql`UPDATE issuance_attempts SET finished_at = NULL WHERE id = ${sentIds[0]!}`.execute(db)).rejects.toThrow(/issuance_attempts_sent_open/)
  })

  it('sends nothing once the job is aborted', async () => {
    const db = env.app.db()
    const id = pendingIds.at(-1)
    await claimReceipts(db, [id!], 'worker-6', 60_000)
    const abort = new AbortController()
    abort.abort(new Error('lock lost'))
    const fence = sendFence(fenceOf(db, 'worker-6'), id!, { callBudgetMs: 20_000, signal: abort.signal, attempt: sentIssue })
    await expect(fence()).rejects.toThrow('lock lost')
    const r = await db.selectFrom('receipts').select('last_sent_at').where('id', '=', id!).executeTakeFirstOrThrow()
    expect(r.last_sent_at).toBeNull()
    expect(await db.selectFrom('issuance_attempts').select('id').where('receipt_id', '=', id!).execute()).toHaveLength(0)
  })
})

describe('prepared statements', () => {
  const preparedOn = async (db: Db) =>
    (await sql<{ name: string }>`SELECT name FROM pg_prepared_statements ORDER BY name`.execute(db)).rows.map((r) => r.name.replace(/_[0-9a-f]{12}$/, ''))
  const issue = async (db: Db, id: number, worker: string) => {
    const c = (await claimReceipts(db, [id], worker, 60_000)).get(id)
    if (c?.status !== 'claimed') throw new Error(`row ${id} not claimed: ${c?.status}`)
    return applyTransitions(db, [{ receiptId: id, workerId: worker, transition: { state: 'issued', error: null }, attempts: { receipt: c.receipt, rows: [attempt()] } }])
  }

  it('runs the claim and the transitions by name, and a column added meanwhile does not break the cached claim', async () => {
    const ids = pendingIds.slice(21, 24)
    expect(ids).toHaveLength(3)
    // One connection each, so pg_prepared_statements is read on the connection that ran the ledger.
    const named = createDb(env.databaseUrl, { max: 1 })
    const plain = createDb(env.databaseUrl, { max: 1, preparedStatements: false })
    try {
      expect(await issue(named.db, ids[0]!, 'worker-8')).toEqual(new Set([ids[0]]))
      expect(await preparedOn(named.db)).toEqual(['ledger_claim', 'ledger_transitions'])

      // A migration adds a receipts column while workers hold the plan: the next claim still runs.
      await sql`ALTER TABLE receipts ADD COLUMN added_by_test int`.execute(env.app.db())
      try {
        expect(await issue(named.db, ids[1]!, 'worker-8')).toEqual(new Set([ids[1]]))
      } finally {
        await sql`ALTER TABLE receipts DROP COLUMN added_by_test`.execute(env.app.db())
      }

      expect(await issue(plain.db, ids[2]!, 'worker-9')).toEqual(new Set([ids[2]]))
      expect(await preparedOn(plain.db)).toEqual([])
      const states = await env.app.db().selectFrom('receipts').select('state').where('id', 'in', ids).execute()
      expect(states.map((r) => r.state)).toEqual(['issued', 'issued', 'issued'])
    } finally {
      await named.close()
      await plain.close()
    }
  })

  it('plans the ledger statements once per connection on a pool of generic plans, and anew per run without', async () => {
    // rows no other test here has touched: the last ones still pending
    const ids = (await env.app.db().selectFrom('receipts').select('id').where('state', '=', 'pending').orderBy('id', 'desc').limit(4).execute()).map((r) => r.id)
    expect(ids).toHaveLength(4)
    const plans = async (db: Db) =>
      (
        await sql<{ name: string; generic_plans: string; custom_plans: string }>`SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name`.execute(db)
      ).rows.map((r) => ({ name: r.name.replace(/_[0-9a-f]{12}$/, ''), generic: Number(r.generic_plans), custom: Number(r.custom_plans) }))
    // claim, fence (with its attempt row) and outcome: the worker's three batch statements
    const run = async (db: Db, id: number, worker: string) => {
      const c = (await claimReceipts(db, [id], worker, 60_000)).get(id)
      if (c?.status !== 'claimed') throw new Error(`row ${id} not claimed: ${c?.status}`)
      const sent = await fenceSends(db, worker, [{ receiptId: id, coverMs: 60_000, attempt: { operation: 'issue', attemptNo: c.receipt.attempts, jobId: null } }])
      const attemptId = sent.get(id)
      expect(attemptId).toBeTypeOf('number')
      return applyTransitions(db, [
        { receiptId: id, workerId: worker, transition: { state: 'issued', error: null }, attempts: { receipt: c.receipt, rows: [{ ...attempt(), id: attemptId }] } },
      ])
    }
    const generic = createDb(env.databaseUrl, { max: 1, genericPlans: true })
    const auto = createDb(env.databaseUrl, { max: 1 })
    try {
      for (const id of ids.slice(0, 2)) expect(await run(generic.db, id, 'worker-10')).toEqual(new Set([id]))
      for (const id of ids.slice(2)) expect(await run(auto.db, id, 'worker-11')).toEqual(new Set([id]))
      // two runs each: one generic plan, reused, and never a plan for the values
      expect(await plans(generic.db)).toEqual(['ledger_claim', 'ledger_fence', 'ledger_transitions'].map((name) => ({ name, generic: 2, custom: 0 })))
      // the control: left to itself Postgres plans each of the first runs for its values
      expect(await plans(auto.db)).toEqual(['ledger_claim', 'ledger_fence', 'ledger_transitions'].map((name) => ({ name, generic: 0, custom: 2 })))
      const states = await env.app.db().selectFrom('receipts').select('state').where('id', 'in', ids).execute()
      expect(states.map((r) => r.state)).toEqual(['issued', 'issued', 'issued', 'issued'])
    } finally {
      await generic.close()
      await auto.close()
    }
  })

  it("runs a worker's ledger on the main pool by default, or on a pool of generic plans when asked", async () => {
    const on = env.newApp({ DB_LEDGER_GENERIC_PLANS: 'true' })
    const off = env.newApp() // the default: off (docs/exactly-once.md says why)
    expect(on.ledgerDb()).not.toBe(on.db())
    expect(off.ledgerDb()).toBe(off.db())
    const mode = async (db: Db) => (await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(db)).rows[0]!.plan_cache_mode
    expect(await mode(on.ledgerDb())).toBe('force_generic_plan')
    expect(await mode(on.db())).toBe('auto')
    expect(await mode(off.ledgerDb())).toBe('auto')
  })

  it('refuses a statement name that could not be told from the SQL after it', () => {
    expect(prepared('ledger_claim').compile(env.app.db()).sql).toBe('/* prepared:ledger_claim */')
    expect(() => prepared('ledger claim */ DROP')).toThrow(/snake_case/)
  })
})
