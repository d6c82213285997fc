/**
 * Period totals as a terminal table or one self-contained HTML page (Korean headings first, English
 * beside them; `word-break: keep-all` so Korean wraps between words; times in KST).
 */
import { kstDateTime } from '../domain/index.ts'
import { DEFAULT_LANG, translator, type Translator } from '../i18n/index.ts'
import { REPORT_CSS } from './format-html.ts'
import { table } from './format-table.ts'
import { html, trusted, type SafeHtml } from './html.ts'
import type { Amounts, PeriodTotals } from './period-totals.ts'

const won = (n: number) => `₩${n.toLocaleString('en-US')}`
const PURPOSE_KO: Readonly<Record<string, string>> = { deduction: '소득공제', expense: '지출증빙' }
const purposeText = (p: string) => `${PURPOSE_KO[p] ?? p} (${p})`
const cells = (a: Amounts) => [String(a.count), won(a.total), won(a.supply), won(a.vat)]

export function formatPeriodTable(p: PeriodTotals): string {
  const out = [`Period totals ${p.from} … ${p.to} · merchants ${p.merchant_scope} · issued minus cancelled`, '']
  out.push(
    table(
      ['month', 'merchant', 'purpose', 'net count', 'net total', 'net supply', 'net VAT', 'issued', 'cancelled'],
      [
        ...p.rows.map((r) => [r.month, r.merchant_name ?? r.merchant_id, purposeText(r.purpose), ...cells(r.net), String(r.issued.count), String(r.cancelled.count)]),
        ['total', '', '', ...cells(p.totals.net), String(p.totals.issued.count), String(p.totals.cancelled.count)],
      ],
      [false, false, false, true, true, true, true, true, true],
    ),
  )
  return out.join('\n')
}

export const PERIOD_CSS = `${REPORT_CSS}
body, td, th, p, h1, h2 { word-break: keep-all; overflow-wrap: anywhere; }
tr.total td { font-weight: 600; border-top: 2px solid #ccc; }
`

export function periodBody(p: PeriodTotals): SafeHtml {
  const amountCells = (a: Amounts) => html`<td class="num">${a.count}</td><td class="num">${won(a.total)}</td><td class="num">${won(a.supply)}</td><td class="num">${won(a.vat)}</td>`
  return html`<section id="period-totals">
    <h2>기간 합계 <span class="muted">Period totals · ${p.from} … ${p.to} · 가맹점 merchants ${p.merchant_scope}</span></h2>
    <p class="muted">발급 − 취소 (issued minus cancelled), 거래일 기준 월별 (by month of the business date)</p>
    <table id="period-table">
      <thead>
        <tr>
          <th>월 month</th><th>가맹점 merchant</th><th>용도 purpose</th>
          <th class="num">건수 count</th><th class="num">합계 total</th><th class="num">공급가액 supply</th><th class="num">부가세 VAT</th>
          <th class="num">발급 issued</th><th class="num">취소 cancelled</th>
        </tr>
      </thead>
      <tbody>
        ${p.rows.map(
          (r) => html`<tr data-merchant="${r.merchant_id}" data-month="${r.month}" data-purpose="${r.purpose}">
            <td>${r.month}</td><td>${r.merchant_name ?? r.merchant_id}</td><td>${purposeText(r.purpose)}</td>
            ${amountCells(r.net)}<td class="num">${r.issued.count}</td><td class="num">${r.cancelled.count}</td>
          </tr>`,
        )}
        <tr class="total" id="period-total">
          <td>합계 total</td><td></td><td></td>${amountCells(p.totals.net)}<td class="num">${p.totals.issued.count}</td><td class="num">${p.totals.cancelled.count}</td>
        </tr>
      </tbody>
    </table>
  </section>`
}

export function formatPeriodHtml(p: PeriodTotals, opts: { generatedAt: Date; t?: Translator }): string {
  const t = opts.t ?? translator(DEFAULT_LANG)
  return html`<!doctype html>
    <html lang="${t.lang}">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'" />
        <title>현금영수증 기간 합계 ${p.from} … ${p.to}</title>
        <style>
          ${trusted(PERIOD_CSS)}
        </style>
      </head>
      <body>
        <header>
          <h1>현금영수증 기간 합계 · Cash receipts period totals</h1>
          <div class="meta">${p.from} … ${p.to} · 생성 generated ${kstDateTime(opts.generatedAt, 'minute')}</div>
        </header>
        <main>${periodBody(p)}</main>
      </body>
    </html>`.value
}
