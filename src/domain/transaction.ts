/**
 * One import row (README, Import format) → a validated, normalised transaction, or every field
 * error of the row. Merchant existence and file-wide rules (duplicates, conflicts, one provider key per
 * provider) are checked by the importer.
 */
import { PROVIDERS, type ProviderName } from './provider.ts'
import { parseIdentifier, type DeclaredIdentifierType, type IdentifierType } from './identifier.ts'
import { parseKrw } from './money.ts'
import { businessDateOf, parsePaidAt } from './dates.ts'
import { checkPurposeIdentifier, parsePurpose, type Purpose } from './purpose.ts'
import { METHODS, type Method } from './eligibility.ts'
import type { FieldError } from './result.ts'

export const IMPORT_COLUMNS = [
  'transaction_id',
  'merchant_id',
  'provider',
  'payment_ref',
  'order_id',
  'order_name',
  'method',
  'amount',
  'tax_free_amount',
  'service_fee',
  'paid_at',
  'identifier',
  'identifier_type',
  'purpose',
  'buyer_name',
  'buyer_email',
  'buyer_tel',
  'status',
  'refunded_amount',
] as const
export const IMPORT_REQUIRED_COLUMNS = ['transaction_id', 'merchant_id', 'provider', 'method', 'amount', 'paid_at'] as const

const PROVIDER_NAMES: readonly ProviderName[] = PROVIDERS
const ID_TYPES: readonly DeclaredIdentifierType[] = ['phone', 'business', 'card', 'rrn']
/**
 * Ids travel in provider keys, URLs and job ids: printable ASCII without spaces, slashes or quotes,
 * at most 64 characters. Every id a provider receives as its key (PortOne imp_uid / merchant_uid,
 * PortOne V2 paymentId) follows this rule, which also keeps the key far below Postgres' btree row
 * limit on the receipts' unique provider-key index.
 */
const KEY_MAX = 64
const KEY_CHAR = /[A-Za-z0-9._:@#-]/
const KEY_RULE = `1–${KEY_MAX} characters of letters, digits and . _ : @ # -`
/** Amount columns take a JSON number or a string; every other column is text (a JSON string in JSON Lines). */
const AMOUNT_COLUMNS: ReadonlySet<string> = new Set(['amount', 'tax_free_amount', 'service_fee', 'refunded_amount'])

export interface ValidTransaction {
  readonly transactionId: string
  readonly merchantId: string
  readonly provider: ProviderName
  readonly paymentRef: string | null
  readonly orderId: string | null
  readonly orderName: string | null
  readonly method: Method
  readonly amount: number
  readonly taxFreeAmount: number
  readonly serviceFee: number
  readonly paidAt: Date
  readonly businessDate: string
  readonly identifier: { readonly digits: string; readonly type: IdentifierType } | null
  readonly purpose: Purpose
  readonly buyerName: string | null
  readonly buyerEmail: string | null
  readonly buyerTel: string | null
  readonly status: 'completed' | 'cancelled'
  readonly refundedAmount: number
}

type Scalar = string | number | undefined | null
type Raw = Record<string, Scalar>

const str = (v: Scalar): string => (v === undefined || v === null ? '' : String(v).trim())
const opt = (v: Scalar): string | null => str(v) || null

/** Why `id` cannot be a provider key (naming a position, never the value), or null when it can. */
function keyProblem(id: string): string | null {
  if (id.length > KEY_MAX) return `is ${id.length} characters long; it must be ${KEY_RULE}`
  for (let i = 0; i < id.length; i++) {
    if (!KEY_CHAR.test(id[i]!)) return `has a character other than letters, digits and . _ : @ # - at position ${i + 1}; it must be ${KEY_RULE}`
  }
  return null
}

/** Control characters (C0, DEL, C1) and unpaired UTF-16 surrogates: Postgres refuses NUL, the rest corrupt receipts. */
// eslint-disable-next-line no-control-regex
const BAD_CHAR = /[\u0000-\u001F\u007F-\u009F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

function characterProblem(text: string): string | null {
  const m = BAD_CHAR.exec(text)
  if (!m) return null
  const code = m[0].charCodeAt(0)
  const what = code === 0 ? 'a NUL byte' : code >= 0xd800 ? 'a broken UTF-16 surrogate' : `the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}`
  return `contains ${what} at position ${m.index + 1}; remove it`
}

const jsonKind = (v: unknown): string => (Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v === 'object' ? 'an object' : `a ${typeof v}`)

/**
 * Every known column holds null, a string, or (amount columns only) a number. JSON Lines can carry
 * anything; a number in a text column is refused too, since it loses leading zeros and digits beyond
 * 15. Messages name the field and a position, never the value: several columns hold personal data.
 */
function typeErrors(raw: Readonly<Record<string, unknown>>): FieldError[] {
  const errors: FieldError[] = []
  for (const field of IMPORT_COLUMNS) {
    const v = raw[field]
    if (v === undefined || v === null) continue
    if (typeof v === 'string') {
      const problem = characterProblem(v.trim())
      if (problem) errors.push({ field, rule: 'character', message: problem })
    } else if (!(typeof v === 'number' && AMOUNT_COLUMNS.has(field))) {
      const want = AMOUNT_COLUMNS.has(field) ? 'a whole number of won (a JSON number or string)' : 'text (a JSON string)'
      errors.push({ field, rule: 'type', message: `is ${jsonKind(v)}; it must be ${want}` })
    }
  }
  return errors
}

export function validateTransaction(input: Readonly<Record<string, unknown>>, ctx: { nowMs: number }): { ok: true; value: ValidTransaction } | { ok: false; errors: FieldError[] } {
  const typed = typeErrors(input)
  if (typed.length) return { ok: false, errors: typed }
  const raw = input as Raw
  const errors: FieldError[] = []
  const add = (field: string, rule: string, message: string) => errors.push({ field, rule, message })

  const transactionId = str(raw.transaction_id)
  if (!transactionId) add('transaction_id', 'required', 'is required')
  else if (keyProblem(transactionId)) add('transaction_id', 'format', `must be ${KEY_RULE}`)
  const merchantId = str(raw.merchant_id)
  if (!merchantId) add('merchant_id', 'required', 'is required')
  const provider = str(raw.provider) as ProviderName
  if (!provider) add('provider', 'required', `is required (${PROVIDER_NAMES.join(', ')})`)
  else if (!PROVIDER_NAMES.includes(provider)) add('provider', 'enum', `is not one of ${PROVIDER_NAMES.join(', ')}`)
  const method = str(raw.method) as Method
  if (!method) add('method', 'required', `is required (${METHODS.join(', ')})`)
  else if (!METHODS.includes(method)) add('method', 'enum', `is not a cash-type method (${METHODS.join(', ')}); card payments get no cash receipt`)

  const amount = parseKrw(raw.amount, 'amount', { min: 1 })
  if (!amount.ok) errors.push(amount.error)
  const taxFree = parseKrw(raw.tax_free_amount, 'tax_free_amount', { min: 0, default: 0 })
  if (!taxFree.ok) errors.push(taxFree.error)
  const fee = parseKrw(raw.service_fee, 'service_fee', { min: 0, default: 0 })
  if (!fee.ok) errors.push(fee.error)
  const refunded = parseKrw(raw.refunded_amount, 'refunded_amount', { min: 0, default: 0 })
  if (!refunded.ok) errors.push(refunded.error)
  if (amount.ok && taxFree.ok && fee.ok && taxFree.value + fee.value > amount.value) {
    add(taxFree.value > amount.value ? 'tax_free_amount' : 'service_fee', 'range', 'tax_free_amount plus service_fee exceed the amount')
  }
  if (amount.ok && refunded.ok && refunded.value > amount.value) add('refunded_amount', 'range', 'exceeds the amount')

  const paidAt = parsePaidAt(str(raw.paid_at), ctx.nowMs)
  if (!paidAt.ok) errors.push(paidAt.error)

  const status = str(raw.status) || 'completed'
  if (status !== 'completed' && status !== 'cancelled') add('status', 'enum', 'is not completed or cancelled')

  const purpose = parsePurpose(str(raw.purpose))
  if (!purpose.ok) errors.push(purpose.error)

  const declared = str(raw.identifier_type) as DeclaredIdentifierType
  if (declared && !ID_TYPES.includes(declared)) add('identifier_type', 'enum', `is not one of ${ID_TYPES.join(', ')}`)
  let identifier: ValidTransaction['identifier'] = null
  const rawId = str(raw.identifier)
  if (rawId) {
    const parsed = parseIdentifier(rawId, declared && ID_TYPES.includes(declared) ? declared : undefined)
    if (!parsed.ok) errors.push(parsed.error)
    else identifier = parsed.value
  } else if (declared && ID_TYPES.includes(declared)) add('identifier', 'required', `is empty but identifier_type is ${declared}`)
  if (identifier && purpose.ok) {
    const mismatch = checkPurposeIdentifier(purpose.value, identifier.type)
    if (mismatch) errors.push(mismatch)
  }

  const paymentRef = opt(raw.payment_ref)
  if (method === 'naverpay' && provider && provider !== 'portone') add('provider', 'naverpay', 'naverpay needs provider portone (the cash-funded amount comes from PortOne V1)')
  if (method === 'naverpay' && !paymentRef) add('payment_ref', 'required', 'is required for naverpay (the PortOne imp_uid)')
  // PortOne keys its receipts by these ids (imp_uid, merchant_uid, paymentId).
  const orderId = opt(raw.order_id)
  if (paymentRef && (provider === 'portone' || provider === 'portone-v2')) {
    const problem = keyProblem(paymentRef)
    if (problem) add('payment_ref', 'key', `${problem} (the ${provider === 'portone' ? 'PortOne imp_uid' : 'PortOne V2 paymentId'})`)
  }
  if (orderId && provider === 'portone' && !paymentRef) {
    const problem = keyProblem(orderId)
    if (problem) add('order_id', 'key', `${problem} (without payment_ref it is the PortOne merchant_uid)`)
  }
  const buyerEmail = opt(raw.buyer_email)
  if (buyerEmail && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(buyerEmail)) add('buyer_email', 'format', 'is not an e-mail address')
  const orderName = opt(raw.order_name)
  if (orderName && orderName.length > 100) add('order_name', 'length', 'is longer than 100 characters')

  if (errors.length) return { ok: false, errors }
  return {
    ok: true,
    value: {
      transactionId,
      merchantId,
      provider,
      paymentRef,
      orderId,
      orderName,
      method,
      amount: (amount as { value: number }).value,
      taxFreeAmount: (taxFree as { value: number }).value,
      serviceFee: (fee as { value: number }).value,
      paidAt: (paidAt as { value: Date }).value,
      businessDate: businessDateOf((paidAt as { value: Date }).value),
      identifier,
      purpose: (purpose as { value: Purpose }).value,
      buyerName: opt(raw.buyer_name),
      buyerEmail,
      buyerTel: opt(raw.buyer_tel),
      status: status as 'completed' | 'cancelled',
      refundedAmount: (refunded as { value: number }).value,
    },
  }
}
