/** `cash-receipts sandbox`: the provider simulators, a development tool loaded from a source checkout. */
import { Option, type Command } from 'commander'
import { intArg } from '../args.ts'
import { runWithoutApp, type CliContext } from '../run.ts'

export function registerSandbox(program: Command, _ctx: CliContext): void {
  program
    .command('sandbox')
    .description('serve the provider simulators (PortOne V1/V2, PaySsam, NTS-style, Toss, Popbill) for tests and demos')
    .addOption(new Option('--port <n>', 'port (default 4010, SANDBOX_PORT)').argParser(intArg('--port', 0)))
    .option('--host <host>', 'bind address', '127.0.0.1')
    .option('--faults <spec>', 'fault injection, e.g. "portone:5xx=0.05,timeout_after_commit=0.02,latency=20-80"')
    .option('--rate-limit <spec>', 'per-credential limits, e.g. "portone=100,payssam=50" (req/s)')
    .option('--seed <n>', 'seed for reproducible faults')
    .addOption(new Option('--popbill-call-ms <n>', "Popbill's processing time per /Cashbill call, ms (default 0: instant)").argParser(intArg('--popbill-call-ms', 0)))
    .action((o) =>
      runWithoutApp(async () => {
        const { loadDemoConfig } = await import('../../demo/defaults.ts')
        const config = loadDemoConfig()
        const { runSandboxCli } = await import('../../dev/load-sandbox.ts')
        await runSandboxCli({
          port: o.port ?? config.sandboxPort,
          host: o.host,
          faults: o.faults,
          rateLimits: o.rateLimit,
          seed: o.seed ? Number(o.seed) : undefined,
          popbillCallMs: o.popbillCallMs,
        })
      }),
    )
}
