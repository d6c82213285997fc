/**
 * The dashboard's search and receipt pages: a transaction id, order id, approval number or buyer
 * identifier (searched by its keyed hash, posted, shown back only masked) finds a transaction; its
 * page shows the same content as `cash-receipts show` (receipts, amounts, approval number, provider
 * receipt id and URL, every call and state change), times in KST. Texts come from the catalog
 * (src/i18n/) in the request's language; stored values (ids, codes, provider messages) are shown as
 * they are.
 */
import type { ReceiptLookup, TransactionView } from '../report/receipt-history.ts'
import { periodBody, PERIOD_CSS } from '../report/format-period.ts'
import type { PeriodTotals } from '../report/period-totals.ts'
import { kstText } from '../report/format-receipt.ts'
import { html, trusted, type SafeHtml } from '../report/html.ts'
import { layout, type ListState } from './pages.ts'
import { listFilterFields, pager } from './list-controls.ts'
import { DEFAULT_LANG, translator, type Translator } from '../i18n/index.ts'
import { searchableIdentifier } from '../domain/index.ts'

const ko = () => translator(DEFAULT_LANG)

/** The hidden field that keeps an explicit `?lang=` through a GET form. */
export const langField = (t: Translator): SafeHtml => (t.explicit ? html`<input type="hidden" name="lang" value="${t.lang}" />` : html``)

/**
 * Posted, so a buyer identifier typed here never ends up in a URL (history, proxy logs, Referer);
 * the language rides on the action's `?lang=` when it was chosen explicitly. On the search page
 * itself the form also holds the merchant filter and page size (`list`).
 */
export function searchForm(q = '', t: Translator = ko(), list?: ListState): SafeHtml {
  return html`<form method="post" action="${t.href('/search')}" id="search-form" class="inline">
    <input type="search" name="q" value="${q}" placeholder="${t('search.placeholder')}" size="40" maxlength="100" aria-label="${t('search.label')}" autocomplete="off" />
    ${list ? listFilterFields(t, list.merchants, list) : ''}
    <button type="submit">${t('search.button')}</button>
  </form>`
}

export function searchPage(
  found: ReceiptLookup & { readonly next?: string | null; readonly previous?: string | null },
  t: Translator = ko(),
  list: ListState = { merchants: [], paged: false },
): string {
  // A buyer identifier comes back masked (receipt-history.ts): the box is left empty rather than holding the mask.
  const shown = searchableIdentifier(found.query) === undefined && !found.query.includes('*') ? found.query : ''
  // Page links are GETs carrying the query: never for a buyer identifier (it must not reach a URL), so
  // such a search shows its first page only (a larger page size shows more).
  const page = { rows: found.transactions, next: shown ? (found.next ?? null) : null, previous: shown ? (found.previous ?? null) : null }
  const body = html`<section>${searchForm(shown, t, list)}</section>
    <section>
      ${
        found.query
          ? found.transactions.length
            ? html`<table id="search-results">
              <thead>
                <tr>
                  <th>${t('col.transaction')}</th>
                  <th>${t('col.matchedBy')}</th>
                  <th>${t('col.merchant')}</th>
                  <th>${t('col.order')}</th>
                  <th class="num">${t('col.amount')}</th>
                  <th>${t('col.paidAt')}</th>
                  <th>${t('col.receipt')}</th>
                </tr>
              </thead>
              <tbody>
                ${found.transactions.map((x) => {
                  const issue = x.receipts.find((r) => r.kind === 'issue')
                  return html`<tr data-merchant="${x.merchant.id}">
                    <td><a href="${t.href(`/transactions/${encodeURIComponent(x.transaction_id)}`)}">${x.transaction_id}</a></td>
                    <td>${t.term('matched', x.matched_by)}</td>
                    <td>${x.merchant.name ?? x.merchant.id}</td>
                    <td>${x.order_id ?? ''} ${x.order_name ?? ''}</td>
                    <td class="num">${t.won(x.amount)}</td>
                    <td>${kstText(x.paid_at)}</td>
                    <td>${issue ? t.term('state', issue.state) : t('search.noneYet')}</td>
                  </tr>`
                })}
              </tbody>
            </table>
            ${pager(t, '/search', { q: shown, merchant: list.merchant, size: list.size }, page, list.paged && shown !== '')}`
            : html`<p id="search-none">${t('search.nothing', { q: found.query })}</p>`
          : html`<p class="muted">${t('search.hint')}</p>`
      }
    </section>`
  return layout(t('nav.search'), body, { t })
}

export function transactionPage(x: TransactionView, t: Translator = ko()): string {
  const won = t.won
  const body = html`<section>${searchForm('', t)}</section>
    <section id="transaction">
      <h2>${t('tx.heading')}</h2>
      <table>
        <tbody>
          <tr><th>${t('tx.merchant')}</th><td>${x.merchant.name ?? ''} (${x.merchant.id}${x.merchant.business_number ? `, ${x.merchant.business_number}` : ''})</td></tr>
          <tr><th>${t('tx.providerMethod')}</th><td>${x.provider} / ${x.method}</td></tr>
          <tr><th>${t('tx.order')}</th><td>${x.order_id ?? '-'} ${x.order_name ? `· ${x.order_name}` : ''}</td></tr>
          <tr><th>${t('tx.paymentRef')}</th><td>${x.payment_ref ?? '-'}</td></tr>
          <tr><th>${t('tx.amount')}</th><td>${t('tx.amountDetail', { amount: won(x.amount), taxFree: won(x.tax_free_amount), fee: won(x.service_fee) })}</td></tr>
          <tr><th>${t('tx.paidAt')}</th><td>${kstText(x.paid_at)} · ${t('tx.businessDate', { date: x.business_date })}</td></tr>
          <tr><th>${t('tx.identifier')}</th><td>${x.identifier_masked ? `${x.identifier_masked} (${t.term('identifier', x.identifier_type ?? '')})` : t('tx.selfIssued')}</td></tr>
          <tr><th>${t('tx.purpose')}</th><td>${t.term('purpose', x.purpose)}</td></tr>
          <tr><th>${t('tx.status')}</th><td>${t.term('status', x.status)}${x.refunded_amount ? `, ${t('tx.refunded', { amount: won(x.refunded_amount) })}` : ''}</td></tr>
        </tbody>
      </table>
    </section>
    ${x.receipts.map(
      (r) => html`<section class="receipt" data-receipt="${r.id}" data-state="${r.state}">
        <h2>${t('tx.receipt', { id: r.id })} · ${t.term('kind', r.kind)} · <span class="state">${t.term('state', r.state)}</span> · ${r.provider}${r.kind === 'issue' && ['issued', 'cancelling', 'cancelled'].includes(r.state) ? html` · <a class="print" href="${t.href(`/transactions/${encodeURIComponent(x.transaction_id)}/receipt`)}">${t('tx.printable')}</a>` : ''}</h2>
        <table>
          <thead>
            <tr><th class="num">${t('tx.total')}</th><th class="num">${t('tx.supply')}</th><th class="num">${t('tx.vat')}</th><th class="num">${t('tx.taxFree')}</th><th class="num">${t('tx.serviceFee')}</th><th class="num">${t('tx.cancelledAmount')}</th></tr>
          </thead>
          <tbody>
            <tr>
              ${[r.amounts.total, r.amounts.supply, r.amounts.vat, r.amounts.tax_free, r.amounts.service_fee, r.amounts.cancelled].map((n) => html`<td class="num">${won(n)}</td>`)}
            </tr>
          </tbody>
        </table>
        <p>
          ${t('tx.approval')} <strong class="approval">${r.approval_number ?? '-'}</strong> · ${t('tx.providerReceiptId')} ${r.provider_receipt_id ?? '-'}
          ${r.receipt_url && /^https?:\/\//.test(r.receipt_url) ? html`· <a href="${r.receipt_url}" rel="noopener noreferrer">${t('tx.providerReceipt')}</a>` : ''}
        </p>
        <p class="muted">
          ${t('tx.tradeDate')} ${r.trade_date} · ${t('tx.deadline')} ${r.deadline} · ${t('tx.run')}
          ${r.run_id ? html`<a href="${t.href(`/runs/${r.run_id}`)}">#${r.run_id}</a>` : '-'}${r.last_run_id && r.last_run_id !== r.run_id ? html` (${t('tx.latest')} <a href="${t.href(`/runs/${r.last_run_id}`)}">#${r.last_run_id}</a>)` : ''}
          · ${t('tx.attempts')} ${r.attempts}
        </p>
        ${r.error ? html`<p class="error">${t('tx.error')}: ${r.error.class ?? ''} ${r.error.code ?? ''} ${r.error.message ?? ''}</p>` : ''}
        <h3>${t('tx.history')}</h3>
        <table class="history">
          <thead><tr><th>${t('col.time')}</th><th>${t('col.event')}</th><th>${t('col.detail')}</th></tr></thead>
          <tbody>
            ${r.history.map((h) => html`<tr data-event="${h.event}"><td>${kstText(h.at)}</td><td>${t.term('event', h.event)}</td><td>${h.detail}</td></tr>`)}
          </tbody>
        </table>
        ${transitionsTable(r.transitions, t)}
      </section>`,
    )}`
  return layout(t('tx.title', { id: x.transaction_id }), body, { t })
}

/** The ledger's record of every change of the receipt's state, oldest first (receipt_transitions). */
function transitionsTable(steps: TransactionView['receipts'][number]['transitions'], t: Translator): SafeHtml {
  return html`<h3>${t('transitions.title')}</h3>
    ${
      steps.length
        ? html`<table class="transitions">
          <thead>
            <tr><th>${t('transitions.time')}</th><th>${t('transitions.from')}</th><th>${t('transitions.to')}</th><th>${t('transitions.cause')}</th><th>${t('transitions.run')}</th><th>${t('transitions.job')}</th></tr>
          </thead>
          <tbody>
            ${steps.map(
              (s) => html`<tr data-from="${s.from_state ?? ''}" data-to="${s.to_state}" data-cause="${s.cause}">
                <td>${kstText(s.at)}</td><td>${s.from_state ? t.term('state', s.from_state) : t('transitions.created')}</td><td>${t.term('state', s.to_state)}</td>
                <td>${s.cause}</td><td>${s.run_id ? html`<a href="${t.href(`/runs/${s.run_id}`)}">#${s.run_id}</a>` : ''}</td><td>${s.job_id ?? ''}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
        : html`<p class="muted transitions-none">${t('transitions.none')}</p>`
    }`
}

/** Period totals with a form for the period and a merchant filter (the `report --from --to` page). */
export function totalsPage(p: PeriodTotals, merchants: readonly { id: string; name: string }[], t: Translator = ko()): string {
  const body = html`<section>
      <form method="get" action="/totals" id="totals-form" class="filters">
        ${langField(t)}
        <label>${t('totals.from')} <input type="date" name="from" value="${p.from}" /></label>
        <label>${t('totals.to')} <input type="date" name="to" value="${p.to}" /></label>
        <label
          >${t('col.merchant')}
          <select name="merchant">
            <option value="">${t('common.all')}</option>
            ${merchants.map((m) => html`<option value="${m.id}" ${trusted(m.id === p.merchant_scope ? ' selected' : '')}>${m.name} (${m.id})</option>`)}
          </select></label
        >
        <button type="submit" style="background:#1f2937;border-color:#1f2937">${t('totals.show')}</button>
      </form>
      <p class="muted">${t('totals.sameAs')} <code>cash-receipts report --from ${p.from} --to ${p.to}${p.merchant_scope !== '*' ? ` --merchant ${p.merchant_scope}` : ''}</code> ${t('totals.csvHint', { flag: '--format csv' })}</p>
    </section>
    <style>${trusted(PERIOD_CSS.slice(PERIOD_CSS.indexOf('body, td')))}</style>
    ${periodBody(p, t)}`
  return layout(t('nav.totals'), body, { t })
}
