/** `cash-receipts receipt <transaction-id> --out FILE.html`: the printable 현금영수증 of a transaction. */
import { writeFile } from 'node:fs/promises'
import { Option, type Command } from 'commander'
import { LANGS, translator } from '../../i18n/index.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerReceipt(program: Command, { withApp }: CliContext): void {
  program
    .command('receipt')
    .description('write the printable cash receipt (현금영수증) of a transaction as one HTML page (cancellations marked)')
    .argument('<transaction-id>')
    .requiredOption('--out <file>', 'the HTML file to write')
    .addOption(new Option('--lang <lang>', 'language of the page (Korean by default)').choices(LANGS).default('ko'))
    .action((transactionId: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const found = await app.findReceipts(transactionId)
        const t = found.transactions.find((x) => x.transaction_id === transactionId)
        if (!t) throw new UsageError(`<transaction-id>: no transaction "${transactionId}"`)
        if (!t.receipts.some((r) => r.kind === 'issue' && ['issued', 'cancelling', 'cancelled'].includes(r.state))) {
          throw new UsageError(`<transaction-id>: ${transactionId} has no issued receipt yet`)
        }
        const { formatPrintableReceipt } = await import('../../report/printable-receipt.ts')
        await writeFile(o.out, formatPrintableReceipt(t, { generatedAt: new Date(), t: translator(o.lang) }))
        process.stderr.write(`wrote ${o.out}\n`)
      }),
    )
}
