/** `cash-receipts show` as text: the transaction, each receipt's amounts and identifiers, its calls and history, in KST. */
import { kstDateTime } from '../domain/index.ts'
import { table } from './format-table.ts'
import type { ReceiptLookup } from './receipt-history.ts'
import { oneLine, truncateToWidth } from './text-width.ts'

const won = (n: number) => `₩${n.toLocaleString('en-US')}`
export const kstText = (isoInstant: string | null) => (isoInstant ? kstDateTime(isoInstant) : '-')

export function formatReceiptLookup(found: ReceiptLookup): string {
  const out: string[] = []
  for (const t of found.transactions) {
    if (out.length) out.push('', '')
    out.push(`Transaction ${t.transaction_id} (matched by ${t.matched_by.replace('_', ' ')})`)
    out.push(
      table(
        ['field', 'value'],
        [
          ['merchant', `${t.merchant.name ?? ''} (${t.merchant.id}${t.merchant.business_number ? `, ${t.merchant.business_number}` : ''})`],
          ['provider / method', `${t.provider} / ${t.method}`],
          ['order', `${t.order_id ?? '-'} ${t.order_name ? `· ${t.order_name}` : ''}`.trim()],
          ['payment ref', t.payment_ref ?? '-'],
          ['amount', `${won(t.amount)} (tax-free ${won(t.tax_free_amount)}, service fee ${won(t.service_fee)})`],
          ['paid at', `${kstText(t.paid_at)} · business date ${t.business_date}`],
          ['buyer identifier', t.identifier_masked ? `${t.identifier_masked} (${t.identifier_type})` : '- (self-issued)'],
          ['purpose', t.purpose],
          ['status', `${t.status}${t.refunded_amount ? `, refunded ${won(t.refunded_amount)}` : ''}`],
        ],
      ),
    )
    for (const r of t.receipts) {
      out.push('')
      out.push(`Receipt ${r.id} · ${r.kind} · ${r.state.toUpperCase()} · ${r.provider}`)
      out.push(
        table(
          ['total', 'supply', 'VAT', 'tax-free', 'service fee', 'cancelled'],
          [[r.amounts.total, r.amounts.supply, r.amounts.vat, r.amounts.tax_free, r.amounts.service_fee, r.amounts.cancelled].map(won)],
          [true, true, true, true, true, true],
        ),
      )
      out.push(`approval number ${r.approval_number ?? '-'} · provider receipt ${r.provider_receipt_id ?? '-'}${r.receipt_url ? ` · ${r.receipt_url}` : ''}`)
      out.push(
        `trade date ${r.trade_date} · deadline ${r.deadline} · run ${r.run_id ?? '-'}${r.last_run_id && r.last_run_id !== r.run_id ? ` (latest ${r.last_run_id})` : ''} · attempts ${r.attempts}`,
      )
      if (r.error) out.push(`error: ${r.error.class ?? ''} ${r.error.code ?? ''} ${truncateToWidth(oneLine(r.error.message ?? ''), 100)}`.replace(/\s+/g, ' '))
      out.push('history:')
      for (const h of r.history) out.push(`  ${kstText(h.at)}  ${h.event.padEnd(9)} ${truncateToWidth(oneLine(h.detail), 100)}`)
      if (r.transitions.length) {
        out.push('transitions:')
        out.push(
          table(
            ['time (KST)', 'from', 'to', 'cause', 'run', 'job'],
            r.transitions.map((s) => [kstText(s.at), s.from_state ?? '(created)', s.to_state, s.cause, s.run_id ?? '-', s.job_id ?? '-']),
          ),
        )
      }
    }
  }
  return out.join('\n')
}
