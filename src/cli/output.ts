/**
 * What commands print: `--json` is exactly one JSON document on stdout, its keys in snake_case
 * like the report contract; progress goes to stderr so stdout stays clean.
 */
import type { App } from '../app.ts'
import { kstToday } from '../domain/index.ts'
import type { RunReport } from '../report/report.ts'
import { createProgress, type Progress } from './progress.ts'

/** `camelCase` → `camel_case`; anything else (codes such as KEY_CONFLICT, provider names, ids) as is. */
export function snakeKey(key: string): string {
  return /^[a-z][a-zA-Z0-9]*$/.test(key) ? key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase() : key
}

/** A copy with every object key in snake_case (arrays and nested objects included; Dates as ISO strings). */
export function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys)
  if (value instanceof Date) return value.toISOString()
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeKey(k), snakeKeys(v)]))
  return value
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(snakeKeys(value), null, 2)}\n`)
}

/** `{ permanent: 2, retryable: 1 }` → `permanent 2, retryable 1` (human output never prints raw JSON). */
export function countsText(counts: Readonly<Record<string, number>>): string {
  const entries = Object.entries(counts).filter(([, n]) => n > 0)
  return entries.length ? entries.map(([k, n]) => `${k} ${n}`).join(', ') : 'none'
}

export interface WaitOptions {
  readonly json: boolean
  /** How long without any worker on the queue before saying so (default 5 s). */
  readonly noWorkerAfterMs?: number
  readonly pollMs?: number
  readonly progress?: Progress
  readonly stderr?: Pick<NodeJS.WriteStream, 'write'>
}

/**
 * Polls the report until nothing is pending; progress on stderr. When no worker consumes the queue
 * and nothing moves, it says so (once) instead of waiting silently, and says again when one appears.
 */
export async function waitForRun(app: Pick<App, 'report' | 'receiptsQueue' | 'config'>, sel: { runId: number }, opts: WaitOptions): Promise<RunReport> {
  const progress = opts.progress ?? createProgress('issuing', { silent: false })
  const stderr = opts.stderr ?? process.stderr
  const noWorkerAfter = opts.noWorkerAfterMs ?? 5_000
  const pollMs = opts.pollMs ?? 500
  let lastDone = -1
  let lastMoved = Date.now()
  let warned = false
  for (;;) {
    const r = await app.report(sel, kstToday(Date.now()))
    const done = r.totals.eligible - r.totals.pending
    progress.update(done, r.totals.eligible, `issued ${r.totals.issued} failed ${r.totals.failed}`)
    if (r.status === 'finished') {
      progress.finish(opts.json ? undefined : 'done')
      return r
    }
    if (done !== lastDone) {
      lastDone = done
      lastMoved = Date.now()
    } else if (Date.now() - lastMoved >= noWorkerAfter) {
      const workers = await app
        .receiptsQueue()
        .getWorkersCount()
        .catch(() => -1)
      if (workers === 0 && !warned) {
        warned = true
        progress.note(
          `no worker is consuming the receipts queue (prefix "${app.config.queuePrefix}"): start one with \`cash-receipts worker\` (same DATABASE_URL, REDIS_URL and QUEUE_PREFIX); still waiting…\n`,
          stderr,
        )
      } else if (workers > 0 && warned) {
        warned = false
        progress.note(`a worker is consuming the queue now\n`, stderr)
      }
    }
    await new Promise((res) => setTimeout(res, pollMs))
  }
}
