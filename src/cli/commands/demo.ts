/** `cash-receipts demo`: the whole nightly flow on embedded defaults (see src/demo/demo.ts). */
import { Option, type Command } from 'commander'
import { intArg } from '../args.ts'
import { createProgress } from '../progress.ts'
import { runWithoutApp, type CliContext } from '../run.ts'

export function registerDemo(program: Command, { loadApp }: CliContext): void {
  program
    .command('demo')
    .description('one-command tour: Postgres + Redis (found or started), sandbox, a generated day of transactions, settle, workers, report')
    .addOption(new Option('--transactions <n>', 'how many transactions to generate').argParser(intArg('--transactions')).default(400))
    .option('--json', 'print the final report as JSON')
    .action((o) =>
      runWithoutApp(async () => {
        const [{ runDemo }, createApp] = await Promise.all([import('../../demo/demo.ts'), loadApp()])
        return runDemo({ transactions: o.transactions, json: Boolean(o.json) }, { createApp: (config) => createApp(config), createProgress: (label) => createProgress(label) })
      }),
    )
}
