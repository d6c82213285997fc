/**
 * `npm run screenshots`: the dashboard, the printable receipt and the period totals as PNGs in
 * docs/screenshots/, taken from a seeded run — a generated day of the demo's merchants issued
 * through the provider sandbox (one provider failing for a while, so the run has failures and a
 * re-drive, and one receipt cancelled, so a receipt page shows its transitions).
 *
 * It prepares its own databases (namespace `shots`, like `npm run chaos`), so it runs beside a test
 * run. Before writing a picture it checks, in the page, that its Korean text rendered as glyphs and
 * not as tofu boxes (test/helpers/glyphs.ts): a machine without CJK fonts gets an error, not
 * pictures of boxes.
 */
process.env.TEST_DB_NS ??= 'shots'
const { default: prepareDatabases } = await import('../global-setup.ts')
const { mkdir, mkdtemp, rm, writeFile } = await import('node:fs/promises')
const { tmpdir } = await import('node:os')
const { generateDay, toCsv } = await import('../../src/demo/generate.ts')
const { importTransactions } = await import('../../src/import/import-transactions.ts')
const { join, relative } = await import('node:path')
const { startSandbox } = await import('../../sandbox/index.ts')
const { kstToday, kstYesterday } = await import('../../src/domain/index.ts')
const { createTestEnv, eventually } = await import('../helpers/test-env.ts')
const { importDay, settle, waitForRun, ROOT } = await import('../helpers/pipeline.ts')
const { launchChromium } = await import('../helpers/browser.ts')
const { glyphReport, tofu } = await import('../helpers/glyphs.ts')

const OUT = join(ROOT, 'docs', 'screenshots')
/** A made-up phone number (the demo's data is generated, no real person's). */
const REGULAR_BUYER = '01055501234'
const say = (m: string) => process.stderr.write(`» ${m}\n`)

await prepareDatabases()
const sandbox = await startSandbox({ port: 0 })
const env = await createTestEnv({ sandboxUrl: sandbox.url, env: { WORKER_ATTEMPTS: '2' } })
let browser: Awaited<ReturnType<typeof launchChromium>> | undefined
let dashboard: Awaited<ReturnType<typeof env.app.startDashboard>> | undefined
try {
  const app = env.app
  app.startWorker({ concurrency: 8 })
  const day = kstYesterday(Date.now())
  say(`importing and settling ${day} (NTS failing: some receipts fail)…`)
  sandbox.setFaults('nts:5xx=1')
  // A regular buyer with three payments, so a search by their phone number lists several transactions.
  const regular = generateDay({
    businessDate: day,
    count: 3,
    seed: 7,
    providers: ['payssam'],
    idPrefix: 'REGULAR',
    merchants: app.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
  })
  const tmp = await mkdtemp(join(tmpdir(), 'crt-shots-'))
  await writeFile(
    join(tmp, 'regular.csv'),
    toCsv({
      ...regular,
      rows: regular.rows.map((r) => ({
        ...r,
        identifier: REGULAR_BUYER,
        identifier_type: '',
        purpose: 'deduction',
        buyer_name: '홍길동',
      })),
    }),
  )
  const imported = await importTransactions(app.db(), app.config.dataKeys, join(tmp, 'regular.csv'), {
    nowMs: Date.now(),
  })
  if (!imported.written || imported.errors.length) {
    throw new Error(`the regular buyer's rows did not import: ${JSON.stringify(imported.errors)}`)
  }
  await rm(tmp, { recursive: true, force: true })
  await importDay(app, { businessDate: day, count: 60, seed: 22, idPrefix: 'SHOT' }, (p) => sandbox.registerPortonePayments(p.map((x) => ({ ...x, status: 'paid' as const }))))
  const runId = (await settle(app, day)).runId!
  await waitForRun(app, runId, 180_000)
  sandbox.setFaults('')
  say('re-driving the failures with NTS back…')
  const redriven = await app.redrive({ runId })
  if (redriven.runId !== null) await waitForRun(app, redriven.runId, 180_000)

  const issued = await app
    .db()
    .selectFrom('receipts as r')
    .innerJoin('cash_transactions as t', 't.transaction_id', 'r.transaction_id')
    .select(['r.transaction_id', 'r.approval_number', 'r.total_amount', 'r.provider'])
    .where('r.state', '=', 'issued')
    .where('r.kind', '=', 'issue')
    .where('t.identifier_masked', 'is not', null)
    .where('r.provider', 'in', ['payssam', 'portone-v2', 'toss'])
    .orderBy('r.id')
    .limit(2)
    .execute()
  if (issued.length < 2) throw new Error('the seeded run issued too few receipts to show')
  const [shown, cancelled] = issued as [(typeof issued)[0], (typeof issued)[0]]
  say(`cancelling ${cancelled.transaction_id}…`)
  const req = await app.cancel({ transactionId: cancelled.transaction_id, reason: 1 })
  await eventually(async () => {
    const r = await app.db().selectFrom('receipts').select('state').where('id', '=', req.cancelReceiptId).executeTakeFirst()
    return r && (r.state === 'issued' || r.state === 'failed')
  }, 60_000)

  dashboard = await app.startDashboard({ port: 0, host: '127.0.0.1' })
  browser = await launchChromium() // Accept-Language ko-KR, as a Korean operator's browser
  await mkdir(OUT, { recursive: true })
  const page = await browser.context.newPage()
  await page.setViewportSize({ width: 1200, height: 800 })
  const tx = (id: string) => `/transactions/${encodeURIComponent(id)}`

  const shots: { file: string; path: string; korean: string; before?: () => Promise<void> }[] = [
    { file: 'dashboard-home.png', path: '/', korean: 'header h1' },
    { file: 'run.png', path: `/runs/${runId}`, korean: 'header h1' },
    {
      file: 'search.png',
      path: '/search',
      korean: 'header h1',
      before: async () => {
        await page.locator('#search-form input[name="q"]').fill(REGULAR_BUYER)
        await Promise.all([page.waitForURL(/\/search/), page.locator('#search-form button[type="submit"]').click()])
        await page.locator('#search-results').waitFor()
      },
    },
    { file: 'receipt-page.png', path: tx(cancelled.transaction_id), korean: 'section.receipt h2' },
    { file: 'printable-receipt.png', path: `${tx(shown.transaction_id)}/receipt`, korean: '.receipt h1' },
    {
      file: 'printable-receipt-cancelled.png',
      path: `${tx(cancelled.transaction_id)}/receipt`,
      korean: '.receipt h1',
    },
    {
      file: 'period-totals.png',
      path: `/totals?from=${day.slice(0, 7)}-01&to=${kstToday(Date.now())}`,
      korean: '#period-totals h2',
    },
    { file: 'receipt-page-en.png', path: `${tx(cancelled.transaction_id)}?lang=en`, korean: '' },
  ]
  for (const s of shots) {
    await page.goto(`${dashboard.url}${s.path}`)
    await s.before?.()
    if (s.korean) {
      const g = await glyphReport(page, s.korean)
      const boxes = tofu(g)
      if (boxes.length) {
        throw new Error(`${s.path}: Korean renders as boxes (${boxes.join('')}); install CJK fonts (Debian: fonts-noto-cjk)`)
      }
    }
    const file = join(OUT, s.file)
    await writeFile(file, await page.screenshot({ fullPage: true }))
    say(`wrote ${relative(ROOT, file)}`)
  }
} finally {
  await browser?.close()
  await dashboard?.close()
  await env.close()
  await sandbox.close()
}
process.exit(0)
