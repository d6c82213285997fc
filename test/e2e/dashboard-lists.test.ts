/**
 * The dashboard's lists in a real browser (headless Chromium): the merchant filter (a select of the
 * known merchants) and keyset pages on the runs list, a run's failures and the search results, with
 * next / previous links that keep the filters and a page that stays put while rows are inserted; the
 * failure table's merchant name, amount, order name and paid-at (KST) beside the error; and the
 * receipt page's transition history as the ledger recorded it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Page } from 'playwright-core'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { RunningDashboard } from '../../src/http/server.ts'
import { kstDateTime } from '../../src/domain/index.ts'
import { recordAudit } from '../../src/db/audit.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'
import { launchChromium, type Browser } from '../helpers/browser.ts'

let sandbox: Sandbox
let env: TestEnv
let dashboard: RunningDashboard
let browser: Browser
let page: Page
let runId: number

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '1' } })
  env.app.startWorker({ concurrency: 8 })
  // PaySsam is down: every one of its receipts fails, across the configured merchants.
  sandbox.setFaults('payssam:5xx=1')
  await importDay(env.app, { businessDate: '2026-11-09', count: 70, seed: 31, providers: ['payssam'], idPrefix: 'LST' })
  runId = (await settle(env.app, '2026-11-09')).runId!
  await waitForRun(env.app, runId, 120_000)
  dashboard = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
  browser = await launchChromium()
  page = await browser.context.newPage()
}, 180_000)

afterAll(async () => {
  await browser?.close()
  await dashboard?.close()
  await env?.close()
  await sandbox?.close()
})

const db = () => env.app.db()
const texts = (selector: string) => page.locator(selector).allInnerTexts()
const attrs = async (selector: string, name: string) => (await page.locator(selector).evaluateAll((els, n) => els.map((e) => e.getAttribute(n)), name)) as string[]

/** Follows `a.next` from the current page to the last, collecting `key` of every row on the way. */
async function walkNext(rowSelector: string, key: string): Promise<string[]> {
  const seen = [...(await attrs(rowSelector, key))]
  for (let i = 0; i < 50 && (await page.locator('a.next').count()); i++) {
    await page.locator('a.next').click()
    seen.push(...(await attrs(rowSelector, key)))
  }
  return seen
}

describe("a run's failures", () => {
  it('shows merchant name, amount, order name and paid-at (KST) beside each error', async () => {
    await page.goto(`${dashboard.url}/runs/${runId}/failures?lang=en&size=20`)
    const expected = await db()
      .selectFrom('receipts as r')
      .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
      .innerJoin('merchants as m', 'm.id', 'r.merchant_id')
      .select(['r.id', 'm.name', 'r.total_amount', 't.order_name', 't.paid_at'])
      .where('r.run_id', '=', runId)
      .where('r.state', '=', 'failed')
      .orderBy('r.id')
      .limit(20)
      .execute()
    expect(expected.length).toBe(20)
    expect(await texts('#failures thead th')).toEqual(expect.arrayContaining(['merchant', 'amount', 'order name', 'paid at (KST)', 'message']))
    const rows = page.locator('#failures tbody tr')
    expect(await rows.count()).toBe(20)
    for (const [i, e] of expected.entries()) {
      const row = rows.nth(i)
      expect(await row.getAttribute('data-receipt')).toBe(String(e.id))
      expect(await row.locator('td.merchant').innerText()).toContain(e.name)
      expect(await row.locator('td.amount').innerText()).toBe(`₩${Number(e.total_amount).toLocaleString('en-US')}`)
      expect(await row.locator('td.order-name').innerText()).toBe(e.order_name ?? '')
      expect(await row.locator('td.paid-at').innerText()).toBe(kstDateTime(e.paid_at))
    }
    // Korean by default: the same columns under Korean headings, amounts in 원
    await page.goto(`${dashboard.url}/runs/${runId}/failures?size=20`)
    expect(await texts('#failures thead th')).toEqual(expect.arrayContaining(['가맹점', '금액', '주문명', '결제 시각 (한국시간)']))
    expect(await page.locator('#failures tbody tr td.amount').first().innerText()).toBe(`${Number(expected[0]!.total_amount).toLocaleString('en-US')}원`)
  })

  it('pages by keyset with the filters kept, and filters by a merchant chosen from the select', async () => {
    const all = await db().selectFrom('receipts').select(['id', 'merchant_id']).where('run_id', '=', runId).where('state', '=', 'failed').orderBy('id').execute()
    expect(all.length).toBeGreaterThan(40)
    await page.goto(`${dashboard.url}/runs/${runId}/failures?provider=payssam&size=20`)
    expect(await page.locator('a.previous').count()).toBe(0)
    // every link keeps the provider filter and the page size
    const next = (await page.locator('a.next').getAttribute('href'))!
    expect(next).toContain('provider=payssam')
    expect(next).toContain('size=20')
    expect(next).toMatch(/after=\d+/)
    const walked = await walkNext('#failures tbody tr', 'data-receipt')
    expect(walked).toEqual(all.map((r) => String(r.id)))
    // back one page from the last: the page before it, in order
    await page.locator('a.previous').click()
    const lastStart = 20 * (Math.ceil(all.length / 20) - 1)
    expect(await attrs('#failures tbody tr', 'data-receipt')).toEqual(all.slice(lastStart - 20, lastStart).map((r) => String(r.id)))

    // the merchant select offers the configured merchants; choosing one lists only its failures
    const merchants = await db().selectFrom('merchants').select('id').orderBy('id').execute()
    const options = await attrs('#failure-filters select[name="merchant"] option', 'value')
    expect(options).toEqual(['', ...merchants.map((m) => m.id)])
    const counts = new Map<string, number>()
    for (const r of all) counts.set(r.merchant_id, (counts.get(r.merchant_id) ?? 0) + 1)
    const [merchant] = [...counts].sort((a, b) => b[1] - a[1])[0]!
    await page.goto(`${dashboard.url}/runs/${runId}/failures?size=20`)
    await page.locator('#failure-filters select[name="merchant"]').selectOption(merchant)
    await page.locator('#failure-filters button[type="submit"]').click()
    expect(new URL(page.url()).searchParams.get('merchant')).toBe(merchant)
    const mine = all.filter((r) => r.merchant_id === merchant).map((r) => String(r.id))
    expect(await page.locator('#failure-count').getAttribute('data-count')).toBe(String(mine.length))
    expect(await walkNext('#failures tbody tr', 'data-receipt')).toEqual(mine)
    expect(new Set(await attrs('#failures tbody tr', 'data-merchant'))).toEqual(new Set([merchant]))
    expect(await page.locator('select[name="merchant"] option[selected]').getAttribute('value')).toBe(merchant)
  })
})

describe('the runs list', () => {
  it('pages newest first, stable while runs are added, and filters by merchant', async () => {
    const merchants = await db().selectFrom('merchants').select('id').orderBy('id').execute()
    const other = merchants.at(-1)!.id
    // forty re-drive runs more (half scoped to one merchant), so the list has three pages of 20
    for (let i = 0; i < 40; i++) {
      await db()
        .insertInto('settlement_runs')
        .values({ business_date: '2026-11-10', trigger: 'redrive', merchant_scope: i % 2 ? other : '*' })
        .execute()
    }
    const ids = (await db().selectFrom('settlement_runs').select('id').orderBy('id', 'desc').execute()).map((r) => String(r.id))
    await page.goto(`${dashboard.url}/?size=20&lang=en`)
    const first = await attrs('#runs tbody tr', 'data-run')
    expect(first).toEqual(ids.slice(0, 20))
    // a run starts while the reader is on page one: the next page continues after the last row shown,
    // repeating none and skipping none (an offset would have shifted by one)
    await db().insertInto('settlement_runs').values({ business_date: '2026-11-11', trigger: 'redrive' }).execute()
    const next = (await page.locator('a.next').getAttribute('href'))!
    expect(next).toContain('lang=en')
    await page.locator('a.next').click()
    expect(await attrs('#runs tbody tr', 'data-run')).toEqual(ids.slice(20, 40))
    await page.locator('a.next').click()
    expect(await attrs('#runs tbody tr', 'data-run')).toEqual(ids.slice(40))
    expect(await page.locator('a.next').count()).toBe(0)
    await page.locator('a.previous').click()
    expect(await attrs('#runs tbody tr', 'data-run')).toEqual(ids.slice(20, 40))

    // by merchant: the runs scoped to it or holding its receipts
    await page.goto(`${dashboard.url}/?size=20`)
    await page.locator('#runs-filters select[name="merchant"]').selectOption(other)
    await page.locator('#runs-filters button[type="submit"]').click()
    const scoped = await db()
      .selectFrom('settlement_runs as s')
      .select('s.id')
      .where((eb) =>
        eb.or([
          eb('s.merchant_scope', '=', other),
          eb.exists(
            eb
              .selectFrom('receipts as r')
              .select('r.id')
              .where('r.merchant_id', '=', other)
              .where((w) => w.or([w('r.run_id', '=', w.ref('s.id')), w('r.last_run_id', '=', w.ref('s.id'))])),
          ),
        ]),
      )
      .orderBy('s.id', 'desc')
      .execute()
    expect(scoped.length).toBeGreaterThan(20)
    const walked = await walkNext('#runs tbody tr', 'data-run')
    expect(walked).toEqual(scoped.map((r) => String(r.id)))
    expect(walked).not.toContain(ids[1]) // an unscoped re-drive run with no receipts of the merchant
  })
})

describe('the audit log', () => {
  it('pages newest first and filters by the merchant an action names', async () => {
    const merchant = (await db().selectFrom('merchants').select('id').orderBy('id').executeTakeFirstOrThrow()).id
    for (let i = 0; i < 25; i++) {
      await recordAudit(db(), {
        actor: 'ops-test',
        action: 'notify-redrive',
        selectors: i % 5 === 0 ? { channel: 'email', merchant } : { channel: 'sms' },
        counts: { notifications: i },
      })
    }
    const ids = (await db().selectFrom('audit_log').select('id').orderBy('id', 'desc').execute()).map((r) => String(r.id))
    await page.goto(`${dashboard.url}/audit?size=20`)
    expect(await walkNext('#audit tbody tr', 'data-audit')).toEqual(ids)
    await page.locator('#audit-filters select[name="merchant"]').selectOption(merchant)
    await page.locator('#audit-filters button[type="submit"]').click()
    expect(await attrs('#audit tbody tr', 'data-audit')).toHaveLength(5)
  })
})

describe('search results', () => {
  it('page by transaction id and filter by merchant', async () => {
    // 25 transactions share one order id (a merchant's order split over payments)
    const txs = await db()
      .selectFrom('cash_transactions')
      .select(['transaction_id', 'merchant_id'])
      .where('business_date', '=', '2026-11-09')
      .orderBy('transaction_id')
      .limit(25)
      .execute()
    await db()
      .updateTable('cash_transactions')
      .set({ order_id: 'ORDER-SPLIT' })
      .where(
        'transaction_id',
        'in',
        txs.map((t) => t.transaction_id),
      )
      .execute()
    const ids = txs.map((t) => t.transaction_id)
    await page.goto(`${dashboard.url}/search?q=ORDER-SPLIT&size=20`)
    const linkOf = async () => (await page.locator('#search-results tbody tr td:first-child').allInnerTexts()).map((s) => s.trim())
    expect(await linkOf()).toEqual(ids.slice(0, 20))
    expect(await page.locator('a.next').getAttribute('href')).toContain('q=ORDER-SPLIT')
    await page.locator('a.next').click()
    expect(await linkOf()).toEqual(ids.slice(20))
    await page.locator('a.previous').click()
    expect(await linkOf()).toEqual(ids.slice(0, 20))

    const merchant = txs[0]!.merchant_id
    await page.locator('#search-form select[name="merchant"]').selectOption(merchant)
    await page.locator('#search-form button[type="submit"]').click()
    const mine = txs.filter((t) => t.merchant_id === merchant).map((t) => t.transaction_id)
    expect(await walkNext('#search-results tbody tr', 'data-merchant')).toEqual(mine.map(() => merchant))
  })
})

describe('a receipt page', () => {
  it('shows the transition history the ledger recorded, from creation to the state shown', async () => {
    const failed = await db()
      .selectFrom('receipts')
      .select(['id', 'transaction_id', 'state'])
      .where('run_id', '=', runId)
      .where('state', '=', 'failed')
      .orderBy('id')
      .executeTakeFirstOrThrow()
    await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(failed.transaction_id)}?lang=en`)
    const section = page.locator(`section.receipt[data-receipt="${failed.id}"]`)
    expect(await section.locator('h3').allInnerTexts()).toContain('State transitions')
    const rows = section.locator('table.transitions tbody tr')
    const steps = await rows.evaluateAll((els) => els.map((e) => [e.getAttribute('data-from'), e.getAttribute('data-to'), e.getAttribute('data-cause')]))
    // created by settlement, then claims and outcomes (a throttle deferral may put one attempt off),
    // each step from where the last ended, ending failed by an attempt
    expect(steps[0]).toEqual(['', 'pending', 'settle'])
    expect(steps.at(-1)).toEqual(['issuing', 'failed', expect.stringMatching(/^attempt:\d+$/)])
    for (let i = 1; i < steps.length; i++) expect(steps[i]![0]).toBe(steps[i - 1]![1])
    expect(await rows.first().locator('td').nth(1).innerText()).toBe('(created)')
    expect(await rows.first().locator('a').getAttribute('href')).toBe(`/runs/${runId}?lang=en`)
    await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(failed.transaction_id)}`)
    expect(await page.locator(`section.receipt[data-receipt="${failed.id}"] h3`).allInnerTexts()).toContain('상태 변경 기록')
  })
})
