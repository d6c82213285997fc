/** The provider sandbox: in-process for tests, the demo and benchmarks, or its own process via the CLI. */
import pino from 'pino'
import { startSandbox, type SandboxOptions } from './server.ts'

export { startSandbox } from './server.ts'
export type { Sandbox, SandboxOptions, SandboxStats, PortonePayment } from './server.ts'
export { parseFaults, parseRateLimits, SpecError } from './faults.ts'

/** `cash-receipts sandbox`: serves until SIGTERM/SIGINT, logging the base URLs. */
export async function runSandboxCli(opts: SandboxOptions): Promise<void> {
  const logger = opts.logger ?? pino({ name: 'sandbox' }, pino.destination(2))
  const sandbox = await startSandbox({ ...opts, logger })
  logger.info({ url: sandbox.url, baseUrls: sandbox.baseUrls, faults: opts.faults ?? '', rateLimits: opts.rateLimits ?? '' }, 'provider sandbox listening')
  await new Promise<void>((resolve) => {
    const stop = () => void sandbox.close().then(resolve)
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}
