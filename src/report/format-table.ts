/**
 * `report --format table`: aligned plain text for a terminal. Columns are padded by display width
 * (text-width.ts), so Korean merchant names and provider messages line up; messages are cut by
 * columns, never mid-character, and kept on one line.
 */
import type { RunReport } from './report.ts'
import { OUTCOMES, type ReportDetails } from './report-details.ts'
import { displayWidth, oneLine, padToWidth, truncateToWidth } from './text-width.ts'

export function table(headers: string[], rows: string[][], rightAlign: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(displayWidth(h), ...rows.map((r) => displayWidth(r[i] ?? ''))))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => padToWidth(c, widths[i]!, rightAlign[i] ? 'right' : 'left'))
      .join('  ')
      .trimEnd()
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

const won = (n: number) => `₩${n.toLocaleString('en-US')}`
const cell = (s: string, width: number) => truncateToWidth(oneLine(s), width)

/** The report as text; with `details` it also lists merchants and failure reasons. */
export function formatReportTable(r: RunReport, details?: ReportDetails): string {
  const t = r.totals
  const out: string[] = []
  out.push(`${r.trigger === 'redrive' ? 'Re-drive run' : 'Settlement run'} ${r.run_id} · business date ${r.business_date} · ${r.status} · ${r.duration_s}s`)
  if (r.redrive_of?.length) out.push(`re-drive of run ${r.redrive_of.join(', ')}`)
  if (r.redriven) {
    out.push(`${r.redriven} receipts failed and were re-driven${r.redrive_runs.length ? ` (run ${r.redrive_runs.join(', ')})` : ''}; their current state is counted below`)
  }
  out.push('')
  out.push(
    table(
      ['eligible', 'issued', 'failed', 'pending', 'skipped', 'cancelled', 'overdue', 'amount issued'],
      [[t.eligible, t.issued, t.failed, t.pending, t.skipped, t.cancelled, r.overdue].map(String).concat(won(r.amount_issued))],
      [true, true, true, true, true, true, true, true],
    ),
  )
  const unrepaired = r.duplicates.filter((d) => !d.repaired_at).length
  out.push(`duplicate receipts at providers: ${r.duplicates.length} (${unrepaired} not repaired)`)
  const providers = Object.entries(r.by_provider).sort(([a], [b]) => a.localeCompare(b))
  if (providers.length) {
    out.push('')
    out.push(
      table(
        ['provider', ...OUTCOMES],
        providers.map(([p, v]) => [p, ...OUTCOMES.map((o) => String(v[o]))]),
        [false, true, true, true, true, true],
      ),
    )
  }
  if (details?.by_merchant.length) {
    out.push('')
    out.push(
      table(
        ['merchant', 'id', ...OUTCOMES],
        details.by_merchant.map((m) => [cell(m.name, 30), m.merchant_id, ...OUTCOMES.map((o) => String(m[o]))]),
        [false, false, true, true, true, true, true],
      ),
    )
  }
  if (details?.failure_reasons.length) {
    out.push('')
    out.push('Failure reasons:')
    out.push(
      table(
        ['provider', 'class', 'code', 'count', 'example message'],
        details.failure_reasons.map((f) => [f.provider, f.error_class, cell(f.code, 24), String(f.count), cell(f.sample_message, 60)]),
        [false, false, false, true, false],
      ),
    )
  }
  if (r.failures.length) {
    out.push('')
    out.push(`Failures (${r.failures.length}${r.failures.length >= 1000 ? '+' : ''}):`)
    out.push(
      table(
        ['transaction', 'provider', 'class', 'code', 'message'],
        r.failures.slice(0, 50).map((f) => [cell(f.transaction_id, 40), f.provider, f.error_class, cell(f.code, 24), cell(f.message, 60)]),
      ),
    )
    if (r.failures.length > 50) out.push(`… ${r.failures.length - 50} more (use --format json)`)
  }
  if (details && details.overdue.total > 0) {
    out.push('')
    out.push(`Past the legal deadline (${details.overdue.total}):`)
    out.push(
      table(
        ['transaction', 'merchant', 'provider', 'state', 'deadline'],
        details.overdue.receipts.slice(0, 50).map((o) => [cell(o.transaction_id, 40), o.merchant_id, o.provider, o.state, o.deadline]),
      ),
    )
  }
  return out.join('\n')
}
