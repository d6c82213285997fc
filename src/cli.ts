#!/usr/bin/env node
/**
 * `cash-receipts` command line (README, Command line): the program assembled from one module per
 * command (src/cli/commands/), each given what it needs by this composition root. Exit codes: 0
 * success, 1 runtime failure, 2 bad input or usage. `--json` prints exactly one JSON document on
 * stdout; logs and progress go to stderr.
 *
 * Start-up stays cheap: the command modules import only commander and small helpers at load time;
 * the application (src/app.ts: pg, bullmq, ioredis, the providers) is loaded when a command runs,
 * so `--help`, `--version` and usage errors answer in a fraction of the time.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { createCliContext, type CliContext } from './cli/run.ts'
import { registerMigrate } from './cli/commands/migrate.ts'
import { registerImport } from './cli/commands/import.ts'
import { registerSettle } from './cli/commands/settle.ts'
import { registerWorker } from './cli/commands/worker.ts'
import { registerScheduler } from './cli/commands/scheduler.ts'
import { registerRedrive } from './cli/commands/redrive.ts'
import { registerNotify } from './cli/commands/notify.ts'
import { registerCancel } from './cli/commands/cancel.ts'
import { registerReconcile } from './cli/commands/reconcile.ts'
import { registerRecover } from './cli/commands/recover.ts'
import { registerRekey } from './cli/commands/rekey.ts'
import { registerReport } from './cli/commands/report.ts'
import { registerShow } from './cli/commands/show.ts'
import { registerReceipt } from './cli/commands/receipt.ts'
import { registerSandbox } from './cli/commands/sandbox.ts'
import { registerServe } from './cli/commands/serve.ts'
import { registerDemo } from './cli/commands/demo.ts'

/** In the order `--help` lists them. */
const COMMANDS: readonly ((program: Command, ctx: CliContext) => void)[] = [
  registerMigrate,
  registerImport,
  registerSettle,
  registerWorker,
  registerScheduler,
  registerRedrive,
  registerNotify,
  registerCancel,
  registerReconcile,
  registerRecover,
  registerRekey,
  registerReport,
  registerShow,
  registerReceipt,
  registerSandbox,
  registerServe,
  registerDemo,
]

/** package.json's version: src/cli.ts and dist/src/cli.js both find it two levels up or one. */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'cash-receipts' && pkg.version) return pkg.version
    } catch {
      // try the next candidate
    }
  }
  return 'unknown'
}

export function buildProgram(): Command {
  const program = new Command()
  program
    .name('cash-receipts')
    .description('Queue-driven batch issuance of Korean cash receipts (현금영수증), exactly once.')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
  const ctx = createCliContext(async () => (await import('./app.ts')).createApp)
  for (const register of COMMANDS) register(program, ctx)
  return program
}

async function main() {
  const program = buildProgram()
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 2)
    }
    throw err
  }
}

await main()
