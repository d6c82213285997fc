/**
 * /metrics after a real run: a day through the pipeline (sandbox over HTTP, one provider failing),
 * then the dashboard's /metrics scraped over HTTP, parsed with a Prometheus text-format parser, and
 * its receipt figures compared with the report (buildReport) of the same run.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseExposition, type Family } from '../helpers/prometheus-text.ts'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { RunningDashboard } from '../../src/http/server.ts'
import { buildReport, type RunReport } from '../../src/report/report.ts'
import { outcomeOf } from '../../src/report/report-details.ts'
import { kstToday } from '../../src/domain/index.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { createDispatchStatsWriter } from '../../src/throttle/dispatch-stats.ts'
import { importDay, ROOT, settle, waitForRun } from '../helpers/pipeline.ts'

const TOKEN = 'metrics-test-token'
let sandbox: Sandbox
let env: TestEnv
let dashboard: RunningDashboard
let report: RunReport

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({
    sandboxUrl: sandbox.url,
    env: { WORKER_ATTEMPTS: '2', DASHBOARD_TOKEN: TOKEN, METRICS_CACHE_MS: '0' },
  })
  const app = env.app
  app.startWorker({ concurrency: 8 })
  sandbox.setFaults('nts:5xx=1')
  await importDay(app, { businessDate: '2026-10-05', count: 80, seed: 11 }, (p) => sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))))
  const run = await settle(app, '2026-10-05')
  await waitForRun(app, run.runId!, 120_000)
  report = await buildReport(app.db(), { runId: run.runId! }, kstToday(Date.now()))
  dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
}, 180_000)

afterAll(async () => {
  await dashboard?.close()
  await env?.close()
  await sandbox?.close()
})

async function scrape(): Promise<{ families: Map<string, Family>; contentType: string }> {
  const res = await fetch(`${dashboard.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  expect(res.status).toBe(200)
  return { families: parseExposition(await res.text()), contentType: res.headers.get('content-type') ?? '' }
}

const series = (f: Family | undefined, name = f?.name) => (f?.samples ?? []).filter((s) => s.name === name)

describe('/metrics', () => {
  it('needs the token', async () => {
    expect((await fetch(`${dashboard.url}/metrics`)).status).toBe(401)
    expect((await fetch(`${dashboard.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
  })

  it('parses as the Prometheus text format and its receipt gauges equal the report of the run', async () => {
    expect(report.totals.failed).toBeGreaterThan(0)
    expect(report.totals.issued).toBeGreaterThan(0)
    const { families, contentType } = await scrape()
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/)

    const receipts = families.get('cash_receipts_receipts')!
    expect(receipts.type).toBe('gauge')
    const totals = { eligible: 0, issued: 0, failed: 0, pending: 0, skipped: 0, cancelled: 0 }
    const byProvider: Record<string, Record<string, number>> = {}
    for (const m of series(receipts)) {
      if (m.labels.kind !== 'issue') continue
      const bucket = outcomeOf(m.labels.state!)
      totals[bucket] += m.value
      totals.eligible += m.value
      const p = (byProvider[m.labels.provider!] ??= {
        issued: 0,
        failed: 0,
        pending: 0,
        skipped: 0,
        cancelled: 0,
      })
      p[bucket]! += m.value
    }
    expect(totals).toEqual(report.totals)
    expect(byProvider).toEqual(report.by_provider)

    const up = series(families.get('cash_receipts_metrics_source_up')).map((m) => [m.labels.source, m.value])
    expect(Object.fromEntries(up)).toEqual({ postgres: 1, redis: 1 })
  })

  it('exports every metric the alert rules of docs/operations.md name, and each rule has its row in the alert table', async () => {
    const doc = await readFile(join(ROOT, 'docs/operations.md'), 'utf8')
    const block = /```yaml\n(groups:[\s\S]*?)```/.exec(doc)?.[1] ?? ''
    const rules = [...block.matchAll(/- alert: (\w+)\n\s+expr: (.+)/g)].map((m) => ({ alert: m[1]!, expr: m[2]! }))
    expect(rules.map((r) => r.alert)).toEqual(expect.arrayContaining(['CashReceiptsDuplicateReceipts', 'CashReceiptsSettleRejections', 'CashReceiptsOrphanedPending']))
    const { families } = await scrape()
    for (const { alert, expr } of rules) {
      const names = expr.match(/\bcash_receipts_[a-z0-9_]+/g) ?? []
      expect(names.length, alert).toBeGreaterThan(0)
      for (const name of names) {
        // A histogram's series are <family>_bucket, _sum and _count.
        const family = families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, ''))
        expect(family?.name, `${alert}: ${name} is not exported`).toBeDefined()
        if (family!.name !== name) expect(family!.type, `${alert}: ${name}`).toBe('histogram')
      }
      expect(doc, alert).toContain(`| **${alert.replace(/^CashReceipts/, '')}** |`)
    }
  })

  it('counts attempts by outcome as the ledger does, and the latency histogram holds every recent call', async () => {
    const { families } = await scrape()
    const rows = await env.app
      .db()
      .selectFrom('issuance_attempts')
      .select(['operation', 'outcome', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy(['operation', 'outcome'])
      .execute()
    const attempts = families.get('cash_receipts_attempts_total')!
    expect(attempts.type).toBe('counter')
    const scraped = Object.fromEntries(series(attempts).map((m) => [`${m.labels.operation}/${m.labels.outcome}`, m.value]))
    expect(scraped).toEqual(Object.fromEntries(rows.map((r) => [`${r.operation}/${r.outcome}`, Number(r.n)])))
    expect(scraped['issue/issued']).toBeGreaterThan(0)
    expect(Object.keys(scraped).some((k) => k.endsWith('/retryable'))).toBe(true)

    // The parser has checked the histogram (cumulative buckets, +Inf = _count); its calls are every call of the last 24 h.
    const latency = families.get('cash_receipts_provider_latency_seconds')!
    expect(latency.type).toBe('histogram')
    const counts = series(latency, 'cash_receipts_provider_latency_seconds_count')
    expect(counts.reduce((a, m) => a + m.value, 0)).toBe(rows.reduce((a, r) => a + Number(r.n), 0))
    expect(new Set(counts.map((m) => m.labels.provider))).toEqual(new Set(Object.keys(report.by_provider)))
    const sums = series(latency, 'cash_receipts_provider_latency_seconds_sum')
    expect(sums.every((m) => m.value >= 0)).toBe(true)
    expect(series(latency, 'cash_receipts_provider_latency_seconds_bucket').some((m) => m.labels.le === '+Inf')).toBe(true)
  })

  it('shows queue depth, limiter state and overdue receipts', async () => {
    const { families } = await scrape()
    const receiptsQueue = Object.fromEntries(
      series(families.get('cash_receipts_queue_jobs'))
        .filter((m) => m.labels.queue === 'receipts')
        .map((m) => [m.labels.state, m.value]),
    )
    expect(receiptsQueue.waiting).toBe(0)
    expect(receiptsQueue.active).toBe(0)
    expect(receiptsQueue.completed! + receiptsQueue.failed!).toBeGreaterThan(0)

    const running = series(families.get('cash_receipts_limiter_running'))
    expect(new Set(running.map((m) => m.labels.provider))).toEqual(new Set(Object.keys(report.by_provider)))
    for (const m of running) expect(m.value).toBe(0)
    for (const m of series(families.get('cash_receipts_limiter_queued'))) expect(m.value).toBe(0)

    // 2026-10-05's deadline (10-09) is long past: every failed receipt of the run is overdue.
    const overdue = series(families.get('cash_receipts_overdue_receipts')).reduce((a, m) => a + m.value, 0)
    expect(overdue).toBe(report.totals.failed)
    expect(report.overdue).toBe(report.totals.failed)
    const lastRun = series(families.get('cash_receipts_last_run_timestamp_seconds')).find((m) => m.labels.trigger === 'manual')!
    expect(lastRun.value).toBeGreaterThan(Date.parse('2026-01-01') / 1000)
  })

  it('shows the circuits and deferrals the workers publish, in /metrics and on the dashboard', async () => {
    // What a worker process writes (its registry does this on every deferral and circuit change).
    const writer = createDispatchStatsWriter(env.app.redis(), env.prefix, 'worker-test')
    writer.deferred('nts', 'circuit')
    writer.deferred('nts', 'circuit')
    writer.deferred('payssam', 'rate')
    writer.circuit({ name: 'nts', provider: 'nts', scope: 'provider', state: 'open' })
    writer.circuit({ name: 'payssam-apikeymshop', provider: 'payssam', scope: 'credential', state: 'closed' })
    await writer.close()
    await new Promise((r) => setTimeout(r, 50))
    const { families } = await scrape()
    const deferred = series(families.get('cash_receipts_dispatch_deferred_total'), 'cash_receipts_dispatch_deferred_total')
    expect(deferred.find((m) => m.labels.provider === 'nts' && m.labels.reason === 'circuit')?.value).toBe(2)
    expect(deferred.find((m) => m.labels.provider === 'payssam' && m.labels.reason === 'rate')?.value).toBe(1)
    const circuits = series(families.get('cash_receipts_circuit_state'))
    expect(circuits.find((m) => m.labels.circuit === 'nts')).toMatchObject({ labels: { scope: 'provider', provider: 'nts' }, value: 2 })
    expect(circuits.find((m) => m.labels.circuit === 'payssam-apikeymshop')?.value).toBe(0)
    const home = await (await fetch(`${dashboard.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } })).text()
    expect(home).toContain('data-circuit="nts"')
    expect(home).not.toContain('data-circuit="payssam-apikeymshop"')
    expect(home).toContain('circuit 2')
  })

  it('answers /healthz and /readyz without credentials', async () => {
    expect(await (await fetch(`${dashboard.url}/healthz`)).text()).toBe('ok\n')
    const ready = await fetch(`${dashboard.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ postgres: 'ok', redis: 'ok' })
  })
})
