/**
 * Finding one receipt (issue 22, item 1): `cash-receipts show <transaction-id | order-id |
 * approval-number>` through the real CLI, and the dashboard's search box and transaction page in
 * headless Chromium — the same content: amounts, approval number, provider receipt, every call and
 * state change, times in KST, the buyer identifier only masked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { RunningDashboard } from '../../src/http/server.ts'
import { launchChromium, type Browser } from '../helpers/browser.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'

let sandbox: Sandbox
let env: TestEnv
let dashboard: RunningDashboard
let browser: Browser
let issued: { transaction_id: string; approval_number: string; order_id: string; total_amount: number; identifier: string }
let dayRows: readonly Record<string, string | undefined>[]

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  env.app.startWorker({ concurrency: 4 })
  const day = await importDay(env.app, { businessDate: '2026-09-14', count: 8, seed: 5, providers: ['payssam', 'nts'], idPrefix: 'LOOK' })
  const run = await settle(env.app, '2026-09-14')
  await waitForRun(env.app, run.runId!, 120_000)
  const r = await env.app
    .db()
    .selectFrom('receipts as r')
    .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
    .select(['r.transaction_id', 'r.approval_number', 't.order_id', 'r.total_amount'])
    .where('r.state', '=', 'issued')
    .where('t.identifier_masked', 'is not', null)
    .orderBy('r.id')
    .executeTakeFirstOrThrow()
  dayRows = day.rows
  const row = day.rows.find((x) => x.transaction_id === r.transaction_id)!
  issued = { transaction_id: r.transaction_id, approval_number: r.approval_number!, order_id: r.order_id!, total_amount: Number(r.total_amount), identifier: row.identifier ?? '' }
  dashboard = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
  browser = await launchChromium()
}, 180_000)

afterAll(async () => {
  await browser?.close()
  await dashboard?.close()
  await env?.close()
  await sandbox?.close()
})

describe('cash-receipts show', () => {
  it('finds a transaction by id, order id or approval number, with its receipts, calls and history', async () => {
    const [byId, byOrder, byApproval, missing] = await Promise.all([
      runCli(['show', issued.transaction_id, '--json'], env.env()),
      runCli(['show', issued.order_id, '--json'], env.env()),
      runCli(['show', issued.approval_number], env.env()),
      runCli(['show', 'NO-SUCH-THING'], env.env()),
    ])
    expect(byId.code, byId.stderr).toBe(0)
    const found = JSON.parse(byId.stdout)
    expect(found.transactions).toHaveLength(1)
    const t = found.transactions[0]
    expect(t).toMatchObject({ transaction_id: issued.transaction_id, matched_by: 'transaction_id', order_id: issued.order_id })
    const receipt = t.receipts.find((r: { kind: string }) => r.kind === 'issue')
    expect(receipt).toMatchObject({ state: 'issued', approval_number: issued.approval_number })
    expect(receipt.amounts.total).toBe(issued.total_amount)
    expect(receipt.amounts.supply + receipt.amounts.vat + receipt.amounts.tax_free + receipt.amounts.service_fee).toBe(issued.total_amount)
    expect(receipt.calls.length).toBeGreaterThan(0)
    expect(receipt.history.map((h: { event: string }) => h.event)).toEqual(expect.arrayContaining(['created', 'issue', 'issued']))
    // the ledger's own record: created by settlement, claimed by attempt 1, issued by it
    // (a throttle deferral may put an attempt off: issuing → pending, deferred, then claimed again)
    const steps = receipt.transitions.map((s: { from_state: string | null; to_state: string; cause: string }) => [s.from_state, s.to_state, s.cause])
    expect(steps[0]).toEqual([null, 'pending', 'settle'])
    expect(steps.at(-1)).toEqual(['issuing', 'issued', expect.stringMatching(/^(attempt:\d+|lookup)$/)])
    for (let i = 1; i < steps.length; i++) expect(steps[i][0]).toBe(steps[i - 1][1])
    expect(receipt.transitions[0].run_id).toBe(receipt.run_id)
    expect(receipt.transitions.at(-1).job_id).toMatch(/\S/)
    expect(byId.stdout).not.toContain(issued.identifier)

    expect(JSON.parse(byOrder.stdout).transactions[0]).toMatchObject({ transaction_id: issued.transaction_id, matched_by: 'order_id' })

    expect(byApproval.code, byApproval.stderr).toBe(0)
    expect(byApproval.stdout).toContain(`Transaction ${issued.transaction_id} (matched by approval number)`)
    expect(byApproval.stdout).toContain(`approval number ${issued.approval_number}`)
    expect(byApproval.stdout).toMatch(/ KST {2}issued/)
    expect(byApproval.stdout).toContain('transitions:')
    expect(byApproval.stdout).toMatch(/\(created\) +│? *pending +│? *settle/)
    expect(byApproval.stdout).not.toContain(issued.identifier)

    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('no transaction, order, approval number or buyer identifier "NO-SUCH-THING"')
  })
})

describe('cash-receipts receipt (reprint)', () => {
  it('writes the printable 현금영수증 with the masked business number and approval number; the dashboard links the same page', async () => {
    const { mkdtemp, readFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const out = join(await mkdtemp(join(tmpdir(), 'crt-receipt-')), 'r.html')
    const [r, missing] = await Promise.all([
      runCli(['receipt', issued.transaction_id, '--out', out], env.env()),
      runCli(['receipt', 'NO-SUCH-THING', '--out', out + '.x'], env.env()),
    ])
    expect(r.code, r.stderr).toBe(0)
    const page = await readFile(out, 'utf8')
    const m = await env.app
      .db()
      .selectFrom('receipts as r')
      .innerJoin('merchants as m', 'm.id', 'r.merchant_id')
      .select(['m.business_number_masked', 'm.name'])
      .where('r.transaction_id', '=', issued.transaction_id)
      .executeTakeFirstOrThrow()
    for (const s of [
      '<html lang="ko">',
      '현금영수증',
      '공급가액',
      '부가세',
      '봉사료',
      '합계',
      issued.approval_number,
      m.business_number_masked,
      m.name,
      `${issued.total_amount.toLocaleString('en-US')}원`,
    ]) {
      expect(page).toContain(s)
    }
    expect(page).not.toContain(issued.identifier)
    expect(page).not.toContain('취소</span>')
    expect(missing.code).toBe(2)

    const tab = await browser.context.newPage()
    await tab.goto(`${dashboard.url}/transactions/${encodeURIComponent(issued.transaction_id)}`)
    await tab.locator('a.print').click()
    await tab.waitForURL(/\/receipt$/)
    expect(await tab.locator('.receipt .approval').innerText()).toBe(issued.approval_number)
    await tab.close()
  })
})

describe('dashboard search and transaction page', () => {
  it('the search box finds the transaction by approval number and its page shows the receipt and its history', async () => {
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/`)
    await page.locator('header nav a[href="/search"]').click()
    await page.locator('#search-form input[name="q"]').fill(issued.approval_number)
    await page.locator('#search-form button').click()
    await page.waitForURL(`${dashboard.url}/transactions/${encodeURIComponent(issued.transaction_id)}`)
    const receipt = page.locator('section.receipt[data-state="issued"]')
    expect(await receipt.count()).toBe(1)
    expect(await receipt.locator('.approval').innerText()).toBe(issued.approval_number)
    expect(await receipt.locator('table.history tbody tr').count()).toBeGreaterThanOrEqual(3)
    const text = await page.locator('main').innerText()
    expect(text).toContain(`${issued.total_amount.toLocaleString('en-US')}원`)
    expect(text).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d KST/)
    expect(text).not.toContain(issued.identifier)

    await page.goto(`${dashboard.url}/search?q=NO-SUCH-THING`)
    expect(await page.locator('#search-none').innerText()).toContain('NO-SUCH-THING')
    const notFound = await page.goto(`${dashboard.url}/transactions/NO-SUCH-THING`)
    expect(notFound?.status()).toBe(404)
    await page.close()
  })

  it('the search box finds a buyer by identifier through its keyed hash, posted, never in a URL or shown raw', async () => {
    // A buyer with a phone number, typed the way a person would (hyphens), searched as its digits.
    const buyer = await env.app
      .db()
      .selectFrom('cash_transactions')
      .select(['transaction_id'])
      .where('identifier_type', '=', 'phone')
      .orderBy('transaction_id')
      .executeTakeFirstOrThrow()
    const digits = dayRows.find((x) => x.transaction_id === buyer.transaction_id)!.identifier!.replace(/\D/g, '')
    const typed = `${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`
    const mine = (
      await env.app
        .db()
        .selectFrom('cash_transactions')
        .select('transaction_id')
        .where(
          'identifier_search',
          '=',
          (await env.app.db().selectFrom('cash_transactions').select('identifier_search').where('transaction_id', '=', buyer.transaction_id).executeTakeFirstOrThrow())
            .identifier_search,
        )
        .execute()
    ).map((r) => r.transaction_id)
    const urls: string[] = []
    const page = await browser.context.newPage()
    page.on('request', (req) => urls.push(req.url()))
    await page.goto(`${dashboard.url}/search`)
    await page.locator('#search-form input[name="q"]').fill(typed)
    await page.locator('#search-form button').click()
    if (mine.length === 1) {
      await page.waitForURL(`${dashboard.url}/transactions/${encodeURIComponent(buyer.transaction_id)}`)
    } else {
      await page.locator('#search-results').waitFor()
      expect(await page.locator('#search-results tbody tr').count()).toBe(mine.length)
      expect(await page.locator('main').innerText()).toContain(buyer.transaction_id)
    }
    const html = await page.content()
    for (const raw of [digits, typed, digits.slice(3)]) {
      expect(html).not.toContain(raw)
      for (const u of urls) expect(u).not.toContain(digits.slice(3))
    }

    // A wrong identifier: nothing found, shown masked, the box left empty.
    const wrong = typed.replace(/\d{4}$/, (d) => String((Number(d) + 1) % 10_000).padStart(4, '0'))
    await page.locator('#search-form input[name="q"]').fill(wrong)
    await page.locator('#search-form button').click()
    await page.locator('#search-none').waitFor()
    expect(await page.locator('#search-none').innerText()).toContain('****')
    expect(await page.content()).not.toContain(wrong.replace(/\D/g, '').slice(3))
    expect(await page.locator('#search-form input[name="q"]').inputValue()).toBe('')
    await page.close()

    // HTTP level: POST finds it (303 to the transaction, or the list); GET does not search identifiers.
    const post = await fetch(`${dashboard.url}/search`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ q: typed }),
    })
    if (mine.length === 1) expect(post.headers.get('location')).toBe(`/transactions/${encodeURIComponent(buyer.transaction_id)}`)
    else expect(await post.text()).toContain(buyer.transaction_id)
    const get = await fetch(`${dashboard.url}/search?q=${encodeURIComponent(typed)}`)
    const body = await get.text()
    expect(body).toContain('id="search-none"')
    expect(body).not.toContain(digits.slice(3))

    // The CLI finds the same transactions, and prints the identifier masked only.
    const [shown, none] = await Promise.all([runCli(['show', typed, '--json'], env.env()), runCli(['show', wrong], env.env())])
    expect(shown.code, shown.stderr).toBe(0)
    const lookup = JSON.parse(shown.stdout)
    expect(lookup.transactions.map((t: { transaction_id: string }) => t.transaction_id).sort()).toEqual([...mine].sort())
    expect(lookup.transactions.every((t: { matched_by: string }) => t.matched_by === 'buyer_identifier')).toBe(true)
    expect(shown.stdout + shown.stderr).not.toContain(digits.slice(3))
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('****')
    expect(none.stderr).not.toContain(wrong.replace(/\D/g, '').slice(3))
  })

  it('the period totals page shows the month of the issued receipts, issued minus cancelled, with a merchant filter', async () => {
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/totals?from=2026-09-01&to=2026-09-30`)
    expect(await page.locator('html').getAttribute('lang')).toBe('ko')
    expect(await page.locator('#period-table tbody tr[data-month="2026-09"]').count()).toBeGreaterThan(0)
    const totalRow = await page.locator('#period-total').innerText()
    expect(totalRow).toContain('합계')
    await page.locator('#totals-form select[name="merchant"]').selectOption('m-clinic')
    await page.locator('#totals-form button').click()
    await page.waitForURL(/merchant=m-clinic/)
    const merchants = await page.locator('#period-table tbody tr[data-merchant]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-merchant')))
    expect(merchants.every((m) => m === 'm-clinic')).toBe(true)
    expect((await page.goto(`${dashboard.url}/totals?from=2026-13-01`))?.status()).toBe(400)
    await page.close()
  })
})

describe('every attempt and the provider receipt URL', () => {
  it('show, the receipt page and the printable receipt list each call and link the provider receipt', async () => {
    // Toss gives a receipt URL; its first call tonight fails (5xx), so the receipt takes more than one call.
    sandbox.forceNext('toss', ['5xx'])
    await importDay(env.app, { businessDate: '2026-09-16', count: 4, seed: 9, providers: ['toss'], idPrefix: 'LOOKT' })
    await waitForRun(env.app, (await settle(env.app, '2026-09-16')).runId!, 120_000)
    const db = env.app.db()
    const tossIssued = await db
      .selectFrom('receipts')
      .select(['id', 'transaction_id', 'receipt_url', 'provider_receipt_id'])
      .where('provider', '=', 'toss')
      .where('state', '=', 'issued')
      .where('kind', '=', 'issue')
      .orderBy('id')
      .execute()
    const attemptsOf = (id: number) => db.selectFrom('issuance_attempts').select(['operation']).where('receipt_id', '=', id).execute()
    let target: (typeof tossIssued)[number] | undefined
    let calls: { operation: string }[] = []
    for (const r of tossIssued) {
      const a = await attemptsOf(r.id)
      if (a.length > calls.length) [target, calls] = [r, a]
    }
    expect(target, 'a Toss receipt issued').toBeDefined()
    expect(calls.length, 'the forced 5xx made one receipt take a second call').toBeGreaterThanOrEqual(2)
    expect(target!.receipt_url).toMatch(/^https:\/\/dashboard\.tosspayments\.com\//)

    // show --json: the provider receipt id and URL, and one entry per call
    const shown = await runCli(['show', target!.transaction_id, '--json'], env.env())
    expect(shown.code, shown.stderr).toBe(0)
    const receipt = JSON.parse(shown.stdout).transactions[0].receipts.find((r: { kind: string }) => r.kind === 'issue')
    expect(receipt).toMatchObject({ provider_receipt_id: target!.provider_receipt_id, receipt_url: target!.receipt_url })
    expect(receipt.calls.map((c: { operation: string }) => c.operation)).toEqual(calls.map((c) => c.operation))
    expect(receipt.calls.some((c: { http_status: number | null }) => c.http_status === 500 || c.http_status === 503)).toBe(true)

    // the receipt page: every call is a history row, and the provider's receipt is linked
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(target!.transaction_id)}`)
    const section = page.locator(`section.receipt[data-receipt="${target!.id}"]`)
    for (const op of new Set(calls.map((c) => c.operation))) {
      expect(await section.locator(`table.history tbody tr[data-event="${op}"]`).count()).toBe(calls.filter((c) => c.operation === op).length)
    }
    expect(await section.locator('a[rel~="noopener"]').getAttribute('href')).toBe(target!.receipt_url)

    // the printable receipt links it too
    await section.locator('a.print').click()
    await page.waitForURL(/\/receipt$/)
    expect(await page.locator(`a[href="${target!.receipt_url}"]`).innerText()).toBe('발급사 영수증 보기')
    await page.close()
  }, 180_000)
})

describe('the printable receipt of a cancelled receipt', () => {
  it('shows trade time, purpose and masked identifier, and marks a full cancellation 취소 and a partial one 부분취소', async () => {
    const { mkdtemp, readFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = await mkdtemp(join(tmpdir(), 'crt-receipt-cancel-'))
    const db = env.app.db()
    // two NTS receipts of the first day other than the one the tests above look at (NTS cancels in part)
    const rows = await db
      .selectFrom('receipts as r')
      .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
      .select(['r.transaction_id', 'r.total_amount', 't.identifier_masked', 't.purpose'])
      .where('r.provider', '=', 'nts')
      .where('r.kind', '=', 'issue')
      .where('r.state', '=', 'issued')
      .where('r.cancelled_amount', '=', 0)
      .where('r.total_amount', '>=', 2_000)
      .where('t.identifier_masked', 'is not', null)
      .where('r.transaction_id', '!=', issued.transaction_id)
      .orderBy('r.id')
      .limit(2)
      .execute()
    expect(rows).toHaveLength(2)
    const [full, part] = rows as [(typeof rows)[number], (typeof rows)[number]]
    const [a, b] = await Promise.all([
      runCli(['cancel', full.transaction_id, '--wait', '--json'], env.env()),
      runCli(['cancel', part.transaction_id, '--amount', '1000', '--wait', '--json'], env.env()),
    ])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    expect(JSON.parse(b.stdout)).toMatchObject({ partial: true, state: 'cancelled' })

    const print = async (id: string) => {
      const out = join(dir, `${id}.html`)
      const r = await runCli(['receipt', id, '--out', out], env.env())
      expect(r.code, r.stderr).toBe(0)
      return readFile(out, 'utf8')
    }
    const paid = async (id: string) => (await db.selectFrom('cash_transactions').select('paid_at').where('transaction_id', '=', id).executeTakeFirstOrThrow()).paid_at
    const kst = (d: Date) => new Date(d.getTime() + 9 * 3_600_000).toISOString().slice(0, 16).replace('T', ' ')
    const purpose = (p: string) => (p === 'deduction' ? '소득공제' : '지출증빙')

    const fullPage = await print(full.transaction_id)
    expect(fullPage).toContain('<span class="stamp">취소</span>')
    for (const s of ['거래일시', kst(await paid(full.transaction_id)), '거래구분', purpose(full.purpose), '식별번호', full.identifier_masked!]) expect(fullPage).toContain(s)

    const partPage = await print(part.transaction_id)
    expect(partPage).toContain('<span class="stamp">부분취소</span>')
    expect(partPage).toContain('취소금액')
    expect(partPage).toContain('-1,000원')
    expect(partPage).toContain(`${(Number(part.total_amount) - 1_000).toLocaleString('en-US')}원`)
    for (const s of [kst(await paid(part.transaction_id)), purpose(part.purpose), part.identifier_masked!]) expect(partPage).toContain(s)
  }, 180_000)
})
