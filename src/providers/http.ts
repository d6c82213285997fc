/**
 * The HTTP transport shared by provider adapters: keep-alive, connect and read timeouts, abort
 * signal, and the one distinction that matters for exactly-once issuance: did the request surely
 * NOT reach the provider (safe to retry), or was it sent and the answer lost (unknown outcome)?
 */
import pRetry, { AbortError } from 'p-retry'
import { Agent, request as undiciRequest } from 'undici'
import type { CallMeta, ProviderOutcome } from '../domain/index.ts'

/** The response headers an adapter reads (Retry-After); a fetch Headers object satisfies it. */
export interface ResponseHeaders {
  get(name: string): string | null
}

export type HttpResult =
  | {
      readonly ok: true
      readonly status: number
      readonly headers: ResponseHeaders
      readonly text: string
      readonly latencyMs: number
    }
  | {
      readonly ok: false
      /** false: the request surely did not reach the provider (refused, DNS, connect timeout). */
      readonly sent: boolean
      readonly code: string
      readonly message: string
      readonly latencyMs: number
    }

export interface HttpRequest {
  readonly url: string
  readonly method: 'GET' | 'POST' | 'DELETE' | 'PUT'
  readonly headers?: Record<string, string>
  /** Serialized as JSON unless already a string (form bodies). */
  readonly body?: unknown
  readonly signal?: AbortSignal
  /**
   * Awaited right before this request goes out (every try: p-retry's retries and the repeat after a
   * token refresh each send again). Mutating requests (issue, cancel) carry the caller's fence here:
   * when it throws, or the signal is aborted, nothing is sent and the error propagates as is.
   */
  readonly beforeSend?: () => Promise<void>
}

/** What a request carries from the caller's context: its abort signal and, when it can change what the provider holds, its fence. */
export type RequestIo = Pick<HttpRequest, 'signal' | 'beforeSend'>

/**
 * The signal and fence for one adapter request: issue and cancel are fenced (each try awaits the
 * caller's beforeSend), reads are not. Every adapter builds its requests' io here, so none can send
 * a mutating request unfenced.
 */
export function requestIo(
  operation: 'issue' | 'lookup' | 'cancel' | 'naver_cash_amount',
  ctx: { readonly signal?: AbortSignal; readonly beforeSend?: () => Promise<void> } | undefined,
): RequestIo {
  const mutating = operation === 'issue' || operation === 'cancel'
  return mutating && ctx?.beforeSend ? { signal: ctx.signal, beforeSend: ctx.beforeSend } : { signal: ctx?.signal }
}

export interface HttpClient {
  send(req: HttpRequest): Promise<HttpResult>
}

/** Connection errors raised before a single byte of the request could have been processed. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_INVALID_URL'])

/** Undici's own timeout errors: the request was sent and the answer did not come (or stopped). */
const READ_TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** A body larger than this is garbage for a receipt API; reading stops there (the adapter sees a non-JSON text). */
const MAX_BODY_BYTES = 1024 * 1024

/**
 * The transport: undici's `request` on a keep-alive Agent (far cheaper per call than WHATWG fetch,
 * which builds streams, Response objects and signals for every request). Connect, headers and body
 * timeouts are the Agent's, so a call is bounded by connect + 2 × read. An injected `fetch` (tests,
 * other runtimes) replaces the transport.
 */
export function createHttpClient(opts: {
  readonly fetch?: typeof globalThis.fetch
  readonly connectTimeoutMs?: number
  readonly readTimeoutMs?: number
  readonly now?: () => number
}): HttpClient {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000
  const readTimeoutMs = opts.readTimeoutMs ?? 15_000
  const now = opts.now ?? (() => performance.now())
  const agent = opts.fetch
    ? undefined
    : new Agent({
        connect: { timeout: connectTimeoutMs },
        keepAliveTimeout: 10_000,
        connections: 128,
        headersTimeout: readTimeoutMs,
        bodyTimeout: readTimeoutMs,
      })

  const viaUndici = async (req: HttpRequest, headers: Record<string, string>, body: string | undefined) => {
    const res = await undiciRequest(req.url, { method: req.method, headers, body, signal: req.signal, dispatcher: agent })
    return { status: res.statusCode, headers: headerView(res.headers), text: await readCapped(res.body) }
  }
  const viaFetch = async (req: HttpRequest, headers: Record<string, string>, body: string | undefined) => {
    const timeout = AbortSignal.timeout(readTimeoutMs + connectTimeoutMs)
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout
    try {
      const res = await opts.fetch!(req.url, { method: req.method, headers, body, signal })
      return { status: res.status, headers: res.headers, text: await res.text() }
    } catch (err) {
      if (timeout.aborted && !req.signal?.aborted) throw Object.assign(new Error('read timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })
      throw err
    }
  }

  return {
    async send(req) {
      req.signal?.throwIfAborted()
      if (req.beforeSend) {
        await req.beforeSend()
        req.signal?.throwIfAborted()
      }
      const started = now()
      const headers: Record<string, string> = { accept: 'application/json', ...req.headers }
      let body: string | undefined
      if (req.body !== undefined) {
        body = typeof req.body === 'string' ? req.body : JSON.stringify(req.body)
        headers['content-type'] ??= 'application/json; charset=utf-8'
      }
      try {
        const r = await (agent ? viaUndici : viaFetch)(req, headers, body)
        return { ok: true, ...r, latencyMs: now() - started }
      } catch (err) {
        if (req.signal?.aborted) throw req.signal.reason ?? err
        const latencyMs = now() - started
        const code = errorCode(err)
        if (READ_TIMEOUT_CODES.has(code)) return { ok: false, sent: true, code: 'TIMEOUT', message: 'read timeout', latencyMs }
        return { ok: false, sent: !NOT_SENT_CODES.has(code), code, message: (err as Error)?.message ?? String(err), latencyMs }
      }
    },
  }
}

function headerView(raw: Record<string, string | string[] | undefined>): ResponseHeaders {
  return {
    get(name) {
      const v = raw[name.toLowerCase()]
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v
    },
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    chunks.push(chunk)
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** The transport an adapter uses: the shared one it was given, or its own (the transport part of its deps). */
export function httpClientFor(deps: {
  readonly http?: HttpClient
  readonly fetch?: typeof globalThis.fetch
  readonly timeouts?: { readonly connectMs: number; readonly readMs: number }
}): HttpClient {
  return deps.http ?? createHttpClient({ fetch: deps.fetch, connectTimeoutMs: deps.timeouts?.connectMs, readTimeoutMs: deps.timeouts?.readMs })
}

function errorCode(err: unknown): string {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code
    e = (e as { cause?: unknown }).cause
  }
  return (err as Error)?.name ?? 'ERROR'
}

/** Parses a JSON body; undefined when it is not JSON (HTML error page, truncated body). */
export function parseJson(text: string): unknown {
  if (!text) return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

/** Retry-After (seconds or HTTP date) in ms, or the fallback. */
export function retryAfterMs(headers: ResponseHeaders | undefined, fallbackMs = 1_000, nowMs = Date.now()): number {
  const raw = headers?.get('retry-after')
  if (!raw) return fallbackMs
  if (/^\d+(\.\d+)?$/.test(raw.trim())) return Math.max(0, Math.round(Number(raw) * 1000))
  const at = Date.parse(raw)
  return Number.isNaN(at) ? fallbackMs : Math.max(0, at - nowMs)
}

/** Meta for a transport failure (no HTTP answer). */
export function transportMeta(r: Extract<HttpResult, { ok: false }>): CallMeta {
  return { httpStatus: null, providerCode: r.code, message: r.message.slice(0, 500), latencyMs: r.latencyMs }
}

/**
 * The outcome for a transport failure: not sent → retryable; sent → unknown_outcome.
 * Adapters call this before looking at any body.
 */
export function transportOutcome(r: Extract<HttpResult, { ok: false }>): ProviderOutcome {
  return r.sent ? { kind: 'unknown_outcome', meta: transportMeta(r) } : { kind: 'retryable', meta: transportMeta(r) }
}

class RetryableOutcome extends Error {
  readonly outcome: ProviderOutcome
  constructor(outcome: ProviderOutcome) {
    super(`retryable provider outcome ${outcome.meta.providerCode ?? outcome.meta.httpStatus ?? ''}`)
    this.outcome = outcome
  }
}

export interface RetryBudget {
  readonly retries: number
  readonly minTimeoutMs: number
  readonly maxRetryTimeMs: number
}

export const DEFAULT_RETRY: RetryBudget = { retries: 2, minTimeoutMs: 200, maxRetryTimeMs: 5_000 }

/**
 * Runs one provider call with p-retry, retrying ONLY outcomes of kind `retryable` (the request surely
 * did not take effect). Every other outcome, including unknown_outcome and rate_limited, returns at
 * once to the caller, which decides (look up first; slow the limiter). Each try is reported through
 * onCall so the caller can record one attempt row per HTTP call.
 */
export async function withRetry(
  call: () => Promise<ProviderOutcome>,
  opts: { budget?: RetryBudget; signal?: AbortSignal; onCall?: (o: ProviderOutcome) => void } = {},
): Promise<ProviderOutcome> {
  const budget = opts.budget ?? DEFAULT_RETRY
  let last: ProviderOutcome | undefined
  try {
    return await pRetry(
      async () => {
        const outcome = await call()
        last = outcome
        opts.onCall?.(outcome)
        if (outcome.kind === 'retryable') throw new RetryableOutcome(outcome)
        return outcome
      },
      {
        retries: budget.retries,
        minTimeout: budget.minTimeoutMs,
        factor: 2,
        randomize: true,
        maxRetryTime: budget.maxRetryTimeMs,
        signal: opts.signal,
        shouldRetry: ({ error }) => error instanceof RetryableOutcome,
      },
    )
  } catch (err) {
    if (err instanceof RetryableOutcome) return err.outcome
    if (err instanceof AbortError && last) return last
    throw err
  }
}
