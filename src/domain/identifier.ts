/**
 * Buyer identifiers (신분인식수단): parsing, validation and masking per docs/tax-law.md §3.
 * Dispatch when the type is not given (docs/tax-law.md §3.6):
 *   0100001234 → self-issue; 10 digits starting 01 → legacy phone; 11 digits 01[016789] → phone;
 *   10 digits → business number (checksum); 13 digits with a plausible YYMMDD → RRN/ARC (no checksum);
 *   13–19 digits → card (NTS TS2 prefix rules); anything else → rejected.
 */
import { err, ok, type Result } from './result.ts'
export { maskIdentifier } from './mask.ts'

/** Kind of buyer identifier after validation. `self` is the NTS self-issue number 0100001234. */
export type IdentifierType = 'phone' | 'business' | 'card' | 'rrn' | 'self'
export const SELF_ISSUE_NUMBER = '0100001234'
export type DeclaredIdentifierType = 'phone' | 'business' | 'card' | 'rrn'
export interface Identifier {
  readonly digits: string
  readonly type: IdentifierType
}

const F = 'identifier'

/** BRN check digit: weights 1,3,7,1,3,7,1,3,5, plus floor(d9·5/10), check = (10 − s mod 10) mod 10. */
export function brnCheckDigit(first9: string): number {
  const w = [1, 3, 7, 1, 3, 7, 1, 3, 5]
  let s = 0
  for (let i = 0; i < 9; i++) s += Number(first9[i]) * w[i]!
  s += Math.floor((Number(first9[8]) * 5) / 10)
  return (10 - (s % 10)) % 10
}

export function isValidBrn(digits: string): boolean {
  return /^\d{10}$/.test(digits) && brnCheckDigit(digits.slice(0, 9)) === Number(digits[9])
}

/** RRN / foreigner number: 13 digits, YYMMDD a real date in the century the 7th digit names. No checksum (random since 2020-10-05). */
export function isPlausibleRrn(digits: string): boolean {
  if (!/^\d{13}$/.test(digits)) return false
  const g = Number(digits[6])
  const century = g === 9 || g === 0 ? 1800 : g === 1 || g === 2 || g === 5 || g === 6 ? 1900 : 2000
  const y = century + Number(digits.slice(0, 2))
  const m = Number(digits.slice(2, 4))
  const d = Number(digits.slice(4, 6))
  if (m < 1 || m > 12 || d < 1) return false
  const dim = new Date(Date.UTC(y, m, 0)).getUTCDate()
  return d <= dim
}

function phoneRule(digits: string): string | null {
  if (!/^01[016789]/.test(digits)) return 'a mobile number must start with 010, 011, 016, 017, 018 or 019 (휴대폰번호)'
  if (digits.startsWith('010') && digits.length !== 11) return 'an 010 mobile number has 11 digits (휴대폰번호)'
  if (digits.length !== 10 && digits.length !== 11) return 'a mobile number has 10 or 11 digits (휴대폰번호)'
  return null
}

/** NTS TS2: 13–19 digits; 18 digits must start 15442020; the 12-digit NTS card (prefix 126) is also accepted. */
function cardRule(digits: string): string | null {
  if (digits.length === 12) return digits.startsWith('126') ? null : 'a 12-digit cash-receipt card number must start with 126 (현금영수증카드, NTS TS2)'
  if (digits.length < 13 || digits.length > 19) return 'a card number has 13 to 19 digits (카드번호, NTS TS2)'
  if (digits.length === 18 && !digits.startsWith('15442020')) return 'an 18-digit cash-receipt card number must start with 15442020 (현금영수증카드, NTS TS2)'
  return null
}

export function parseIdentifier(raw: string, declared?: DeclaredIdentifierType): Result<Identifier> {
  const trimmed = raw.trim()
  if (!/^[\d\s.-]+$/.test(trimmed)) return err(F, 'format', 'may contain digits, spaces, hyphens and dots only (식별번호 형식 오류)')
  const digits = trimmed.replace(/\D/g, '')
  if (digits === SELF_ISSUE_NUMBER && (declared === undefined || declared === 'phone')) return ok({ digits, type: 'self' })
  if (declared) return parseDeclared(digits, declared)
  if (digits.length === 10 && digits.startsWith('01')) return checkPhone(digits)
  if (digits.length === 11 && /^01[016789]/.test(digits)) return checkPhone(digits)
  if (digits.length === 11) return err(F, 'phone', `an 11-digit number must be a mobile number starting 010/011/016–019 (NTS TS1)`)
  if (digits.length === 10) return checkBrn(digits)
  if (digits.length === 13 && isPlausibleRrn(digits)) return ok({ digits, type: 'rrn' })
  if (digits.length >= 12 && digits.length <= 19) return checkCard(digits)
  return err(F, 'length', `${digits.length} digits is not a phone (10–11), business number (10), resident number (13) or card number (13–19) (식별번호 자릿수 오류)`)
}

function parseDeclared(digits: string, declared: DeclaredIdentifierType): Result<Identifier> {
  switch (declared) {
    case 'phone':
      return checkPhone(digits)
    case 'business':
      return checkBrn(digits)
    case 'card':
      return checkCard(digits)
    case 'rrn':
      if (digits.length !== 13) return err(F, 'rrn', 'a resident or foreigner registration number has 13 digits (주민등록번호)')
      if (!isPlausibleRrn(digits)) return err(F, 'rrn', `does not start with a valid birth date (주민등록번호 생년월일 오류)`)
      return ok({ digits, type: 'rrn' })
  }
}

function checkPhone(digits: string): Result<Identifier> {
  const problem = phoneRule(digits)
  return problem ? err(F, 'phone', problem) : ok({ digits, type: 'phone' })
}

function checkBrn(digits: string): Result<Identifier> {
  if (!/^\d{10}$/.test(digits)) return err(F, 'business', 'a business registration number has 10 digits (사업자등록번호)')
  if (!isValidBrn(digits)) {
    return err(F, 'business', `the business number fails its check digit (사업자등록번호 검증 실패)`)
  }
  return ok({ digits, type: 'business' })
}

function checkCard(digits: string): Result<Identifier> {
  const problem = cardRule(digits)
  return problem ? err(F, 'card', problem) : ok({ digits, type: 'card' })
}

/**
 * A buyer identifier as stored for search: its digits, as parseIdentifier normalises them (spaces,
 * hyphens and dots dropped), when the text is shaped like one — digits and separators only, 10 to 19
 * digits — and is not the self-issue number (which names no buyer). Undefined otherwise. Validity
 * (check digits, prefixes) is not required: a search only needs to hash what import hashed.
 */
export function searchableIdentifier(raw: string): string | undefined {
  const trimmed = raw.trim()
  if (!/^[\d\s.-]+$/.test(trimmed)) return undefined
  const digits = trimmed.replace(/\D/g, '')
  if (digits.length < 10 || digits.length > 19 || digits === SELF_ISSUE_NUMBER) return undefined
  return digits
}
