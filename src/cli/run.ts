/**
 * How a command runs: a fresh app for the command (tracing started first), errors mapped to exit
 * codes — 2 for bad input or usage, 1 for a runtime failure — and connections always closed, once,
 * before the process exits.
 */
import { ConfigError, type AppConfig } from '../config.ts'
import { loadDemoConfig } from '../demo/defaults.ts'
import type { App, AppOverrides } from '../app.ts'
import { FileFormatError } from '../import/read-rows.ts'
import { SettleInputError } from '../jobs/settle.ts'
import { CancelInputError } from '../jobs/cancel-receipt.ts'
import { RekeyError } from '../jobs/rekey.ts'
import { ReportNotFoundError } from '../report/report.ts'
import { startTracing, type Tracing } from '../telemetry/tracing.ts'

export class UsageError extends Error {
  override name = 'UsageError'
}

const INPUT_ERRORS = [UsageError, ConfigError, SettleInputError, CancelInputError, FileFormatError, ReportNotFoundError, RekeyError]

export type AppFactory = (config: AppConfig, overrides?: AppOverrides) => App

/** Runs `fn` with a fresh app and exits with its code (0 when it returns nothing). */
export type WithApp = (fn: (app: App, config: AppConfig) => Promise<number | void>) => Promise<never>

/** What every command is given by the program that assembles them. */
export interface CliContext {
  readonly withApp: WithApp
  /** Builds an app on a config of the command's own (the demo). */
  readonly createApp: AppFactory
}

export function createCliContext(createApp: AppFactory): CliContext {
  return {
    createApp,
    async withApp(fn) {
      let app: App | undefined
      let tracing: Tracing | undefined
      let code = 0
      try {
        const config = loadDemoConfig()
        tracing = await startTracing(config.otel)
        app = createApp(config, { telemetry: tracing.telemetry })
        code = (await fn(app, config)) ?? 0
      } catch (err) {
        const e = err as Error
        if (INPUT_ERRORS.some((C) => err instanceof C)) {
          process.stderr.write(`error: ${e.message}\n`)
          code = 2
        } else {
          process.stderr.write(`error: ${e.message}\n`)
          if (app?.config.log.level === 'debug') process.stderr.write(`${e.stack}\n`)
          code = 1
        }
      } finally {
        await app?.close()
        await tracing?.shutdown().catch(() => {})
      }
      process.exit(code)
    },
  }
}

/**
 * For the commands that run without an app (sandbox, demo): a ConfigError is bad input (exit 2),
 * anything else a runtime failure (exit 1).
 */
export async function runWithoutApp(fn: () => Promise<number | void>): Promise<void> {
  try {
    const code = await fn()
    if (code !== undefined) process.exit(code)
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    process.exit(err instanceof ConfigError ? 2 : 1)
  }
}
