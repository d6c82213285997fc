/**
 * startSandbox: one HTTP server with each provider under its own prefix (/portone, /portone-v2,
 * /payssam, /nts) and /_sandbox/* for stats, reset, faults, rate limits and seeding. The state lives
 * in state.ts, the control API in http/control.ts, the fault pipeline in http/pipeline.ts, and the
 * server, request record and socket-level answers in http/plumbing.ts; this file wires them.
 */
import express, { type NextFunction, type Request, type Response } from 'express'
import type { ProviderName } from '../src/domain/index.ts'
import { SANDBOX_PROVIDERS, type FaultKind } from './faults.ts'
import { SandboxState, type ListedReceipt, type PortoneMerchant, type PortonePayment, type SandboxOptions, type SandboxStats } from './state.ts'
import { controlRouter } from './http/control.ts'
import { providerRouter } from './http/pipeline.ts'
import { incomingOf, listen, readIncoming, send } from './http/plumbing.ts'
import { GatewayState } from './gateway.ts'

export type { ListedReceipt, PortoneMerchant, PortonePayment, ProviderStats, SandboxOptions, SandboxStats } from './state.ts'

export interface Sandbox {
  /** Origin, e.g. `http://127.0.0.1:4010`. */
  readonly url: string
  /** Base URL per provider, e.g. `http://127.0.0.1:4010/portone`. */
  readonly baseUrls: Readonly<Record<ProviderName, string>>
  stats(): SandboxStats
  /** Forgets every receipt, token, payment, counter, rate window and forced fault; keeps the fault spec. */
  reset(): void
  /** Replaces the fault spec (throws SpecError). */
  setFaults(spec: string): void
  /** Replaces the rate limits (throws SpecError). */
  setRateLimits(spec: string): void
  /** Gives the next receipt operations of a provider these faults, in order (tests that need one exact case). */
  forceNext(provider: ProviderName | '*', faults: readonly FaultKind[]): void
  /** The payments PortOne V1 knows: `/receipts/{imp_uid}` takes its amount from them. */
  registerPortonePayments(payments: readonly PortonePayment[]): void
  /** Each PortOne V1 merchant's PG (imp_key → pg_provider): the simulator applies that PG's rules. */
  registerPortoneMerchants(merchants: readonly PortoneMerchant[]): void
  /** Toss deferred results: advance the result clock, fail the next issues at the NTS, set the delay. */
  readonly toss: {
    advance(ms: number): void
    failNext(codes: readonly string[]): void
    setResultDelay(ms: number): void
  }
  /** Popbill: run the midnight NTS filing now, fail the next issues' filing, set the bulk processing time. */
  readonly popbill: {
    fileNow(): void
    failNext(codes: readonly string[]): void
    setBulkDelay(ms: number | null): void
  }
  /** The SMS/Kakao gateway simulator served under /gateway (sandbox/gateway.ts). */
  readonly gateway: GatewayState
  /** What the simulators hold (identifiers masked). */
  receipts(provider?: ProviderName): ListedReceipt[]
  close(): Promise<void>
}

/** Starts the sandbox; resolves once it listens. Throws SpecError for a bad seed or spec. */
export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const state = new SandboxState(opts)
  let address = { url: '', baseUrls: {} as Readonly<Record<ProviderName, string>> }

  const app = express()
  // Answers are written byte for byte by plumbing.send: no header of express's own, exact paths only.
  app.disable('x-powered-by')
  app.disable('etag')
  app.enable('case sensitive routing')
  app.enable('strict routing')
  app.use(readIncoming)
  app.use(
    '/_sandbox',
    controlRouter(state, () => address),
  )
  // The SMS/Kakao gateway simulator (buyer notifications), under /gateway.
  const gateway = new GatewayState()
  app.use('/gateway', (req: Request, res: Response) => {
    const inc = incomingOf(req)
    gateway.respond(req, res, inc.pathname.slice('/gateway'.length) || '/', inc.body)
  })
  app.use(providerRouter(state))
  app.use((req: Request, res: Response) => send(res, { status: 404, body: { error: `nothing is served at ${incomingOf(req).pathname}` } }))
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    opts.logger?.error({ err: (err as Error).message }, 'sandbox internal error')
    if (!res.headersSent && !res.destroyed) {
      send(res, { status: 500, body: { error: 'sandbox internal error' } })
    }
  })

  const server = await listen(app, opts.port ?? 0, opts.host ?? '127.0.0.1')
  const url = server.url
  address = {
    url,
    baseUrls: Object.freeze(Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, `${url}/${p}`])) as Record<ProviderName, string>),
  }
  return {
    url,
    baseUrls: address.baseUrls,
    stats: () => state.stats(),
    reset: () => {
      state.reset()
      gateway.reset()
    },
    gateway,
    setFaults: (spec) => state.setFaults(spec),
    setRateLimits: (spec) => state.setRateLimits(spec),
    forceNext: (provider, faults) => state.forceNext(provider, faults),
    registerPortonePayments: (payments) => state.registerPortonePayments(payments),
    registerPortoneMerchants: (merchants) => state.registerPortoneMerchants(merchants),
    receipts: (provider) => state.receipts(provider),
    toss: {
      advance: (ms) => state.tossAdvance(ms),
      failNext: (codes) => state.tossFailNext(codes),
      setResultDelay: (ms) => state.tossResultDelay(ms),
    },
    popbill: {
      fileNow: () => state.popbillFileNow(),
      failNext: (codes) => state.popbillFailNext(codes),
      setBulkDelay: (ms) => state.popbillBulkDelay(ms),
    },
    close: () => server.close(),
  }
}
