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
        await app.checkDeployment()
        const worker = app.startWorker({ concurrency: o.concurrency })
        app.logger.info({ concurrency: o.concurrency ?? app.config.worker.concurrency }, 'worker started')
        const signal = await Promise.race([shutdown.requested, app.databaseLost()]).catch(async (err: unknown) => {
          // Postgres has stayed away past the window: stop without waiting for jobs that cannot
          // finish; their locks expire and another worker takes them over.
          await worker.close(true)
          throw err
        })
        app.logger.info({ signal }, 'draining: finishing jobs in flight')
        await worker.close()
      }),
    )
}
