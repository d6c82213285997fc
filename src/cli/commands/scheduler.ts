/** `cash-receipts scheduler`: the nightly settlement and D+1 reconcile by cron, until SIGTERM/SIGINT. */
import type { Command } from 'commander'
import type { CliContext } from '../run.ts'
import { listenForShutdown } from '../shutdown.ts'

export function registerScheduler(program: Command, { withApp }: CliContext): void {
  program
    .command('scheduler')
    .description('nightly settlement by cron (default 00:30 Asia/Seoul, for yesterday) and the D+1 reconcile; runs until SIGTERM')
    .action(() =>
      withApp(async (app) => {
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        const scheduler = await app.startScheduler()
        await Promise.race([shutdown.requested, app.databaseLost()]).finally(() => scheduler.close())
      }),
    )
}
