/** `cash-receipts recover`: receipts that need work but have no live job, back on the queue. */
import { Option, type Command } from 'commander'
import { dateArg } from '../args.ts'
import { printJson } from '../output.ts'
import { createProgress } from '../progress.ts'
import type { CliContext } from '../run.ts'

export function registerRecover(program: Command, { withApp }: CliContext): void {
  program
    .command('recover')
    .description(
      'put receipts that are pending or issuing past their lease, with no live job in the queue (lost from Redis, or finished), back on the queue; ' +
        'workers and the scheduler also run this periodically',
    )
    .addOption(new Option('--date <YYYY-MM-DD>', 'only receipts of this business date').argParser(dateArg))
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        await app.requireRedis()
        await app.prepareDatabase()
        const progress = createProgress('recover')
        const result = await app.recover({ date: o.date, onProgress: (checked) => progress.update(checked, undefined, 'receipts checked') })
        progress.finish()
        if (o.json) printJson(result)
        else if (!result.ran) process.stdout.write('recover: another recovery pass is running; nothing done\n')
        else {
          process.stdout.write(
            `recover${o.date ? ` ${o.date}` : ''}: checked ${result.checked}, held by a live job ${result.live}, re-enqueued ${result.added + result.requeued} ` +
              `(${result.added} under their id, ${result.requeued} under a fresh id), moved meanwhile ${result.raced}` +
              `${result.finishedRuns.length ? `; runs finished: ${result.finishedRuns.join(', ')}` : ''}\n`,
          )
        }
      }),
    )
}
