/** `cash-receipts settle`: create a business date's receipts and enqueue their issue jobs. */
import { Option, type Command } from 'commander'
import { kstYesterday } from '../../domain/index.ts'
import { formatReportTable } from '../../report/format-table.ts'
import { dateArg } from '../args.ts'
import { printJson, waitForRun } from '../output.ts'
import { createProgress } from '../progress.ts'
import type { CliContext } from '../run.ts'

export function registerSettle(program: Command, { withApp }: CliContext): void {
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
            `${summary.runId !== null ? ` (run ${summary.runId})` : ''}` +
            `${summary.rejected ? `; ${summary.rejected} transactions refused (${Object.entries(summary.rejectReasons).map(([c, n]) => `${c} ${n}`).join(', ')}): see \`report --date ${summary.businessDate}\`` : ''}\n`,
        )
      }),
    )
}
