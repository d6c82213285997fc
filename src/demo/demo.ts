/**
 * `npm run demo` / `cash-receipts demo`: the whole nightly flow on embedded defaults.
 * Postgres and Redis are found or started (see infra.ts), the provider sandbox runs in-process, a
 * generated day of transactions is imported, settled and issued by two workers, and the report is
 * printed. Everything it started is stopped; the demo database and queue keys are its own.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AppConfig } from '../config.ts'
import { loadDemoConfig, loadDemoConfigWith } from './defaults.ts'
import type { ImportOptions, ImportResult } from '../import/import-transactions.ts'
import type { SettleOptions, SettleSummary } from '../jobs/settle.ts'
import type { ReconcileResult } from '../jobs/reconcile.ts'
import type { RunReport } from '../report/report.ts'
import { formatReportTable } from '../report/format-table.ts'
import { kstToday, kstYesterday } from '../domain/index.ts'
import { dropDatabase, ensurePostgres, ensureRedis, recreateDatabase } from './infra.ts'
import { generateDay, toCsv } from './generate.ts'
import { startSandbox } from '../dev/load-sandbox.ts'
import { createRedis } from '../queue/queues.ts'
import { deletePrefixKeys } from '../queue/prefix-keys.ts'

const say = (msg: string) => process.stderr.write(`» ${msg}\n`)

/** What the demo uses of the application: the caller (the command line) supplies it. */
export interface DemoApp {
  prepareDatabase(): Promise<{ migrations: string[] }>
  importFile(file: string, opts: ImportOptions): Promise<ImportResult>
  settle(opts: SettleOptions): Promise<SettleSummary>
  startWorker(opts: { concurrency: number }): unknown
  report(sel: { runId: number }, todayKst: string): Promise<RunReport>
  reconcile(businessDate: string, todayKst: string): Promise<Pick<ReconcileResult, 'finalized' | 'rejected' | 'provisional'>>
  close(): Promise<void>
}

export interface DemoDeps {
  createApp(config: AppConfig): DemoApp
  /** Progress of the issuance on stderr. */
  createProgress(label: string): { update(done: number, total?: number, note?: string): void; finish(note?: string): void }
}

/** A database name of this run's own: two demos on one server never drop each other's. */
export function demoDatabaseName(nowMs = Date.now()): string {
  return `cash_receipts_demo_${nowMs.toString(36)}_${process.pid.toString(36)}`
}

export async function runDemo(opts: { transactions: number; json: boolean }, deps: DemoDeps): Promise<number> {
  const base = loadDemoConfig()
  const cleanup: (() => Promise<unknown>)[] = []
  let cleaned: Promise<void> | undefined
  // Everything started is stopped once, whether the demo ends, fails, or is interrupted.
  const cleanUp = () =>
    (cleaned ??= (async () => {
      for (const c of cleanup.splice(0).reverse()) await c().catch(() => {})
    })())
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping what the demo started…`)
    // The work the signal interrupted now fails as its temp files, database and Redis go away (an
    // import's read stream, a query): expected, and it must neither end the process before the
    // clean-up has finished nor change the exit code, which is the signal's.
    process.on('uncaughtException', () => {})
    process.on('unhandledRejection', () => {})
    void cleanUp().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    say('checking Postgres and Redis…')
    const postgres = await ensurePostgres(base.databaseUrl, say)
    cleanup.push(() => postgres.stop())
    const redis = await ensureRedis(base.redisUrl, say)
    cleanup.push(() => redis.stop())
    say(`Postgres: ${postgres.started ?? 'found'} · Redis: ${redis.started ? `${redis.started} at ${redis.url}` : 'found'}`)

    const serverUrl = postgres.url.replace(/\/[^/]*$/, '')
    const dbName = demoDatabaseName()
    cleanup.push(() => dropDatabase(serverUrl, dbName))
    const databaseUrl = await recreateDatabase(serverUrl, dbName)
    const sandbox = await startSandbox({ port: 0 })
    cleanup.push(() => sandbox.close())
    say(`provider sandbox listening on ${sandbox.url}`)

    const queuePrefix = `crdemo${Date.now().toString(36)}`
    const config = loadDemoConfigWith({
      DATABASE_URL: databaseUrl,
      REDIS_URL: redis.url,
      SANDBOX_URL: sandbox.url,
      QUEUE_PREFIX: queuePrefix,
      // Quieter logs and quicker retries than a production worker: the demo is watched live.
      LOG_LEVEL: base.log.level === 'info' ? 'warn' : base.log.level,
      WORKER_BACKOFF_MS: '500',
    })
    const app = deps.createApp(config)
    cleanup.push(async () => {
      await app.close()
      // The prefix is new each run: its queue, limiter, pacer and quota keys would otherwise stay behind.
      const r = createRedis(redis.url, { name: 'cash-receipts-demo-cleanup' })
      await deletePrefixKeys(r, queuePrefix).finally(() => r.disconnect())
    })
    const migrated = await app.prepareDatabase()
    say(`database ${dbName} migrated (${migrated.migrations.length} migrations)`)

    const now = Date.now()
    const businessDate = kstYesterday(now)
    const day = generateDay({
      businessDate,
      count: opts.transactions,
      merchants: config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
      notAfterMs: now,
    })
    sandbox.registerPortonePayments(day.portonePayments.map((p) => ({ ...p, status: 'paid' as const })))
    // Each PortOne V1 merchant's PG, so the sandbox applies that PG's required fields to its receipts.
    sandbox.registerPortoneMerchants(
      config.merchants.flatMap((m) => (m.providers.portone?.pg ? [{ imp_key: m.providers.portone.impKey, pg_provider: m.providers.portone.pg }] : [])),
    )
    const dir = await mkdtemp(join(tmpdir(), 'cash-receipts-demo-'))
    cleanup.push(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, `transactions-${businessDate}.csv`)
    await writeFile(file, toCsv(day))
    const imported = await app.importFile(file, { nowMs: now })
    if (!imported.written) {
      for (const e of imported.errors.slice(0, 20)) say(`line ${e.line}: ${e.field}: ${e.message}`)
      throw new Error('the generated file did not import')
    }
    say(`imported ${imported.inserted} transactions for business date ${businessDate}`)

    const settled = await app.settle({ businessDate, trigger: 'manual' })
    const reasons = Object.entries(settled.skipReasons)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')
    say(`settlement run ${settled.runId}: ${settled.created} receipts to issue, ${settled.skipped} skipped${reasons ? ` (${reasons})` : ''}`)

    app.startWorker({ concurrency: 8 })
    app.startWorker({ concurrency: 8 })
    say('two workers issuing through the sandbox…')
    const progress = deps.createProgress('issuing')
    const deadline = Date.now() + 5 * 60_000
    let report = await app.report({ runId: settled.runId! }, kstToday(Date.now()))
    for (;;) {
      progress.update(report.totals.eligible - report.totals.pending, report.totals.eligible, `issued ${report.totals.issued}`)
      if (report.status === 'finished' || Date.now() >= deadline) break
      await new Promise((r) => setTimeout(r, 300))
      report = await app.report({ runId: settled.runId! }, kstToday(Date.now()))
    }
    progress.finish(report.status === 'finished' ? 'done' : 'gave up waiting')

    // Toss and Popbill answer provisionally; the tax authority's result comes a day or two later
    // (Toss) or after the midnight filing (Popbill). The demo moves the simulators on — Toss's result
    // clock, Popbill's filing — and runs reconcile, which finalises them (docs/exactly-once.md).
    const toss = (report.by_provider.toss?.issued ?? 0) > 0
    const popbill = (report.by_provider.popbill?.issued ?? 0) > 0
    if (toss || popbill) {
      if (toss) sandbox.toss.advance(2 * 86_400_000)
      if (popbill) sandbox.popbill.fileNow()
      const rec = await app.reconcile(businessDate, kstToday(Date.now()))
      say(
        `reconcile: ${rec.finalized.length} provisional receipts (Toss, Popbill) final, ${rec.rejected.length} refused by the tax authority, ${rec.provisional} still provisional`,
      )
      report = await app.report({ runId: settled.runId! }, kstToday(Date.now()))
    }

    const stats = sandbox.stats()
    if (opts.json) process.stdout.write(`${JSON.stringify({ report, sandbox: stats, database: dbName }, null, 2)}\n`)
    else {
      process.stdout.write(`\n${formatReportTable(report)}\n\n`)
      process.stdout.write(`Sandbox: max live receipts per payment key = ${stats.max_live_receipts_per_key} (must be ≤ 1)\n`)
    }
    return report.totals.issued > 0 && stats.max_live_receipts_per_key <= 1 ? 0 : 1
  } finally {
    await cleanUp()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
