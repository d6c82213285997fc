/** `cash-receipts report`: a settlement run as a table, JSON or an HTML page. */
import { writeFile } from 'node:fs/promises'
import { Option, type Command } from 'commander'
import { kstToday } from '../../domain/index.ts'
import { dateArg, intArg } from '../args.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerReport(program: Command, { withApp }: CliContext): void {
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
        const sel = { runId: o.run, date: o.date }
        const report = await app.report(sel, today)
        const format = o.json ? 'json' : o.format
        let text: string
        if (format === 'json') text = `${JSON.stringify(report, null, 2)}\n`
        else {
          const details = await app.reportDetails(sel, today)
          const [{ formatReportHtml }, { formatReportTable }] = await Promise.all([import('../../report/format-html.ts'), import('../../report/format-table.ts')])
          text = format === 'html' ? formatReportHtml(report, details, { generatedAt: new Date() }) : `${formatReportTable(report, details)}\n`
        }
        if (o.out) await writeFile(o.out, text)
        else process.stdout.write(text)
      }),
    )
}
