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
  ...(['pending', 'issued', 'failed', 'skipped', 'cancelled', 'issuing', 'cancelling'] as const).map(
    (to): Spec => ({
      op: `applyTransitions → ${to}`,
      subject: 'issue',
      allowed: to === 'issuing' || to === 'cancelling' ? [] : [MINE],
      to,
      wrongLease: 'mine',
      alsoRefused: [TAKEN, { state: 'issuing', lease: 'expired' }],
      run: record(to),
      check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ locked_by: null, locked_until: null }),
    }),
  ),
  ...(['pending', 'issued', 'failed', 'skipped', 'cancelled', 'issuing', 'cancelling'] as const).map(
    (to): Spec => ({
      op: `applyTransitions → ${to}`,
      subject: 'cancel',
      allowed: to === 'pending' || to === 'issued' || to === 'failed' ? [MINE] : [],
      to,
      wrongLease: 'mine',
      alsoRefused: [TAKEN],
      run: record(to),
    }),
  ),
  {
    op: 'failOrphaned',
    subject: 'issue',
    allowed: [{ state: 'pending' }, { state: 'issuing', lease: 'expired' }],
    to: 'failed',
    wrongLease: 'expired',
    alsoRefused: [TAKEN],
    run: (s) => failOrphaned(db, s.id, 'queue', 'job stalled too often'),
    check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ needs_lookup: true, locked_by: null }),
  },
  {
    op: 'beginFullCancel',
    subject: 'issue',
    allowed: [{ state: 'issued' }],
    to: 'cancelling',
    wrongLease: 'none',
    run: (s) => beginFullCancel(db, s.id),
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
    check: async (s) => expect(await stateOf(s.parentId!)).toBe('cancelled'),
  },
  {
    op: 'recordCancelOutcome accepted in full, the parent',
    subject: 'parent',
    allowed: [{ state: 'issued' }, { state: 'cancelling' }],
    to: 'cancelled',
    wrongLease: 'none',
    run: async (s) => (await cancelOutcome('issued', true)(s)).parentMoved,
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
    check: async (s) => expect((await snapshot([s.id]))[0]!.idempotency_key).toMatch(/-c1$/),
  },
  ...(['issued', 'cancelled'] as const).map(
    (to): Spec => ({
      op: `repairFromProvider → ${to}`,
      subject: 'issue',
      allowed: to === 'issued' ? [{ state: 'failed' }, { state: 'pending' }] : [{ state: 'failed' }, { state: 'pending' }, { state: 'issued' }],
      to,
      wrongLease: 'none',
      run: async (s) => repairFromProvider(db, s.id, await stateOf(s.id), to, held(to)),
      check: async (s) => expect((await snapshot([s.id]))[0]).toMatchObject({ approval_number: '123456789', needs_lookup: false }),
    }),
  ),
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
        expect(await spec.run(s)).toBe(true)
        expect(await stateOf(s.id)).toBe(spec.to === 'same' ? before : spec.to)
        await spec.check?.(s)
      })
    }
    const refused = [
      ...STATES.map((state): Start => ({ state, lease: spec.wrongLease })),
      ...(spec.alsoRefused ?? []),
    ].filter((start, i, all) => !spec.allowed.some((a) => covers(a, start)) && all.findIndex((o) => sameStart(o, start)) === i)
    for (const from of refused) {
      it(`changes nothing from ${label(from)}`, async () => {
        const s = await arrange(spec, from)
        await spec.prepare?.(s)
        const before = await snapshot(s.watch)
        expect(await spec.run(s)).toBe(false)
        expect(await snapshot(s.watch)).toEqual(before)
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
