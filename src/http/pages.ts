/** Server-rendered dashboard pages (no client-side script): runs, one run, a run's failures. */
import { kstDateTime } from '../domain/index.ts'
import { DEFAULT_LANG, LANGS, translator, type Lang, type MessageKey, type Translator } from '../i18n/index.ts'
import type { RunReport } from '../report/report.ts'
import type { ReportDetails } from '../report/report-details.ts'
import {
  merchantChart,
  merchantTable,
  providerChart,
  providerTable,
  REPORT_CSS,
  totalsCards,
  duplicatesSection,
  needsAttentionSection,
} from '../report/format-html.ts'
import { html, trusted, type SafeHtml } from '../report/html.ts'
import type { DispatchReading } from '../throttle/dispatch-stats.ts'
import type { FailedReceipt, FailureFilter, RunRow } from './dashboard-data.ts'

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
  const switches = LANGS.filter((l) => l !== t.lang).map((l) => ({ l, href: t.switchTo(l) })).filter((x) => x.href)
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
            ><a href="/metrics">${t('nav.metrics')}</a>${switches.map(
              (s) => html`<a class="lang" hreflang="${s.l}" lang="${s.l}" href="${s.href}">${LANG_NAMES[s.l]}</a>`,
            )}
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
export function dispatchSection(d: DispatchReading | undefined): SafeHtml {
  if (!d) return html``
  const notClosed = d.circuits.filter((c) => c.state !== 'closed')
  const byProvider = new Map<string, Map<string, number>>()
  for (const x of d.deferred) {
    const m = byProvider.get(x.provider) ?? new Map<string, number>()
    m.set(x.reason, x.n)
    byProvider.set(x.provider, m)
  }
  return html`<section id="dispatch">
    <h2>Dispatch</h2>
    ${notClosed.length
      ? html`<table id="circuits">
          <thead>
            <tr><th>circuit</th><th>scope</th><th>provider</th><th>state</th><th>since</th></tr>
          </thead>
          <tbody>
            ${notClosed.map(
              (c) => html`<tr data-circuit="${c.name}">
                <td>${c.name}</td><td>${c.scope}</td><td>${c.provider}</td><td>${c.state.replace('_', '-')}</td><td>${kst(new Date(c.since))}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted" id="circuits-closed">Every circuit is closed.</p>`}
    ${byProvider.size
      ? html`<table id="deferrals">
          <thead>
            <tr><th>provider</th><th>calls put off (job delayed, no attempt used), by reason</th></tr>
          </thead>
          <tbody>
            ${[...byProvider].map(
              ([provider, reasons]) => html`<tr data-provider="${provider}">
                <td>${provider}</td><td>${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : ''}
  </section>`
}

export function runsPage(runs: readonly RunRow[], dispatch?: DispatchReading, t: Translator = translator(DEFAULT_LANG)): string {
  const body = runs.length
    ? html`<section>
        <table id="runs">
          <thead>
            <tr>
              <th>run</th>
              <th>business date</th>
              <th>trigger</th>
              <th>merchants</th>
              <th>status</th>
              <th>started</th>
              <th class="num">issued</th>
              <th class="num">failed</th>
              <th class="num">pending</th>
              <th class="num">skipped</th>
              <th class="num">cancelled</th>
            </tr>
          </thead>
          <tbody>
            ${runs.map(
              (r) =>
                html`<tr data-run="${r.id}">
                  <td><a href="/runs/${r.id}">#${r.id}</a></td>
                  <td>${r.business_date}</td>
                  <td>${r.trigger}</td>
                  <td>${r.merchant_scope}</td>
                  <td>${r.status}</td>
                  <td>${kst(r.started_at)}</td>
                  <td class="num">${r.counts.issued}</td>
                  <td class="num">${r.counts.failed}</td>
                  <td class="num">${r.counts.pending}</td>
                  <td class="num">${r.counts.skipped}</td>
                  <td class="num">${r.counts.cancelled}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </section>`
    : html`<section>
        <p>
          No settlement run yet. The scheduler starts one at 00:30 KST;
          <code>cash-receipts settle</code> starts one by hand.
        </p>
      </section>`
  return layout(t('nav.runs'), html`${body}${dispatchSection(dispatch)}`, { t })
}

function redriveForm(runId: number, count: number, filter: FailureFilter = {}): SafeHtml {
  if (count === 0) {
    return html`<p class="muted" id="redrive-none">
      No failed receipt to
      re-drive${filter.provider || filter.code || filter.errorClass ? ' for this filter' : ''}.
    </p>`
  }
  return html`<form class="inline" method="post" action="/redrive" id="redrive-form">
      <input type="hidden" name="run" value="${runId}" />
      ${filter.provider ? html`<input type="hidden" name="provider" value="${filter.provider}" />` : ''}
      ${filter.code ? html`<input type="hidden" name="code" value="${filter.code}" />` : ''}
      ${filter.errorClass ? html`<input type="hidden" name="class" value="${filter.errorClass}" />` : ''}
      <button type="submit" id="redrive-button">
        Re-drive ${count} failed receipt${count === 1 ? '' : 's'}
      </button>
    </form>
    <span class="muted"
      >Same as
      <code
        >cash-receipts redrive --run
        ${runId}${filter.provider ? ` --provider ${filter.provider}` : ''}${filter.code ? ` --code ${filter.code}` : ''}${filter.errorClass ? ` --class ${filter.errorClass}` : ''}</code
      >: fix the cause first.</span
    >`
}

export interface RedriveNotice {
  readonly count: number
  readonly from?: number
}

export function runPage(
  r: RunReport,
  d: ReportDetails,
  runId: number,
  redrivable: number,
  notice?: RedriveNotice,
  t: Translator = translator(DEFAULT_LANG),
): string {
  const body = html` ${notice ? html`<p class="notice" id="redrive-notice">Re-drove ${notice.count} receipt${notice.count === 1 ? '' : 's'}${notice.from ? html` from <a href="/runs/${notice.from}">run #${notice.from}</a>` : ''} as this run (#${runId}).</p>` : ''}
    <section id="totals">
      <h2>
        Totals
        <span class="muted" style="font-weight:normal"
          >· ${r.status} · trigger ${r.trigger} · merchants ${r.merchant_scope} · ${r.duration_s}s</span
        >
      </h2>
      ${totalsCards(r)}
    </section>
    <section id="redrive">
      <h2>Failures</h2>
      <p>
        <a href="/runs/${runId}/failures" id="failures-link"
          >${r.totals.failed} failed issue receipt${r.totals.failed === 1 ? '' : 's'} — list, filter</a
        >
      </p>
      ${redriveForm(runId, redrivable)}
      ${
        d.failure_reasons.length
          ? html`<table style="margin-top:10px">
              <thead>
                <tr>
                  <th>provider</th>
                  <th>class</th>
                  <th>code</th>
                  <th class="num">count</th>
                  <th>example message</th>
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
                          href="/runs/${runId}/failures?provider=${encodeURIComponent(f.provider)}&class=${encodeURIComponent(f.error_class)}&code=${encodeURIComponent(f.code)}"
                          >${f.code || '(none)'}</a
                        >
                      </td>
                      <td class="num">${f.count}</td>
                      <td>${f.sample_message}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : ''
      }
    </section>
    <section id="providers">
      <h2>Per provider</h2>
      ${providerChart(r)}${providerTable(r)}
    </section>
    <section id="merchants">
      <h2>Per merchant</h2>
      ${merchantChart(d)}${merchantTable(d)}
    </section>
    ${needsAttentionSection(r)} ${duplicatesSection(r)}
    <section id="overdue"><h2>Past the legal deadline: ${d.overdue.total}</h2></section>`
  return layout(`Run #${runId} · ${r.business_date}`, body, {
    refreshS: r.status === 'running' ? 5 : undefined,
    t,
  })
}

export function failuresPage(
  runId: number,
  filter: FailureFilter,
  data: {
    total: number
    rows: readonly FailedReceipt[]
    facets: readonly { provider: string; error_class: string; code: string; n: number }[]
  },
  page: { limit: number; offset: number },
  redrivable: number,
  t: Translator = translator(DEFAULT_LANG),
): string {
  const uniq = (xs: string[]) => [...new Set(xs)].filter(Boolean).sort()
  const select = (name: string, label: string, values: string[], current?: string) =>
    html`<label
      >${label}
      <select name="${name}">
        <option value="">all</option>
        ${values.map((v) => html`<option value="${v}" ${trusted(v === current ? ' selected' : '')}>${v}</option>`)}
      </select></label
    >`
  const qs = (offset: number) =>
    `?${new URLSearchParams({ ...(filter.provider ? { provider: filter.provider } : {}), ...(filter.errorClass ? { class: filter.errorClass } : {}), ...(filter.code ? { code: filter.code } : {}), offset: String(offset) })}`
  const body = html` <p><a href="/runs/${runId}">← run #${runId}</a></p>
    <section>
      <form method="get" class="filters" id="failure-filters">
        ${select('provider', 'provider', uniq(data.facets.map((f) => f.provider)), filter.provider)}
        ${select('class', 'class', uniq(data.facets.map((f) => f.error_class)), filter.errorClass)}
        ${select('code', 'code', uniq(data.facets.map((f) => f.code)), filter.code)}
        <button type="submit" style="background:#1f2937;border-color:#1f2937">Filter</button>
      </form>
    </section>
    <section>
      <h2 id="failure-count" data-count="${data.total}">
        ${data.total} failed receipt${data.total === 1 ? '' : 's'}
      </h2>
      ${redriveForm(runId, redrivable, filter)}
      <table id="failures" style="margin-top:10px">
        <thead>
          <tr>
            <th>receipt</th>
            <th>kind</th>
            <th>transaction</th>
            <th>merchant</th>
            <th>provider</th>
            <th>class</th>
            <th>code</th>
            <th>message</th>
            <th class="num">attempts</th>
            <th class="num">re-drives</th>
            <th>deadline</th>
            <th>failed at</th>
          </tr>
        </thead>
        <tbody>
          ${data.rows.map(
            (f) =>
              html`<tr>
                <td>${f.id}</td>
                <td>${f.kind}</td>
                <td><a href="/transactions/${encodeURIComponent(f.transaction_id)}">${f.transaction_id}</a></td>
                <td>${f.merchant_id}</td>
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
      <p class="pager">
        ${page.offset > 0 ? html`<a href="${qs(Math.max(0, page.offset - page.limit))}">← previous</a>` : ''}${page.offset + page.limit < data.total ? html`<a href="${qs(page.offset + page.limit)}">next →</a>` : ''}<span
          class="muted"
          >${data.total ? `${page.offset + 1}–${Math.min(data.total, page.offset + page.limit)} of ${data.total}` : ''}</span
        >
      </p>
    </section>`
  return layout(`Run #${runId} · failures`, body, { t })
}
