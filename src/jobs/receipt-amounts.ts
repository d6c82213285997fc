/**
 * The amounts one transaction is receipted for: what was paid in cash-type funds minus refunds,
 * split into supply / VAT / tax-free / service fee by the domain rules. Refunds come off the taxable
 * part first, then the service fee, then the tax-free part.
 */
import { splitAmounts, type ReceiptAmounts } from '../domain/index.ts'

export function receiptAmountsFor(tx: {
  readonly amount: number
  readonly refunded_amount: number
  readonly tax_free_amount: number
  readonly service_fee: number
}): ReceiptAmounts | null {
  const total = tx.amount - tx.refunded_amount
  if (total <= 0) return null
  const taxFree = Math.min(tx.tax_free_amount, total)
  const serviceFee = Math.min(tx.service_fee, total - taxFree)
  const split = splitAmounts({ total, taxFree, serviceFee })
  return split.ok ? split.value : null
}
