/**
 * The dashboard's search and receipt pages: a transaction id, order id or approval number finds a
 * transaction; its page shows the same content as `cash-receipts show` (receipts, amounts, approval
 * number, provider receipt id and URL, every call and state change), times in KST.
 */
import type { ReceiptLookup, TransactionView } from '../report/receipt-history.ts'
import { periodBody, PERIOD_CSS } from '../report/format-period.ts'
import type { PeriodTotals } from '../report/period-totals.ts'
import { kstText } from '../report/format-receipt.ts'
import { html, trusted, type SafeHtml } from '../report/html.ts'
import { layout } from './pages.ts'
import { DEFAULT_LANG, translator, type Translator } from '../i18n/index.ts'

const won = (n: number) => `₩${n.toLocaleString('en-US')}`

export function searchForm(q = ''): SafeHtml {
  return html`<form method="get" action="/search" id="search-form" class="inline">
    <input type="search" name="q" value="${q}" placeholder="transaction id, order id or approval number" size="40" maxlength="100" aria-label="search" />
    <button type="submit">Search</button>
  </form>`
}

export function searchPage(found: ReceiptLookup, t: Translator = translator(DEFAULT_LANG)): string {
  const body = html`<section>${searchForm(found.query)}</section>
    <section>
      ${found.query
        ? found.transactions.length
          ? html`<table id="search-results">
              <thead>
                <tr>
                  <th>transaction</th>
                  <th>matched by</th>
                  <th>merchant</th>
                  <th>order</th>
                  <th class="num">amount</th>
                  <th>paid at</th>
                  <th>receipt</th>
                </tr>
              </thead>
              <tbody>
                ${found.transactions.map(
                  (t) =>
                    html`<tr>
                      <td><a href="/transactions/${encodeURIComponent(t.transaction_id)}">${t.transaction_id}</a></td>
                      <td>${t.matched_by.replace('_', ' ')}</td>
                      <td>${t.merchant.name ?? t.merchant.id}</td>
                      <td>${t.order_id ?? ''} ${t.order_name ?? ''}</td>
                      <td class="num">${won(t.amount)}</td>
                      <td>${kstText(t.paid_at)}</td>
                      <td>${t.receipts.find((r) => r.kind === 'issue')?.state ?? 'none yet'}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : html`<p id="search-none">Nothing found for “${found.query}”.</p>`
        : html`<p class="muted">Search by transaction id, order id or approval number (승인번호).</p>`}
    </section>`
  return layout(t('nav.search'), body, { t })
}

export function transactionPage(t: TransactionView, tr: Translator = translator(DEFAULT_LANG)): string {
  const body = html`<section>${searchForm()}</section>
    <section id="transaction">
      <h2>Transaction</h2>
      <table>
        <tbody>
          <tr><th>merchant</th><td>${t.merchant.name ?? ''} (${t.merchant.id}${t.merchant.business_number ? `, ${t.merchant.business_number}` : ''})</td></tr>
          <tr><th>provider / method</th><td>${t.provider} / ${t.method}</td></tr>
          <tr><th>order</th><td>${t.order_id ?? '-'} ${t.order_name ? `· ${t.order_name}` : ''}</td></tr>
          <tr><th>payment ref</th><td>${t.payment_ref ?? '-'}</td></tr>
          <tr><th>amount</th><td>${won(t.amount)} (tax-free ${won(t.tax_free_amount)}, service fee ${won(t.service_fee)})</td></tr>
          <tr><th>paid at</th><td>${kstText(t.paid_at)} · business date ${t.business_date}</td></tr>
          <tr><th>buyer identifier</th><td>${t.identifier_masked ? `${t.identifier_masked} (${t.identifier_type})` : '- (self-issued)'}</td></tr>
          <tr><th>purpose</th><td>${t.purpose}</td></tr>
          <tr><th>status</th><td>${t.status}${t.refunded_amount ? `, refunded ${won(t.refunded_amount)}` : ''}</td></tr>
        </tbody>
      </table>
    </section>
    ${t.receipts.map(
      (r) => html`<section class="receipt" data-receipt="${r.id}" data-state="${r.state}">
        <h2>Receipt ${r.id} · ${r.kind} · <span class="state">${r.state}</span> · ${r.provider}${r.kind === 'issue' && ['issued', 'cancelling', 'cancelled'].includes(r.state) ? html` · <a class="print" href="/transactions/${encodeURIComponent(t.transaction_id)}/receipt">인쇄용 영수증 (printable)</a>` : ''}</h2>
        <table>
          <thead>
            <tr><th class="num">total</th><th class="num">supply</th><th class="num">VAT</th><th class="num">tax-free</th><th class="num">service fee</th><th class="num">cancelled</th></tr>
          </thead>
          <tbody>
            <tr>
              ${[r.amounts.total, r.amounts.supply, r.amounts.vat, r.amounts.tax_free, r.amounts.service_fee, r.amounts.cancelled].map((n) => html`<td class="num">${won(n)}</td>`)}
            </tr>
          </tbody>
        </table>
        <p>
          approval number <strong class="approval">${r.approval_number ?? '-'}</strong> · provider receipt ${r.provider_receipt_id ?? '-'}
          ${r.receipt_url && /^https?:\/\//.test(r.receipt_url) ? html`· <a href="${r.receipt_url}" rel="noopener noreferrer">provider's receipt</a>` : ''}
        </p>
        <p class="muted">
          trade date ${r.trade_date} · deadline ${r.deadline} · run
          ${r.run_id ? html`<a href="/runs/${r.run_id}">#${r.run_id}</a>` : '-'}${r.last_run_id && r.last_run_id !== r.run_id ? html` (latest <a href="/runs/${r.last_run_id}">#${r.last_run_id}</a>)` : ''}
          · attempts ${r.attempts}
        </p>
        ${r.error ? html`<p class="error">error: ${r.error.class ?? ''} ${r.error.code ?? ''} ${r.error.message ?? ''}</p>` : ''}
        <h3>History</h3>
        <table class="history">
          <thead><tr><th>time (KST)</th><th>event</th><th>detail</th></tr></thead>
          <tbody>
            ${r.history.map((h) => html`<tr><td>${kstText(h.at)}</td><td>${h.event}</td><td>${h.detail}</td></tr>`)}
          </tbody>
        </table>
      </section>`,
    )}`
  return layout(`Transaction ${t.transaction_id}`, body, { t: tr })
}

/** Period totals with a form for the period and a merchant filter (the `report --from --to` page). */
export function totalsPage(p: PeriodTotals, merchants: readonly { id: string; name: string }[], t: Translator = translator(DEFAULT_LANG)): string {
  const body = html`<section>
      <form method="get" action="/totals" id="totals-form" class="filters">
        <label>from <input type="date" name="from" value="${p.from}" /></label>
        <label>to <input type="date" name="to" value="${p.to}" /></label>
        <label
          >merchant
          <select name="merchant">
            <option value="">all</option>
            ${merchants.map((m) => html`<option value="${m.id}" ${trusted(m.id === p.merchant_scope ? ' selected' : '')}>${m.name} (${m.id})</option>`)}
          </select></label
        >
        <button type="submit" style="background:#1f2937;border-color:#1f2937">Show</button>
      </form>
      <p class="muted">Same as <code>cash-receipts report --from ${p.from} --to ${p.to}${p.merchant_scope !== '*' ? ` --merchant ${p.merchant_scope}` : ''}</code> (add <code>--format csv</code> for Excel).</p>
    </section>
    <style>${trusted(PERIOD_CSS.slice(PERIOD_CSS.indexOf('body, td')))}</style>
    ${periodBody(p)}`
  return layout(t('nav.totals'), body, { t })
}
