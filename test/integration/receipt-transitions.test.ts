/**
 * The receipts state machine, table-driven on real Postgres: every allowed transition, by named
 * ledger operation, applies and reports that it did; the same operation attempted from every other
 * state (and, where a lease guards it, by a worker that does not hold the lease) changes nothing —
 * the row reads back exactly as before — and reports that it did not apply.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  applyTransitions,
  beginFullCancel,
  bumpRequeue,
  failProvisional,
  claimReceipts,
  extendLease,
  failOrphaned,
  flagReconcile,
  insertCancelReceipt,
  insertIssueReceipts,
  markReconciled,
  recordCancelOutcome,
  redriveFailed,
  repairFromProvider,
} from '../../src/db/ledger.ts'
import type { Db } from '../../src/db/database.ts'
import type { ReceiptState } from '../../src/db/schema.ts'
import type { OutcomeKind } from '../../src/domain/index.ts'
import { buildReceipt } from '../../src/jobs/settle.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle } from '../helpers/pipeline.ts'

const STATES: readonly ReceiptState[] = ['pending', 'issuing', 'issued', 'failed', 'skipped', 'cancelling', 'cancelled']
const ME = 'worker-me'
const OTHER = 'worker-other'

/** A row's starting point: its state and who holds a lease on it. */
interface Start {
  readonly state: ReceiptState
  /** mine: ME, live; other: OTHER, live; expired: OTHER, lapsed; none: no lease (the default). */
  readonly lease?: 'mine' | 'other' | 'expired' | 'none'
}

/** The row an operation is tried on, the rows that must stay untouched when it is refused. */
interface Subject {
  readonly id: number
  readonly parentId?: number
  readonly cancelId?: number
  readonly watch: readonly number[]
}

interface Spec {
  readonly op: string
  /** Which row the spec's states are about: an issue row, a cancel row, or the issue row a cancel row points at. */
  readonly subject: 'issue' | 'cancel' | 'parent'
  /** States (and leases; none given = any) the operation moves the subject from; empty = it never applies. */
  readonly allowed: readonly Start[]
  /** The subject's state afterwards ('same' for operations that only mark the row). */
  readonly to: ReceiptState | 'same'
  /** The lease wrong-state rows get: the one that would satisfy the operation's other guards. */
  readonly wrongLease: NonNullable<Start['lease']>
  /** Refused starts besides the wrong states (a live lease held by someone else). */
  readonly alsoRefused?: readonly Start[]
  /** Extra set-up after the subject is arranged and before it is read. */
  readonly prepare?: (s: Subject) => Promise<void>
  /** Runs the operation; true when it reports that it applied. */
  readonly run: (s: Subject) => Promise<boolean>
  readonly check?: (s: Subject) => Promise<void>
  /**
   * The cause of the one receipt_transitions row an applied operation writes for the subject (from
   * the state read, to the state after), by the start it applied from; none: the operation changes
   * neither state nor owner and writes no history.
   */
  readonly cause?: (from: Start) => string
}

let env: TestEnv
let db: Db
let pool: number[] = []

beforeAll(async () => {
  env = await createTestEnv()
  db = env.app.db()
  await importDay(env.app, { businessDate: '2026-10-05', count: 800, seed: 21, providers: ['payssam', 'nts'], idPrefix: 'SM' })
  await settle(env.app, '2026-10-05')
  const rows = await db.selectFrom('receipts').select('id').where('state', '=', 'pending').orderBy('id').execute()
  pool = rows.map((r) => r.id)
  expect(pool.length).toBeGreaterThan(450)
})

afterAll(async () => {
  await env?.close()
})

function take(): number {
  const id = pool.shift()
  if (id === undefined) throw new Error('the test ran out of pending receipts; import more')
  return id
}

async function put(id: number, start: Start): Promise<void> {
  const lease = start.lease ?? 'none'
  await db
    .updateTable('receipts')
    .set({
      state: start.state,
      locked_by: lease === 'none' ? null : lease === 'mine' ? ME : OTHER,
      locked_until: lease === 'none' ? null : lease === 'expired' ? sql<Date>`now() - interval '1 minute'` : sql<Date>`now() + interval '1 hour'`,
    })
    .where('id', '=', id)
    .execute()
}

/** A cancel row (seq 1, the parent's full amounts) for a parent that was issued when it was created. */
async function cancelFor(parentId: number): Promise<number> {
  await put(parentId, { state: 'issued' })
  const p = await db.selectFrom('receipts').selectAll().where('id', '=', parentId).executeTakeFirstOrThrow()
  const id = await insertCancelReceipt(db, {
    parentId,
    seq: 1,
    idempotencyKey: `${p.idempotency_key}-c1`,
    amounts: { total: p.total_amount, supply: p.supply_amount, vat: p.vat_amount, taxFree: p.tax_free_amount, serviceFee: p.service_fee },
    reason: 1,
  })
  if (id === null) throw new Error(`could not create a cancel row for ${parentId}`)
  return id
}

async function arrange(spec: Spec, start: Start): Promise<Subject> {
  if (spec.subject === 'issue') {
    const id = take()
    await put(id, start)
    return { id, watch: [id] }
  }
  const parentId = take()
  const cancelId = await cancelFor(parentId)
  if (spec.subject === 'cancel') {
    await put(cancelId, start)
    return { id: cancelId, parentId, cancelId, watch: [cancelId, parentId] }
  }
  await put(cancelId, { state: 'issuing', lease: 'mine' })
  await put(parentId, start)
  return { id: parentId, parentId, cancelId, watch: [parentId] }
}

const snapshot = (ids: readonly number[]) => db.selectFrom('receipts').selectAll().where('id', 'in', ids).orderBy('id').execute()
const stateOf = async (id: number) => (await db.selectFrom('receipts').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state
const label = (s: Start) => (s.lease && s.lease !== 'none' ? `${s.state} (${s.lease} lease)` : s.state)
const sameStart = (a: Start, b: Start) => a.state === b.state && (a.lease ?? 'none') === (b.lease ?? 'none')
const covers = (allowed: Start, s: Start) => allowed.state === s.state && (allowed.lease === undefined || allowed.lease === (s.lease ?? 'none'))

const owned = (id: number) => ({ receipt: { id, attempts: 1 }, rows: [] })
const record = (state: ReceiptState) => async (s: Subject) =>
  (await applyTransitions(db, [{ receiptId: s.id, workerId: ME, transition: { state }, attempts: owned(s.id) }])).has(s.id)
const cancelOutcome = (state: ReceiptState, full: boolean) => (s: Subject) =>
  recordCancelOutcome(db, {
    item: { receiptId: s.cancelId!, workerId: ME, transition: { state }, attempts: owned(s.cancelId!) },
    parentId: s.parentId!,
    full,
  })
const held = (status: 'issued' | 'cancelled') => ({
  status,
  approvalNumber: '123456789',
  providerReceiptId: 'P-1',
  receiptUrl: null,
  amount: null,
  issuedAt: '2026-10-05T10:00:00+09:00',
  cancelledAt: null,
})

/** Gives the subject a settlement run of its own, so a re-drive filtered by that run can take nothing else. */
async function ownRun(s: Subject): Promise<void> {
  const run = await db.insertInto('settlement_runs').values({ business_date: '2026-10-05', trigger: 'redrive' }).returning('id').executeTakeFirstOrThrow()
  await db.updateTable('receipts').set({ run_id: run.id, last_run_id: run.id }).where('id', '=', s.id).execute()
}

/** The subject's history rows after `afterId` (receipt_transitions ids only grow). */
const historyOf = (ids: readonly number[], afterId: number) =>
  db.selectFrom('receipt_transitions').select(['receipt_id', 'from_state', 'to_state', 'cause']).where('receipt_id', 'in', ids).where('id', '>', afterId).orderBy('id').execute()
const lastHistoryId = async () =>
  Number(
    (
      await db
        .selectFrom('receipt_transitions')
        .select((eb) => eb.fn.max('id').as('m'))
        .executeTakeFirst()
    )?.m ?? 0,
  )
const claimCause = (from: Start) => (from.state === 'issuing' ? 'lease_takeover' : 'attempt:1')

const MINE: Start = { state: 'issuing', lease: 'mine' }
const TAKEN: Start = { state: 'issuing', lease: 'other' }

const SPECS: readonly Spec[] = [
  {
    op: 'claimReceipts',
    subject: 'issue',
    allowed: [{ state: 'pending' }, { state: 'issuing', lease: 'expired' }],
    to: 'issuing',
    wrongLease: 'expired',
    alsoRefused: [TAKEN],
    run: async (s) => (await claimReceipts(db, [s.id], ME, 60_000)).get(s.id)?.status === 'claimed',
    cause: claimCause,
    check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ locked_by: ME }),
  },
  {
    op: 'claimReceipts',
    subject: 'cancel',
    allowed: [{ state: 'pending' }, { state: 'issuing', lease: 'expired' }],
    to: 'issuing',
    wrongLease: 'expired',
    alsoRefused: [TAKEN],
    run: async (s) => (await claimReceipts(db, [s.id], ME, 60_000)).get(s.id)?.status === 'claimed',
    cause: claimCause,
  },
  {
    op: 'extendLease',
    subject: 'issue',
    allowed: [MINE],
    to: 'issuing',
    wrongLease: 'mine',
    alsoRefused: [TAKEN, { state: 'issuing', lease: 'expired' }],
    run: (s) => extendLease(db, s.id, ME, 7_200_000),
  },
  ...(['pending', 'issued', 'failed', 'skipped', 'cancelled', 'issuing', 'cancelling'] as const).map((to): Spec => ({
    op: `applyTransitions → ${to}`,
    subject: 'issue',
    allowed: to === 'issuing' || to === 'cancelling' ? [] : [MINE],
    to,
    wrongLease: 'mine',
    alsoRefused: [TAKEN, { state: 'issuing', lease: 'expired' }],
    run: record(to),
    cause: () => 'attempt:1',
    check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ locked_by: null, locked_until: null }),
  })),
  ...(['pending', 'issued', 'failed', 'skipped', 'cancelled', 'issuing', 'cancelling'] as const).map((to): Spec => ({
    op: `applyTransitions → ${to}`,
    subject: 'cancel',
    allowed: to === 'pending' || to === 'issued' || to === 'failed' ? [MINE] : [],
    to,
    wrongLease: 'mine',
    alsoRefused: [TAKEN],
    run: record(to),
    cause: () => 'attempt:1',
  })),
  {
    op: 'failOrphaned',
    subject: 'issue',
    allowed: [{ state: 'pending' }, { state: 'issuing', lease: 'expired' }],
    to: 'failed',
    wrongLease: 'expired',
    alsoRefused: [TAKEN],
    run: (s) => failOrphaned(db, s.id, 'queue', 'job stalled too often'),
    cause: () => 'queue_gave_up',
    check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ needs_lookup: true, locked_by: null }),
  },
  {
    op: 'beginFullCancel',
    subject: 'issue',
    allowed: [{ state: 'issued' }],
    to: 'cancelling',
    wrongLease: 'none',
    run: (s) => beginFullCancel(db, s.id),
    cause: () => 'cancel',
  },
  {
    op: 'beginFullCancel (a cancel row is never a parent)',
    subject: 'cancel',
    allowed: [],
    to: 'cancelling',
    wrongLease: 'none',
    run: (s) => beginFullCancel(db, s.id),
  },
  {
    op: 'recordCancelOutcome accepted, the cancel row',
    subject: 'cancel',
    allowed: [MINE],
    to: 'issued',
    wrongLease: 'mine',
    alsoRefused: [TAKEN, { state: 'issuing', lease: 'expired' }],
    run: async (s) => (await cancelOutcome('issued', true)(s)).owned,
    cause: () => 'attempt:1',
    check: async (s) => expect(await stateOf(s.parentId!)).toBe('cancelled'),
  },
  {
    op: 'recordCancelOutcome accepted in full, the parent',
    subject: 'parent',
    allowed: [{ state: 'issued' }, { state: 'cancelling' }],
    to: 'cancelled',
    wrongLease: 'none',
    run: async (s) => (await cancelOutcome('issued', true)(s)).parentMoved,
    cause: () => 'cancel',
    check: async (s) => {
      const [p] = await snapshot([s.parentId!])
      expect(p!.cancelled_amount).toBe(p!.total_amount)
    },
  },
  {
    op: 'recordCancelOutcome accepted in part, the parent',
    subject: 'parent',
    allowed: [{ state: 'issued' }],
    to: 'issued',
    wrongLease: 'none',
    run: async (s) => (await cancelOutcome('issued', false)(s)).parentMoved,
    cause: () => 'cancel',
    check: async (s) => {
      const [p, c] = await snapshot([s.parentId!, s.cancelId!])
      expect(p!.cancelled_amount).toBe(c!.total_amount)
    },
  },
  {
    op: 'recordCancelOutcome failed for good in full, the parent',
    subject: 'parent',
    allowed: [{ state: 'cancelling' }],
    to: 'issued',
    wrongLease: 'none',
    run: async (s) => (await cancelOutcome('failed', true)(s)).parentMoved,
    cause: () => 'cancel_failed',
  },
  {
    op: 'recordCancelOutcome left for another attempt, the parent',
    subject: 'parent',
    allowed: [],
    to: 'issued',
    wrongLease: 'none',
    run: async (s) => (await cancelOutcome('pending', true)(s)).parentMoved,
  },
  {
    op: 'redriveFailed',
    subject: 'issue',
    allowed: [{ state: 'failed' }],
    to: 'pending',
    wrongLease: 'none',
    prepare: ownRun,
    run: async (s) => {
      const run = (await snapshot([s.id]))[0]!.run_id!
      const redriven = await redriveFailed(db, { runId: run }, run, (r) => `${r.idempotencyKey}-r${r.redriveCount}`)
      return redriven.some((r) => r.id === s.id)
    },
    cause: () => 'redrive',
    check: async (s) => expect((await snapshot([s.id]))[0]!.idempotency_key).toMatch(/-r1$/),
  },
  {
    op: 'redriveFailed',
    subject: 'cancel',
    allowed: [{ state: 'failed' }],
    to: 'pending',
    wrongLease: 'none',
    prepare: ownRun,
    run: async (s) => {
      const run = (await snapshot([s.id]))[0]!.run_id!
      return (await redriveFailed(db, { runId: run }, run, (r) => `${r.idempotencyKey}-r${r.redriveCount}`)).some((r) => r.id === s.id)
    },
    cause: () => 'redrive',
    check: async (s) => expect((await snapshot([s.id]))[0]!.idempotency_key).toMatch(/-c1$/),
  },
  ...(['issued', 'cancelled'] as const).map((to): Spec => ({
    op: `repairFromProvider → ${to}`,
    subject: 'issue',
    allowed: to === 'issued' ? [{ state: 'failed' }, { state: 'pending' }] : [{ state: 'failed' }, { state: 'pending' }, { state: 'issued' }],
    to,
    wrongLease: 'none',
    run: async (s) => repairFromProvider(db, s.id, await stateOf(s.id), to, held(to)),
    cause: () => 'reconcile',
    check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ approval_number: '123456789', needs_lookup: false }),
  })),
  {
    op: 'repairFromProvider (a cancel row is never repaired)',
    subject: 'cancel',
    allowed: [],
    to: 'issued',
    wrongLease: 'none',
    run: async (s) => repairFromProvider(db, s.id, await stateOf(s.id), 'issued', held('issued')),
  },
  {
    op: 'markReconciled',
    subject: 'issue',
    allowed: [{ state: 'issued' }, { state: 'cancelled' }],
    to: 'same',
    wrongLease: 'none',
    run: async (s) => markReconciled(db, s.id, await stateOf(s.id)),
    check: async (s) => expect((await snapshot([s.id]))[0]!.reconciled_at).toBeInstanceOf(Date),
  },
  {
    op: 'flagReconcile',
    subject: 'issue',
    allowed: [{ state: 'issued' }, { state: 'cancelled' }],
    to: 'same',
    wrongLease: 'none',
    run: async (s) => flagReconcile(db, s.id, await stateOf(s.id), 'missing at provider'),
    check: async (s) => expect((await snapshot([s.id]))[0]!.reconcile_flag).toBe('missing at provider'),
  },
]

for (const spec of SPECS) {
  describe(`${spec.op} (${spec.subject} row)`, () => {
    for (const from of spec.allowed) {
      it(`applies from ${label(from)}`, async () => {
        const s = await arrange(spec, from)
        await spec.prepare?.(s)
        const before = await stateOf(s.id)
        const mark = await lastHistoryId()
        expect(await spec.run(s)).toBe(true)
        const after = await stateOf(s.id)
        expect(after).toBe(spec.to === 'same' ? before : spec.to)
        await spec.check?.(s)
        // the history row is written with the change, or none when neither state nor owner changed
        const written = (await historyOf(s.watch, mark)).filter((h) => h.receipt_id === s.id)
        expect(written).toEqual(spec.cause ? [{ receipt_id: s.id, from_state: before, to_state: after, cause: spec.cause(from) }] : [])
      })
    }
    const refused = [...STATES.map((state): Start => ({ state, lease: spec.wrongLease })), ...(spec.alsoRefused ?? [])].filter(
      (start, i, all) => !spec.allowed.some((a) => covers(a, start)) && all.findIndex((o) => sameStart(o, start)) === i,
    )
    for (const from of refused) {
      it(`changes nothing from ${label(from)}`, async () => {
        const s = await arrange(spec, from)
        await spec.prepare?.(s)
        const before = await snapshot(s.watch)
        const mark = await lastHistoryId()
        expect(await spec.run(s)).toBe(false)
        expect(await snapshot(s.watch)).toEqual(before)
        expect(await historyOf(s.watch, mark)).toEqual([])
      })
    }
  })
}

describe('insertIssueReceipts (settlement)', () => {
  let fresh: Awaited<ReturnType<typeof unreceipted>>
  const unreceipted = () =>
    db
      .selectFrom('cash_transactions as t')
      .selectAll('t')
      .where('t.business_date', '=', '2026-10-06')
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('receipts as r').select('r.id').whereRef('r.transaction_id', '=', 't.transaction_id'))))
      .orderBy('t.transaction_id')
      .execute()
  beforeAll(async () => {
    await importDay(env.app, { businessDate: '2026-10-06', count: 12, seed: 22, providers: ['payssam', 'nts'], idPrefix: 'SN' })
    fresh = await unreceipted()
    expect(fresh.length).toBe(12)
  })

  it('creates a transaction’s first receipt pending or skipped, and no other state', async () => {
    const [a, b, ...rest] = fresh
    const pending = { ...buildReceipt(a!, false, null), state: 'pending' as const, skip_reason: null }
    const skipped = { ...buildReceipt(b!, false, null), state: 'skipped' as const, skip_reason: 'test' }
    const others = STATES.filter((s) => s !== 'pending' && s !== 'skipped').map((state, i) => ({ ...buildReceipt(rest[i]!, false, null), state }))
    const inserted = await insertIssueReceipts(db, [pending, skipped, ...others])
    expect(inserted.map((r) => r.state).sort()).toEqual(['pending', 'skipped'])
    // each created row's history starts with its creation, by settlement
    const created = await historyOf(
      inserted.map((r) => r.id),
      0,
    )
    expect(created.map((h) => [h.from_state, h.to_state, h.cause]).sort()).toEqual([
      [null, 'pending', 'settle'],
      [null, 'skipped', 'settle'],
    ])
    expect((await unreceipted()).map((t) => t.transaction_id)).toEqual(rest.map((t) => t.transaction_id))
  })

  it('changes nothing for a transaction that already has its receipt, whatever that receipt’s state', async () => {
    for (const state of STATES) {
      const id = take()
      await put(id, { state })
      const before = await snapshot([id])
      const tx = await db.selectFrom('cash_transactions').selectAll().where('transaction_id', '=', before[0]!.transaction_id).executeTakeFirstOrThrow()
      expect(await insertIssueReceipts(db, [buildReceipt(tx, false, null)])).toEqual([])
      expect(await snapshot([id])).toEqual(before)
    }
  })
})

describe('insertCancelReceipt (cancel request)', () => {
  const create = (parentId: number, seq: number) =>
    insertCancelReceipt(db, { parentId, seq, idempotencyKey: `cancel-${parentId}-${seq}`, amounts: { total: 1000, supply: 909, vat: 91, taxFree: 0, serviceFee: 0 }, reason: 1 })
  const cancelsOf = (parentId: number) => db.selectFrom('receipts').selectAll().where('parent_receipt_id', '=', parentId).orderBy('id').execute()

  it('creates a pending cancel row for an issued receipt with no cancel in progress', async () => {
    const parentId = take()
    await put(parentId, { state: 'issued' })
    const before = await snapshot([parentId])
    const id = await create(parentId, 1)
    expect(id).not.toBeNull()
    expect(await cancelsOf(parentId)).toEqual([expect.objectContaining({ id, kind: 'cancel', state: 'pending', seq: 1, total_amount: 1000 })])
    expect(await historyOf([id!], 0)).toEqual([{ receipt_id: id, from_state: null, to_state: 'pending', cause: 'cancel' }])
    expect(await snapshot([parentId])).toEqual(before)
  })

  for (const state of STATES.filter((s) => s !== 'issued')) {
    it(`changes nothing for a parent ${state}`, async () => {
      const parentId = take()
      await put(parentId, { state })
      const before = await snapshot([parentId])
      expect(await create(parentId, 1)).toBeNull()
      expect(await cancelsOf(parentId)).toEqual([])
      expect(await snapshot([parentId])).toEqual(before)
    })
  }

  for (const open of ['pending', 'issuing'] as const) {
    it(`changes nothing while a cancel is ${open}`, async () => {
      const parentId = take()
      const first = await cancelFor(parentId)
      await put(first, { state: open, lease: open === 'issuing' ? 'other' : 'none' })
      const before = await snapshot([parentId, first])
      expect(await create(parentId, 2)).toBeNull()
      expect(await snapshot([parentId, first])).toEqual(before)
      expect((await cancelsOf(parentId)).map((c) => c.id)).toEqual([first])
    })
  }

  it('is not a parent’s cancel when the parent is itself a cancel row', async () => {
    const parentId = take()
    const cancelId = await cancelFor(parentId)
    await put(cancelId, { state: 'issued' })
    const before = await snapshot([cancelId])
    expect(await create(cancelId, 2)).toBeNull()
    expect(await snapshot([cancelId])).toEqual(before)
  })
})

describe('history of the changes no state table above covers', () => {
  it('a recovery requeue records a change of owner (recover), pending or issuing past its lease', async () => {
    const [a, b] = [take(), take()]
    await put(b, { state: 'issuing', lease: 'expired' })
    const counts = await db.selectFrom('receipts').select(['id', 'requeue_count']).where('id', 'in', [a, b]).execute()
    const mark = await lastHistoryId()
    const bumped = await bumpRequeue(
      db,
      counts.map((c) => ({ id: c.id, requeueCount: c.requeue_count })),
    )
    expect(bumped.map((r) => r.id).sort((x, y) => x - y)).toEqual([a, b].sort((x, y) => x - y))
    expect(await historyOf([a, b], mark)).toEqual(
      expect.arrayContaining([
        { receipt_id: a, from_state: 'pending', to_state: 'pending', cause: 'recover' },
        { receipt_id: b, from_state: 'issuing', to_state: 'issuing', cause: 'recover' },
      ]),
    )
    // a second caller with the old count loses the race and records nothing
    const again = await lastHistoryId()
    expect(
      await bumpRequeue(
        db,
        counts.map((c) => ({ id: c.id, requeueCount: c.requeue_count })),
      ),
    ).toEqual([])
    expect(await historyOf([a, b], again)).toEqual([])
  })

  it('the tax authority refusing a provisional receipt records issued → failed (reconcile)', async () => {
    const id = take()
    await put(id, { state: 'issued' })
    await db.updateTable('receipts').set({ provisional: true }).where('id', '=', id).execute()
    const mark = await lastHistoryId()
    expect(await failProvisional(db, id, { code: 'TS1', message: 'refused' })).toBe(true)
    expect(await historyOf([id], mark)).toEqual([{ receipt_id: id, from_state: 'issued', to_state: 'failed', cause: 'reconcile' }])
    expect(await failProvisional(db, id, { code: 'TS1', message: 'refused' })).toBe(false)
    expect(await historyOf([id], mark)).toHaveLength(1)
  })

  it('an attempt that only looked up, and one put off by the throttle, say so', async () => {
    const [a, b] = [take(), take()]
    await put(a, MINE)
    await put(b, MINE)
    const lookup = {
      operation: 'lookup' as const,
      startedAt: new Date(),
      finishedAt: new Date(),
      outcome: 'issued' as OutcomeKind,
      httpStatus: 200,
      providerCode: null,
      message: null,
      latencyMs: 5,
    }
    const mark = await lastHistoryId()
    const moved = await applyTransitions(db, [
      { receiptId: a, workerId: ME, transition: { state: 'issued' }, attempts: { receipt: { id: a, attempts: 2 }, jobId: 'job-a', rows: [lookup] } },
      { receiptId: b, workerId: ME, transition: { state: 'pending', uncounted: true }, attempts: { receipt: { id: b, attempts: 1 }, jobId: 'job-b', rows: [] } },
    ])
    expect(moved.size).toBe(2)
    const rows = await db.selectFrom('receipt_transitions').select(['receipt_id', 'cause', 'job_id', 'worker_id']).where('id', '>', mark).orderBy('receipt_id').execute()
    expect(rows).toEqual(
      [
        { receipt_id: a, cause: 'lookup', job_id: 'job-a', worker_id: ME },
        { receipt_id: b, cause: 'deferred', job_id: 'job-b', worker_id: ME },
      ].sort((x, y) => x.receipt_id - y.receipt_id),
    )
  })
})
