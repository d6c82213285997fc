/**
 * What one provider simulator implements, and the small pieces they share. The server adds routing,
 * faults, rate limits and traffic counters around it.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { ProviderName } from '../src/domain/index.ts'

/** One request as a simulator sees it (path relative to the provider's prefix). */
export interface SimRequest {
  readonly method: string
  /** Path below the provider prefix, e.g. `/receipts/imp_123`. */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: IncomingHttpHeaders
  readonly bodyText: string
  /**
   * The body as an object: JSON whatever the Content-Type (@portone/server-sdk sends text/plain), or
   * form fields for `application/x-www-form-urlencoded`. null when empty or not an object.
   */
  readonly body: Record<string, unknown> | null
  /** Non-empty body that could not be parsed. */
  readonly bodyInvalid: boolean
  /** The sandbox clock (injected in tests), ms since the epoch. */
  readonly nowMs: number
}

/** An answer; `body` is JSON-encoded unless it is a string. */
export interface SimResponse {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
}

/** Per-provider outcome counters reported by `GET /_sandbox/stats`. */
export interface SimCounters {
  issued: number
  cancelled: number
  duplicates_rejected: number
  /** Throttling answers the simulator gives itself (the NTS daily quota); the server adds its own. */
  rate_limited: number
}

/** A receipt held by a simulator, as listed by `GET /_sandbox/receipts` (identifier masked). */
export interface HeldReceipt {
  readonly key: string
  readonly status: 'issued' | 'cancelled'
  /** What is still live: the issued amount minus partial cancels (0 once cancelled). */
  readonly amount: number
  readonly issuedAmount: number
  readonly approvalNumber: string
  readonly identifier: string
  readonly issuedAt: string
}

/** The sandbox request classification: receipt operations get faults; credentials get rate limits. */
export interface Classified {
  readonly receiptOp: boolean
  /** The credential a request acts for (rate limits are per credential), or null when unknown. */
  readonly credential: string | null
}

/** Idempotency hooks (PortOne V2): `begin` answers early (replay, 409) or opens a slot `finish` closes. */
export interface IdempotencyHooks {
  begin(req: SimRequest): { early: SimResponse } | { slot: string } | null
  /** Stores the committed answer for replay, or frees the key when nothing was committed. */
  finish(slot: string, committed: SimResponse | null, nowMs: number): void
}

export interface ProviderSim {
  readonly name: ProviderName
  readonly counters: SimCounters
  classify(req: SimRequest): Classified
  /** Handles the request; state changes here are the "commit". */
  handle(req: SimRequest): SimResponse
  /** The provider's own "not processed" server error (fault `5xx`). */
  serverError(req: SimRequest): SimResponse
  /**
   * Providers whose requests complete even when they fail (PortOne V2: a PG error leaves an
   * ISSUE_FAILED receipt, and the answer is kept for its Idempotency-Key): records what the failure
   * leaves behind and returns the `5xx` answer, which the pipeline then stores for replay like any
   * committed answer. Without it a `5xx` is sent before the idempotency layer and nothing is kept.
   */
  failedCall?(req: SimRequest): SimResponse
  /** The provider's own throttling answer. */
  rateLimited(retryAfterS: number): SimResponse
  readonly idempotency?: IdempotencyHooks
  /** Largest number of live receipts held for one payment key of this provider. */
  maxLivePerKey(): number
  /** Largest number of receipts ever issued for one payment key of this provider, cancelled included. */
  maxReceiptsPerKey(): number
  receipts(): HeldReceipt[]
  reset(): void
}

/** VAT included in a taxable amount: 1/11, rounded half up (never 10% of the total). */
export const vat11 = (taxable: number): number => Math.floor((2 * taxable + 11) / 22)

export const sha256hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')

export const randomHex = (bytes: number): string => randomBytes(bytes).toString('hex')

/** Masks an identifier or secret to its last 4 characters. */
export const maskTail = (s: string): string => (s.length > 4 ? `***${s.slice(-4)}` : '***')

/** `YYYYMMDDhhmmss` in KST. */
export const kstStamp = (ms: number): string => new Date(ms + 9 * 3600_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)

/** `YYYYMMDD` in KST. */
export const kstDate = (ms: number): string => kstStamp(ms).slice(0, 8)

/** Milliseconds from `ms` to the next 00:00 KST. */
export const msToKstMidnight = (ms: number): number => 86_400_000 - ((ms + 9 * 3600_000) % 86_400_000)

/**
 * 9-digit approval numbers, unique within a simulator: random ones would collide (birthday bound)
 * long before a benchmark's 100k receipts, and NTS cancels look receipts up by approval number.
 */
export class ApprovalNumbers {
  #next = randomInt(100_000_000, 400_000_000)
  next(): string {
    const n = this.#next++
    if (this.#next > 999_999_999) this.#next = 100_000_000
    return String(n)
  }
}

/**
 * Live receipts per payment key, and receipts ever issued per key (cancelled ones included), with
 * both maxima kept up to date in O(1) per change, so `/_sandbox/stats` stays cheap however many
 * receipts are held. A duplicate that was later cancelled no longer counts as live but stays in the
 * ever-issued figure.
 */
export class LiveLedger {
  readonly #live = new Map<string, number>()
  /** #hist[n] = how many keys hold exactly n live receipts (n ≥ 1). */
  readonly #hist: number[] = []
  #max = 0
  readonly #issued = new Map<string, number>()
  #maxIssued = 0

  change(key: string, delta: 1 | -1): void {
    if (delta === 1) {
      const n = (this.#issued.get(key) ?? 0) + 1
      this.#issued.set(key, n)
      if (n > this.#maxIssued) this.#maxIssued = n
    }
    const before = this.#live.get(key) ?? 0
    const after = Math.max(0, before + delta)
    if (before > 0) this.#hist[before] = (this.#hist[before] ?? 1) - 1
    if (after > 0) {
      this.#hist[after] = (this.#hist[after] ?? 0) + 1
      this.#live.set(key, after)
    } else {
      this.#live.delete(key)
    }
    if (after > this.#max) this.#max = after
    while (this.#max > 0 && !this.#hist[this.#max]) this.#max--
  }

  get max(): number {
    return this.#max
  }

  /** Largest number of receipts ever issued for one key, cancelled ones included. */
  get maxIssued(): number {
    return this.#maxIssued
  }

  reset(): void {
    this.#live.clear()
    this.#hist.length = 0
    this.#max = 0
    this.#issued.clear()
    this.#maxIssued = 0
  }
}

export function header(req: SimRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Valid sandbox credentials follow the demo merchants' pattern (sandbox/README.md). */
export function suffixAfter(value: unknown, prefix: string): string | null {
  return typeof value === 'string' && value.startsWith(prefix) && value.length > prefix.length ? value.slice(prefix.length) : null
}

/** A non-negative integer sent as a JSON number or a digit string (form bodies), else null. */
export function intOf(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null
  if (typeof v === 'string' && /^\d{1,15}$/.test(v.trim())) return Number(v.trim())
  return null
}

export const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim() !== ''

/** Decodes a path segment; null when it is not valid percent-encoding. */
export function segment(s: string): string | null {
  try {
    return decodeURIComponent(s)
  } catch {
    return null
  }
}

export function emptyCounters(): SimCounters {
  return { issued: 0, cancelled: 0, duplicates_rejected: 0, rate_limited: 0 }
}

/** Drops entries from the head of an insertion-ordered map while they are expired: O(1) amortised. */
export function pruneHead<V>(map: Map<string, V>, expired: (v: V) => boolean, max = 64): void {
  let n = 0
  for (const [k, v] of map) {
    if (n++ >= max || !expired(v)) return
    map.delete(k)
  }
}
