/**
 * A printable cash receipt (현금영수증) per issue receipt, in the usual layout: merchant name and
 * masked business number, approval number, trade date and time (KST), supply, VAT, service fee,
 * total, purpose, masked buyer identifier; a cancelled receipt is marked 취소. One self-contained
 * page (inline CSS, nothing loaded), with the provider's own receipt URL linked where one exists.
 */
import { kstDateTime } from '../domain/index.ts'
import { DEFAULT_LANG, translator, type Translator } from '../i18n/index.ts'
import { html, trusted } from './html.ts'
import type { TransactionView } from './receipt-history.ts'

/** The number NTS prints for a receipt issued without the buyer's identifier (자진발급). */
const SELF_ISSUED_NUMBER = '010-000-1234'

const CSS = `
body { font: 14px/1.5 "Noto Sans KR", "Noto Sans CJK KR", "Malgun Gothic", system-ui, sans-serif; word-break: keep-all; overflow-wrap: anywhere; background: #f3f3f3; margin: 0; }
.receipt { width: 340px; margin: 24px auto; background: #fff; border: 1px solid #ccc; padding: 18px 20px; page-break-after: always; }
h1 { font-size: 20px; text-align: center; margin: 0 0 12px; letter-spacing: 4px; }
.stamp { color: #c62828; border: 2px solid #c62828; padding: 0 8px; font-weight: 700; margin-left: 6px; letter-spacing: 0; }
dl { display: grid; grid-template-columns: 110px 1fr; margin: 0; row-gap: 4px; }
dt { color: #555; } dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
hr { border: 0; border-top: 1px dashed #999; margin: 10px 0; }
.total dd, .total dt { font-weight: 700; font-size: 16px; color: #111; }
.foot { font-size: 12px; color: #666; margin-top: 10px; }
@media print { body { background: #fff; } .receipt { border: 0; margin: 0 auto; } }
`

/** `opts.t` picks the language (Korean when absent); times are KST in every language. */
export function formatPrintableReceipt(t: TransactionView, opts: { generatedAt: Date; t?: Translator }): string {
  const tr = opts.t ?? translator(DEFAULT_LANG)
  const issues = t.receipts.filter((r) => r.kind === 'issue' && ['issued', 'cancelling', 'cancelled'].includes(r.state))
  const when = (iso: string | null) => (iso ? kstDateTime(iso) : '')
  const won = tr.won
  return html`<!doctype html>
    <html lang="${tr.lang}">
      <head>
        <meta charset="utf-8" />
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'" />
        <title>${tr('print.title')} ${t.transaction_id}</title>
        <style>
          ${trusted(CSS)}
        </style>
      </head>
      <body>
        ${
          issues.length
            ? issues.map(
                (r) => html`<div class="receipt" data-receipt="${r.id}">
                <h1>${tr('print.title')}${r.state === 'cancelled' ? html`<span class="stamp">${tr('print.cancelled')}</span>` : r.amounts.cancelled ? html`<span class="stamp">${tr('print.partlyCancelled')}</span>` : ''}</h1>
                <dl>
                  <dt>${tr('print.merchant')}</dt><dd>${t.merchant.name ?? t.merchant.id}</dd>
                  <dt>${tr('print.businessNumber')}</dt><dd>${t.merchant.business_number ?? '-'}</dd>
                  <dt>${tr('print.approval')}</dt><dd class="approval">${r.approval_number ?? '-'}</dd>
                  <dt>${tr('print.tradedAt')}</dt><dd>${when(t.paid_at)}</dd>
                  <dt>${tr('print.issuedAt')}</dt><dd>${when(r.issued_at)}</dd>
                  <dt>${tr('print.purpose')}</dt><dd>${tr.term('purpose', r.purpose)}${r.self_issued ? ` (${tr('print.selfIssued')})` : ''}</dd>
                  <dt>${tr('print.identifier')}</dt><dd>${t.identifier_masked ?? `${SELF_ISSUED_NUMBER} (${tr('print.selfIssued')})`}</dd>
                </dl>
                <hr />
                <dl>
                  <dt>${tr('print.supply')}</dt><dd>${won(r.amounts.supply)}</dd>
                  <dt>${tr('print.vat')}</dt><dd>${won(r.amounts.vat)}</dd>
                  ${r.amounts.tax_free ? html`<dt>${tr('print.taxFree')}</dt><dd>${won(r.amounts.tax_free)}</dd>` : ''}
                  <dt>${tr('print.serviceFee')}</dt><dd>${won(r.amounts.service_fee)}</dd>
                  ${r.amounts.cancelled ? html`<dt>${tr('print.cancelledAmount')}</dt><dd>-${won(r.amounts.cancelled)}</dd>` : ''}
                </dl>
                <hr />
                <dl class="total"><dt>${tr('print.total')}</dt><dd>${won(r.amounts.total - r.amounts.cancelled)}</dd></dl>
                <p class="foot">
                  ${tr('print.order')} ${t.order_id ?? '-'}${t.order_name ? ` · ${t.order_name}` : ''}<br />
                  ${r.receipt_url && /^https?:\/\//.test(r.receipt_url) ? html`<a href="${r.receipt_url}">${tr('print.providerReceipt')}</a><br />` : ''}
                  ${tr('print.printedAt')} ${kstDateTime(opts.generatedAt)} · ${tr('print.helpline')}
                </p>
              </div>`,
              )
            : html`<p>${tr('print.noneIssued', { id: t.transaction_id })}</p>`
        }
      </body>
    </html>`.value
}
