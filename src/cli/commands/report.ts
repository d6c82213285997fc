/** `cash-receipts report`: a settlement run as a table, JSON or an HTML page; or the totals of a period for filing. */
import { writeFile } from 'node:fs/promises'
import { Option, type Command } from 'commander'
import { kstToday } from '../../domain/index.ts'
import { LANGS, translator } from '../../i18n/index.ts'
import { dateArg, intArg } from '../args.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerReport(program: Command, { withApp }: CliContext): void {
  program
    .command('report')
    .description('report a settlement run (default: the latest), or with --from/--to the totals of a period per merchant, purpose and month')
    .addOption(new Option('--run <id>', 'settlement run id').argParser(intArg('--run')))
    .addOption(new Option('--date <YYYY-MM-DD>', 'the settlement run(s) of this business date').argParser(dateArg))
    .addOption(new Option('--from <YYYY-MM-DD>', 'period totals: first business date').argParser(dateArg))
    .addOption(new Option('--to <YYYY-MM-DD>', 'period totals: last business date (inclusive)').argParser(dateArg))
    .option('--merchant <id>', 'period totals: only this merchant')
    .addOption(new Option('--format <format>', 'output format (csv: period totals only; UTF-8 with BOM for Excel)').choices(['table', 'json', 'csv', 'html']).default('table'))
    .option('--json', 'same as --format json')
    .addOption(new Option('--lang <lang>', 'language of --format html (Korean by default)').choices(LANGS).default('ko'))
    .option('--out <file>', 'write to a file instead of stdout')
    .action((o) =>
      withApp(async (app) => {
        if (o.run !== undefined && o.date) throw new UsageError('use either --run or --date, not both')
        const format: string = o.json ? 'json' : o.format
        const period = o.from !== undefined || o.to !== undefined
        let text: string
        if (period) {
          if (o.run !== undefined || o.date) throw new UsageError('--from/--to report a period; --run/--date a settlement run: use one or the other')
          if (!o.from || !o.to) throw new UsageError(`${o.from ? '--to' : '--from'}: required with ${o.from ? '--from' : '--to'}`)
          if (o.from > o.to) throw new UsageError(`--from: ${o.from} is after --to ${o.to}`)
          await app.prepareDatabase()
          if (o.merchant && !(await app.merchantExists(o.merchant))) throw new UsageError(`--merchant: "${o.merchant}" is not a configured merchant`)
          const totals = await app.periodTotals({ from: o.from, to: o.to, merchantId: o.merchant })
          const fmt = await import('../../report/format-period.ts')
          if (format === 'json') text = `${JSON.stringify(totals, null, 2)}\n`
          else if (format === 'csv') text = (await import('../../report/period-totals.ts')).formatPeriodCsv(totals)
          else if (format === 'html') text = fmt.formatPeriodHtml(totals, { generatedAt: new Date(), t: translator(o.lang) })
          else text = `${fmt.formatPeriodTable(totals)}\n`
        } else {
          if (o.merchant) throw new UsageError("--merchant: only with --from/--to (a run report covers the run's merchants)")
          if (format === 'csv') throw new UsageError('--format csv: only for period totals (--from/--to)')
          await app.prepareDatabase()
          const today = kstToday(Date.now())
          const sel = { runId: o.run, date: o.date }
          const report = await app.report(sel, today)
          if (format === 'json') text = `${JSON.stringify(report, null, 2)}\n`
          else {
            const details = await app.reportDetails(sel, today)
            const [{ formatReportHtml }, { formatReportTable }] = await Promise.all([import('../../report/format-html.ts'), import('../../report/format-table.ts')])
            text = format === 'html' ? formatReportHtml(report, details, { generatedAt: new Date(), t: translator(o.lang) }) : `${formatReportTable(report, details)}\n`
          }
        }
        if (o.out) await writeFile(o.out, text)
        else process.stdout.write(text)
      }),
    )
}
