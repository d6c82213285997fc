/**
 * The provider sandbox: faithful simulators of PortOne V1/V2, PaySsam, Toss, Popbill and an NTS-style API behind one
 * HTTP server, in-process for tests, the demo and benchmarks, or as its own process through
 * `cash-receipts sandbox`. Endpoints, credentials and spec grammars: sandbox/README.md.
 *
 * A development tool outside src/: the production build does not carry it, and the product (the CLI's
 * `sandbox` command, the demo) loads it only through src/dev/load-sandbox.ts.
 */
import pino from 'pino'
import type { SandboxModule } from '../src/dev/load-sandbox.ts'
import { formatFaults, parseFaults, parseRateLimits } from './faults.ts'
import { startSandbox, type SandboxOptions } from './server.ts'

export { startSandbox } from './server.ts'
export type { ListedReceipt, ProviderStats, Sandbox, SandboxOptions, SandboxStats, PortoneMerchant, PortonePayment } from './server.ts'
export { FAULT_KINDS, parseFaults, parseRateLimits, SpecError } from './faults.ts'
export type { FaultKind, FaultSpec, RateLimitSpec } from './faults.ts'
export type { HeldReceipt } from './sim.ts'
export { popbillSandboxSecret } from './providers/popbill.ts'

/**
 * `cash-receipts sandbox`: starts the sandbox, logs its base URLs, and serves until SIGTERM or SIGINT,
 * then closes. Throws SpecError for a bad fault or rate-limit spec (before listening).
 */
export async function runSandboxCli(opts: SandboxOptions): Promise<void> {
  const logger = opts.logger ?? pino({ name: 'sandbox' }, pino.destination({ fd: 2, sync: true }))
  // Parse first so a bad spec fails before anything listens.
  const faults = formatFaults(parseFaults(opts.faults))
  const limits = parseRateLimits(opts.rateLimits)
  const sandbox = await startSandbox({ ...opts, logger })
  logger.info(
    {
      url: sandbox.url,
      baseUrls: sandbox.baseUrls,
      faults,
      rateLimits: limits.perSecond,
      credentialRateLimits: Object.keys(limits.perCredential).length,
      ntsDailyQuota: limits.ntsDaily,
    },
    'provider sandbox listening',
  )
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      logger.info({ signal }, 'provider sandbox closing')
      sandbox.close().then(resolve, resolve)
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
}

/** The loader's view of this module: kept in step by the typechecker, as the build cannot see this folder. */
const _loaderView: SandboxModule = { runSandboxCli, startSandbox }
