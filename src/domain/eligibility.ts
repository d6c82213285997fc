/**
 * Which payments get a receipt and how (docs/tax-law.md §1, §2; the import format in the README).
 * - Only cash-type funds: cash, bank transfer, virtual-account deposit, the cash-funded part of Naver Pay
 *   (its amount comes from PortOne's cash-amount lookup at issue time; 0 → skipped).
 * - Cancelled or fully refunded before issuance → skipped.
 * - No buyer identifier: a mandatory-issuance merchant (의무발행업종) self-issues to 010-000-1234 — the
 *   contract says "when the merchant must issue"; we self-issue every such payment, not only those of
 *   ₩100,000 or more, because a mandatory issuer that issues below the threshold breaks no rule while
 *   one that skips a split payment whose deal total is ≥ ₩100,000 (docs/tax-law.md §2) is penalised.
 *   Other merchants skip payments without an identifier.
 */
import { SELF_ISSUE_NUMBER, type IdentifierType } from './identifier.ts'

export const METHODS = ['cash', 'bank_transfer', 'virtual_account', 'naverpay'] as const
export type Method = (typeof METHODS)[number]
export const MANDATORY_THRESHOLD = 100_000

export type IssuanceDecision =
  | { readonly action: 'issue'; readonly identifier: { readonly digits: string; readonly type: IdentifierType }; readonly selfIssued: boolean }
  | { readonly action: 'skip'; readonly reason: string }

export function decideIssuance(input: {
  readonly method: Method
  readonly receiptableAmount: number
  readonly identifier: { readonly digits: string; readonly type: IdentifierType } | null
  readonly mandatoryIssuer: boolean
  readonly status: 'completed' | 'cancelled'
}): IssuanceDecision {
  if (!METHODS.includes(input.method)) return { action: 'skip', reason: `method ${input.method} is not a cash-type payment` }
  if (input.status === 'cancelled') return { action: 'skip', reason: 'cancelled before issuance' }
  if (input.receiptableAmount <= 0) return { action: 'skip', reason: 'fully refunded before issuance' }
  if (input.identifier) return { action: 'issue', identifier: input.identifier, selfIssued: input.identifier.type === 'self' }
  if (input.mandatoryIssuer) return { action: 'issue', identifier: { digits: SELF_ISSUE_NUMBER, type: 'self' }, selfIssued: true }
  return { action: 'skip', reason: 'no buyer identifier and the merchant is not a mandatory issuer' }
}

export function decideNaverAmount(amountTotal: number): { readonly action: 'issue'; readonly amount: number } | { readonly action: 'skip'; readonly reason: string } {
  return amountTotal > 0 ? { action: 'issue', amount: amountTotal } : { action: 'skip', reason: 'naver pay cash amount is 0' }
}
