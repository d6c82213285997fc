/**
 * The one place identifiers and contact data are masked for display (dashboard, report, logs,
 * error messages, the `*_masked` columns). docs/security.md §Masking explains the choices:
 *
 *   business number  123-**-*****       tax-office code only; the usual 123-45-***** leaves the
 *                                        individual/corporate code and, with the check digit,
 *                                        only 10,000 candidates per office and code
 *   mobile phone     010-****-5678       carrier prefix and last four (what Korean services show)
 *   card number      1234-****-****-5678 issuer prefix and last four (NTS cash-receipt cards too)
 *   resident number  900101-*******      birth date only; the whole back half (gender digit included)
 *   e-mail           ab***@example.com   two characters of the local part
 *   name             김*수 / 김*         first and (3+ characters) last character
 *   self-issue       010-000-1234        the NTS self-issue number is not personal
 */
/** IdentifierType of identifier.ts, spelled out here so the two modules do not import each other. */
type IdentifierType = 'phone' | 'business' | 'card' | 'rrn' | 'self'

export function maskBusinessNumber(digits: string): string {
  return `${digits.replace(/\D/g, '').slice(0, 3)}-**-*****`
}

export function maskPhone(digits: string): string {
  const d = digits.replace(/\D/g, '')
  return `${d.slice(0, 3)}-****-${d.slice(-4)}`
}

export function maskCard(digits: string): string {
  const d = digits.replace(/\D/g, '')
  return `${d.slice(0, 4)}-****-****-${d.slice(-4)}`
}

export function maskRrn(digits: string): string {
  return `${digits.replace(/\D/g, '').slice(0, 6)}-*******`
}

export function maskIdentifier(digits: string, type: IdentifierType): string {
  switch (type) {
    case 'self':
      return '010-000-1234'
    case 'phone':
      return maskPhone(digits)
    case 'business':
      return maskBusinessNumber(digits)
    case 'card':
      return maskCard(digits)
    case 'rrn':
      return maskRrn(digits)
  }
}

export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@')
  if (at < 1) return '***'
  return `${email.slice(0, Math.min(2, at - 1))}***${email.slice(at)}`
}

export function maskName(name: string): string {
  const chars = [...name.trim()]
  if (chars.length <= 1) return '*'
  if (chars.length === 2) return `${chars[0]}*`
  return `${chars[0]}${'*'.repeat(chars.length - 2)}${chars.at(-1)}`
}

/** A value of unknown kind: the last four digits when it has six or more, else nothing. */
export function maskUnknown(value: unknown): string {
  const s = String(value ?? '')
  const digits = s.replace(/\D/g, '')
  if (digits.length >= 6) return `***${digits.slice(-4)}`
  return s.length ? '***' : ''
}
