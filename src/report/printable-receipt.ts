/**
 * A printable cash receipt (현금영수증) per issue receipt, in the usual layout: merchant name and
 * masked business number, approval number, trade date and time (KST), supply, VAT, service fee,
 * total, purpose, masked buyer identifier; a cancelled receipt is marked 취소. One self-contained
 * page (inline CSS, nothing loaded), with the provider's own receipt URL linked where one exists.
 */
import { kstWallClock } from '../domain/index.ts'
import { html, trusted } from './html.ts'
import type { TransactionView } from './receipt-history.ts'

const won = (n: number) => `${n.toLocaleString('en-US')}원`
const PURPOSE_KO: Readonly<Record<string, string>> = { deduction: '소득공제', expense: '지출증빙' }

const CSS = `
body { font: 14px/1.5 "Noto Sans KR", "Malgun Gothic", system-ui, sans-serif; word-break: keep-all; background: #f3f3f3; margin: 0; }
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

export function formatPrintableReceipt(t: TransactionView, opts: { generatedAt: Date }): string {
  const issues = t.receipts.filter((r) => r.kind === 'issue' && ['issued', 'cancelling', 'cancelled'].includes(r.state))
  const when = (iso: string | null) => (iso ? kstWallClock(new Date(iso)).slice(0, 19).replace('T', ' ') : '')
  return html`<!doctype html>
    <html lang="ko">
      <head>
        <meta charset="utf-8" />
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'" />
        <title>현금영수증 ${t.transaction_id}</title>
        <style>
          ${trusted(CSS)}
        </style>
      </head>
      <body>
        ${issues.length
          ? issues.map(
              (r) => html`<div class="receipt" data-receipt="${r.id}">
                <h1>현금영수증${r.state === 'cancelled' ? html`<span class="stamp">취소</span>` : r.amounts.cancelled ? html`<span class="stamp">부분취소</span>` : ''}</h1>
                <dl>
                  <dt>가맹점</dt><dd>${t.merchant.name ?? t.merchant.id}</dd>
                  <dt>사업자번호</dt><dd>${t.merchant.business_number ?? '-'}</dd>
                  <dt>승인번호</dt><dd class="approval">${r.approval_number ?? '-'}</dd>
                  <dt>거래일시</dt><dd>${when(t.paid_at)}</dd>
                  <dt>발급일시</dt><dd>${when(r.issued_at)}</dd>
                  <dt>거래구분</dt><dd>${PURPOSE_KO[r.purpose] ?? r.purpose}${r.self_issued ? ' (자진발급)' : ''}</dd>
                  <dt>식별번호</dt><dd>${t.identifier_masked ?? '010-000-1234 (자진발급)'}</dd>
                </dl>
                <hr />
                <dl>
                  <dt>공급가액</dt><dd>${won(r.amounts.supply)}</dd>
                  <dt>부가세</dt><dd>${won(r.amounts.vat)}</dd>
                  ${r.amounts.tax_free ? html`<dt>면세</dt><dd>${won(r.amounts.tax_free)}</dd>` : ''}
                  <dt>봉사료</dt><dd>${won(r.amounts.service_fee)}</dd>
                  ${r.amounts.cancelled ? html`<dt>취소금액</dt><dd>-${won(r.amounts.cancelled)}</dd>` : ''}
                </dl>
                <hr />
                <dl class="total"><dt>합계</dt><dd>${won(r.amounts.total - r.amounts.cancelled)}</dd></dl>
                <p class="foot">
                  주문 ${t.order_id ?? '-'}${t.order_name ? ` · ${t.order_name}` : ''}<br />
                  ${r.receipt_url && /^https?:\/\//.test(r.receipt_url) ? html`<a href="${r.receipt_url}">발급사 영수증 보기 (provider's receipt)</a><br />` : ''}
                  출력 ${when(opts.generatedAt.toISOString())} KST · 현금영수증 문의 국번없이 126
                </p>
              </div>`,
            )
          : html`<p>발급된 현금영수증이 없습니다 (no issued receipt for ${t.transaction_id}).</p>`}
      </body>
    </html>`.value
}
