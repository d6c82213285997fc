/**
 * The ledger's hot path alone: claim → fence → outcome for N receipts through one worker's ledger
 * batcher, C jobs at once, with a fake provider call of a few ms in between. Reports the CPU one
 * receipt costs in this process (kysely, pg encoding and parsing) and in the Postgres backends
 * serving the database, which the full ceiling scenario can only show mixed with BullMQ, HTTP and
 * the sandbox. Run: `TEST_DB_NS=x npx tsx bench/ledger-micro.ts [receipts] [concurrency] [rounds]`.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { benchDatabaseName, copyTransactions, cpuSeconds, recreateDatabase, runCli, scenarioEnv, writeMerchantsFile } from './lib.ts'
import { createDb } from '../src/db/database.ts'
import { createLedgerBatcher } from '../src/db/ledger-batcher.ts'

const n = Number(process.argv[2] ?? 20_000)
const concurrency = Number(process.argv[3] ?? 64)
const rounds = Number(process.argv[4] ?? 3)
const callMs = Number(process.argv[5] ?? 2)
const server = (process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres').replace(/\/[^/]*$/, '')

const dbUrl = await recreateDatabase(server, benchDatabaseName() + '_micro')
const { file, merchants } = await writeMerchantsFile(200, { maxConcurrent: null })
const env = scenarioEnv(dbUrl, process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', `micro-${randomUUID()}`, { MERCHANTS_FILE: file })
const m = await runCli(['migrate'], env)
if (m.code !== 0) throw new Error('migrate failed')
await copyTransactions(dbUrl, { businessDate: '2026-11-21', count: n, merchants, noPortonePayments: true })

const admin = new pg.Client({ connectionString: dbUrl })
await admin.connect()
// MICRO_NOFK=1: without the foreign keys of the hot path's inserts (transitions, attempts → receipts),
// to measure what their key-share checks cost.
if (process.env.MICRO_NOFK === '1') {
  const fks = await admin.query<{ t: string; c: string }>(
    `SELECT conrelid::regclass::text AS t, conname AS c FROM pg_constraint
     WHERE contype = 'f' AND confrelid = 'receipts'::regclass AND conrelid IN ('receipt_transitions'::regclass, 'issuance_attempts'::regclass)`,
  )
  for (const f of fks.rows) await admin.query(`ALTER TABLE ${f.t} DROP CONSTRAINT ${f.c}`)
}

async function resetReceipts() {
  if (process.env.MICRO_FF) await admin.query(`ALTER TABLE receipts SET (fillfactor = ${Number(process.env.MICRO_FF)})`)
  if (process.env.MICRO_FF_ATT) await admin.query(`ALTER TABLE issuance_attempts SET (fillfactor = ${Number(process.env.MICRO_FF_ATT)})`)
  await admin.query('TRUNCATE receipt_transitions, issuance_attempts, notifications, provider_batch_items, provider_duplicates, receipts RESTART IDENTITY CASCADE')
  await admin.query(`INSERT INTO receipts (transaction_id, kind, merchant_id, provider, provider_key, idempotency_key, trade_date, deadline,
      total_amount, supply_amount, vat_amount, state, purpose)
    SELECT transaction_id, 'issue', merchant_id, provider, 'k-' || transaction_id, 'i-' || transaction_id, business_date, business_date + 2,
      amount, amount - amount / 11, amount / 11, 'pending', purpose FROM cash_transactions ORDER BY transaction_id`)
  await admin.query('CHECKPOINT')
}

async function backendPids(): Promise<number[]> {
  const r = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
  return r.rows.map((x) => x.pid)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

for (let round = 0; round < rounds; round++) {
  await resetReceipts()
  const ids = (await admin.query<{ id: string }>('SELECT id FROM receipts ORDER BY id')).rows.map((r) => Number(r.id))
  const generic = process.env.MICRO_GENERIC === '1'
  const handle = createDb(dbUrl, { max: generic ? 8 : 20, genericPlans: generic })
  const workerId = `micro:${process.pid}:${round}`
  const ledger = createLedgerBatcher(handle.db, { workerId, leaseMs: 60_000, windowMs: Number(process.env.MICRO_WINDOW ?? 2) })
  // warm the pool so every backend exists before the meter starts
  await Promise.all(Array.from({ length: generic ? 8 : 20 }, () => handle.db.selectFrom('receipts').select('id').limit(1).execute()))
  // per-statement figures only where the server loads pg_stat_statements
  const pss = await admin.query('SELECT public.pg_stat_statements_reset()').then(
    () => true,
    () => false,
  )
  const wal0 = (await admin.query<{ b: string }>(`SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS b`)).rows[0]!.b
  const pids = await backendPids()
  const pg0 = pids.reduce((a, p) => a + cpuSeconds(p), 0)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let next = 0
  let issued = 0
  async function lane() {
    for (;;) {
      const i = next++
      if (i >= ids.length) return
      const id = ids[i]!
      // the queue's own round trip before the claim, spread so the lanes do not march in step
      await sleep(Math.random() * callMs)
      const c = await ledger.claim(id)
      if (c.status !== 'claimed') throw new Error(`not claimed: ${c.status}`)
      const attemptId = await ledger.fence(id, 120_000, { operation: 'issue', attemptNo: c.receipt.attempts, jobId: `j${id}` })
      if (attemptId === null) throw new Error('fence lost')
      const started = new Date()
      await sleep(Math.random() * callMs)
      const ok = await ledger.transition({
        receiptId: id,
        transition: {
          state: 'issued',
          needsLookup: false,
          receipt: { approvalNumber: `A${id}`, providerReceiptId: `P${id}`, receiptUrl: null, issuedAt: new Date().toISOString(), provisional: false } as never,
          error: null,
        },
        attempts: {
          receipt: c.receipt,
          jobId: `j${id}`,
          rows: [
            { id: attemptId, operation: 'issue', startedAt: started, finishedAt: new Date(), outcome: 'issued', httpStatus: 200, providerCode: null, message: null, latencyMs: 3 },
          ],
        },
      })
      if (!ok) throw new Error('transition lost')
      issued++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane))
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const pg1 = pids.reduce((a, p) => a + cpuSeconds(p), 0)
  const nodeMs = (cpu.user + cpu.system) / 1000 / issued
  const pgMs = ((pg1 - pg0) * 1000) / issued
  const stats = await admin.query<{ n: string; hot: string; upd: string; rel: string }>(
    `SELECT relname AS rel, n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname IN ('receipts', 'issuance_attempts') ORDER BY 1`,
  )
  const wal = await admin.query<{ b: string }>(`SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS b`)
  const st = pss
    ? await admin.query(`SELECT calls, rows, round(total_plan_time::numeric, 1) AS plan_ms, round(total_exec_time::numeric, 1) AS exec_ms, wal_records, wal_bytes,
    substring(query from 'prepared:(\\w+)') AS q FROM public.pg_stat_statements WHERE query LIKE '%prepared:ledger%' ORDER BY q`)
    : { rows: [] }
  console.log(
    JSON.stringify({
      round,
      issued,
      wall_s: +wall.toFixed(2),
      node_ms_per_receipt: +nodeMs.toFixed(4),
      pg_ms_per_receipt: +pgMs.toFixed(4),
      wal_bytes_per_receipt: Math.round((Number(wal.rows[0]!.b) - Number(wal0)) / issued),
      tables: stats.rows,
    }),
  )
  for (const r of st.rows) console.log('   ', JSON.stringify(r))
  await handle.close()
}
await admin.end()
