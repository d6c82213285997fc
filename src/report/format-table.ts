/** `report --format table`: aligned plain text, Korean (wide) characters counted as two columns. */
import type { RunReport } from './report.ts'

const width = (s: string) => [...s].reduce((w, ch) => w + (/[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(ch) ? 2 : 1), 0)
const pad = (s: string, n: number, right = false) => (right ? ' '.repeat(Math.max(0, n - width(s))) + s : s + ' '.repeat(Math.max(0, n - width(s))))

export function table(headers: string[], rows: string[][], rightAlign: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))))
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i]!, rightAlign[i])).join('  ').trimEnd()
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

const won = (n: number) => `₩${n.toLocaleString('en-US')}`

export function formatReportTable(r: RunReport): string {
  const t = r.totals
  const out: string[] = []
  out.push(`Settlement run ${r.run_id} · business date ${r.business_date} · ${r.status} · ${r.duration_s}s`)
  out.push('')
  out.push(
    table(
      ['eligible', 'issued', 'failed', 'pending', 'skipped', 'cancelled', 'overdue', 'amount issued'],
      [[t.eligible, t.issued, t.failed, t.pending, t.skipped, t.cancelled, r.overdue].map(String).concat(won(r.amount_issued))],
      [true, true, true, true, true, true, true, true],
    ),
  )
  out.push('')
  const providers = Object.entries(r.by_provider).sort(([a], [b]) => a.localeCompare(b))
  if (providers.length) {
    out.push(
      table(
        ['provider', 'issued', 'failed', 'pending', 'skipped', 'cancelled'],
        providers.map(([p, v]) => [p, v.issued, v.failed, v.pending, v.skipped, v.cancelled].map(String)),
        [false, true, true, true, true, true],
      ),
    )
  }
  if (r.failures.length) {
    out.push('')
    out.push(`Failures (${r.failures.length}${r.failures.length >= 1000 ? '+' : ''}):`)
    out.push(
      table(
        ['transaction', 'provider', 'class', 'code', 'message'],
        r.failures.slice(0, 50).map((f) => [f.transaction_id, f.provider, f.error_class, f.code, f.message.slice(0, 60)]),
      ),
    )
    if (r.failures.length > 50) out.push(`… ${r.failures.length - 50} more (use --format json)`)
  }
  return out.join('\n')
}
