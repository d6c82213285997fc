/** Helpers for pipeline tests: generate + import a day, run the CLI as a child process, wait for runs. */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { App } from '../../src/app.ts'
import type { ProviderName } from '../../src/domain/index.ts'
import { generateDay, toCsv, type GeneratedDay } from '../../src/demo/generate.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { settleDay, type SettleSummary } from '../../src/jobs/settle.ts'
import { buildReport, type RunReport } from '../../src/report/report.ts'
import { eventually } from './test-env.ts'

export const ROOT = resolve(import.meta.dirname, '../..')

export async function importDay(
  app: App,
  opts: { businessDate: string; count: number; seed?: number; providers?: readonly ProviderName[]; idPrefix?: string },
  registerPayments?: (p: GeneratedDay['portonePayments']) => void,
): Promise<GeneratedDay> {
  const day = generateDay({
    businessDate: opts.businessDate,
    count: opts.count,
    seed: opts.seed,
    providers: opts.providers,
    idPrefix: opts.idPrefix,
    merchants: app.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
  })
  registerPayments?.(day.portonePayments)
  const dir = await mkdtemp(join(tmpdir(), 'crt-import-'))
  const file = join(dir, 'day.csv')
  await writeFile(file, toCsv(day))
  const res = await importTransactions(app.db(), app.config.dataKeys, file, { nowMs: Date.now() })
  if (!res.written) throw new Error(`import failed: ${JSON.stringify(res.errors.slice(0, 5))}`)
  return day
}

export function settle(app: App, businessDate: string, extra: { merchantId?: string } = {}): Promise<SettleSummary> {
  return settleDay(
    { db: app.db(), queue: app.receiptsQueue(), logger: app.logger, chunkSize: 50, maxWaiting: 100_000, bulkSize: (m, p) => app.bulkSize(m, p) },
    { businessDate, trigger: 'manual', ...extra },
  )
}

export async function waitForRun(app: App, runId: number, timeoutMs = 60_000): Promise<RunReport> {
  return eventually(
    async () => {
      const r = await buildReport(app.db(), { runId })
      return r.status === 'finished' ? r : undefined
    },
    timeoutMs,
    200,
  )
}

/** Starts `cash-receipts <args>` as a separate OS process running the TypeScript source. */
export function spawnCli(args: string[], env: Record<string, string>): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  return Object.assign(child, { output: () => out })
}

/** Runs the CLI to completion; resolves with exit code, stdout and stderr. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`cash-receipts ${args.join(' ')} timed out; stderr: ${stderr}`))
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolvePromise({ code: code ?? -1, stdout, stderr })
    })
  })
}

export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>((res) => {
    child.once('exit', () => res())
    child.kill(signal)
  })
}
