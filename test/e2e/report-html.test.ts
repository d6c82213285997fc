/**
 * `report --format html` (the CLI as a separate process) opened from disk in headless Chromium: the
 * page loads nothing from anywhere, and every chart is an SVG with marks in it. A screenshot is taken
 * and kept next to the report for a person to look at.
 */
import { mkdtemp, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { launchChromium, type Browser } from '../helpers/browser.ts'
import type { RunReport } from '../../src/report/report.ts'

let sandbox: Sandbox
let env: TestEnv
let browser: Browser
let dir: string
let runId: number

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '2' } })
  env.app.startWorker({ concurrency: 8 })
  // NTS down: failed receipts, and (2026-10-12 + 4 days is long past) receipts past their deadline.
  sandbox.setFaults('nts:5xx=1,latency=5-40')
  await importDay(env.app, { businessDate: '2026-10-12', count: 90, seed: 31 }, (p) => sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))))
  runId = (await settle(env.app, '2026-10-12')).runId!
  // 90 receipts, NTS ones retried once: minutes on a loaded shared machine, so the wait is generous.
  await waitForRun(env.app, runId, 420_000)
  dir = await mkdtemp(join(tmpdir(), 'crt-report-html-'))
  browser = await launchChromium()
}, 480_000)

afterAll(async () => {
  await browser?.close()
  await env?.close()
  await sandbox?.close()
})

const CHARTS = ['providers', 'merchants', 'throughput', 'latency', 'failures', 'overdue'] as const

describe('report --format html', () => {
  it('is one self-contained file whose charts render in Chromium', async () => {
    const file = join(dir, 'report.html')
    const r = await runCli(['report', '--run', String(runId), '--format', 'html', '--out', file], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('')
    const htmlText = await readFile(file, 'utf8')
    // Nothing to fetch: no script, no stylesheet or image link, a CSP that forbids loads.
    expect(htmlText).not.toMatch(/<script|<link|<img|@import|url\(/i)
    expect(htmlText).toContain(`default-src 'none'`)
    const json = JSON.parse((await runCli(['report', '--run', String(runId), '--json'], env.env())).stdout) as RunReport
    expect(json.totals.failed).toBeGreaterThan(0)

    const page = await browser.context.newPage()
    const requests: string[] = []
    page.on('request', (req) => {
      if (!req.url().startsWith('file:')) requests.push(req.url())
    })
    await page.goto(pathToFileURL(file).href)
    await page.waitForLoadState('load')

    for (const chart of CHARTS) {
      const svg = page.locator(`svg.chart#chart-${chart}`)
      expect(await svg.count(), chart).toBe(1)
      const marks = await svg.locator('rect.bar, path.line').count()
      expect(marks, `${chart} has marks`).toBeGreaterThan(0)
      expect(Number(await svg.getAttribute('data-points')), chart).toBe(marks)
      const box = await svg.boundingBox()
      expect(box!.width, chart).toBeGreaterThan(100)
      expect(box!.height, chart).toBeGreaterThan(20)
    }
    // The provider chart carries the report's numbers.
    const failedBars = await page.locator('#chart-providers rect.bar[data-series="failed"]').evaluateAll((els) => els.reduce((a, e) => a + Number(e.getAttribute('data-value')), 0))
    expect(failedBars).toBe(json.totals.failed)
    const issuedBars = await page.locator('#chart-providers rect.bar[data-series="issued"]').evaluateAll((els) => els.reduce((a, e) => a + Number(e.getAttribute('data-value')), 0))
    expect(issuedBars).toBe(json.totals.issued)
    expect(Number(await page.locator('[data-total="failed"] .value').innerText())).toBe(json.totals.failed)
    expect(Number(await page.locator('[data-total="overdue"] .value').innerText())).toBe(json.overdue)
    expect(json.overdue).toBe(json.totals.failed)

    // Each failed receipt with whose and which payment it is: merchant name, amount, order name, paid-at (KST).
    const rows = await page
      .locator('#failed-receipts + table tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())))
    expect(rows).toHaveLength(json.failures.length)
    const txs = await env.app
      .db()
      .selectFrom('cash_transactions as t')
      .innerJoin('merchants as m', 'm.id', 't.merchant_id')
      .select(['t.transaction_id', 'm.name', 't.amount', 't.order_name', 't.paid_at'])
      .where(
        't.transaction_id',
        'in',
        json.failures.map((f) => f.transaction_id),
      )
      .execute()
    const byId = new Map(txs.map((x) => [x.transaction_id, x]))
    for (const [id, merchant, amount, orderName, paidAt, provider] of rows) {
      const x = byId.get(id!)!
      expect([merchant, amount, orderName, provider]).toEqual([
        x.name,
        `${Number(x.amount).toLocaleString('en-US')}원`,
        x.order_name ?? '',
        json.failures.find((f) => f.transaction_id === id)!.provider,
      ])
      expect(paidAt).toBe(`${new Date(new Date(x.paid_at).getTime() + 9 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ')} KST`)
    }

    const shot = join(dir, 'report.png')
    await page.screenshot({ path: shot, fullPage: true })
    const png = await readFile(shot)
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
    expect((await stat(shot)).size).toBeGreaterThan(20_000)
    expect(requests).toEqual([])
    await page.close()
  })

  it('prints an aligned table with Korean merchant names by default', async () => {
    const r = await runCli(['report', '--run', String(runId)], env.env())
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.split('\n')
    const header = lines.findIndex((l) => l.startsWith('merchant '))
    expect(header).toBeGreaterThan(0)
    const rows = lines.slice(header, header + 2 + env.config.merchants.length)
    expect(rows.some((l) => /[가-힣]/.test(l))).toBe(true)
    // Every column of the merchant table ends at the same terminal column on every row.
    const { displayWidth } = await import('../../src/report/text-width.ts')
    const widths = new Set(rows.map((l) => displayWidth(l)))
    expect(widths.size).toBe(1)
  })
})
