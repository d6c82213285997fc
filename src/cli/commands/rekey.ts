/** `cash-receipts rekey`: personal data re-encrypted under the active data key. */
import { Option, type Command } from 'commander'
import { intArg } from '../args.ts'
import { printJson } from '../output.ts'
import { createProgress } from '../progress.ts'
import type { CliContext } from '../run.ts'

export function registerRekey(program: Command, { withApp }: CliContext): void {
  program
    .command('rekey')
    .description(
      're-encrypt personal data and rehash fingerprints and buyer-identifier search hashes under the active data key (DATA_KEY_ID), so older keys can be retired; run once after upgrading to fill search hashes',
    )
    .addOption(new Option('--batch <n>', 'rows per transaction').argParser(intArg('--batch')).default(1_000))
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const progress = createProgress('rekey')
        const result = await app.rekey({ batchSize: o.batch, onProgress: (done, total) => progress.update(done, total) })
        progress.finish()
        if (o.json) printJson(result)
        else {
          const others = Object.entries(result.remainingByKey).filter(([k]) => k !== result.activeKeyId)
          process.stdout.write(
            `rekey to "${result.activeKeyId}": ${result.transactions} transactions and ${result.merchants} merchants rewritten; ` +
              (others.length
                ? `still under other keys: ${others.map(([k, n]) => `${k} (${n})`).join(', ')}\n`
                : 'no row uses another key now: older keys can be removed from DATA_KEYS\n'),
          )
        }
      }),
    )
}
