#!/usr/bin/env node
/**
 * `cash-receipts` command line (README, Command line). Exit codes: 0 success, 1 runtime failure, 2 bad input
 * or usage. `--json` prints exactly one JSON document on stdout; logs and progress go to stderr.
 */
import { open, stat, writeFile } from 'node:fs/promises'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { ConfigError, type AppConfig } from './config.ts'
import { loadDemoConfig } from './demo/defaults.ts'
import { createApp, type App } from './app.ts'
import { importTransactions } from './import/import-transactions.ts'
import { FileFormatError } from './import/read-rows.ts'
import { SettleInputError } from './jobs/settle.ts'
import { redrive } from './jobs/redrive.ts'
import { CancelInputError } from './jobs/cancel-receipt.ts'
import { receiptState } from './db/receipt-reads.ts'
import { reconcileDay } from './jobs/reconcile.ts'
import { rekey, RekeyError } from './jobs/rekey.ts'
import { buildReport, ReportNotFoundError, type RunReport } from './report/report.ts'
import { formatReportTable } from './report/format-table.ts'
import { buildReportDetails } from './report/report-details.ts'
import { formatReportHtml } from './report/format-html.ts'
import { startTracing, type Tracing } from './telemetry/tracing.ts'
import { assertServeSecurity, authConfigured } from './http/auth.ts'
import { createProgress } from './cli/progress.ts'
import { isValidDate, kstToday, kstYesterday, PROVIDERS } from './domain/index.ts'
import { listenForShutdown } from './cli/shutdown.ts'
import { runDemo } from './demo/demo.ts'

export class UsageError extends Error {
  override name = 'UsageError'
}

const INPUT_ERRORS = [UsageError, ConfigError, SettleInputError, CancelInputError, FileFormatError, ReportNotFoundError, RekeyError]

function dateArg(v: string): string {
  if (!isValidDate(v)) throw new InvalidArgumentError(`"${v}" is not a valid YYYY-MM-DD date`)
  return v
}
function intArg(name: string, min = 1) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}, got "${v}"`)
    return Number(v)
  }
}

function printJson(value: unknown) {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Runs a command with a fresh app, maps errors to exit codes, and always closes connections. */
async function withApp(fn: (app: App, config: AppConfig) => Promise<number | void>): Promise<never> {
  let app: App | undefined
  let tracing: Tracing | undefined
  let code = 0
  try {
    const config = loadDemoConfig()
    tracing = await startTracing(config.otel)
    app = createApp(config, { telemetry: tracing.telemetry })
    code = (await fn(app, config)) ?? 0
  } catch (err) {
    const e = err as Error
    if (INPUT_ERRORS.some((C) => err instanceof C)) {
      process.stderr.write(`error: ${e.message}\n`)
      code = 2
    } else {
      process.stderr.write(`error: ${e.message}\n`)
      if (app?.config.log.level === 'debug') process.stderr.write(`${e.stack}\n`)
      code = 1
    }
  } finally {
    await app?.close()
    await tracing?.shutdown().catch(() => {})
  }
  process.exit(code)
}

/** Polls the report until nothing is pending; progress on stderr. */
async function waitForRun(app: App, sel: { runId: number }, json: boolean): Promise<RunReport> {
  const progress = createProgress('issuing', { silent: false })
  for (;;) {
    const r = await buildReport(app.db(), sel, kstToday(Date.now()))
    const done = r.totals.eligible - r.totals.pending
    progress.update(done, r.totals.eligible, `issued ${r.totals.issued} failed ${r.totals.failed}`)
    if (r.status === 'finished') {
      progress.finish(json ? undefined : 'done')
      return r
    }
    await new Promise((res) => setTimeout(res, 500))
  }
}

export function buildProgram(): Command {
  const program = new Command()
  program
    .name('cash-receipts')
    .description('Queue-driven batch issuance of Korean cash receipts (현금영수증), exactly once.')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()

  program
    .command('migrate')
    .description('create the database if missing, run migrations, and sync configured merchants (safe to run twice, concurrently)')
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        const r = await app.prepareDatabase()
        if (o.json) printJson(r)
        else process.stderr.write(`database ready${r.created ? ' (created)' : ''}; migrations applied: ${r.migrations.length ? r.migrations.join(', ') : 'none pending'}\n`)
      }),
    )

  program
    .command('import')
    .description('import completed cash transactions from CSV or JSON Lines (all-or-nothing unless --skip-invalid)')
    .argument('<file>', 'a .csv (header row, UTF-8) or .jsonl file')
    .option('--skip-invalid', 'write the valid rows and reject the invalid ones')
    .option('--rejects <file>', 'write rejected records to this file (same format as the input)')
    .option('--json', 'print the result as JSON')
    .action((file: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const progress = createProgress('import')
        const estimate = await estimateRecords(file)
        const result = await importTransactions(app.db(), app.config.dataKeys, file, {
          skipInvalid: Boolean(o.skipInvalid),
          keepRejects: Boolean(o.rejects),
          nowMs: Date.now(),
          onProgress: (n, phase) =>
            phase === 'reading'
              ? progress.update(n, estimate === undefined ? undefined : Math.max(n, estimate), 'rows read')
              : progress.finish('read; checking and writing…'),
        })
        const { rejectsRaw, ...summary } = result
        if (o.rejects && rejectsRaw.length) {
          const header = result.format === 'csv' ? await csvHeader(file) : ''
          await writeFile(o.rejects, (header ? `${header}\n` : '') + rejectsRaw.join('\n') + '\n')
        }
        // Cancellation requests for transactions that moved to cancelled/refunded after issuance.
        const cancels = summary.written ? await app.cancelChanged(summary.changedTransactionIds) : []
        if (o.json) {
          printJson({ ...summary, cancellations: cancels })
        } else {
          for (const e of summary.errors) process.stderr.write(`line ${e.line}: ${e.field}: ${e.message}\n`)
          process.stderr.write(
            summary.written
              ? `imported ${summary.rows} rows: ${summary.inserted} new, ${summary.updated} updated, ${summary.unchanged} unchanged, ${summary.rejected} rejected\n`
              : `nothing written: ${summary.rejected} of ${summary.rows} rows invalid (fix them, or use --skip-invalid)\n`,
          )
        }
        return summary.errors.length > 0 && !o.skipInvalid ? 2 : 0
      }),
    )

  program
    .command('settle')
    .description('create receipts for a KST business date (plus carry-overs) and enqueue one issue job per receipt')
    .addOption(new Option('--date <YYYY-MM-DD>', 'business date (default: yesterday in Asia/Seoul)').argParser(dateArg))
    .option('--merchant <id>', 'only this merchant')
    .option('--wait', 'wait until every receipt is issued or failed, showing progress, then print the report')
    .option('--dry-run', 'show what would be enqueued without writing anything')
    .option('--json', 'print the result as JSON (with --wait: the report)')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const businessDate = o.date ?? kstYesterday(Date.now())
        const progress = createProgress('settle')
        const summary = await app.settle({
          businessDate,
          merchantId: o.merchant,
          trigger: 'manual',
          dryRun: Boolean(o.dryRun),
          onProgress: (p) => progress.update(p.phase === 'select' ? p.selected : p.enqueued, undefined, p.phase),
        })
        progress.finish()
        if (o.wait && !o.dryRun && summary.runId !== null) {
          const report = await waitForRun(app, { runId: summary.runId }, Boolean(o.json))
          if (o.json) printJson(report)
          else process.stdout.write(`${formatReportTable(report)}\n`)
          return
        }
        if (o.json) {
          printJson(summary)
          return
        }
        process.stdout.write(
          `${summary.dryRun ? 'dry run: would ' : ''}settle ${summary.businessDate} (window ${summary.window.from}…${summary.window.to}): ` +
            `${summary.selected} new transactions, ${summary.created} receipts to issue, ${summary.skipped} skipped, ${summary.enqueued} jobs ${summary.dryRun ? 'to enqueue' : 'enqueued'}` +
            `${summary.runId !== null ? ` (run ${summary.runId})` : ''}\n`,
        )
      }),
    )

  program
    .command('worker')
    .description('process issue and cancel jobs until SIGTERM/SIGINT, then drain gracefully')
    .addOption(new Option('--concurrency <n>', 'jobs in flight in this process').argParser(intArg('--concurrency')))
    .action((o) =>
      withApp(async (app) => {
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        const worker = app.startWorker({ concurrency: o.concurrency })
        app.logger.info({ concurrency: o.concurrency ?? app.config.worker.concurrency }, 'worker started')
        const signal = await shutdown.requested
        app.logger.info({ signal }, 'draining: finishing jobs in flight')
        await worker.close()
      }),
    )

  program
    .command('scheduler')
    .description('nightly settlement by cron (default 00:30 Asia/Seoul, for yesterday) and the D+1 reconcile; runs until SIGTERM')
    .action(() =>
      withApp(async (app) => {
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        const scheduler = await app.startScheduler()
        await shutdown.requested
        await scheduler.close()
      }),
    )

  program
    .command('redrive')
    .description('put failed receipts back on the queue under fresh job ids (after fixing the cause)')
    .addOption(new Option('--run <id>', 'receipts of this settlement run').argParser(intArg('--run')))
    .addOption(new Option('--date <YYYY-MM-DD>', 'receipts of this business date').argParser(dateArg))
    .addOption(new Option('--provider <name>', 'only this provider').choices([...PROVIDERS]))
    .option('--code <code>', 'only this provider error code')
    .option('--class <class>', 'only this error class (retryable, unknown_outcome, permanent, rate_limited, …)')
    .option('--dry-run', 'show how many would be re-driven')
    .option('--wait', 'wait for the re-driven receipts and print the report')
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const result = await redrive(
          { db: app.db(), queue: app.receiptsQueue(), logger: app.logger, todayKst: kstToday(Date.now()) },
          { runId: o.run, date: o.date, provider: o.provider, code: o.code, errorClass: o.class },
          { dryRun: Boolean(o.dryRun) },
        )
        if (o.wait && result.runId !== null && result.count > 0) {
          const report = await waitForRun(app, { runId: result.runId }, Boolean(o.json))
          if (o.json) printJson(report)
          else process.stdout.write(`${formatReportTable(report)}\n`)
          return
        }
        if (o.json) printJson(result)
        else process.stdout.write(`${result.dryRun ? 'dry run: would re-drive' : 're-driven'} ${result.count} receipts${result.runId ? ` (run ${result.runId})` : ''} ${JSON.stringify(result.byClass)}\n`)
      }),
    )

  program
    .command('cancel')
    .description('cancel the issued receipt of a transaction (full, or partial where the provider supports it)')
    .argument('<transaction-id>')
    .addOption(new Option('--amount <n>', 'KRW to cancel (default: all that is still receipted)').argParser(intArg('--amount')))
    .addOption(new Option('--reason <code>', '1 거래취소 (default), 2 오류발급취소, 3 기타').choices(['1', '2', '3']).default('1'))
    .option('--wait', 'wait until the cancellation is done')
    .option('--json', 'print the result as JSON')
    .action((transactionId: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const req = await app.cancel({ transactionId, amount: o.amount, reason: Number(o.reason) as 1 | 2 | 3 })
        let state = 'pending'
        if (o.wait) {
          for (;;) {
            const row = await receiptState(app.db(), req.cancelReceiptId)
            state = row.state === 'issued' ? 'cancelled' : row.state
            if (row.state === 'issued' || row.state === 'failed') break
            await new Promise((r) => setTimeout(r, 300))
          }
        }
        if (o.json) printJson({ ...req, state })
        else process.stdout.write(`cancellation of ${req.amount} for ${transactionId}: ${state}${req.partial ? ' (partial)' : ''}\n`)
        return state === 'failed' ? 1 : 0
      }),
    )

  program
    .command('reconcile')
    .description("compare the ledger with each provider's records for a business date; repair and flag mismatches")
    .addOption(new Option('--date <YYYY-MM-DD>', 'business date (default: yesterday in Asia/Seoul)').argParser(dateArg))
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const result = await reconcileDay({ db: app.db(), providers: app.providers(), logger: app.logger }, o.date ?? kstYesterday(Date.now()), kstToday(Date.now()))
        if (o.json) printJson(result)
        else {
          process.stdout.write(
            `reconcile ${result.businessDate}: checked ${result.checked}, matched ${result.matched}, repaired ${result.repaired.length}, flagged ${result.flagged.length}, lookup errors ${result.lookupErrors}, past deadline ${result.overdue.length}\n`,
          )
          for (const f of result.flagged) process.stdout.write(`  flagged ${f.transaction_id} (${f.provider}): ${f.flag}\n`)
          for (const f of result.overdue) process.stdout.write(`  overdue ${f.transaction_id} (${f.state}, deadline ${f.deadline})\n`)
        }
      }),
    )

  program
    .command('rekey')
    .description('re-encrypt personal data and rehash fingerprints under the active data key (DATA_KEY_ID), so older keys can be retired')
    .addOption(new Option('--batch <n>', 'rows per transaction').argParser(intArg('--batch')).default(1_000))
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const progress = createProgress('rekey')
        const result = await rekey(app.db(), app.config.dataKeys, { batchSize: o.batch, onProgress: (done, total) => progress.update(done, total) })
        progress.finish()
        if (o.json) printJson(result)
        else {
          const others = Object.entries(result.remainingByKey).filter(([k]) => k !== result.activeKeyId)
          process.stdout.write(
            `rekey to "${result.activeKeyId}": ${result.transactions} transactions and ${result.merchants} merchants rewritten; ` +
              (others.length ? `still under other keys: ${others.map(([k, n]) => `${k} (${n})`).join(', ')}\n` : 'no row uses another key now: older keys can be removed from DATA_KEYS\n'),
          )
        }
      }),
    )

  program
    .command('report')
    .description('report a settlement run (default: the latest)')
    .addOption(new Option('--run <id>', 'settlement run id').argParser(intArg('--run')))
    .addOption(new Option('--date <YYYY-MM-DD>', 'the settlement run(s) of this business date').argParser(dateArg))
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'html']).default('table'))
    .option('--json', 'same as --format json')
    .option('--out <file>', 'write to a file instead of stdout')
    .action((o) =>
      withApp(async (app) => {
        if (o.run !== undefined && o.date) throw new UsageError('use either --run or --date, not both')
        await app.prepareDatabase()
        const today = kstToday(Date.now())
        const report = await buildReport(app.db(), { runId: o.run, date: o.date }, today)
        const format = o.json ? 'json' : o.format
        let text: string
        if (format === 'json') text = `${JSON.stringify(report, null, 2)}\n`
        else {
          const details = await buildReportDetails(app.db(), { runId: o.run, date: o.date }, today)
          text = format === 'html' ? formatReportHtml(report, details, { generatedAt: new Date() }) : `${formatReportTable(report, details)}\n`
        }
        if (o.out) await writeFile(o.out, text)
        else process.stdout.write(text)
      }),
    )

  program
    .command('sandbox')
    .description('serve the provider simulators (PortOne V1/V2, PaySsam, NTS-style) for tests and demos')
    .addOption(new Option('--port <n>', 'port (default 4010, SANDBOX_PORT)').argParser(intArg('--port', 0)))
    .option('--host <host>', 'bind address', '127.0.0.1')
    .option('--faults <spec>', 'fault injection, e.g. "portone:5xx=0.05,timeout_after_commit=0.02,latency=20-80"')
    .option('--rate-limit <spec>', 'per-credential limits, e.g. "portone=100,payssam=50" (req/s)')
    .option('--seed <n>', 'seed for reproducible faults')
    .action(async (o) => {
      try {
        const config = loadDemoConfig()
        const { runSandboxCli } = await import('./dev/load-sandbox.ts')
        await runSandboxCli({ port: o.port ?? config.sandboxPort, host: o.host, faults: o.faults, rateLimits: o.rateLimit, seed: o.seed ? Number(o.seed) : undefined })
      } catch (err) {
        process.stderr.write(`error: ${(err as Error).message}\n`)
        process.exit(err instanceof ConfigError ? 2 : 1)
      }
    })

  program
    .command('serve')
    .description('dashboard (settlement runs, failures, re-drive, Bull Board), /metrics, /healthz and /readyz on one port')
    .addOption(new Option('--port <n>', 'port (default 3000, PORT)').argParser(intArg('--port', 0)))
    .option('--host <host>', 'bind address (default 127.0.0.1, HOST); beyond loopback it needs DASHBOARD_TOKEN or DASHBOARD_USER/DASHBOARD_PASSWORD')
    .action((o) =>
      withApp(async (app, config) => {
        const serve = { ...config.serve, port: o.port ?? config.serve.port, host: o.host ?? config.serve.host }
        assertServeSecurity(serve)
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        const { startDashboard } = await import('./http/server.ts')
        const dashboard = await startDashboard({
          db: app.db(),
          redis: app.redis(),
          receiptsQueue: app.receiptsQueue(),
          controlQueue: app.controlQueue(),
          logger: app.logger,
          serve,
          queuePrefix: config.queuePrefix,
        })
        app.logger.info({ url: dashboard.url, auth: authConfigured(serve) ? 'required' : 'none (loopback only)' }, 'dashboard listening')
        process.stderr.write(`dashboard listening on ${dashboard.url}\n`)
        await shutdown.requested
        await dashboard.close()
      }),
    )

  program
    .command('demo')
    .description('one-command tour: Postgres + Redis (found or started), sandbox, a generated day of transactions, settle, workers, report')
    .addOption(new Option('--transactions <n>', 'how many transactions to generate').argParser(intArg('--transactions')).default(400))
    .option('--json', 'print the final report as JSON')
    .action(async (o) => {
      try {
        process.exit(await runDemo({ transactions: o.transactions, json: Boolean(o.json) }, { createApp, createProgress: (label) => createProgress(label) }))
      } catch (err) {
        process.stderr.write(`error: ${(err as Error).message}\n`)
        process.exit(err instanceof ConfigError ? 2 : 1)
      }
    })

  return program
}

/**
 * Roughly how many records a file holds, from its size and the average line length of its first
 * 256 KiB (exact for smaller files): the import's progress bar gets a total, hence an ETA.
 */
async function estimateRecords(file: string): Promise<number | undefined> {
  try {
    const { size } = await stat(file)
    const fh = await open(file, 'r')
    try {
      const buf = Buffer.alloc(Math.min(size, 256 * 1024))
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
      let lines = 0
      for (let i = 0; i < bytesRead; i++) if (buf[i] === 0x0a) lines++
      if (bytesRead === size) return Math.max(0, lines + (buf[bytesRead - 1] === 0x0a ? 0 : 1) - (/\.csv$/i.test(file) ? 1 : 0))
      return lines ? Math.round(size / (bytesRead / lines)) : undefined
    } finally {
      await fh.close()
    }
  } catch {
    return undefined
  }
}

async function csvHeader(file: string): Promise<string> {
  const { createReadStream } = await import('node:fs')
  const { createInterface } = await import('node:readline')
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }) })
  for await (const line of rl) {
    rl.close()
    return line.replace(/^\uFEFF/, '')
  }
  return ''
}

async function main() {
  const program = buildProgram()
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 2)
    }
    throw err
  }
}

await main()
