/**
 * `report --format html`: ONE self-contained file — inline CSS and server-rendered SVG charts, no
 * script, font or image from anywhere (a Content-Security-Policy of `default-src 'none'` makes sure
 * of it), so it opens offline and can be mailed or archived as it is.
 */
import { kstDateTime, kstWallClock } from '../domain/index.ts'
import { DEFAULT_LANG, translator, type Translator } from '../i18n/index.ts'
import type { RunReport } from './report.ts'
import { FAILED_LISTED, OUTCOMES, type ReportDetails } from './report-details.ts'
import { columns, OUTCOME_SERIES, stackedBars, type Row } from './charts.ts'
import { html, trusted, type SafeHtml } from './html.ts'

export const REPORT_CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Noto Sans CJK KR", "Malgun Gothic", sans-serif; margin: 0; color: #1d1d1f; background: #f6f7f9; }
/* Korean wraps between words (keep-all), never inside one; a long id or URL may still break anywhere. */
body, th, td, p, h1, h2, h3, li, dt, dd, label, button { word-break: keep-all; overflow-wrap: anywhere; }
header { background: #1f2937; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 18px; }
header .meta { opacity: .8; font-size: 13px; }
header a { color: #cfe3ff; }
nav a { margin-right: 14px; }
main { padding: 16px 24px 40px; max-width: 1100px; }
section { background: #fff; border: 1px solid #e3e5e8; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
h2 { font-size: 16px; margin: 0 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #e3e5e8; border-radius: 8px; padding: 8px 14px; min-width: 110px; background: #fff; }
.card .label { font-size: 12px; color: #666; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card.failed .value { color: #c62828; } .card.issued .value { color: #2e7d32; } .card.overdue .value { color: #b71c1c; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { color: #555; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #777; }
svg.chart { max-width: 100%; height: auto; display: block; margin: 6px 0; }
svg.chart text { font-family: inherit; }
.notice { background: #e8f5e9; border: 1px solid #a5d6a7; padding: 8px 12px; border-radius: 6px; }
.warn { background: #fff8e1; border-color: #ffe082; }
form.inline { display: inline; }
button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #b71c1c; background: #c62828; color: #fff; cursor: pointer; }
select, input { font: inherit; padding: 3px 6px; }
@media print { body { background: #fff; } section { break-inside: avoid; border: 0; } }
`

const ko = () => translator(DEFAULT_LANG)

/** The outcome series of the charts, labelled in the page's language. */
const series = (t: Translator, keys?: readonly string[]) => OUTCOME_SERIES.filter((s) => !keys || keys.includes(s.key)).map((s) => ({ ...s, label: t.term('outcome', s.key) }))

export function totalsCards(r: RunReport, t: Translator = ko()): SafeHtml {
  const cards: [string, string, number | string][] = [
    ['eligible', t('outcome.eligible'), r.totals.eligible],
    ['issued', t('outcome.issued'), r.totals.issued],
    ['failed', t('outcome.failed'), r.totals.failed],
    ['pending', t('outcome.pending'), r.totals.pending],
    ['skipped', t('outcome.skipped'), r.totals.skipped],
    ['cancelled', t('outcome.cancelled'), r.totals.cancelled],
    ['overdue', t('outcome.overdue'), r.overdue],
    ['duplicates', t('outcome.duplicates'), r.duplicates.length],
    ['amount_issued', t('outcome.amountIssued'), t.won(r.amount_issued)],
  ]
  return html`<div class="cards">
    ${cards.map(
      ([key, label, value]) =>
        html`<div class="card ${key}" data-total="${key}">
          <div class="label">${label}</div>
          <div class="value">${value}</div>
        </div>`,
    )}
  </div>`
}

export function providerChart(r: RunReport, t: Translator = ko()): SafeHtml {
  const rows: Row[] = Object.entries(r.by_provider)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([p, v]) => ({ label: p, values: v }))
  return stackedBars({
    id: 'chart-providers',
    kind: 'providers',
    title: t('chart.perProvider'),
    rows,
    series: series(t),
    empty: t('chart.noData'),
  })
}

export function merchantChart(d: ReportDetails, t: Translator = ko()): SafeHtml {
  const rows: Row[] = d.by_merchant.map((m) => ({
    label: m.name,
    values: {
      issued: m.issued,
      failed: m.failed,
      pending: m.pending,
      skipped: m.skipped,
      cancelled: m.cancelled,
    },
  }))
  return stackedBars({
    id: 'chart-merchants',
    kind: 'merchants',
    title: t('chart.perMerchant'),
    rows,
    series: series(t),
    empty: t('chart.noData'),
  })
}

function throughputChart(d: ReportDetails, t: Translator): SafeHtml {
  const short = d.throughput.bucket_s < 86_400
  const points: Row[] = d.throughput.points.map((p) => ({
    // KST wall clock: operators read the night in Seoul time.
    label: kstWallClock(Date.parse(p.t)).slice(short ? 11 : 5, short ? 19 : 16),
    values: { issued: p.issued, failed: p.failed, skipped: p.skipped },
  }))
  return columns({
    id: 'chart-throughput',
    kind: 'throughput',
    title: t('report.throughput'),
    points,
    series: series(t, ['issued', 'failed', 'skipped']),
    xTitle: t('chart.throughputX', { s: d.throughput.bucket_s }),
    yTitle: t('chart.receipts'),
    cumulative: { key: 'issued', label: t('chart.issuedCumulative'), color: '#0d47a1' },
    empty: t('chart.noneFinished'),
  })
}

const PROVIDER_COLORS = ['#6a1b9a', '#00838f', '#ef6c00', '#2e7d32', '#ad1457', '#4e342e']

function latencyChart(d: ReportDetails, t: Translator): SafeHtml {
  const bounds = d.latency.bounds_ms
  const labels = [...bounds.map((b) => `≤${b >= 1000 ? `${b / 1000}s` : `${b}ms`}`), `>${bounds.at(-1)! / 1000}s`]
  const providerSeries = d.latency.by_provider.map((p, i) => ({
    key: p.provider,
    label: p.provider,
    color: PROVIDER_COLORS[i % PROVIDER_COLORS.length]!,
  }))
  const points: Row[] = labels.map((label, i) => ({
    label,
    values: Object.fromEntries(d.latency.by_provider.map((p) => [p.provider, p.counts[i] ?? 0])),
  }))
  return columns({
    id: 'chart-latency',
    kind: 'latency',
    title: t('report.latency'),
    points,
    series: providerSeries,
    xTitle: t('chart.latencyX'),
    yTitle: t('chart.calls'),
    empty: t('chart.noCalls'),
  })
}

function failureChart(d: ReportDetails, t: Translator): SafeHtml {
  const rows: Row[] = d.failure_reasons.slice(0, 15).map((f) => ({ label: `${f.provider} ${f.error_class} ${f.code}`.trim(), values: { failed: f.count } }))
  return stackedBars({
    id: 'chart-failures',
    kind: 'failures',
    title: t('report.failureReasons'),
    rows,
    series: series(t, ['failed']),
    empty: t('chart.noFailures'),
  })
}

function overdueChart(d: ReportDetails, t: Translator): SafeHtml {
  const byDeadline = new Map<string, Record<string, number>>()
  for (const r of d.overdue.receipts) {
    const v = byDeadline.get(r.deadline) ?? {}
    v[r.state === 'failed' ? 'failed' : 'pending'] = (v[r.state === 'failed' ? 'failed' : 'pending'] ?? 0) + 1
    byDeadline.set(r.deadline, v)
  }
  const rows: Row[] = [...byDeadline.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([deadline, values]) => ({ label: t('chart.deadline', { date: deadline }), values }))
  return stackedBars({
    id: 'chart-overdue',
    kind: 'overdue',
    title: t('chart.overdue'),
    rows,
    series: series(t, ['failed', 'pending']),
    empty: t('chart.noOverdue'),
  })
}

function numTable(headers: string[], rows: (string | number)[][], numeric: boolean[]): SafeHtml {
  return html`<table>
    <thead>
      <tr>
        ${headers.map((h, i) => html`<th class="${numeric[i] ? 'num' : ''}">${h}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (r) =>
          html`<tr>
            ${r.map((c, i) => html`<td class="${numeric[i] ? 'num' : ''}">${c}</td>`)}
          </tr>`,
      )}
    </tbody>
  </table>`
}

export function providerTable(r: RunReport, t: Translator = ko()): SafeHtml {
  const rows = Object.entries(r.by_provider)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([p, v]) => [p, ...OUTCOMES.map((o) => v[o])])
  return numTable([t('col.provider'), ...OUTCOMES.map((o) => t.term('outcome', o))], rows, [false, true, true, true, true, true])
}

export function merchantTable(d: ReportDetails, t: Translator = ko()): SafeHtml {
  return numTable(
    [t('col.merchant'), t('col.merchantId'), ...OUTCOMES.map((o) => t.term('outcome', o))],
    d.by_merchant.map((m) => [m.name, m.merchant_id, ...OUTCOMES.map((o) => m[o])]),
    [false, false, true, true, true, true, true],
  )
}

/** Duplicates reconcile found at providers for the run's receipts, repaired ones included. */
export function duplicatesSection(r: RunReport, t: Translator = ko()): SafeHtml {
  const open = r.duplicates.filter((d) => !d.repaired_at).length
  return html`<section id="duplicates">
    <h2>${t('report.duplicates', { n: r.duplicates.length, open })}</h2>
    ${
      r.duplicates.length
        ? html`<table>
          <thead>
            <tr>
              <th>${t('col.transaction')}</th>
              <th>${t('col.provider')}</th>
              <th>${t('col.approval')}</th>
              <th class="num">${t('col.amount')}</th>
              <th>${t('col.found')}</th>
              <th>${t('col.repaired')}</th>
              <th>${t('col.outcome')}</th>
            </tr>
          </thead>
          <tbody>
            ${r.duplicates.slice(0, 500).map(
              (d) =>
                html`<tr>
                  <td>${d.transaction_id}</td>
                  <td>${d.provider}</td>
                  <td>${d.approval_number ?? ''}</td>
                  <td class="num">${d.amount === null ? '' : t.won(d.amount)}</td>
                  <td>${kstOrText(d.found_at)}</td>
                  <td>${d.repaired_at ? kstOrText(d.repaired_at) : ''}</td>
                  <td>${d.repair_outcome ?? ''}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
        : ''
    }
  </section>`
}

/** An ISO instant as KST; anything that is not one is shown as it is. */
const kstOrText = (v: string) => (Number.isNaN(Date.parse(v)) ? v : kstDateTime(v))

/**
 * Receipts a person must look at (a partial refund a provider cannot receipt, and other reconcile
 * flags): the report JSON's `needs_attention`, on the dashboard's run page and in the HTML report.
 */
export function needsAttentionSection(r: RunReport, t: Translator = ko()): SafeHtml {
  return html`<section id="needs-attention">
    <h2>${t('report.needsAttention', { n: r.needs_attention.length })}</h2>
    ${
      r.needs_attention.length
        ? html`<table>
          <thead>
            <tr>
              <th>${t('col.transaction')}</th>
              <th>${t('col.provider')}</th>
              <th>${t('col.reason')}</th>
            </tr>
          </thead>
          <tbody>
            ${r.needs_attention.slice(0, 500).map(
              (a) =>
                html`<tr>
                  <td>${a.transaction_id}</td>
                  <td>${a.provider}</td>
                  <td>${a.reason}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
        : ''
    }
  </section>`
}

/** The run report as one page; `opts.t` picks the language (Korean when absent), times in KST. */
export function formatReportHtml(r: RunReport, d: ReportDetails, opts: { generatedAt: Date; t?: Translator }): string {
  const t = opts.t ?? ko()
  const title = t('report.title', { id: r.run_id, date: r.business_date })
  const latencyRows = d.latency.by_provider.map((p) => [p.provider, p.calls, p.p50_ms, p.p95_ms, p.p99_ms])
  const failures = r.failures.slice(0, FAILED_LISTED)
  const ctx = (id: string) => d.failed_transactions[id]
  const page = html`<!doctype html>
    <html lang="${t.lang}">
      <head>
        <meta charset="utf-8" />
        <meta
          http-equiv="Content-Security-Policy"
          content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title}</title>
        <style>
          ${trusted(REPORT_CSS)}
        </style>
      </head>
      <body>
        <header>
          <h1>${title}</h1>
          <div class="meta" id="report-meta">
            ${t.term('status', r.status)} · ${t('run.trigger')} ${t.term('trigger', r.trigger)} · ${t('run.merchants')} ${r.merchant_scope === '*' ? t('common.all') : r.merchant_scope} · ${t('unit.seconds', { n: r.duration_s })} ·
            ${t('report.generated', { at: kstDateTime(opts.generatedAt) })}
          </div>
        </header>
        <main>
          <section id="totals">
            <h2>${t('run.totals')}</h2>
            ${totalsCards(r, t)}
          </section>
          <section id="providers">
            <h2>${t('report.byProvider')}</h2>
            ${providerChart(r, t)}${providerTable(r, t)}
          </section>
          <section id="merchants">
            <h2>${t('run.perMerchant')}</h2>
            ${merchantChart(d, t)}${merchantTable(d, t)}
          </section>
          ${needsAttentionSection(r, t)} ${duplicatesSection(r, t)}
          <section id="throughput">
            <h2>${t('report.throughput')}</h2>
            ${throughputChart(d, t)}
          </section>
          <section id="latency">
            <h2>${t('report.latency')}</h2>
            ${latencyChart(d, t)}${latencyRows.length ? numTable([t('col.provider'), t('col.calls'), t('latency.p50'), t('latency.p95'), t('latency.p99')], latencyRows, [false, true, true, true, true]) : ''}
          </section>
          <section id="failures">
            <h2>${t('report.failureReasons')}</h2>
            ${failureChart(d, t)}${
              d.failure_reasons.length
                ? numTable(
                    [t('col.provider'), t('col.class'), t('col.code'), t('col.count'), t('col.sampleMessage')],
                    d.failure_reasons.map((f) => [f.provider, f.error_class, f.code, f.count, f.sample_message]),
                    [false, false, false, true, false],
                  )
                : ''
            }${
              failures.length
                ? html`<h2 style="margin-top:14px" id="failed-receipts">
                      ${r.failures.length > failures.length ? t('report.failedReceiptsFirst', { n: r.failures.length, shown: failures.length }) : t('report.failedReceipts', { n: r.failures.length })}
                    </h2>
                    ${numTable(
                      [
                        t('col.transaction'),
                        t('col.merchant'),
                        t('col.amount'),
                        t('failures.orderName'),
                        t('col.paidAt'),
                        t('col.provider'),
                        t('col.class'),
                        t('col.code'),
                        t('col.message'),
                      ],
                      failures.map((f) => {
                        const x = ctx(f.transaction_id)
                        return [
                          f.transaction_id,
                          x?.merchant_name ?? '',
                          x ? t.won(x.amount) : '',
                          x?.order_name ?? '',
                          x ? kstDateTime(x.paid_at) : '',
                          f.provider,
                          f.error_class,
                          f.code,
                          f.message,
                        ]
                      }),
                      [false, false, true, false, false, false, false, false, false],
                    )}`
                : ''
            }
          </section>
          <section id="overdue">
            <h2>${t('report.overdue', { n: d.overdue.total })}</h2>
            <p class="muted">${t('report.overdueNote')}</p>
            ${overdueChart(d, t)}${
              d.overdue.receipts.length
                ? numTable(
                    [t('col.transaction'), t('col.merchant'), t('col.provider'), t('col.state'), t('col.businessDate'), t('col.deadline'), t('col.class'), t('col.code')],
                    d.overdue.receipts.map((o) => [
                      o.transaction_id,
                      o.merchant_id,
                      o.provider,
                      t.term('state', o.state),
                      o.trade_date,
                      o.deadline,
                      o.error_class ?? '',
                      o.code ?? '',
                    ]),
                    [false, false, false, false, false, false, false, false],
                  )
                : ''
            }
          </section>
        </main>
      </body>
    </html> `
  return page.value
}
