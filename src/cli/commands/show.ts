/** `cash-receipts show <transaction-id | order-id | approval-number>`: one transaction, its receipts and their history. */
import type { Command } from 'commander'
import { printJson } from '../output.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerShow(program: Command, { withApp }: CliContext): void {
  program
    .command('show')
    .description('find a transaction by transaction id, order id or approval number: its receipts, amounts, every provider call and state change')
    .argument('<id>', 'a transaction id, an order id or an approval number (승인번호)')
    .option('--json', 'print the result as JSON')
    .action((id: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const found = await app.findReceipts(id)
        if (!found.transactions.length) throw new UsageError(`<id>: no transaction, order or approval number "${id}"`)
        if (o.json) {
          printJson(found)
          return
        }
        const { formatReceiptLookup } = await import('../../report/format-receipt.ts')
        process.stdout.write(`${formatReceiptLookup(found)}\n`)
      }),
    )
}
