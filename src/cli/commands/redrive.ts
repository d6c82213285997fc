/** `cash-receipts redrive`: failed receipts back on the queue under fresh job ids. */
import { Option, type Command } from 'commander'
import { osActor } from '../../db/audit.ts'
import { FAILURE_CLASSES, PROVIDERS } from '../../domain/index.ts'
import { dateArg, intArg } from '../args.ts'
import { countsText, printJson, waitForRun } from '../output.ts'
import type { CliContext } from '../run.ts'

export function registerRedrive(program: Command, { withApp }: CliContext): void {
  program
    .command('redrive')
    .description('put failed receipts back on the queue under fresh job ids (after fixing the cause)')
    .addOption(new Option('--run <id>', 'receipts of this settlement run').argParser(intArg('--run')))
    .addOption(new Option('--date <YYYY-MM-DD>', 'receipts of this business date').argParser(dateArg))
    .addOption(new Option('--provider <name>', 'only this provider').choices([...PROVIDERS]))
    .option('--code <code>', 'only this provider error code')
    .addOption(new Option('--class <class>', 'only this error class').choices([...FAILURE_CLASSES]))
    .option('--dry-run', 'show how many would be re-driven')
    .option('--wait', 'wait for the re-driven receipts and print the report')
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.requireRedis()
        await app.prepareDatabase()
        const result = await app.redrive({ runId: o.run, date: o.date, provider: o.provider, code: o.code, errorClass: o.class }, { dryRun: Boolean(o.dryRun) })
        if (!result.dryRun) {
          await app.audit({
            actor: osActor(),
            action: 'redrive',
            selectors: { run: o.run, date: o.date, provider: o.provider, code: o.code, class: o.class, new_run: result.runId },
            counts: { receipts: result.count },
          })
        }
        if (o.wait && result.runId !== null && result.count > 0) {
          const report = await waitForRun(app, { runId: result.runId }, { json: Boolean(o.json) })
          if (o.json) printJson(report)
          else {
            const { formatReportTable } = await import('../../report/format-table.ts')
            process.stdout.write(`${formatReportTable(report)}\n`)
          }
          return
        }
        if (o.json) printJson(result)
        else {
          const what = `${result.count} receipts${result.count ? ` (${countsText(result.byClass)})` : ''}`
          process.stdout.write(
            result.dryRun
              ? `dry run: would re-drive ${what}${result.businessDate ? `, business date ${result.businessDate}` : ''}\n`
              : `re-driven ${what}${result.runId ? ` as run ${result.runId}, business date ${result.businessDate}` : ''}` +
                  `${result.redriveOf.length ? `, following up run ${result.redriveOf.join(', ')}` : ''}\n`,
          )
        }
      }),
    )
}
