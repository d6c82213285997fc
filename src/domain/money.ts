/**
 * Money in integer KRW, never floats. VAT of a VAT-inclusive taxable total T is round-half-up(T/11),
 * computed as (2T + 11) div 22 (ties cannot occur). The NTS identity: total = supply + vat + serviceFee,
 * supply ≥ vat, total ≥ 1 (TS4). `supply` here includes the tax-free part, so the identity holds for
 * mixed receipts as well: supply = (taxable − vat) + taxFree.
 */
import { err, ok, type Result } from './result.ts'

export interface ReceiptAmounts {
  /** Total receipted, KRW integer = supply + vat + serviceFee + taxFree. */
  readonly total: number
  readonly supply: number
  readonly vat: number
  readonly taxFree: number
  readonly serviceFee: number
}

export const MAX_KRW = 999_999_999

export function vatOf(taxable: number): number {
  if (!Number.isSafeInteger(taxable) || taxable < 0) throw new RangeError(`taxable amount must be a non-negative integer, got ${taxable}`)
  return Math.floor((2 * taxable + 11) / 22)
}

export function parseKrw(raw: string | number | undefined | null, field: string, opts: { min: number; default?: number }): Result<number> {
  if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) {
    if (opts.default !== undefined) return ok(opts.default)
    return err(field, 'required', 'is required (whole won)')
  }
  let n: number
  if (typeof raw === 'number') n = raw
  else {
    const s = raw.trim()
    if (/^\d{1,3}(,\d{3})+$/.test(s)) return err(field, 'format', 'has thousands separators; write whole won without commas')
    if (/^-?\d+\.\d+$/.test(s)) return err(field, 'integer', 'is not a whole number of won (KRW has no fractions)')
    if (!/^-?\d+$/.test(s)) return err(field, 'format', 'is not a whole number of won')
    n = Number(s)
  }
  if (!Number.isFinite(n) || !Number.isInteger(n)) return err(field, 'integer', 'is not a whole number of won (KRW has no fractions)')
  if (n < opts.min) return err(field, 'range', n < 0 ? 'is negative' : `must be at least ${opts.min}`)
  if (n > MAX_KRW) return err(field, 'range', `exceeds the maximum of ${MAX_KRW} per receipt`)
  return ok(n)
}

/** Splits a receipt total into supply / VAT / tax-free / service fee. */
export function splitAmounts(a: { total: number; taxFree: number; serviceFee: number }): Result<ReceiptAmounts> {
  const { total, taxFree, serviceFee } = a
  for (const [k, v] of Object.entries(a)) {
    if (!Number.isSafeInteger(v) || v < 0) {
      return err(k === 'taxFree' ? 'tax_free_amount' : k === 'serviceFee' ? 'service_fee' : 'amount', 'integer', `${v} is not a non-negative whole number of won`)
    }
  }
  if (total < 1) return err('amount', 'range', 'must be at least 1 (NTS TS4)')
  if (total > MAX_KRW) return err('amount', 'range', `${total} exceeds the maximum of ${MAX_KRW} per receipt`)
  if (taxFree + serviceFee > total) return err('tax_free_amount', 'range', `tax-free ${taxFree} plus service fee ${serviceFee} exceed the total ${total}`)
  const taxable = total - taxFree - serviceFee
  const vat = vatOf(taxable)
  return ok({ total, supply: taxable - vat + taxFree, vat, taxFree, serviceFee })
}

/** What can still be receipted after refunds (never negative). */
export function receiptableAmount(amount: number, refunded: number): number {
  return Math.max(0, amount - refunded)
}
