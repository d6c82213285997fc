/**
 * Korean first, English available, KST everywhere (issue 22, item 5): every dashboard page, the
 * HTML run report (`report --format html`) and the printable receipt (dashboard and `receipt --out`)
 * in both languages, through the real CLI and a real dashboard; and, in headless Chromium, Korean
 * text renders as glyphs, not tofu — with a control run under a font set without CJK fonts that
 * shows the same check fails there.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { kstDateTime } from '../../src/domain/index.ts'
import type { RunningDashboard } from '../../src/http/server.ts'
import { launchChromium, type Browser } from '../helpers/browser.ts'
import { distinctHangulDrawings, glyphReport, tofu } from '../helpers/glyphs.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'

let sandbox: Sandbox
let env: TestEnv
let dashboard: RunningDashboard
let browser: Browser
let dir: string
let runId: number
let tx: { id: string; total: number }

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  env.app.startWorker({ concurrency: 4 })
  await importDay(env.app, {
    businessDate: '2026-11-16',
    count: 6,
    seed: 9,
    providers: ['payssam', 'nts'],
    idPrefix: 'LANG',
  })
  runId = (await settle(env.app, '2026-11-16')).runId!
  await waitForRun(env.app, runId, 120_000)
  const r = await env.app.db().selectFrom('receipts').select(['transaction_id', 'total_amount']).where('state', '=', 'issued').orderBy('id').executeTakeFirstOrThrow()
  tx = { id: r.transaction_id, total: Number(r.total_amount) }
  dashboard = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
  browser = await launchChromium()
  dir = await mkdtemp(join(tmpdir(), 'crt-i18n-'))
}, 180_000)

afterAll(async () => {
  await browser?.close()
  await dashboard?.close()
  await env?.close()
  await sandbox?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

const pages = () => [
  '/',
  `/runs/${runId}`,
  `/runs/${runId}/failures`,
  '/search',
  '/search?q=NO-SUCH-THING',
  `/transactions/${encodeURIComponent(tx.id)}`,
  `/transactions/${encodeURIComponent(tx.id)}/receipt`,
  '/totals?from=2026-11-01&to=2026-11-30',
  '/audit',
  '/no-such-page',
]

async function get(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${dashboard.url}${path}`, { headers })
  return { status: res.status, body: await res.text(), lang: res.headers.get('content-language') }
}

const visibleText = (page: string) => page.replace(/<style[\s\S]*?<\/style>/g, '').replace(/<[^>]+>/g, ' ')

describe('the dashboard', () => {
  it('every page is Korean by default and says so in <html lang>', async () => {
    for (const path of pages()) {
      const r = await get(path)
      expect(r.status, path).toBeLessThan(path === '/no-such-page' ? 500 : 400)
      expect(r.body, path).toContain('<html lang="ko">')
      expect(r.lang, path).toBe('ko')
      if (!path.endsWith('/receipt')) {
        expect(r.body, path).toContain('>정산 실행</a>')
        expect(r.body, path).not.toContain('Settlement runs')
      }
    }
  })

  it('Accept-Language: en and ?lang=en give English; ?lang= sticks in every link and form', async () => {
    for (const path of pages()) {
      const negotiated = await get(path, { 'accept-language': 'en-US,en;q=0.9' })
      expect(negotiated.body, path).toContain('<html lang="en">')
      expect(negotiated.lang, path).toBe('en')

      const explicit = await get(`${path}${path.includes('?') ? '&' : '?'}lang=en`, {
        'accept-language': 'ko-KR',
      })
      expect(explicit.body, path).toContain('<html lang="en">')
      if (path.endsWith('/receipt')) {
        expect(explicit.body).toContain('Cash receipt')
        continue
      }
      expect(explicit.body, path).toContain('>Settlement runs</a>')
      expect(explicit.body, path).not.toContain('정산 실행')
      const links = [...explicit.body.matchAll(/href="(\/[^"]*)"/g)].map((m) => m[1]!.replace(/&amp;/g, '&'))
      const own = links.filter((h) => !h.startsWith('/queues') && !h.startsWith('/metrics'))
      expect(own.length, path).toBeGreaterThan(0)
      for (const h of own) expect(h, `${path} → ${h}`).toMatch(/[?&]lang=(en|ko)(&|#|$)/)
      expect(
        own.filter((h) => /[?&]lang=ko/.test(h)),
        path,
      ).toHaveLength(1) // the switch back to Korean
      for (const form of explicit.body.match(/<form method="get"[\s\S]*?<\/form>/g) ?? []) {
        expect(form, path).toContain('<input type="hidden" name="lang" value="en" />')
      }
    }
  })

  it('shows times in KST, never UTC', async () => {
    for (const path of ['/', `/transactions/${encodeURIComponent(tx.id)}`, `/transactions/${encodeURIComponent(tx.id)}/receipt`]) {
      for (const lang of ['ko', 'en']) {
        const text = visibleText((await get(`${path}${path.includes('?') ? '&' : '?'}lang=${lang}`)).body)
        expect(text, path).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d KST/)
        expect(text, path).not.toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d|UTC/)
      }
    }
  })
})

describe('report --format html', () => {
  it('is Korean by default and English with --lang en; its header says when in KST', async () => {
    const before = Date.now()
    const ko = join(dir, 'report-ko.html')
    const en = join(dir, 'report-en.html')
    const [a, b] = await Promise.all([
      runCli(['report', '--run', String(runId), '--format', 'html', '--out', ko], env.env()),
      runCli(['report', '--run', String(runId), '--format', 'html', '--lang', 'en', '--out', en], env.env()),
    ])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const after = Date.now()
    const meta = (page: string) => /<div class="meta" id="report-meta">([\s\S]*?)<\/div>/.exec(page)![1]!.replace(/\s+/g, ' ')
    const koPage = await readFile(ko, 'utf8')
    const enPage = await readFile(en, 'utf8')
    expect(koPage).toContain('<html lang="ko">')
    expect(koPage).toContain(`<h1>정산 실행 ${runId} · 2026-11-16</h1>`)
    expect(enPage).toContain('<html lang="en">')
    expect(enPage).toContain(`<h1>Settlement run ${runId} · 2026-11-16</h1>`)
    const koAt = /생성 (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) KST/.exec(meta(koPage))
    const enAt = /generated (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) KST/.exec(meta(enPage))
    expect(koAt, meta(koPage)).not.toBeNull()
    expect(enAt, meta(enPage)).not.toBeNull()
    // Korean wall-clock time of the moment the report was written (not UTC: 9 hours apart).
    for (const at of [koAt![1]!, enAt![1]!]) {
      expect(`${at} KST` >= kstDateTime(Math.floor(before / 1000) * 1000)).toBe(true)
      expect(`${at} KST` <= kstDateTime(after)).toBe(true)
    }
    expect(meta(koPage)).not.toMatch(/\d{4}-\d\d-\d\dT|Z\b|UTC/)

    const page = await browser.context.newPage()
    await page.goto(pathToFileURL(ko).href)
    expect(await page.locator('html').getAttribute('lang')).toBe('ko')
    expect(await page.locator('[data-total="issued"] .label').innerText()).toBe('발급')
    const glyphs = await glyphReport(page, 'header h1')
    expect(tofu(glyphs), JSON.stringify(glyphs)).toEqual([])
    await page.goto(pathToFileURL(en).href)
    expect(await page.locator('[data-total="issued"] .label').innerText()).toBe('issued')
    await page.close()
  })
})

describe('the printable receipt', () => {
  it('`receipt --out` writes it in Korean, or in English with --lang en', async () => {
    const ko = join(dir, 'receipt-ko.html')
    const en = join(dir, 'receipt-en.html')
    const [a, b] = await Promise.all([runCli(['receipt', tx.id, '--out', ko], env.env()), runCli(['receipt', tx.id, '--lang', 'en', '--out', en], env.env())])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const koPage = await readFile(ko, 'utf8')
    const enPage = await readFile(en, 'utf8')
    for (const s of ['<html lang="ko">', '<h1>현금영수증', '공급가액', '부가세', '합계', `${tx.total.toLocaleString('en-US')}원`]) {
      expect(koPage).toContain(s)
    }
    for (const s of ['<html lang="en">', '<h1>Cash receipt', 'Supply', 'VAT', 'Total', `₩${tx.total.toLocaleString('en-US')}`]) {
      expect(enPage).toContain(s)
    }
    expect(enPage).not.toMatch(/공급가액|부가세/)
    for (const p of [koPage, enPage]) expect(visibleText(p)).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d KST/)
    const bad = await runCli(['receipt', tx.id, '--lang', 'fr', '--out', join(dir, 'x.html')], env.env())
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--lang/)
  })

  it('on the dashboard follows the browser language, and ?lang= from the transaction page', async () => {
    const english = await launchChromium({ locale: 'en-US' })
    try {
      const page = await english.context.newPage()
      await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(tx.id)}/receipt`)
      expect(await page.locator('html').getAttribute('lang')).toBe('en')
      expect(await page.locator('.receipt h1').innerText()).toBe('Cash receipt')
    } finally {
      await english.close()
    }
    const page = await browser.context.newPage()
    await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(tx.id)}`)
    expect(await page.locator('html').getAttribute('lang')).toBe('ko')
    await page.locator('header nav a.lang').click()
    await page.waitForURL(/\?lang=en$/)
    await page.locator('a.print').click()
    await page.waitForURL(/\/receipt\?lang=en$/)
    expect(await page.locator('.receipt h1').innerText()).toBe('Cash receipt')
    await page.close()
  })
})

describe('Korean renders as glyphs (CJK fonts installed)', () => {
  it('on the dashboard, the printable receipt and the period totals', async () => {
    const page = await browser.context.newPage()
    const checks: [string, string][] = [
      ['/', 'header h1'],
      [`/transactions/${encodeURIComponent(tx.id)}`, 'header nav a'],
      [`/transactions/${encodeURIComponent(tx.id)}/receipt`, '.receipt h1'],
      ['/totals?from=2026-11-01&to=2026-11-30', '#period-totals h2'],
    ]
    for (const [path, selector] of checks) {
      await page.goto(`${dashboard.url}${path}`)
      const r = await glyphReport(page, selector)
      const hangul = new Set(r.chars.map((c) => c.ch).filter((c) => /[\uAC00-\uD7A3]/.test(c)))
      expect(hangul.size, path).toBeGreaterThanOrEqual(4)
      expect(tofu(r), `${path}: ${JSON.stringify(r)}`).toEqual([])
      // Every syllable drew differently: real glyphs, not one repeated box.
      expect(distinctHangulDrawings(r), path).toBe(hangul.size)
      expect(
        r.platformFonts.some((f) => /CJK|KR|Nanum|Malgun|Gothic/i.test(f)),
        `${path}: ${r.platformFonts.join(', ')}`,
      ).toBe(true)
    }
    await page.close()
  })

  it('the same check fails under a font set without CJK fonts (so it can tell)', async () => {
    // fontconfig that knows only a Latin font directory (or none): what a CI machine without
    // fonts-noto-cjk looks like to Chromium.
    const latin = ['/usr/share/fonts/truetype/dejavu', '/usr/share/fonts/truetype/liberation'].find((d) => existsSync(d))
    const conf = join(dir, 'fonts-latin-only.conf')
    await writeFile(
      conf,
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n${latin ? `  <dir>${latin}</dir>\n` : ''}  <cachedir>${join(dir, 'fc-cache')}</cachedir>\n</fontconfig>\n`,
    )
    const bare = await launchChromium({ env: { FONTCONFIG_FILE: conf } })
    try {
      const page = await bare.context.newPage()
      await page.goto(`${dashboard.url}/transactions/${encodeURIComponent(tx.id)}/receipt`)
      const r = await glyphReport(page, '.receipt h1')
      const hangul = new Set(r.chars.map((c) => c.ch).filter((c) => /[\uAC00-\uD7A3]/.test(c)))
      expect(tofu(r).sort()).toEqual([...hangul].sort())
      expect(distinctHangulDrawings(r)).toBe(1)
      expect(
        r.platformFonts.some((f) => /CJK|KR/i.test(f)),
        r.platformFonts.join(', '),
      ).toBe(false)
    } finally {
      await bare.close()
    }
  })
})
