/** `cash-receipts serve`: the dashboard, /metrics, /healthz and /readyz until SIGTERM/SIGINT. */
import { Option, type Command } from 'commander'
import { intArg } from '../args.ts'
import type { CliContext } from '../run.ts'
import { listenForShutdown } from '../shutdown.ts'

export function registerServe(program: Command, { withApp }: CliContext): void {
  program
    .command('serve')
    .description('dashboard (settlement runs, failures, re-drive, Bull Board), /metrics, /healthz and /readyz on one port')
    .addOption(new Option('--port <n>', 'port (default 3000, PORT)').argParser(intArg('--port', 0)))
    .option('--host <host>', 'bind address (default 127.0.0.1, HOST); beyond loopback it needs DASHBOARD_TOKEN or DASHBOARD_USER/DASHBOARD_PASSWORD')
    .action((o) =>
      withApp(async (app, config) => {
        const { assertServeSecurity, authConfigured } = await import('../../http/auth.ts')
        const serve = { ...config.serve, port: o.port ?? config.serve.port, host: o.host ?? config.serve.host }
        assertServeSecurity(serve)
        const shutdown = listenForShutdown()
        await app.prepareDatabase()
        await app.checkDeployment()
        const dashboard = await app.startDashboard(serve)
        app.logger.info({ url: dashboard.url, auth: authConfigured(serve) ? 'required' : 'none (loopback only)' }, 'dashboard listening')
        process.stderr.write(`dashboard listening on ${dashboard.url}\n`)
        await Promise.race([shutdown.requested, app.databaseLost()]).finally(() => dashboard.close())
      }),
    )
}
