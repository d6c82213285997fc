/** Small pieces every adapter shares: meta builders, JSON helpers, a cached bearer token. */
import type { Logger } from 'pino'
import { redactBody } from '../logging/redact.ts'
import { parseJson, type HttpClient, type HttpRequest, type HttpResult } from './http.ts'
import type { CallMeta, ProviderOutcome } from '../domain/index.ts'

export function meta(r: HttpResult, providerCode: string | null, message: string | null): CallMeta {
  return r.ok
    ? { httpStatus: r.status, providerCode, message: message?.slice(0, 500) ?? null, latencyMs: r.latencyMs }
    : { httpStatus: null, providerCode: r.code, message: r.message.slice(0, 500), latencyMs: r.latencyMs }
}

export const asObject = (v: unknown): Record<string, unknown> | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null)
export const str = (v: unknown): string | null => (typeof v === 'string' && v ? v : typeof v === 'number' ? String(v) : null)
/**
 * A provider's code as text, whatever JSON it sent: String() throws on an object whose `toString` key
 * holds data (`{"code": {"toString": 1}}`), and a classifier must never throw.
 */
export const codeText = (v: unknown): string | null => (v === undefined || v === null ? null : typeof v === 'object' ? JSON.stringify(v).slice(0, 100) : String(v))
/** A finite number from a JSON number or numeric string; anything else (objects included) is null. */
export const num = (v: unknown): number | null => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() ? Number(v) : NaN
  return Number.isFinite(n) ? n : null
}
/** An ISO time from Unix seconds, or null when the value is missing, zero or outside Date's range. */
export const isoFromEpochSeconds = (v: unknown): string | null => {
  const s = num(v)
  const d = s ? new Date(s * 1000) : null
  return d && !Number.isNaN(d.getTime()) ? d.toISOString() : null
}

/** Parses a body, capping what is looked at (a huge body is garbage for our purposes). */
export function body(r: Extract<HttpResult, { ok: true }>): Record<string, unknown> | null {
  if (r.text.length > 256 * 1024) return null
  return asObject(parseJson(r.text))
}

/** Sends with debug logging of redacted bodies; never logs identifiers or secrets. */
export async function send(http: HttpClient, logger: Logger | undefined, req: HttpRequest): Promise<HttpResult> {
  const r = await http.send(req)
  if (logger?.isLevelEnabled('debug')) {
    logger.debug(
      {
        method: req.method,
        url: req.url.replace(/\/(receipts(?:\/external)?|payments)\/[^/?]+/, '/$1/:key'),
        request: typeof req.body === 'object' ? redactBody(req.body) : undefined,
        status: r.ok ? r.status : r.code,
        response: r.ok ? redactBody(parseJson(r.text.slice(0, 4096))) : undefined,
        ms: Math.round(r.latencyMs),
      },
      'provider call',
    )
  }
  return r
}

/** One in-flight refresh shared by concurrent callers; refreshed ahead of expiry. */
export class TokenCache {
  #token: string | null = null
  #expiresAt = 0
  #inflight: Promise<string | ProviderOutcome> | null = null
  readonly #now: () => number
  readonly #fetch: () => Promise<{ token: string; ttlMs: number } | ProviderOutcome>
  constructor(fetchToken: () => Promise<{ token: string; ttlMs: number } | ProviderOutcome>, now: () => number) {
    this.#fetch = fetchToken
    this.#now = now
  }
  async get(): Promise<string | ProviderOutcome> {
    if (this.#token && this.#expiresAt - this.#now() > 60_000) return this.#token
    this.#inflight ??= this.#fetch()
      .then((r) => {
        if ('kind' in r) return r
        this.#token = r.token
        this.#expiresAt = this.#now() + r.ttlMs
        return r.token
      })
      .finally(() => {
        this.#inflight = null
      })
    return this.#inflight
  }
  invalidate(): void {
    this.#token = null
  }
}

/**
 * One call with a bearer token: a 401 means the token expired in flight (PortOne documents this race),
 * so the token is refreshed once and the call repeated once.
 */
export async function withTokenRefresh(tokens: TokenCache, sendWith: (token: string) => Promise<HttpResult>): Promise<HttpResult | ProviderOutcome> {
  let r: HttpResult | undefined
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = await tokens.get()
    if (typeof token !== 'string') return token
    r = await sendWith(token)
    if (!(r.ok && r.status === 401)) return r
    tokens.invalidate()
  }
  return r!
}

/** Outcome for a token call that failed: nothing to look up, so never unknown. */
export function tokenFailure(r: HttpResult, code: string | null, message: string | null): ProviderOutcome {
  if (!r.ok) return { kind: 'retryable', meta: meta(r, null, null) }
  if (r.status === 401 || r.status === 400 || r.status === 403) return { kind: 'permanent', meta: meta(r, code ?? 'UNAUTHORIZED', message ?? 'authentication failed') }
  if (r.status === 429) return { kind: 'rate_limited', meta: meta(r, code, message), retryAfterMs: 1_000 }
  return { kind: 'retryable', meta: meta(r, code, message) }
}
