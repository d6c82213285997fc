/** `cash-receipts cancel <transaction-id>`: cancel an issued receipt, fully or in part. */
import { Option, type Command } from 'commander'
import { osActor } from '../../db/audit.ts'
import { receiptState } from '../../db/receipt-reads.ts'
import { intArg } from '../args.ts'
import { printJson } from '../output.ts'
import type { CliContext } from '../run.ts'

export function registerCancel(program: Command, { withApp }: CliContext): void {
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
        await app.requireRedis()
        await app.prepareDatabase()
        const req = await app.cancel({ transactionId, amount: o.amount, reason: Number(o.reason) as 1 | 2 | 3 })
        await app.audit({
          actor: osActor(),
          action: 'cancel',
          selectors: { transaction_id: transactionId, reason: Number(o.reason), receipt_id: req.cancelReceiptId },
          counts: { amount: req.amount },
        })
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
}
