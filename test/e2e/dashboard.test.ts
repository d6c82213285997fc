/**
 * The dashboard in a real browser (headless Chromium through playwright-core): a run with failures,
 * its page shows the report's totals, the re-drive button re-drives exactly what `redrive --run`
 * would, and the run's counts change as the worker issues them. Also: Bull Board renders the queues,
 * writes from another site are refused, health endpoints need no credentials.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Page } from 'playwright-core'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { RunningDashboard } from '../../src/http/server.ts'
import { buildReport, type RunReport } from '../../src/report/report.ts'
import { kstToday } from '../../src/domain/index.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, runCli, settle, spawnCli, stopChild, waitForRun } from '../helpers/pipeline.ts'
import { eventually } from '../helpers/test-env.ts'
import { launchChromium, type Browser } from '../helpers/browser.ts'

const USER = 'ops'
const PASSWORD = 'dashboard-test-password'
let sandbox: Sandbox
let env: TestEnv
let dashboard: RunningDashboard
let browser: Browser
let runId: number
let before: RunReport

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({
    sandboxUrl: sandbox.url,
    env: { WORKER_ATTEMPTS: '2', DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD },
  })
  const app = env.app
  app.startWorker({ concurrency: 8 })
  // PaySsam is down tonight: its receipts end failed, the others issue.
  sandbox.setFaults('payssam:5xx=1')
  await importDay(app, {
    businessDate: '2026-11-02',
    count: 48,
    seed: 21,
    providers: ['payssam', 'portone-v2', 'nts'],
  })
  runId = (await settle(app, '2026-11-02')).runId!
  await waitForRun(app, runId, 120_000)
  before = await buildReport(app.db(), { runId }, kstToday(Date.now()))
  dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
  browser = await launchChromium({ httpCredentials: { username: USER, password: PASSWORD } })
}, 180_000)

afterAll(async () => {
  await browser?.close()
  await dashboard?.close()
  await env?.close()
  await sandbox?.close()
})

const total = async (page: Page, key: string) => Number(await page.locator(`[data-total="${key}"] .value`).innerText())

describe('the dashboard in a browser', () => {
  it('shows the run with the totals of its report, re-drives its failures with one click, and the counts change', async () => {
    expect(before.totals.failed).toBeGreaterThan(0)
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/`)
    await page.locator(`tr[data-run="${runId}"] a`).click()
    await page.waitForURL(`${dashboard.url}/runs/${runId}`)

    for (const key of ['eligible', 'issued', 'failed', 'pending', 'skipped', 'cancelled'] as const) {
      expect(await total(page, key), key).toBe(before.totals[key])
    }
    expect(await page.locator('#chart-providers rect.bar').count()).toBeGreaterThan(0)
    // Korean by default (the browser sends Accept-Language ko-KR); ?lang=en switches and sticks.
    expect(await page.locator('html').getAttribute('lang')).toBe('ko')
    const button = page.locator('#redrive-button')
    expect(await button.innerText()).toBe(`실패한 영수증 ${before.totals.failed}건 재처리`)
    await page.goto(`${dashboard.url}/runs/${runId}?lang=en`)
    expect(await page.locator('html').getAttribute('lang')).toBe('en')
    expect(await button.innerText()).toBe(`Re-drive ${before.totals.failed} failed receipts`)
    expect(await page.locator('#failures-link').getAttribute('href')).toBe(`/runs/${runId}/failures?lang=en`)

    // The failures page lists them, filtered like `redrive --provider payssam`.
    await page.goto(`${dashboard.url}/runs/${runId}/failures?provider=payssam`)
    expect(Number(await page.locator('#failure-count').getAttribute('data-count'))).toBe(before.totals.failed)
    expect(await page.locator('#failures tbody tr').count()).toBe(before.totals.failed)
    await page.goto(`${dashboard.url}/runs/${runId}/failures?provider=nts`)
    expect(Number(await page.locator('#failure-count').getAttribute('data-count'))).toBe(0)

    sandbox.setFaults('') // the provider is back
    await page.goto(`${dashboard.url}/runs/${runId}?lang=en`)
    await page.locator('#redrive-button').click()
    // The form posts with the page's language and the answer's redirect keeps it.
    await page.waitForURL(/\/runs\/\d+\?redriven=.*&lang=en$/)
    const redriveRunId = Number(/\/runs\/(\d+)/.exec(page.url())![1])
    expect(redriveRunId).toBeGreaterThan(runId)
    expect(await page.locator('#redrive-notice').innerText()).toBe(`Re-drove ${before.totals.failed} receipts as this run (#${redriveRunId}). original run #${runId}`)
    expect(await total(page, 'eligible')).toBe(before.totals.failed)

    // The original run: its failed receipts are issued now, as the worker gets to them.
    await page.goto(`${dashboard.url}/runs/${runId}`)
    await expect
      .poll(
        async () => {
          await page.reload()
          return [await total(page, 'failed'), await total(page, 'issued')]
        },
        { timeout: 60_000, interval: 500 },
      )
      .toEqual([0, before.totals.issued + before.totals.failed])
    expect(await page.locator('#redrive-none').count()).toBe(1)

    const after = await buildReport(env.app.db(), { runId: redriveRunId })
    expect(after.totals).toMatchObject({
      eligible: before.totals.failed,
      issued: before.totals.failed,
      failed: 0,
      pending: 0,
    })
    const shots = await mkdtemp(join(tmpdir(), 'crt-dashboard-'))
    await writeFile(join(shots, 'run.png'), await page.screenshot({ fullPage: true }))
    await page.close()
  })

  it('renders Bull Board for the queues, read-only', async () => {
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/queues`)
    await expect.poll(async () => page.locator('body').innerText(), { timeout: 30_000 }).toContain('receipts')
    const res = await page.request.get(`${dashboard.url}/queues/api/queues`)
    expect(res.status()).toBe(200)
    const queues = (await res.json()) as { queues: { name: string; readOnlyMode: boolean }[] }
    expect(queues.queues.map((q) => [q.name, q.readOnlyMode]).sort()).toEqual([
      ['control', true],
      ['receipts', true],
    ])
    await page.close()
  })

  it('asks for credentials, refuses cross-site writes, and leaves health checks open', async () => {
    expect((await fetch(`${dashboard.url}/`)).status).toBe(401)
    expect((await fetch(`${dashboard.url}/`)).headers.get('www-authenticate')).toMatch(/^Basic /)
    const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`
    const crossSite = await fetch(`${dashboard.url}/redrive`, {
      method: 'POST',
      headers: {
        authorization: auth,
        origin: 'https://evil.example',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: `run=${runId}`,
    })
    expect(crossSite.status).toBe(403)
    const dry = await fetch(`${dashboard.url}/redrive`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify({ run: runId, dry_run: true }),
    })
    expect(dry.status).toBe(200)
    expect(await dry.json()).toMatchObject({ dryRun: true, count: 0 })
    const bad = await fetch(`${dashboard.url}/redrive`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'kakao' }),
    })
    expect(bad.status).toBe(400)
    expect((await fetch(`${dashboard.url}/redrive`, { headers: { authorization: auth } })).status).toBe(404)
    expect((await fetch(`${dashboard.url}/healthz`)).status).toBe(200)
    expect((await fetch(`${dashboard.url}/readyz`)).status).toBe(200)
  })

  it('`serve` as its own process: refuses a public bind without credentials, serves on loopback, stops on SIGTERM', async () => {
    const refused = await runCli(['serve', '--host', '0.0.0.0', '--port', '0'], env.env({ DASHBOARD_USER: '', DASHBOARD_PASSWORD: '' }))
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/without authentication; set DASHBOARD_TOKEN/)

    const serve = spawnCli(['serve', '--port', '0'], env.env())
    try {
      const url = await eventually(async () => /dashboard listening on (http:\/\/\S+)/.exec(serve.output())?.[1], 60_000)
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      expect((await fetch(`${url}/`)).status).toBe(401)
    } finally {
      await stopChild(serve)
    }
    expect(serve.exitCode).toBe(0)
  })
})
