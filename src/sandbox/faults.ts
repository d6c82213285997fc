/**
 * Fault and rate-limit specs for the sandbox.
 *
 * Faults: comma- or semicolon-separated `kind=value` tokens; a `provider:` (or `*:`) prefix on a token
 * switches the provider the following tokens apply to. Kinds are probabilities per receipt operation
 * (issue, lookup, cancel): 5xx, html, timeout_before_commit, timeout_after_commit, reset, reset_before,
 * malformed; plus `latency=MIN-MAX` (ms) and `hang=MS` (how long a timeout holds the socket).
 *   portone:5xx=0.05,timeout_after_commit=0.02,reset=0.01,malformed=0.01,latency=20-80;payssam:5xx=0.1
 *
 * Rate limits: `provider=N` pairs (requests per second per credential), `*=N` for all.
 */
import type { ProviderName } from '../config.ts'

export const FAULT_KINDS = ['5xx', 'html', 'timeout_before_commit', 'timeout_after_commit', 'reset', 'reset_before', 'malformed'] as const
export type FaultKind = (typeof FAULT_KINDS)[number]
export const SANDBOX_PROVIDERS: readonly ProviderName[] = ['portone', 'portone-v2', 'payssam', 'nts']

export interface ProviderFaults {
  readonly probabilities: Partial<Record<FaultKind, number>>
  readonly latency: readonly [number, number] | null
  readonly hangMs: number
}

export type FaultSpec = Partial<Record<ProviderName, ProviderFaults>>

export class SpecError extends Error {
  override name = 'SpecError'
}

const empty = (): { probabilities: Partial<Record<FaultKind, number>>; latency: [number, number] | null; hangMs: number } => ({
  probabilities: {},
  latency: null,
  hangMs: 30_000,
})

export function parseFaults(spec: string | undefined | null): FaultSpec {
  const out: Record<string, ReturnType<typeof empty>> = {}
  let current: readonly ProviderName[] = SANDBOX_PROVIDERS
  for (const rawToken of (spec ?? '').split(/[,;]/)) {
    let token = rawToken.trim()
    if (!token) continue
    const colon = token.indexOf(':')
    if (colon > 0 && colon < token.indexOf('=')) {
      const name = token.slice(0, colon).trim()
      if (name === '*') current = SANDBOX_PROVIDERS
      else if ((SANDBOX_PROVIDERS as readonly string[]).includes(name)) current = [name as ProviderName]
      else throw new SpecError(`faults: unknown provider "${name}" (one of ${SANDBOX_PROVIDERS.join(', ')} or *)`)
      token = token.slice(colon + 1).trim()
    }
    const [kind, value] = token.split('=').map((s) => s.trim()) as [string, string | undefined]
    if (value === undefined) throw new SpecError(`faults: "${token}" is not kind=value`)
    for (const p of current) {
      const f = (out[p] ??= empty())
      if (kind === 'latency') {
        const m = /^(\d+)(?:-(\d+))?$/.exec(value)
        if (!m) throw new SpecError(`faults: latency must be MS or MIN-MAX, got "${value}"`)
        f.latency = [Number(m[1]), Number(m[2] ?? m[1])]
      } else if (kind === 'hang') {
        if (!/^\d+$/.test(value)) throw new SpecError(`faults: hang must be milliseconds, got "${value}"`)
        f.hangMs = Number(value)
      } else if ((FAULT_KINDS as readonly string[]).includes(kind)) {
        const p2 = Number(value)
        if (!(p2 >= 0 && p2 <= 1)) throw new SpecError(`faults: ${kind} must be a probability 0..1, got "${value}"`)
        f.probabilities[kind as FaultKind] = p2
      } else {
        throw new SpecError(`faults: unknown kind "${kind}" (one of ${FAULT_KINDS.join(', ')}, latency, hang)`)
      }
    }
  }
  return out as FaultSpec
}

export function parseRateLimits(spec: string | undefined | null): Partial<Record<ProviderName, number>> {
  const out: Partial<Record<ProviderName, number>> = {}
  for (const token of (spec ?? '').split(',')) {
    const t = token.trim()
    if (!t) continue
    const m = /^([a-z0-9*-]+)\s*=\s*(\d+)$/.exec(t)
    if (!m) throw new SpecError(`rate-limit: "${t}" is not provider=N`)
    const names = m[1] === '*' ? SANDBOX_PROVIDERS : [m[1] as ProviderName]
    for (const n of names) {
      if (!SANDBOX_PROVIDERS.includes(n)) throw new SpecError(`rate-limit: unknown provider "${n}"`)
      out[n] = Number(m[2])
    }
  }
  return out
}

/** mulberry32: a small seeded PRNG so fault runs are reproducible with --seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Picks the fault for one receipt operation (at most one), or null. */
export function pickFault(f: ProviderFaults | undefined, rand: () => number): FaultKind | null {
  if (!f) return null
  let r = rand()
  for (const kind of FAULT_KINDS) {
    const p = f.probabilities[kind] ?? 0
    if (r < p) return kind
    r -= p
  }
  return null
}

/** Sliding one-second window per (provider, credential). */
export class RateWindow {
  readonly #hits = new Map<string, number[]>()
  allow(key: string, limit: number, nowMs: number): boolean {
    let arr = this.#hits.get(key)
    if (!arr) this.#hits.set(key, (arr = []))
    while (arr.length && arr[0]! <= nowMs - 1000) arr.shift()
    if (arr.length >= limit) return false
    arr.push(nowMs)
    return true
  }
  reset(): void {
    this.#hits.clear()
  }
}
