import { maskUnknown } from '../domain/index.ts'

/**
 * Masking for anything that may reach a log line: provider request and response bodies, errors.
 * Field names cover every provider's spelling of buyer identifiers, buyer contact data and secrets.
 */

/** Keys whose values are personal identifiers or contact data: shown masked (last 4 digits kept). */
const PERSONAL_KEYS = new Set(
  [
    'identifier',
    'identityNumber',
    'identity_number',
    'customerIdentityNumber',
    'issuance_number',
    'issuanceNumber',
    'consumerPhone',
    'consumerIdentifier',
    'consumerIdentityNumber',
    'identityNum',
    'buyer_tel',
    'buyerTel',
    'buyer_name',
    'buyerName',
    'buyer_email',
    'buyerEmail',
    'phoneNumber',
    'phone',
    'email',
    'customerName',
    'name',
    'corp_reg_no',
    'businessRegistrationNumber',
    'businessNumber',
    'hp',
  ].map((k) => k.toLowerCase()),
)

/** Keys whose values are secrets: never shown at all. */
const SECRET_KEYS = new Set(
  [
    'imp_secret',
    'imp_key',
    'apikey',
    'apiKey',
    'api_key',
    'apiSecret',
    'secret',
    'clientSecret',
    'client_secret',
    'password',
    'authorization',
    'access_token',
    'accessToken',
    'refreshToken',
    'token',
    'hash',
  ].map((k) => k.toLowerCase()),
)

/** Masking itself lives in src/domain/mask.ts (one module for every display of personal data). */
export const maskValue = maskUnknown

/** Deep copy of a JSON-like value with personal fields masked and secrets removed. */
export function redactBody(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redactBody(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const key = k.toLowerCase()
    if (SECRET_KEYS.has(key)) out[k] = '[secret]'
    else if (PERSONAL_KEYS.has(key) && (typeof v === 'string' || typeof v === 'number')) out[k] = maskValue(v)
    else out[k] = redactBody(v, depth + 1)
  }
  return out
}

/** pino redact paths for structured log fields that could carry personal data or secrets. */
export const PINO_REDACT_PATHS = [
  'identifier',
  '*.identifier',
  'buyer',
  '*.buyer',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'credentials',
  '*.credentials',
  'secret',
  '*.secret',
  'token',
  '*.token',
]
