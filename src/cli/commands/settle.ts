/** `cash-receipts settle`: create a business date's receipts and enqueue their issue jobs. */
import { Option, type Command } from 'commander'
import { kstToday, kstYesterday } from '../../domain/index.ts'
import { dateArg } from '../args.ts'
import { countsText, printJson, waitForRun } from '../output.ts'
import { createProgress } from '../progress.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerSettle(program: Command, { withApp }: CliContext): void {
  program
    .command('settle')
    .description('create receipts for a KST business date (plus carry-overs) and enqueue one issue job per receipt')
    .addOption(new Option('--date <YYYY-MM-DD>', 'business date (default: yesterday in Asia/Seoul; a future date is refused)').argParser(dateArg))
    .option('--merchant <id>', 'only this merchant')
    .option('--wait', 'wait until every receipt is issued or failed, showing progress, then print the report')
    .option('--dry-run', 'show what would be enqueued without writing anything')
    .option('--json', 'print the result as JSON (with --wait: the report)')
    .action((o) =>
      withApp(async (app) => {
        const today = kstToday(Date.now())
        const businessDate: string = o.date ?? kstYesterday(Date.now())
        if (businessDate > today) throw new UsageError(`--date: ${businessDate} is in the future (today in Asia/Seoul is ${today}); nothing can be settled for it yet`)
        if (businessDate === today) {
          process.stderr.write(`warning: ${businessDate} is today in Asia/Seoul and not over yet; payments made later today need another settle (carry-overs pick them up)\n`)
        }
        await app.requireRedis()
        await app.prepareDatabase()
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
          const report = await waitForRun(app, { runId: summary.runId }, { json: Boolean(o.json) })
          if (o.json) printJson(report)
          else {
            const { formatReportTable } = await import('../../report/format-table.ts')
            process.stdout.write(`${formatReportTable(report)}\n`)
          }
          return
        }
        if (o.json) {
          printJson(summary)
          return
        }
        process.stdout.write(
          `${summary.dryRun ? 'dry run: would ' : ''}settle ${summary.businessDate} (window ${summary.window.from}…${summary.window.to}): ` +
            `${summary.selected} new transactions, ${summary.created} receipts to issue, ${summary.skipped} skipped` +
            `${summary.skipped ? ` (${countsText(summary.skipReasons)})` : ''}, ${summary.enqueued} jobs ${summary.dryRun ? 'to enqueue' : 'enqueued'}` +
            `${summary.runId !== null ? ` (run ${summary.runId})` : ''}` +
            `${summary.rejected ? `; ${summary.rejected} transactions refused (${countsText(summary.rejectReasons)}): see \`report --date ${summary.businessDate}\`` : ''}\n`,
        )
      }),
    )
}
