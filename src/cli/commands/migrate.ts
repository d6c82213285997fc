/** `cash-receipts migrate`: create the database if missing, run migrations, sync configured merchants. */
import type { Command } from 'commander'
import { printJson } from '../output.ts'
import type { CliContext } from '../run.ts'

export function registerMigrate(program: Command, { withApp }: CliContext): void {
  program
    .command('migrate')
    .description('create the database if missing, run migrations, and sync configured merchants (safe to run twice, concurrently)')
    .option('--adopt-redis', "make the queue's Redis prefix take this database's deployment id (after removing another deployment's jobs there)")
    .option('--json', 'print the result as JSON')
    .action((o) =>
      withApp(async (app) => {
        const r = await app.prepareDatabase()
        const adopted = o.adoptRedis ? await app.checkDeployment({ adopt: true }) : undefined
        if (o.json) printJson(adopted ? { ...r, deployment: adopted } : r)
        else {
          process.stderr.write(`database ready${r.created ? ' (created)' : ''}; migrations applied: ${r.migrations.length ? r.migrations.join(', ') : 'none pending'}\n`)
          if (adopted) process.stderr.write(`queue prefix "${app.config.queuePrefix}" now belongs to deployment ${adopted.deploymentId}\n`)
        }
      }),
    )
}
