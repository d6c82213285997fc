/** `cash-receipts reconcile`: the ledger against each provider's records for a business date. */
import { Option, type Command } from 'commander'
import { osActor } from '../../db/audit.ts'
import { kstToday, kstYesterday } from '../../domain/index.ts'
import { dateArg } from '../args.ts'
import { printJson } from '../output.ts'
import type { CliContext } from '../run.ts'

export function registerReconcile(program: Command, { withApp }: CliContext): void {
  program
    .command('reconcile')
    .description("compare the ledger with each provider's records for a business date; repair and flag mismatches")
    .addOption(new Option('--date <YYYY-MM-DD>', 'business date (default: yesterday in Asia/Seoul)').argParser(dateArg))
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const result = await app.reconcile(o.date ?? kstYesterday(Date.now()), kstToday(Date.now()))
        await app.audit({
          actor: osActor(),
          action: 'reconcile',
          selectors: { date: result.businessDate },
          counts: {
            checked: result.checked,
            repaired: result.repaired.length,
            flagged: result.flagged.length,
            duplicates: result.duplicates.length,
            amounts_corrected: result.amounts_corrected.length,
          },
        })
        if (o.json) printJson(result)
        else {
          process.stdout.write(
            `reconcile ${result.businessDate}: checked ${result.checked}, matched ${result.matched}, repaired ${result.repaired.length}, flagged ${result.flagged.length}, lookup errors ${result.lookupErrors}, past deadline ${result.overdue.length}, duplicates ${result.duplicates.length}, provisional finalised ${result.finalized.length}, refused by the tax authority ${result.rejected.length}, still provisional ${result.provisional}, amounts corrected ${result.amounts_corrected.length}\n`,
          )
          for (const r of result.repaired) process.stdout.write(`  repaired ${r.transaction_id} (${r.provider}): ${r.from} → ${r.to}\n`)
          for (const r of result.rejected) process.stdout.write(`  refused ${r.transaction_id} (${r.provider}, ${r.business_date}): ${r.code} ${r.message}\n`)
          for (const f of result.flagged) process.stdout.write(`  flagged ${f.transaction_id} (${f.provider}): ${f.flag}\n`)
          for (const c of result.amounts_corrected) {
            process.stdout.write(`  amount corrected ${c.transaction_id} (${c.provider}): ledger ${c.ledger_amount} → provider ${c.provider_amount}\n`)
          }
          for (const d of result.duplicates) process.stdout.write(`  duplicate ${d.transaction_id} (${d.provider}): approval ${d.approval_number ?? '-'}, ${d.outcome}\n`)
          for (const f of result.overdue) process.stdout.write(`  overdue ${f.transaction_id} (${f.state}, deadline ${f.deadline})\n`)
        }
      }),
    )
}
