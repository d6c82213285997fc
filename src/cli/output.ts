/**
 * What commands print: `--json` is exactly one JSON document on stdout; progress goes to stderr so
 * stdout stays clean.
 */
import type { App } from '../app.ts'
import { kstToday } from '../domain/index.ts'
import type { RunReport } from '../report/report.ts'
import { createProgress } from './progress.ts'

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Polls the report until nothing is pending; progress on stderr. */
export async function waitForRun(app: Pick<App, 'report'>, sel: { runId: number }, json: boolean): Promise<RunReport> {
  const progress = createProgress('issuing', { silent: false })
  for (;;) {
    const r = await app.report(sel, kstToday(Date.now()))
    const done = r.totals.eligible - r.totals.pending
    progress.update(done, r.totals.eligible, `issued ${r.totals.issued} failed ${r.totals.failed}`)
    if (r.status === 'finished') {
      progress.finish(json ? undefined : 'done')
      return r
    }
    await new Promise((res) => setTimeout(res, 500))
  }
}
