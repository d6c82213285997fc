/** Server-rendered dashboard pages (no client-side script): runs, one run, a run's failures. */
import { kstDateTime } from '../domain/index.ts'
import { DEFAULT_LANG, LANGS, translator, type Lang, type MessageKey, type Translator } from '../i18n/index.ts'
import type { RunReport } from '../report/report.ts'
import type { ReportDetails } from '../report/report-details.ts'
import { merchantChart, merchantTable, providerChart, providerTable, REPORT_CSS, totalsCards, duplicatesSection, needsAttentionSection } from '../report/format-html.ts'
import { html, trusted, type SafeHtml } from '../report/html.ts'
import type { DispatchReading } from '../throttle/dispatch-stats.ts'
import type { FailedReceipt, FailureFilter, RunRow } from './dashboard-data.ts'
import type { PageOf } from '../db/keyset.ts'
import { listFilterFields, listFilterForm, pager } from './list-controls.ts'

const DASHBOARD_CSS = `${REPORT_CSS}
header nav { margin-top: 6px; font-size: 13px; }
header nav a.lang { float: right; margin-right: 0; }
td a, p a { color: #0b57d0; }
.filters label { margin-right: 12px; }
.pager a { margin-right: 10px; }
`

/**
 * The page frame: `<html lang>` from the request's language, the navigation (links keep an explicit
 * `?lang=`), a switch to the other language. Pages pass their request's translator (`tOf(res)`);
 * without one the page is Korean.
 */
export function layout(title: string, body: SafeHtml, opts: { refreshS?: number; t?: Translator } = {}): string {
  const t = opts.t ?? translator(DEFAULT_LANG)
  const nav: [string, MessageKey][] = [
    ['/', 'nav.runs'],
    ['/search', 'nav.search'],
    ['/totals', 'nav.totals'],
    ['/audit', 'nav.audit'],
  ]
  const switches = LANGS.filter((l) => l !== t.lang)
    .map((l) => ({ l, href: t.switchTo(l) }))
    .filter((x) => x.href)
  return html`<!doctype html>
    <html lang="${t.lang}">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        ${opts.refreshS ? html`<meta http-equiv="refresh" content="${opts.refreshS}" />` : ''}
        <title>${title} · cash-receipts</title>
        <style>
          ${trusted(DASHBOARD_CSS)}
        </style>
      </head>
      <body>
        <header>
          <h1>${title}</h1>
          <nav>
            ${nav.map(([href, key]) => html`<a href="${t.href(href)}">${t(key)}</a>`)}<a href="/queues">${t('nav.queues')}</a
            ><a href="/metrics">${t('nav.metrics')}</a>${switches.map((s) => html`<a class="lang" hreflang="${s.l}" lang="${s.l}" href="${s.href}">${LANG_NAMES[s.l]}</a>`)}
          </nav>
        </header>
        <main>${body}</main>
      </body>
    </html> `.value
}

/** Each language named in itself, for the switch. */
const LANG_NAMES: Readonly<Record<Lang, string>> = { ko: '한국어', en: 'English' }

const kst = (d: Date | null) => (d ? kstDateTime(d) : '')

/**
 * Circuits that are not closed (a provider or credential cut off: its receipts wait, delayed) and the
 * calls put off per provider, from what the workers publish (docs/dispatch.md).
 */
export function dispatchSection(d: DispatchReading | undefined, t: Translator = translator(DEFAULT_LANG)): SafeHtml {
  if (!d) return html``
  const notClosed = d.circuits.filter((c) => c.state !== 'closed')
  const byProvider = new Map<string, Map<string, number>>()
  for (const x of d.deferred) {
    const m = byProvider.get(x.provider) ?? new Map<string, number>()
    m.set(x.reason, x.n)
    byProvider.set(x.provider, m)
  }
  return html`<section id="dispatch">
    <h2>${t('dispatch.title')}</h2>
    ${
      notClosed.length
        ? html`<table id="circuits">
          <thead>
            <tr><th>${t('col.circuit')}</th><th>${t('col.scope')}</th><th>${t('col.provider')}</th><th>${t('col.state')}</th><th>${t('col.since')}</th></tr>
          </thead>
          <tbody>
            ${notClosed.map(
              (c) => html`<tr data-circuit="${c.name}">
                <td>${c.name}</td><td>${c.scope}</td><td>${c.provider}</td><td>${c.state.replace('_', '-')}</td><td>${kst(new Date(c.since))}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
        : html`<p class="muted" id="circuits-closed">${t('dispatch.allClosed')}</p>`
    }
    ${
      byProvider.size
        ? html`<table id="deferrals">
          <thead>
            <tr><th>${t('col.provider')}</th><th>${t('dispatch.deferred')}</th></tr>
          </thead>
          <tbody>
            ${[...byProvider].map(
              ([provider, reasons]) => html`<tr data-provider="${provider}">
                <td>${provider}</td><td>${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
        : ''
    }
  </section>`
}

/** The state of a list page: the known merchants (the filter's options), the chosen ones, and whether the reader paged. */
export interface ListState {
  readonly merchants: readonly { readonly id: string; readonly name: string }[]
  readonly merchant?: string
  readonly size?: number
  /** The request named a cursor (after/before): not the list's first page. */
  readonly paged: boolean
}

export function runsPage(
  page: PageOf<RunRow, number>,
  dispatch?: DispatchReading,
  t: Translator = translator(DEFAULT_LANG),
  list: ListState = { merchants: [], paged: false },
): string {
  const runs = page.rows
  const params = { merchant: list.merchant, size: list.size }
  const controls = html`<section>${listFilterForm(t, 'runs-filters', list.merchants, list)}</section>`
  const body =
    runs.length || list.merchant || list.paged
      ? html`${controls}<section>
        <table id="runs">
          <thead>
            <tr>
              <th>${t('col.run')}</th>
              <th>${t('col.businessDate')}</th>
              <th>${t('col.trigger')}</th>
              <th>${t('col.merchants')}</th>
              <th>${t('col.status')}</th>
              <th>${t('col.started')}</th>
              ${OUTCOME_COLUMNS.map((o) => html`<th class="num">${t(`outcome.${o}`)}</th>`)}
            </tr>
          </thead>
          <tbody>
            ${runs.map(
              (r) =>
                html`<tr data-run="${r.id}">
                  <td><a href="${t.href(`/runs/${r.id}`)}">#${r.id}</a></td>
                  <td>${r.business_date}</td>
                  <td>${t.term('trigger', r.trigger)}</td>
                  <td>${r.merchant_scope === '*' ? t('common.all') : r.merchant_scope}</td>
                  <td data-status="${r.status}">${t.term('status', r.status)}</td>
                  <td>${kst(r.started_at)}</td>
                  ${OUTCOME_COLUMNS.map((o) => html`<td class="num">${t.num(r.counts[o])}</td>`)}
                </tr>`,
            )}
          </tbody>
        </table>
        ${pager(t, '/', params, page, list.paged)}
      </section>`
      : html`<section>
        <p>${t('runs.none')} <code>cash-receipts settle</code></p>
      </section>`
  return layout(t('nav.runs'), html`${body}${dispatchSection(dispatch, t)}`, { t })
}

const OUTCOME_COLUMNS = ['issued', 'failed', 'pending', 'skipped', 'cancelled'] as const

function redriveForm(runId: number, count: number, filter: FailureFilter, t: Translator): SafeHtml {
  if (count === 0) {
    return html`<p class="muted" id="redrive-none">
      ${filter.provider || filter.code || filter.errorClass ? t('redrive.noneFiltered') : t('redrive.none')}
    </p>`
  }
  return html`<form class="inline" method="post" action="${t.href('/redrive')}" id="redrive-form">
      <input type="hidden" name="run" value="${runId}" />
      ${filter.provider ? html`<input type="hidden" name="provider" value="${filter.provider}" />` : ''}
      ${filter.code ? html`<input type="hidden" name="code" value="${filter.code}" />` : ''}
      ${filter.errorClass ? html`<input type="hidden" name="class" value="${filter.errorClass}" />` : ''}
      <button type="submit" id="redrive-button">${t('redrive.button', { n: count })}</button>
    </form>
    <span class="muted"
      >${t('redrive.sameAs')}
      <code
        >cash-receipts redrive --run
        ${runId}${filter.provider ? ` --provider ${filter.provider}` : ''}${filter.code ? ` --code ${filter.code}` : ''}${filter.errorClass ? ` --class ${filter.errorClass}` : ''}</code
      >${t('redrive.fixFirst')}</span
    >`
}

export interface RedriveNotice {
  readonly count: number
  readonly from?: number
}

export function runPage(r: RunReport, d: ReportDetails, runId: number, redrivable: number, notice?: RedriveNotice, t: Translator = translator(DEFAULT_LANG)): string {
  const body = html` ${notice ? html`<p class="notice" id="redrive-notice">${t('run.redriveNotice', { n: notice.count, run: runId })}${notice.from ? html` <a href="${t.href(`/runs/${notice.from}`)}">${t('run.redriveFrom', { id: notice.from })}</a>` : ''}</p>` : ''}
    <section id="totals">
      <h2>
        ${t('run.totals')}
        <span class="muted" style="font-weight:normal"
          >· ${t.term('status', r.status)} · ${t('run.trigger')} ${t.term('trigger', r.trigger)} · ${t('run.merchants')} ${r.merchant_scope === '*' ? t('common.all') : r.merchant_scope} · ${t('unit.seconds', { n: r.duration_s })}</span
        >
      </h2>
      ${totalsCards(r, t)}
    </section>
    <section id="redrive">
      <h2>${t('run.failures')}</h2>
      <p>
        <a href="${t.href(`/runs/${runId}/failures`)}" id="failures-link">${t('run.failuresLink', { n: r.totals.failed })}</a>
      </p>
      ${redriveForm(runId, redrivable, {}, t)}
      ${
        d.failure_reasons.length
          ? html`<table style="margin-top:10px">
              <thead>
                <tr>
                  <th>${t('col.provider')}</th>
                  <th>${t('col.class')}</th>
                  <th>${t('col.code')}</th>
                  <th class="num">${t('col.count')}</th>
                  <th>${t('col.sampleMessage')}</th>
                </tr>
              </thead>
              <tbody>
                ${d.failure_reasons.map(
                  (f) =>
                    html`<tr>
                      <td>${f.provider}</td>
                      <td>${f.error_class}</td>
                      <td>
                        <a
                          href="${t.href(`/runs/${runId}/failures?provider=${encodeURIComponent(f.provider)}&class=${encodeURIComponent(f.error_class)}&code=${encodeURIComponent(f.code)}`)}"
                          >${f.code || t('common.noneParen')}</a
                        >
                      </td>
                      <td class="num">${t.num(f.count)}</td>
                      <td>${f.sample_message}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : ''
      }
    </section>
    <section id="providers">
      <h2>${t('run.perProvider')}</h2>
      ${providerChart(r, t)}${providerTable(r, t)}
    </section>
    <section id="merchants">
      <h2>${t('run.perMerchant')}</h2>
      ${merchantChart(d, t)}${merchantTable(d, t)}
    </section>
    ${needsAttentionSection(r, t)} ${duplicatesSection(r, t)}
    <section id="overdue"><h2>${t('run.overdue', { n: d.overdue.total })}</h2></section>`
  return layout(t('run.title', { id: runId, date: r.business_date }), body, {
    refreshS: r.status === 'running' ? 5 : undefined,
    t,
  })
}

export function failuresPage(
  runId: number,
  filter: FailureFilter,
  data: PageOf<FailedReceipt, number> & {
    total: number
    facets: readonly { provider: string; error_class: string; code: string; n: number }[]
  },
  list: ListState,
  redrivable: number,
  t: Translator = translator(DEFAULT_LANG),
): string {
  const uniq = (xs: string[]) => [...new Set(xs)].filter(Boolean).sort()
  const select = (name: string, label: string, values: string[], current?: string) =>
    html`<label
      >${label}
      <select name="${name}">
        <option value="">${t('common.all')}</option>
        ${values.map((v) => html`<option value="${v}" ${trusted(v === current ? ' selected' : '')}>${v}</option>`)}
      </select></label
    >`
  const params = { provider: filter.provider, class: filter.errorClass, code: filter.code, merchant: filter.merchantId, size: list.size }
  // The re-drive form selects by run, provider, code and class, never by merchant (as `redrive` does):
  // it names what it would take whatever merchant the list shows.
  const body = html` <p><a href="${t.href(`/runs/${runId}`)}">${t('failures.back', { id: runId })}</a></p>
    <section>
      <form method="get" class="filters" id="failure-filters">
        ${t.explicit ? html`<input type="hidden" name="lang" value="${t.lang}" />` : ''}
        ${select('provider', t('col.provider'), uniq(data.facets.map((f) => f.provider)), filter.provider)}
        ${select('class', t('col.class'), uniq(data.facets.map((f) => f.error_class)), filter.errorClass)}
        ${select('code', t('col.code'), uniq(data.facets.map((f) => f.code)), filter.code)}
        ${listFilterFields(t, list.merchants, list)}
        <button type="submit" style="background:#1f2937;border-color:#1f2937">${t('failures.filter')}</button>
      </form>
    </section>
    <section>
      <h2 id="failure-count" data-count="${data.total}">${t('failures.count', { n: data.total })}</h2>
      ${redriveForm(runId, redrivable, { provider: filter.provider, code: filter.code, errorClass: filter.errorClass }, t)}
      <table id="failures" style="margin-top:10px">
        <thead>
          <tr>
            <th>${t('col.receipt')}</th>
            <th>${t('col.kind')}</th>
            <th>${t('col.transaction')}</th>
            <th>${t('col.merchant')}</th>
            <th class="num">${t('col.amount')}</th>
            <th>${t('failures.orderName')}</th>
            <th>${t('col.paidAt')}</th>
            <th>${t('col.provider')}</th>
            <th>${t('col.class')}</th>
            <th>${t('col.code')}</th>
            <th>${t('col.message')}</th>
            <th class="num">${t('col.attempts')}</th>
            <th class="num">${t('col.redrives')}</th>
            <th>${t('col.deadline')}</th>
            <th>${t('col.failedAt')}</th>
          </tr>
        </thead>
        <tbody>
          ${data.rows.map(
            (f) =>
              html`<tr data-receipt="${f.id}" data-merchant="${f.merchant_id}">
                <td>${f.id}</td>
                <td>${t.term('kind', f.kind)}</td>
                <td><a href="${t.href(`/transactions/${encodeURIComponent(f.transaction_id)}`)}">${f.transaction_id}</a></td>
                <td class="merchant">${f.merchant_name ?? ''} (${f.merchant_id})</td>
                <td class="num amount">${t.won(f.amount)}</td>
                <td class="order-name">${f.order_name ?? ''}</td>
                <td class="paid-at">${kst(f.paid_at)}</td>
                <td>${f.provider}</td>
                <td>${f.error_class ?? ''}</td>
                <td>${f.error_code ?? ''}</td>
                <td>${f.error_message ?? ''}</td>
                <td class="num">${f.attempts}</td>
                <td class="num">${f.redrive_count}</td>
                <td>${f.deadline}</td>
                <td>${kst(f.finished_at)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
      ${pager(t, `/runs/${runId}/failures`, params, data, list.paged)}
    </section>`
  return layout(t('failures.title', { id: runId }), body, { t })
}
