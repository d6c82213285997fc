/**
 * Settlement run for one KST business date: every completed cash transaction of the date plus
 * carry-overs (unissued ones still inside the 5-day legal window) gets one receipts row, and every
 * pending receipt gets one BullMQ job (ids only in job data).
 *
 * Streams in chunks with keyset pagination (never a whole day in memory) and waits while the queue
 * has more than `maxWaiting` jobs, so Redis memory is bounded by that limit, not by the day's size.
 * Running it twice creates nothing new: receipts are unique per (transaction, kind) and job ids are
 * derived from receipt ids (and their generation: see enqueue-receipts.ts).
 *
 * A transaction the receipts table refuses (its provider key is already another transaction's, or too
 * long to index, or the row breaks a check: data written by an older version or by hand) does not stop
 * the run: it is recorded in settle_rejections with the reason, reported as a failure of the run, and
 * the rest of the day settles. Carry-over nights try it again and refresh that record, never add one.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import type { CashTransaction, NewReceipt, RunTrigger } from '../db/schema.ts'
import { createBatches, insertIssueReceiptsIsolating, type RefusedIssueReceipt } from '../db/ledger.ts'
import { recordSettleRejections, type SettleRejection } from '../db/settle-rejections.ts'
import { addDays, carryOverFrom, decideIssuance, isValidDate, legalDeadline, type ProviderName } from '../domain/index.ts'
import { deriveProviderKeys, providerKeySource } from '../providers/keys.ts'
import { batchJobId, createRanker, issueJobId, type ReceiptsQueue } from '../queue/queues.ts'
import { receiptAmountsFor } from './receipt-amounts.ts'
import { enqueueReceipts } from './enqueue-receipts.ts'

export interface SettleDeps {
  readonly db: Db
  readonly queue: ReceiptsQueue
  readonly logger: Logger
  readonly chunkSize: number
  readonly maxWaiting: number
  readonly sleep?: (ms: number) => Promise<void>
  /**
   * Receipts per bulk submission for a merchant's provider (the adapter's maxItems) when the
   * merchant's configuration asks for bulk issuance; 0 or absent: one job per receipt.
   */
  readonly bulkSize?: (merchantId: string, provider: string) => number
}

export interface SettleOptions {
  readonly businessDate: string
  readonly merchantId?: string
  readonly trigger: Exclude<RunTrigger, 'redrive'>
  readonly dryRun?: boolean
  readonly onProgress?: (p: SettleProgress) => void
}

export interface SettleProgress {
  readonly phase: 'select' | 'enqueue'
  readonly selected: number
  readonly enqueued: number
}

export interface SettleSummary {
  readonly runId: number | null
  readonly businessDate: string
  readonly window: { readonly from: string; readonly to: string }
  readonly dryRun: boolean
  /** Transactions newly considered by this call (no receipt yet). */
  readonly selected: number
  /** Receipts created pending (to issue) and skipped (not eligible), with reasons. */
  readonly created: number
  readonly skipped: number
  readonly skipReasons: Readonly<Record<string, number>>
  /** Jobs handed to the queue (receipts a live job already holds are not counted). */
  readonly enqueued: number
  readonly byProvider: Readonly<Record<string, number>>
  /** Transactions the receipts table refused (recorded in settle_rejections), by code. */
  readonly rejected: number
  readonly rejectReasons: Readonly<Record<string, number>>
}

export class SettleInputError extends Error {
  override name = 'SettleInputError'
}

/** Jobs per addBulk call when settle enqueues a chunk (one Redis pipeline each). */
const ADD_PART = 500

/** What building a receipt needs from a transaction (not the encrypted personal data). */
const SETTLE_COLUMNS = [
  't.transaction_id',
  't.merchant_id',
  't.provider',
  't.payment_ref',
  't.order_id',
  't.method',
  't.amount',
  't.tax_free_amount',
  't.service_fee',
  't.refunded_amount',
  't.identifier_type',
  't.purpose',
  't.status',
  't.business_date',
] as const
type SettleTransaction = Pick<
  CashTransaction,
  | 'transaction_id'
  | 'merchant_id'
  | 'provider'
  | 'payment_ref'
  | 'order_id'
  | 'method'
  | 'amount'
  | 'tax_free_amount'
  | 'service_fee'
  | 'refunded_amount'
  | 'identifier_type'
  | 'purpose'
  | 'status'
  | 'business_date'
>

export async function settleDay(deps: SettleDeps, opts: SettleOptions): Promise<SettleSummary> {
  if (!isValidDate(opts.businessDate)) throw new SettleInputError(`--date: "${opts.businessDate}" is not a valid YYYY-MM-DD date`)
  const { db } = deps
  const from = carryOverFrom(opts.businessDate)
  const to = opts.businessDate
  const merchants = new Map((await db.selectFrom('merchants').select(['id', 'mandatory_issuer']).execute()).map((m) => [m.id, m.mandatory_issuer]))
  if (opts.merchantId && !merchants.has(opts.merchantId)) {
    throw new SettleInputError(`--merchant: "${opts.merchantId}" is not a configured merchant`)
  }
  const runId = opts.dryRun ? null : await findOrCreateRun(db, opts.businessDate, opts.merchantId ?? '*', opts.trigger)
  await analyzeIfStale(db, deps.logger)

  let selected = 0
  let created = 0
  let skipped = 0
  let enqueued = 0
  const skipReasons: Record<string, number> = {}
  const byProvider: Record<string, number> = {}
  let rejected = 0
  const rejectReasons: Record<string, number> = {}

  // Each job's priority is its rank within its credential in this run: the queue interleaves the
  // merchants whatever order their rows come in (docs/dispatch.md, Fairness).
  const rank = createRanker()
  type Settled = { id: number; trade_date: string; redrive_count: number; merchant_id: string; provider: string }
  // Bulk issuance (docs/exactly-once.md, Bulk issuance): a credential's receipts are gathered into
  // batches of its bulk size across chunks; a full batch is created and enqueued at once, the rest
  // at the end of the first phase. A batch is ONE job and ONE provider request: it gets one rank.
  const bulkBuffers = new Map<string, { size: number; rows: Settled[] }>()
  const flushBatches = async (rows: readonly Settled[]) => {
    if (!rows.length) return
    const m = rows[0]!
    const created = await createBatches(db, [{ merchantId: m.merchant_id, provider: m.provider, runId, tradeDate: m.trade_date, receiptIds: rows.map((r) => r.id) }])
    const jobs = created
      .filter((b) => b.receiptIds.length)
      .map((b) => ({
        name: 'issue-batch' as const,
        data: { batchId: b.id, businessDate: m.trade_date },
        opts: { jobId: batchJobId(b.id), priority: rank(m.merchant_id, m.provider) },
      }))
    if (!jobs.length) return
    await waitForRoom(deps)
    await deps.queue.addBulk(jobs)
    enqueued += created.reduce((n, b) => n + b.receiptIds.length, 0)
    opts.onProgress?.({ phase: 'enqueue', selected, enqueued })
  }
  const enqueue = async (all: readonly Settled[]) => {
    const rows: Settled[] = []
    for (const r of all) {
      const size = deps.bulkSize?.(r.merchant_id, r.provider) ?? 0
      if (size <= 1) {
        rows.push(r)
        continue
      }
      const key = `${r.merchant_id}\u0000${r.provider}`
      const buf = bulkBuffers.get(key) ?? { size, rows: [] }
      bulkBuffers.set(key, buf)
      buf.rows.push(r)
      if (buf.rows.length >= size) await flushBatches(buf.rows.splice(0))
    }
    if (!rows.length) return
    await waitForRoom(deps)
    const jobs = rows.map((r) => ({
      name: 'issue-receipt' as const,
      data: { receiptId: r.id, businessDate: r.trade_date, merchantId: r.merchant_id, provider: r.provider as ProviderName },
      opts: { jobId: issueJobId(r.id, r.redrive_count), priority: rank(r.merchant_id, r.provider) },
    }))
    // In parts: BullMQ's Job instances and ioredis' command buffers (~7 KB per job) of one part are
    // garbage before the next is built, so fewer are alive beside the next chunk's INSERT (peak RSS).
    for (let i = 0; i < jobs.length; i += ADD_PART) await deps.queue.addBulk(jobs.slice(i, i + ADD_PART))
    enqueued += rows.length
    opts.onProgress?.({ phase: 'enqueue', selected, enqueued })
  }

  // Phase 1: receipts for transactions of the window that have none yet, each chunk enqueued right
  // after it is committed (the first receipts issue while later chunks are still being read).
  // Settle's own thread and Postgres work side by side: chunk N+1's INSERT is sent first, and chunk
  // N's jobs are built and handed to Redis while Postgres runs it (building a chunk's jobs is the
  // larger part of settle's CPU per chunk, the INSERT the larger part of Postgres's). A job is never
  // added before its receipt row is committed: chunk N's jobs start only once its INSERT returned.
  // At most three chunks are committed before all their jobs are added (the one being added, the
  // one waiting, the one being inserted); a crash leaves them pending for the next settle's phase 2
  // or the recovery pass, which add the same job ids (BullMQ keeps one job per id).
  //
  // The business date itself is read by keyset alone (an index range scan, O(chunk)) and inserted
  // with ON CONFLICT DO NOTHING: what already has a receipt is skipped by the unique index, whatever
  // the statistics say. The four carry-over days are read with an anti-join instead: after a normal
  // night they hold nothing unreceipted, so that query runs once and returns nothing, rather than
  // re-reading four settled days.
  const settleStarted = new Date()
  let inFlight: Promise<void> = Promise.resolve()
  /** The last chunk's pending receipts, committed, whose jobs are not yet added. */
  let toEnqueue: Settled[] = []
  const count = (r: { state: string; provider: string; skip_reason: string | null }) => {
    selected++
    if (r.state === 'skipped') {
      skipped++
      skipReasons[r.skip_reason!] = (skipReasons[r.skip_reason!] ?? 0) + 1
    } else {
      created++
      byProvider[r.provider] = (byProvider[r.provider] ?? 0) + 1
    }
  }
  const passes = [
    { from, to: addDays(to, -1), onlyUnreceipted: true },
    { from: to, to, onlyUnreceipted: Boolean(opts.dryRun) },
  ]
  try {
    for (const pass of passes) {
      let cursor: { date: string; id: string } | null = null
      for (;;) {
        let q = db
          .selectFrom('cash_transactions as t')
          .select(SETTLE_COLUMNS)
          .where('t.business_date', '>=', pass.from)
          .where('t.business_date', '<=', pass.to)
          .orderBy('t.business_date')
          .orderBy('t.transaction_id')
          .limit(deps.chunkSize)
        if (pass.onlyUnreceipted) {
          q = q.where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('receipts as r')
                  .select(sql`1`.as('one'))
                  .whereRef('r.transaction_id', '=', 't.transaction_id')
                  .where('r.kind', '=', 'issue'),
              ),
            ),
          )
        }
        if (cursor) q = q.where(sql<boolean>`(t.business_date, t.transaction_id) > (${cursor.date}::date, ${cursor.id})`)
        if (opts.merchantId) q = q.where('t.merchant_id', '=', opts.merchantId)
        const rows = await q.execute()
        if (rows.length === 0) break
        const last = rows.at(-1)!
        cursor = { date: last.business_date, id: last.transaction_id }
        const receipts = rows.map((tx) => buildReceipt(tx, merchants.get(tx.merchant_id) ?? false, runId))
        if (opts.dryRun) {
          for (const r of receipts) count({ state: r.state, provider: r.provider, skip_reason: r.skip_reason ?? null })
          enqueued += receipts.filter((r) => r.state === 'pending').length
          opts.onProgress?.({ phase: 'select', selected, enqueued })
          continue
        }
        const inserting = insertIssueReceiptsIsolating(db, receipts)
        inserting.catch(() => {}) // awaited below; this only prevents an unhandled report if the enqueue fails first
        await inFlight
        inFlight = enqueue(toEnqueue)
        inFlight.catch(() => {}) // awaited at the next chunk or below; this only prevents an unhandled report meanwhile
        toEnqueue = []
        const { inserted, refused } = await inserting
        for (const r of inserted) count(r)
        if (refused.length) {
          const byId = new Map(rows.map((tx) => [tx.transaction_id, tx]))
          const rejections = refused.map((r) => rejectionOf(r, byId.get(r.receipt.transaction_id)!))
          await recordSettleRejections(db, runId!, rejections)
          for (const r of rejections) {
            rejected++
            rejectReasons[r.code] = (rejectReasons[r.code] ?? 0) + 1
            deps.logger.warn(
              { runId, transactionId: r.transactionId, provider: r.provider, code: r.code, sqlstate: r.sqlstate },
              'settle: transaction refused by the receipts table; recorded, the run goes on',
            )
          }
        }
        opts.onProgress?.({ phase: 'select', selected, enqueued })
        toEnqueue = inserted.filter((r) => r.state === 'pending')
      }
    }
    await inFlight
    inFlight = enqueue(toEnqueue)
  } finally {
    await inFlight
  }
  if (!opts.dryRun) for (const buf of bulkBuffers.values()) await flushBatches(buf.rows.splice(0))

  // Phase 2: pending receipts of the window created before this call (an earlier run whose jobs were
  // lost from Redis, a crash between insert and enqueue). enqueueReceipts leaves those with a live job
  // alone and never re-adds the id of a finished job (that would be a silent no-op).
  if (opts.dryRun) {
    const pending = await pendingQuery(db, from, to, opts.merchantId)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    enqueued += Number(pending.n)
  } else {
    let idCursor = 0
    for (;;) {
      const rows = await pendingQuery(db, from, to, opts.merchantId)
        .select(['id', 'kind', 'state', 'trade_date', 'redrive_count', 'requeue_count', 'merchant_id', 'provider'])
        .where('created_at', '<', settleStarted)
        .where('id', '>', idCursor)
        .orderBy('id')
        .limit(deps.chunkSize)
        .execute()
      if (rows.length === 0) break
      idCursor = rows.at(-1)!.id
      await waitForRoom(deps)
      // The run's own ranking (the settle band), after its new receipts.
      const counts = await enqueueReceipts({ ...deps, rank }, rows)
      enqueued += counts.added + counts.requeued
      opts.onProgress?.({ phase: 'enqueue', selected, enqueued })
    }
    await db
      .updateTable('settlement_runs')
      .set((eb) => ({
        status: 'enqueued',
        enqueued_at: sql`now()`,
        selected_count: eb('selected_count', '+', selected),
        skipped_count: eb('skipped_count', '+', skipped),
        enqueued_count: eb('enqueued_count', '+', enqueued),
      }))
      .where('id', '=', runId!)
      .execute()
  }
  deps.logger.info({ runId, businessDate: to, selected, created, skipped, enqueued, rejected }, 'settlement enqueued')
  return {
    runId,
    businessDate: to,
    window: { from, to },
    dryRun: Boolean(opts.dryRun),
    selected,
    created,
    skipped,
    skipReasons,
    enqueued,
    byProvider,
    rejected,
    rejectReasons,
  }
}

/** The record of a refused transaction: the reason in words an operator can act on, without the key's value. */
function rejectionOf(r: RefusedIssueReceipt, tx: SettleTransaction): SettleRejection {
  const source = providerKeySource({ provider: tx.provider, paymentRef: tx.payment_ref, orderId: tx.order_id })
  const key = `its ${tx.provider} receipt key (${source === 'digest' ? 'derived from the transaction id' : `its ${source}`})`
  const message =
    r.code === 'KEY_CONFLICT'
      ? `${key} is already the key of ${r.heldBy ? `transaction ${r.heldBy}'s` : "another transaction's"} receipt; one key gets one receipt. Correct the transaction and settle again`
      : r.code === 'KEY_INVALID'
        ? `${key}, ${r.receipt.provider_key.length} characters long, is too long for the receipts' provider-key index. Correct the transaction and settle again`
        : `the receipts table refuses its row (SQLSTATE ${r.sqlstate}${r.constraint ? `, ${r.constraint}` : ''}). Correct the transaction and settle again`
  return {
    transactionId: tx.transaction_id,
    merchantId: tx.merchant_id,
    provider: tx.provider,
    tradeDate: tx.business_date,
    code: r.code,
    sqlstate: r.sqlstate,
    message,
  }
}

function pendingQuery(db: Db, from: string, to: string, merchantId: string | undefined) {
  let q = db
    .selectFrom('receipts')
    .where('kind', '=', 'issue')
    // A member of a live batch is its batch's (the recovery pass puts a batch without a job back).
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('provider_batch_items as i')
            .select(sql`1`.as('one'))
            .whereRef('i.receipt_id', '=', 'receipts.id')
            .where('i.active', '=', true),
        ),
      ),
    )
    .where('state', '=', 'pending')
    .where('trade_date', '>=', from)
    .where('trade_date', '<=', to)
  if (merchantId) q = q.where('merchant_id', '=', merchantId)
  return q
}

async function findOrCreateRun(db: Db, businessDate: string, scope: string, trigger: 'schedule' | 'manual'): Promise<number> {
  const inserted = await sql<{ id: number }>`
    INSERT INTO settlement_runs (business_date, merchant_scope, trigger)
    VALUES (${businessDate}, ${scope}, ${trigger})
    ON CONFLICT (business_date, merchant_scope) WHERE trigger IN ('schedule','manual') DO NOTHING
    RETURNING id
  `.execute(db)
  if (inserted.rows[0]) return inserted.rows[0].id
  const existing = await db
    .selectFrom('settlement_runs')
    .select('id')
    .where('business_date', '=', businessDate)
    .where('merchant_scope', '=', scope)
    .where('trigger', 'in', ['schedule', 'manual'])
    .executeTakeFirstOrThrow()
  return existing.id
}

/**
 * Settlement reads a day right after it was imported (a bulk load, often): statistics from before the
 * load make the planner expect a few rows and scan and sort the whole remaining window for every
 * chunk. Tables changed by more than 10% since their last ANALYZE are analysed first (a sample of
 * 30,000 rows: well under a second at a million).
 */
async function analyzeIfStale(db: Db, logger: Logger): Promise<void> {
  const stale = await sql<{ relname: string }>`
    SELECT relname FROM pg_stat_user_tables
    WHERE relname IN ('cash_transactions', 'receipts') AND n_mod_since_analyze > greatest(1000, n_live_tup / 10)
  `.execute(db)
  for (const { relname } of stale.rows) {
    const started = performance.now()
    await sql`ANALYZE ${sql.table(relname)}`.execute(db)
    logger.info({ table: relname, ms: Math.round(performance.now() - started) }, 'settle: analysed a table changed since its statistics')
  }
}

/** Backpressure: keep the queue's waiting list under maxWaiting so Redis memory stays bounded. */
async function waitForRoom(deps: SettleDeps): Promise<void> {
  const sleep = deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)))
  let logged = false
  for (;;) {
    // Settled jobs carry a priority: they wait in the prioritized set, not the wait list.
    const waiting = await deps.queue.getJobCountByTypes('waiting', 'prioritized')
    if (waiting + deps.chunkSize <= deps.maxWaiting) return
    if (!logged) deps.logger.info({ waiting, maxWaiting: deps.maxWaiting }, 'settle: queue full, waiting for workers')
    logged = true
    // One cheap count per poll; short enough that a queue emptied in bulk is noticed promptly.
    await sleep(100)
  }
}

/** One receipts row for a transaction, pending or skipped, per the domain's eligibility rules. */
export function buildReceipt(tx: SettleTransaction, mandatoryIssuer: boolean, runId: number | null): NewReceipt {
  const keys = deriveProviderKeys({
    provider: tx.provider,
    merchantId: tx.merchant_id,
    transactionId: tx.transaction_id,
    paymentRef: tx.payment_ref,
    orderId: tx.order_id,
    method: tx.method,
  })
  const amounts = receiptAmountsFor(tx)
  const decision = decideIssuance({
    method: tx.method,
    receiptableAmount: amounts ? amounts.total : 0,
    identifier: tx.identifier_type ? { digits: '', type: tx.identifier_type } : null,
    mandatoryIssuer,
    status: tx.status,
  })
  const skip = decision.action === 'skip'
  // One object literal with every column, the same shape for every row: spreading a shared base
  // into per-branch literals made V8 rebuild property maps per row (settle's hottest function).
  return {
    transaction_id: tx.transaction_id,
    kind: 'issue',
    merchant_id: tx.merchant_id,
    provider: tx.provider,
    provider_key: keys.providerKey,
    idempotency_key: keys.idempotencyKey,
    portone_payment: keys.portonePayment,
    trade_date: tx.business_date,
    deadline: legalDeadline(tx.business_date),
    run_id: runId,
    last_run_id: runId,
    total_amount: amounts?.total ?? 0,
    supply_amount: amounts?.supply ?? 0,
    vat_amount: amounts?.vat ?? 0,
    tax_free_amount: amounts?.taxFree ?? 0,
    service_fee: amounts?.serviceFee ?? 0,
    state: skip ? 'skipped' : 'pending',
    // The self-issue number may only be used for 소득공제 (deduction).
    purpose: !skip && decision.selfIssued ? 'deduction' : tx.purpose,
    skip_reason: skip ? decision.reason : null,
    finished_at: skip ? new Date() : null,
    self_issued: !skip && decision.selfIssued,
  }
}
