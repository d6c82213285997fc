/** `cash-receipts worker`: issue and cancel jobs until SIGTERM/SIGINT, then drain what is in flight. */
import { Option, type Command } from 'commander'
import { intArg } from '../args.ts'
import type { CliContext } from '../run.ts'
import { listenForShutdown } from '../shutdown.ts'

export function registerWorker(program: Command, { withApp }: CliContext): void {
  program
    .command('worker')
    .description('process issue and cancel jobs until SIGTERM/SIGINT, then drain gracefully')
    .addOption(new Option('--concurrency <n>', 'jobs in flight in this process').argParser(intArg('--concurrency')))
    .action((o) =>
      withApp(async (app) => {
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        const worker = app.startWorker({ concurrency: o.concurrency })
        app.logger.info({ concurrency: o.concurrency ?? app.config.worker.concurrency }, 'worker started')
        const signal = await shutdown.requested
        app.logger.info({ signal }, 'draining: finishing jobs in flight')
        await worker.close()
      }),
    )
}
