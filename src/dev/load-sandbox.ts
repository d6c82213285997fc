/**
 * The one way product code reaches the provider sandbox (sandbox/ at the repository root), a
 * development tool the production build does not carry. The specifier is computed, so TypeScript
 * neither follows it into the build nor emits the sandbox into dist/; this file states the little it
 * needs of the sandbox's API, and sandbox/index.ts is typechecked against it.
 *
 * From the sources (tsx) the sandbox is imported as is; from a compiled build inside a checkout
 * (dist/, as the benchmarks run) through tsx's tsImport; without the sandbox sources (the production
 * image) loading fails with SandboxUnavailableError.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../config.ts'

/** Options of `cash-receipts sandbox`. */
export interface SandboxCliOptions {
  readonly port?: number
  readonly host?: string
  readonly faults?: string
  readonly rateLimits?: string
  readonly seed?: number
  /** Popbill's processing time per /Cashbill call, ms (default 0). */
  readonly popbillCallMs?: number
}

export interface DevPortonePayment {
  readonly imp_uid: string
  readonly amount: number
  readonly status?: 'paid' | 'ready' | 'cancelled'
  readonly naver?: {
    readonly amount_total: number
    readonly amount_by_npoint: number
    readonly amount_by_primary: number
    readonly amount_supply: number
    readonly amount_vat: number
  }
}

/** What the demo uses of a running sandbox. */
export interface DevSandbox {
  readonly url: string
  stats(): { readonly max_live_receipts_per_key: number }
  /** The payments the PortOne V1 simulator knows (imp_uid → amount). */
  registerPortonePayments(payments: readonly DevPortonePayment[]): void
  /** Each PortOne V1 merchant's PG (imp_key → pg_provider): the simulator then applies that PG's rules. */
  registerPortoneMerchants(merchants: readonly { readonly imp_key: string; readonly pg_provider: string }[]): void
  /** Toss: moves the simulator's result clock, so receipts answered IN_PROGRESS get their final result. */
  readonly toss: { advance(ms: number): void }
  /** Popbill: runs the midnight NTS filing now, so receipts at state 300 become 304 (or 305). */
  readonly popbill: { fileNow(): void }
  close(): Promise<void>
}

/** The part of sandbox/index.ts the product loads. */
export interface SandboxModule {
  runSandboxCli(opts: SandboxCliOptions): Promise<void>
  startSandbox(opts: { port?: number }): Promise<DevSandbox>
}

/** The build in use has no sandbox: an operator fixes it by running from a source checkout (exit 2). */
export class SandboxUnavailableError extends ConfigError {
  override name = 'SandboxUnavailableError'
}

let loaded: Promise<SandboxModule> | undefined

/** Imports sandbox/index.ts once; rejects with SandboxUnavailableError when the sources are absent. */
export function loadSandbox(): Promise<SandboxModule> {
  return (loaded ??= importSandbox())
}

async function importSandbox(): Promise<SandboxModule> {
  // This file is src/dev/load-sandbox.ts, or dist/src/dev/load-sandbox.js once compiled.
  const compiled = import.meta.url.endsWith('.js')
  const entry = new URL(compiled ? '../../../sandbox/index.ts' : '../../sandbox/index.ts', import.meta.url)
  if (!existsSync(fileURLToPath(entry))) {
    throw new SandboxUnavailableError(
      'the provider sandbox is a development tool and is not part of this build: run it from a source ' +
        'checkout (npx tsx src/cli.ts sandbox, or the sandbox service of docker-compose.yml)',
    )
  }
  if (!compiled) return (await import(entry.href)) as SandboxModule
  // tsx is a development dependency: an install without them cannot load the TypeScript sandbox.
  const tsx = await import('tsx/esm/api').catch(() => null)
  if (!tsx) {
    throw new SandboxUnavailableError('the provider sandbox runs through tsx, a development dependency: install the dev dependencies (npm ci)')
  }
  return (await tsx.tsImport(entry.href, import.meta.url)) as SandboxModule
}

/** `cash-receipts sandbox`: serves until SIGTERM or SIGINT (sandbox/index.ts). */
export async function runSandboxCli(opts: SandboxCliOptions): Promise<void> {
  return (await loadSandbox()).runSandboxCli(opts)
}

/** Starts an in-process sandbox (the demo). */
export async function startSandbox(opts: { port?: number } = {}): Promise<DevSandbox> {
  return (await loadSandbox()).startSandbox(opts)
}
