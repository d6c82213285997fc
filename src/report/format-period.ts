/**
 * Period totals as a terminal table or one self-contained HTML page (Korean by default, English with
 * a translator for `en`; `word-break: keep-all` so Korean wraps between words; times in KST).
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

export function periodBody(p: PeriodTotals, t: Translator = translator(DEFAULT_LANG)): SafeHtml {
  const amountCells = (a: Amounts) =>
    html`<td class="num">${t.num(a.count)}</td><td class="num">${t.won(a.total)}</td><td class="num">${t.won(a.supply)}</td><td class="num">${t.won(a.vat)}</td>`
  return html`<section id="period-totals">
    <h2>${t('period.heading')} <span class="muted">${t('period.scope', { from: p.from, to: p.to, scope: p.merchant_scope === '*' ? t('common.all') : p.merchant_scope })}</span></h2>
    <p class="muted">${t('period.note')}</p>
    <table id="period-table">
      <thead>
        <tr>
          <th>${t('period.month')}</th><th>${t('col.merchant')}</th><th>${t('period.purpose')}</th>
          <th class="num">${t('period.count')}</th><th class="num">${t('period.total')}</th><th class="num">${t('period.supply')}</th><th class="num">${t('period.vat')}</th>
          <th class="num">${t('period.issued')}</th><th class="num">${t('period.cancelled')}</th>
        </tr>
      </thead>
      <tbody>
        ${p.rows.map(
          (r) => html`<tr data-merchant="${r.merchant_id}" data-month="${r.month}" data-purpose="${r.purpose}">
            <td>${r.month}</td><td>${r.merchant_name ?? r.merchant_id}</td><td>${t.term('purpose', r.purpose)}</td>
            ${amountCells(r.net)}<td class="num">${t.num(r.issued.count)}</td><td class="num">${t.num(r.cancelled.count)}</td>
          </tr>`,
        )}
        <tr class="total" id="period-total">
          <td>${t('period.sum')}</td><td></td><td></td>${amountCells(p.totals.net)}<td class="num">${t.num(p.totals.issued.count)}</td><td class="num">${t.num(p.totals.cancelled.count)}</td>
        </tr>
      </tbody>
    </table>
  </section>`
}

/** The period totals as one self-contained page; `opts.t` picks the language (Korean when absent). */
export function formatPeriodHtml(p: PeriodTotals, opts: { generatedAt: Date; t?: Translator }): string {
  const t = opts.t ?? translator(DEFAULT_LANG)
  return html`<!doctype html>
    <html lang="${t.lang}">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'" />
        <title>${t('period.title')} ${p.from} … ${p.to}</title>
        <style>
          ${trusted(PERIOD_CSS)}
        </style>
      </head>
      <body>
        <header>
          <h1>${t('period.title')}</h1>
          <div class="meta">${p.from} … ${p.to} · ${t('period.generated', { at: kstDateTime(opts.generatedAt, 'minute') })}</div>
        </header>
        <main>${periodBody(p, t)}</main>
      </body>
    </html>`.value
}
