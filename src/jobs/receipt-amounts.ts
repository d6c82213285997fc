/**
 * The amounts one transaction is receipted for: what was paid in cash-type funds minus refunds,
 * split into supply / VAT / tax-free / service fee by the domain rules. Refunds come off the taxable
 * part first, then the service fee, then the tax-free part.
 */
import { splitAmounts, vatOf, type ProviderReceipt, type ReceiptAmounts } from '../domain/index.ts'

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

/**
 * The amounts a receipt the provider holds is for: ours when the provider's amount agrees (or it does
 * not say), else the provider's total split by our rules, with the provider's VAT where its answer
 * carries one. The ledger records what the provider holds, on every path that reads a receipt back
 * (the issue answer, a lookup after a crash, the read-back after "already issued").
 */
export function heldAmounts(held: ProviderReceipt, ours: ReceiptAmounts): ReceiptAmounts {
  const total = held.amount
  if (total === null || !Number.isSafeInteger(total) || total < 0 || total === ours.total) return ours
  const taxFree = Math.min(ours.taxFree, total)
  const serviceFee = Math.min(ours.serviceFee, total - taxFree)
  const taxable = total - taxFree - serviceFee
  const vat = held.vat != null && Number.isSafeInteger(held.vat) && held.vat >= 0 && held.vat <= taxable ? held.vat : vatOf(taxable)
  return { total, supply: taxable - vat + taxFree, vat, taxFree, serviceFee }
}
