/** What one provider simulator implements; the server adds routing, faults, rate limits and stats. */
import { createHash, randomBytes } from 'node:crypto'
import type { ProviderName } from '../config.ts'

export interface SimRequest {
  readonly method: string
  /** Path below the provider prefix, e.g. `/receipts/imp_123`. */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Record<string, string | string[] | undefined>
  readonly bodyText: string
  /** JSON or form body parsed whatever the Content-Type (the PortOne SDK sends text/plain). */
  readonly body: Record<string, unknown> | null
  readonly nowMs: number
}

export interface SimResponse {
  readonly status: number
  readonly body: unknown
  readonly headers?: Record<string, string>
}

export interface SimCounters {
  issued: number
  cancelled: number
  duplicates_rejected: number
}

export interface HeldReceipt {
  readonly key: string
  readonly status: 'issued' | 'cancelled'
  readonly amount: number
  readonly approvalNumber: string
  readonly identifier: string
}

export interface ProviderSim {
  readonly name: ProviderName
  readonly counters: SimCounters
  /** Faults apply only to receipt operations (issue, lookup, cancel), never to token calls. */
  isReceiptOp(req: SimRequest): boolean
  /** The credential a request acts for (rate limits are per credential), or null. */
  credentialOf(req: SimRequest): string | null
  /** Handles the request; state changes here are the "commit". */
  handle(req: SimRequest): SimResponse
  /** Provider-faithful "not processed" server error (fault 5xx). */
  serverError(): SimResponse
  /** Provider-faithful throttling answer. */
  rateLimited(retryAfterS: number): SimResponse
  /** Optional idempotency phase around a request (PortOne V2): an early answer, or null to proceed. */
  preflight?(req: SimRequest): SimResponse | null
  settle?(req: SimRequest, committed: SimResponse | null): void
  /** Live (not cancelled) receipts held per payment key. */
  livePerKey(): Iterable<number>
  receipts(): HeldReceipt[]
  reset(): void
}

export const vat11 = (taxable: number) => Math.floor((2 * taxable + 11) / 22)
export const approvalNumber = () => String(100_000_000 + Math.floor(Math.random() * 899_999_999)).slice(0, 9)
export const randomId = (prefix: string) => `${prefix}${randomBytes(8).toString('hex')}`
export const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')
export const maskTail = (s: string) => (s.length > 4 ? `***${s.slice(-4)}` : '***')

export function header(req: SimRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

/** Valid sandbox credentials follow the demo merchants' pattern (README of this folder). */
export function suffixAfter(value: unknown, prefix: string): string | null {
  return typeof value === 'string' && value.startsWith(prefix) && value.length > prefix.length ? value.slice(prefix.length) : null
}
