/**
 * Every query string and form body the dashboard reads, as zod schemas: a value the handlers cannot
 * use is a 400 naming the field, never a 500 from deeper down (Postgres refuses NUL bytes in text;
 * an OFFSET of 1e308 overflows bigint). Messages name the field and the rule, never echo the value.
 */
import { z } from 'zod'
import { isValidDate, PROVIDERS } from '../domain/index.ts'
import type { RedriveFilter } from '../jobs/redrive.ts'
import type { FailureFilter } from './dashboard-data.ts'
import { DEFAULT_PAGE_SIZE, PAGE_SIZES, type PageRequest } from '../db/keyset.ts'

export class BadRequestError extends Error {
  override name = 'BadRequestError'
}

/** Printable text without control characters (NUL, CR, LF…), at most 100 characters; empty → absent. */
const text = z
  .string({ error: 'expected a single text value' })
  .max(100, { error: 'too long (at most 100 characters)' })
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u001F\u007F]/.test(s), { error: 'must not contain control characters' })
  .transform((s) => s.trim() || undefined)

const optionalText = z.preprocess((v) => (v === '' || v === null ? undefined : typeof v === 'number' ? String(v) : v), text.optional())

const wholeNumber = (max: number) =>
  z.preprocess(
    (v) => (v === '' || v === null ? undefined : typeof v === 'number' ? String(v) : v),
    z
      .string({ error: 'expected a whole number' })
      .regex(/^\d{1,15}$/, { error: 'must be a whole number' })
      .transform(Number)
      .pipe(z.number().max(max, { error: `must be at most ${max}` }))
      .optional(),
  )

const provider = optionalText.refine((p) => p === undefined || (PROVIDERS as readonly string[]).includes(p), {
  error: `must be one of ${PROVIDERS.join(', ')}`,
})

const date = optionalText.refine((d) => d === undefined || isValidDate(d), { error: 'must be a valid YYYY-MM-DD date' })

/** GET /runs/:id — the notice after a re-drive. */
export const runPageQuery = z.object({
  redriven: wholeNumber(Number.MAX_SAFE_INTEGER),
  from: wholeNumber(Number.MAX_SAFE_INTEGER),
})

/**
 * Every list's merchant filter and keyset page: `after` / `before` are the key of the last / first
 * row shown (a row id), `size` one of the offered page sizes.
 */
const listFields = {
  merchant: optionalText,
  after: wholeNumber(Number.MAX_SAFE_INTEGER),
  before: wholeNumber(Number.MAX_SAFE_INTEGER),
  size: z.preprocess(
    (v) => (v === '' || v === null ? undefined : typeof v === 'number' ? String(v) : v),
    z
      .enum(PAGE_SIZES.map(String) as [string, ...string[]], { error: `must be one of ${PAGE_SIZES.join(', ')}` })
      .transform(Number)
      .optional(),
  ),
}

/** GET / — the runs list. */
export const runsQuery = z.object(listFields)

/** GET /runs/:id/failures — filters and the page. */
export const failuresQuery = z.object({
  provider: optionalText,
  class: optionalText,
  code: optionalText,
  ...listFields,
})

/** POST /redrive — the `redrive` command's selectors (form or JSON). */
export const redriveBody = z.object({
  run: wholeNumber(Number.MAX_SAFE_INTEGER),
  date,
  provider,
  code: optionalText,
  class: optionalText,
  dry_run: z
    .union([z.boolean(), z.enum(['true', 'false', '1', '0', ''])], { error: 'expected true or false' })
    .optional()
    .transform((v) => v === true || v === 'true' || v === '1'),
})

/** GET /search — a transaction id, order id or approval number; results filtered by merchant, paged by transaction id. */
export const searchQuery = z.object({
  q: optionalText,
  merchant: optionalText,
  after: optionalText,
  before: optionalText,
  size: listFields.size,
})

/** The keyset page a list's query asks for. */
export function pageOf<K>(q: { readonly after?: K; readonly before?: K; readonly size?: number }): PageRequest<K> {
  return { after: q.after, before: q.before, size: q.size ?? DEFAULT_PAGE_SIZE }
}

/** GET /transactions/:id */
export const transactionParams = z.object({ id: text })

/** GET /totals — the period (default: this month so far) and an optional merchant. */
export const totalsQuery = z.object({ from: date, to: date, merchant: optionalText })

/** Parses with a schema; the first problems become one 400 message, `field: rule` each. */
export function parseParams<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input ?? {})
  if (r.success) return r.data
  throw new BadRequestError(
    r.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || 'request'}: ${i.message}`)
      .join('\n'),
  )
}

export function failureFilterOf(q: z.output<typeof failuresQuery>): FailureFilter {
  return { provider: q.provider, code: q.code, errorClass: q.class, merchantId: q.merchant }
}

/** The `redrive` command's selectors, validated as the CLI validates them. */
export function redriveFilter(body: unknown): RedriveFilter {
  const b = parseParams(redriveBody, body)
  return { runId: b.run, date: b.date, provider: b.provider, code: b.code, errorClass: b.class }
}
