/**
 * `cash-receipts show <transaction-id | order-id | approval-number | buyer identifier>`: one
 * transaction (or a buyer's transactions), its receipts and their history. A buyer identifier is
 * looked up by its keyed hash and never printed back: `query` in --json is masked.
 */
import type { Command } from 'commander'
import { printJson } from '../output.ts'
import { UsageError, type CliContext } from '../run.ts'

export function registerShow(program: Command, { withApp }: CliContext): void {
  program
    .command('show')
    .description('find a transaction by transaction id, order id, approval number or buyer identifier: its receipts, amounts, every provider call and state change')
    .argument('<id>', 'a transaction id, an order id, an approval number (승인번호) or a buyer identifier (phone, business or card number; 신분인식번호)')
    .option('--json', 'print the result as JSON')
    .action((id: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const found = await app.findReceipts(id)
        // found.query is the search as it may be shown: masked when it is a buyer identifier.
        if (!found.transactions.length) throw new UsageError(`<id>: no transaction, order, approval number or buyer identifier "${found.query}"`)
        if (o.json) {
          printJson(found)
          return
        }
        const { formatReceiptLookup } = await import('../../report/format-receipt.ts')
        process.stdout.write(`${formatReceiptLookup(found)}\n`)
      }),
    )
}
