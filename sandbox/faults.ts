/**
 * Fault and rate-limit specs for the sandbox (grammar in sandbox/README.md), the fault draw, and the
 * per-credential one-second rate window.
 *
 * Faults:  `portone:5xx=0.05,timeout_after_commit=0.02,latency=20-80;payssam:5xx=0.1;seed=7`
 * Limits:  `portone=100,payssam=50` (req/s per credential), `*=100`, `payssam@apikeyx=5` (one
 *          credential's own limit, which wins over its provider's), `nts/day=1000` (NTS daily quota)
 */
import type { ProviderName } from '../src/domain/index.ts'

export const SANDBOX_PROVIDERS: readonly ProviderName[] = ['portone', 'portone-v2', 'payssam', 'nts', 'toss', 'popbill']

export const FAULT_KINDS = ['5xx', 'html', 'timeout_before_commit', 'timeout_after_commit', 'reset', 'reset_before', 'malformed'] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

/** Default time a `timeout_*` fault holds the socket before destroying it. */
export const DEFAULT_HANG_MS = 30_000

export interface ProviderFaults {
  /** Probability per receipt operation of each fault kind; at most one fault is drawn per request. */
  readonly probabilities: Readonly<Partial<Record<FaultKind, number>>>
  /** Uniform extra latency [min, max] in ms before a receipt operation is handled. */
  readonly latency: readonly [number, number] | null
  readonly hangMs: number
}

export interface FaultSpec {
  readonly providers: Readonly<Partial<Record<ProviderName, ProviderFaults>>>
  /** `seed=N` in the spec reseeds the PRNG. */
  readonly seed: number | null
}

export interface RateLimitSpec {
  /** Requests per second per credential. */
  readonly perSecond: Readonly<Partial<Record<ProviderName, number>>>
  /**
   * Requests per second of one credential (`provider@credential=N`), keyed `provider@credential`:
   * contracts differ between merchants of one provider, so one credential's limit wins over the provider's.
   */
  readonly perCredential: Readonly<Record<string, number>>
  /** NTS-style issues per credential per KST day (`nts/day=N`). */
  readonly ntsDaily: number | null
}

export class SpecError extends Error {
  override name = 'SpecError'
}

const isProvider = (s: string): s is ProviderName => (SANDBOX_PROVIDERS as readonly string[]).includes(s)
const isKind = (s: string): s is FaultKind => (FAULT_KINDS as readonly string[]).includes(s)

interface MutableFaults {
  probabilities: Partial<Record<FaultKind, number>>
  latency: [number, number] | null
  hangMs: number
}

/**
 * Parses a fault spec. Tokens are `kind=value`, separated by `,` or `;`; a `provider:` or `*:` prefix on
 * a token switches the providers that token and the following ones apply to (before any prefix: all).
 */
export function parseFaults(spec: string | null | undefined): FaultSpec {
  const out: Partial<Record<ProviderName, MutableFaults>> = {}
  let seed: number | null = null
  let current: readonly ProviderName[] = SANDBOX_PROVIDERS
  const text = (spec ?? '').trim()
  if (text === '' || text === 'none' || text === 'off') return { providers: {}, seed: null }
  for (const raw of text.split(/[,;\n]/)) {
    let token = raw.trim()
    if (!token) continue
    const colon = token.indexOf(':')
    const eq = token.indexOf('=')
    if (colon > 0 && (eq === -1 || colon < eq)) {
      const name = token.slice(0, colon).trim()
      if (name === '*') current = SANDBOX_PROVIDERS
      else if (isProvider(name)) current = [name]
      else {
        throw new SpecError(`faults: unknown provider "${name}" (one of ${SANDBOX_PROVIDERS.join(', ')} or *)`)
      }
      token = token.slice(colon + 1).trim()
      if (!token) continue
    }
    const at = token.indexOf('=')
    if (at <= 0) throw new SpecError(`faults: "${token}" is not kind=value`)
    const kind = token.slice(0, at).trim()
    const value = token.slice(at + 1).trim()
    if (kind === 'seed') {
      if (!/^\d{1,10}$/.test(value)) {
        throw new SpecError(`faults: seed must be a non-negative integer, got "${value}"`)
      }
      seed = Number(value)
      continue
    }
    for (const p of current) {
      applyFault((out[p] ??= { probabilities: {}, latency: null, hangMs: DEFAULT_HANG_MS }), kind, value)
    }
  }
  return { providers: out, seed }
}

function applyFault(f: MutableFaults, kind: string, value: string): void {
  if (kind === 'latency') {
    const m = /^(\d{1,6})(?:\s*-\s*(\d{1,6}))?$/.exec(value)
    if (!m) throw new SpecError(`faults: latency must be MS or MIN-MAX (ms), got "${value}"`)
    const lo = Number(m[1])
    const hi = Number(m[2] ?? m[1])
    if (hi < lo) throw new SpecError(`faults: latency ${value}: MAX is below MIN`)
    f.latency = [lo, hi]
  } else if (kind === 'hang') {
    if (!/^\d{1,7}$/.test(value)) throw new SpecError(`faults: hang must be milliseconds, got "${value}"`)
    f.hangMs = Number(value)
  } else if (isKind(kind)) {
    const p = Number(value)
    if (value === '' || !(p >= 0 && p <= 1)) {
      throw new SpecError(`faults: ${kind} must be a probability between 0 and 1, got "${value}"`)
    }
    f.probabilities[kind] = p
  } else {
    throw new SpecError(`faults: unknown kind "${kind}" (one of ${FAULT_KINDS.join(', ')}, latency, hang, seed)`)
  }
}

/**
 * The JSON form of a fault spec: `{"portone": {"5xx": 0.05, "latency": "20-80"}, "*": {...}, "seed": 7}`,
 * turned into the string grammar so both forms have one parser.
 */
export function faultSpecFromJson(obj: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [target, value] of Object.entries(obj)) {
    if (target === 'seed') {
      parts.push(`seed=${String(value)}`)
      continue
    }
    if (target !== '*' && !isProvider(target)) throw new SpecError(`faults: unknown provider "${target}"`)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new SpecError(`faults: "${target}" must map fault kinds to values`)
    }
    const items = Object.entries(value).map(([k, v]) => `${k}=${String(v)}`)
    if (items.length) parts.push(`${target}:${items.join(',')}`)
  }
  return parts.join(';')
}

/** The canonical string form of a parsed spec (what `GET /_sandbox/faults` reports). */
export function formatFaults(spec: FaultSpec): string {
  const groups: string[] = []
  for (const p of SANDBOX_PROVIDERS) {
    const f = spec.providers[p]
    if (!f) continue
    const items = FAULT_KINDS.filter((k) => f.probabilities[k] !== undefined).map((k) => `${k}=${f.probabilities[k]}`)
    if (f.latency) items.push(`latency=${f.latency[0]}-${f.latency[1]}`)
    if (f.hangMs !== DEFAULT_HANG_MS) items.push(`hang=${f.hangMs}`)
    if (items.length) groups.push(`${p}:${items.join(',')}`)
  }
  if (spec.seed !== null) groups.push(`seed=${spec.seed}`)
  return groups.join(';')
}

/** Parses `provider=N` (requests per second per credential), `*=N`, `provider@credential=N` and `nts/day=N` tokens. */
export function parseRateLimits(spec: string | null | undefined): RateLimitSpec {
  const perSecond: Partial<Record<ProviderName, number>> = {}
  const perCredential: Record<string, number> = {}
  let ntsDaily: number | null = null
  for (const raw of (spec ?? '').split(/[,;]/)) {
    const t = raw.trim()
    if (!t) continue
    const m = /^([a-z0-9*-]+)(?:@([A-Za-z0-9_.:-]{1,100}))?(?:\/(s|day))?\s*=\s*(\d{1,9})$/.exec(t)
    if (!m) throw new SpecError(`rate-limit: "${t}" is not provider=N or provider@credential=N (requests per second) or nts/day=N`)
    const [, name, credential, unit, count] = m as unknown as [string, string, string | undefined, string | undefined, string]
    const n = Number(count)
    if (n < 1) throw new SpecError(`rate-limit: "${t}": the limit must be at least 1`)
    if (credential !== undefined) {
      if (!isProvider(name)) throw new SpecError(`rate-limit: "${t}": a credential's limit needs one provider (one of ${SANDBOX_PROVIDERS.join(', ')})`)
      if (unit === 'day') throw new SpecError(`rate-limit: "${t}": only the NTS-style API has a daily quota, per provider`)
      perCredential[`${name}@${credential}`] = n
      continue
    }
    if (unit === 'day') {
      if (name !== 'nts') throw new SpecError(`rate-limit: "${t}": only the NTS-style API has a daily quota`)
      ntsDaily = n
      continue
    }
    if (name === '*') for (const p of SANDBOX_PROVIDERS) perSecond[p] = n
    else if (isProvider(name)) perSecond[name] = n
    else {
      throw new SpecError(`rate-limit: unknown provider "${name}" (one of ${SANDBOX_PROVIDERS.join(', ')} or *)`)
    }
  }
  return { perSecond, perCredential, ntsDaily }
}

/** Draws the fault for one receipt operation (at most one), or null. One PRNG draw per call. */
export function pickFault(f: ProviderFaults | undefined, rand: () => number): FaultKind | null {
  if (!f) return null
  let r = rand()
  for (const kind of FAULT_KINDS) {
    const p = f.probabilities[kind]
    if (p === undefined) continue
    if (r < p) return kind
    r -= p
  }
  return null
}

/**
 * "At most N requests in any one-second window" per key, with a ring of the last N request times:
 * O(1) per request. Rejected requests take no slot.
 */
export class RateWindow {
  readonly #rings = new Map<string, { times: Float64Array; next: number }>()

  /** 0 when the request may pass (and is counted), else the ms until a slot frees. */
  take(key: string, limit: number, nowMs: number): number {
    let ring = this.#rings.get(key)
    if (!ring || ring.times.length !== limit) {
      ring = { times: new Float64Array(limit).fill(-Infinity), next: 0 }
      this.#rings.set(key, ring)
    }
    const oldest = ring.times[ring.next]!
    if (nowMs - oldest < 1000) return Math.max(1, Math.ceil(oldest + 1000 - nowMs))
    ring.times[ring.next] = nowMs
    ring.next = (ring.next + 1) % limit
    return 0
  }

  reset(): void {
    this.#rings.clear()
  }
}
