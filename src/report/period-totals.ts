/**
 * Period totals for filing (`cash-receipts report --from D --to D`, the dashboard's totals page):
 * receipts whose business (trade) date falls in the period, per merchant, purpose and month, with
 * counts and amounts (total, supply, VAT) issued, cancelled, and issued minus cancelled.
 *
 * Definitions:
 * - issued: issue receipts the provider accepted (state issued, cancelling or cancelled — a receipt
 *   cancelled later was still issued);
 * - cancelled: cancellation receipts the provider accepted (kind cancel, state issued), full or
 *   partial, with the amounts they cancelled; counted in the month of the original receipt's
 *   business date (the receipt they correct), not the month the cancellation was made;
 * - net = issued − cancelled, field by field.
 * Amounts are integer KRW.
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'

export interface Amounts {
  count: number
  total: number
  supply: number
  vat: number
}

export interface PeriodRow {
  merchant_id: string
  merchant_name: string | null
  purpose: string
  month: string
  issued: Amounts
  cancelled: Amounts
  net: Amounts
}

export interface PeriodTotals {
  from: string
  to: string
  merchant_scope: string
  rows: PeriodRow[]
  totals: { issued: Amounts; cancelled: Amounts; net: Amounts }
}

const zero = (): Amounts => ({ count: 0, total: 0, supply: 0, vat: 0 })
const minus = (a: Amounts, b: Amounts): Amounts => ({ count: a.count - b.count, total: a.total - b.total, supply: a.supply - b.supply, vat: a.vat - b.vat })
const add = (a: Amounts, b: Amounts) => {
  a.count += b.count
  a.total += b.total
  a.supply += b.supply
  a.vat += b.vat
}

export async function buildPeriodTotals(db: Db, sel: { from: string; to: string; merchantId?: string }): Promise<PeriodTotals> {
  const issuedWhere = sql`r.kind = 'issue' AND r.state IN ('issued', 'cancelling', 'cancelled')`
  const cancelWhere = sql`r.kind = 'cancel' AND r.state = 'issued'`
  const rows = await sql<{
    merchant_id: string
    merchant_name: string | null
    purpose: string
    month: string
    ic: string
    it: string
    is: string
    iv: string
    cc: string
    ct: string
    cs: string
    cv: string
  }>`
    SELECT r.merchant_id, m.name AS merchant_name, r.purpose, to_char(r.trade_date, 'YYYY-MM') AS month,
      count(*) FILTER (WHERE ${issuedWhere}) AS ic,
      coalesce(sum(r.total_amount) FILTER (WHERE ${issuedWhere}), 0) AS it,
      coalesce(sum(r.supply_amount) FILTER (WHERE ${issuedWhere}), 0) AS "is",
      coalesce(sum(r.vat_amount) FILTER (WHERE ${issuedWhere}), 0) AS iv,
      count(*) FILTER (WHERE ${cancelWhere}) AS cc,
      coalesce(sum(r.total_amount) FILTER (WHERE ${cancelWhere}), 0) AS ct,
      coalesce(sum(r.supply_amount) FILTER (WHERE ${cancelWhere}), 0) AS cs,
      coalesce(sum(r.vat_amount) FILTER (WHERE ${cancelWhere}), 0) AS cv
    FROM receipts r LEFT JOIN merchants m ON m.id = r.merchant_id
    WHERE r.trade_date BETWEEN ${sel.from}::date AND ${sel.to}::date
      AND ((${issuedWhere}) OR (${cancelWhere}))
      ${sel.merchantId ? sql`AND r.merchant_id = ${sel.merchantId}` : sql``}
    GROUP BY 1, 2, 3, 4
    ORDER BY 4, 1, 3`.execute(db)
  const totals = { issued: zero(), cancelled: zero(), net: zero() }
  const out = rows.rows.map((r) => {
    const issued = { count: Number(r.ic), total: Number(r.it), supply: Number(r.is), vat: Number(r.iv) }
    const cancelled = { count: Number(r.cc), total: Number(r.ct), supply: Number(r.cs), vat: Number(r.cv) }
    const net = minus(issued, cancelled)
    add(totals.issued, issued)
    add(totals.cancelled, cancelled)
    add(totals.net, net)
    return { merchant_id: r.merchant_id, merchant_name: r.merchant_name, purpose: r.purpose, month: r.month, issued, cancelled, net }
  })
  return { from: sel.from, to: sel.to, merchant_scope: sel.merchantId ?? '*', rows: out, totals }
}

const CSV_COLUMNS = [
  'month',
  'merchant_id',
  'merchant_name',
  'purpose',
  'issued_count',
  'issued_total',
  'issued_supply',
  'issued_vat',
  'cancelled_count',
  'cancelled_total',
  'cancelled_supply',
  'cancelled_vat',
  'net_count',
  'net_total',
  'net_supply',
  'net_vat',
] as const

/** One CSV field (RFC 4180 quoting: a handful of lines, no library needed for writing). */
const field = (v: string | number | null) => {
  const s = v === null ? '' : String(v)
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** CSV that Excel opens as UTF-8 (a byte order mark first), CRLF line ends, a header row. */
export function formatPeriodCsv(p: PeriodTotals): string {
  const line = (r: PeriodRow) =>
    [
      r.month,
      r.merchant_id,
      r.merchant_name,
      r.purpose,
      r.issued.count,
      r.issued.total,
      r.issued.supply,
      r.issued.vat,
      r.cancelled.count,
      r.cancelled.total,
      r.cancelled.supply,
      r.cancelled.vat,
      r.net.count,
      r.net.total,
      r.net.supply,
      r.net.vat,
    ]
      .map(field)
      .join(',')
  return `\uFEFF${[CSV_COLUMNS.join(','), ...p.rows.map(line)].join('\r\n')}\r\n`
}
