/**
 * How a command runs: a fresh app for the command (tracing started first), errors mapped to exit
 * codes — 2 for bad input or usage, 1 for a runtime failure — and connections always closed, once,
 * before the process exits.
 */
import type { AppConfig } from '../config.ts'
import type { App, AppOverrides } from '../app.ts'
import type { Tracing } from '../telemetry/tracing.ts'

export class UsageError extends Error {
  override name = 'UsageError'
}

/**
 * The errors that mean bad input or usage (exit 2). Loaded with the app, not at start-up: `--help`
 * and a usage error must not pay for loading the whole application (see src/cli.ts).
 */
async function inputErrors(): Promise<readonly (abstract new (...args: never[]) => Error)[]> {
  const [config, readRows, settle, cancel, rekey, report, redrive] = await Promise.all([
    import('../config.ts'),
    import('../import/read-rows.ts'),
    import('../jobs/settle.ts'),
    import('../jobs/cancel-receipt.ts'),
    import('../jobs/rekey.ts'),
    import('../report/report.ts'),
    import('../jobs/redrive.ts'),
  ])
  return [
    UsageError,
    config.ConfigError,
    settle.SettleInputError,
    cancel.CancelInputError,
    readRows.FileFormatError,
    report.ReportNotFoundError,
    rekey.RekeyError,
    redrive.RedriveInputError,
  ]
}

export type AppFactory = (config: AppConfig, overrides?: AppOverrides) => App

/** Runs `fn` with a fresh app and exits with its code (0 when it returns nothing). */
export type WithApp = (fn: (app: App, config: AppConfig) => Promise<number | void>) => Promise<never>

/** What every command is given by the program that assembles them. */
export interface CliContext {
  readonly withApp: WithApp
  /** Loads the app factory, to build an app on a config of the command's own (the demo). */
  readonly loadApp: () => Promise<AppFactory>
}

/** `loadApp` is called once a command runs: the application is loaded only then. */
export function createCliContext(loadApp: () => Promise<AppFactory>): CliContext {
  return {
    loadApp,
    async withApp(fn) {
      let app: App | undefined
      let tracing: Tracing | undefined
      let code = 0
      try {
        const [createApp, { loadDemoConfig }, { startTracing }] = await Promise.all([loadApp(), import('../demo/defaults.ts'), import('../telemetry/tracing.ts')])
        const config = loadDemoConfig()
        tracing = await startTracing(config.otel)
        app = createApp(config, { telemetry: tracing.telemetry })
        code = (await fn(app, config)) ?? 0
      } catch (err) {
        const e = err as Error
        if ((await inputErrors().catch(() => [UsageError])).some((C) => err instanceof C)) {
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
    const { ConfigError } = await import('../config.ts')
    process.stderr.write(`error: ${(err as Error).message}\n`)
    process.exit(err instanceof ConfigError || err instanceof UsageError ? 2 : 1)
  }
}
