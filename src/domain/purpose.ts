/**
 * 소득공제 (deduction: an individual's income deduction) vs 지출증빙 (expense: a business's proof).
 * Per docs/tax-law.md §4: deduction accepts phone, RRN, card and the self-issue number; expense accepts a
 * business number (typical), phone, card or RRN, and never the self-issue number. A business number
 * with deduction is refused: a business buyer's receipt is expense proof, and a deduction receipt
 * issued to a business number is not usable by anyone (NICEPAY pairs company ⇔ business number).
 */
import type { IdentifierType } from './identifier.ts'
import { err, ok, type FieldError, type Result } from './result.ts'

export type Purpose = 'deduction' | 'expense'

export function parsePurpose(raw: string | undefined | null): Result<Purpose> {
  const v = (raw ?? '').trim().toLowerCase()
  if (v === '' || v === 'deduction' || v === '소득공제' || v === '소득공제용') return ok('deduction')
  if (v === 'expense' || v === '지출증빙' || v === '지출증빙용') return ok('expense')
  return err('purpose', 'enum', 'is not deduction (소득공제) or expense (지출증빙)')
}

export function checkPurposeIdentifier(purpose: Purpose, type: IdentifierType): FieldError | null {
  if (type === 'self' && purpose === 'expense') {
    return { field: 'purpose', rule: 'self-issue', message: 'the self-issue number 010-000-1234 may only be used for deduction (자진발급은 소득공제용만 가능)' }
  }
  if (type === 'business' && purpose === 'deduction') {
    return { field: 'purpose', rule: 'business-deduction', message: 'a business number identifies a business buyer: use purpose expense (지출증빙)' }
  }
  return null
}
