/**
 * What a running sandbox holds besides its sockets: the four simulators, the fault spec and the
 * faults forced for the next operations, the rate limits and their windows, the PRNG the fault draws
 * use, and the per-provider traffic counters. The control API and the fault pipeline both act on it;
 * it knows nothing of HTTP.
 */
import type { Logger } from 'pino'
import type { ProviderName } from '../src/domain/index.ts'
import { seededRandom } from '../src/demo/seeded-random.ts'
import {
  DEFAULT_HANG_MS,
  FAULT_KINDS,
  RateWindow,
  SANDBOX_PROVIDERS,
  SpecError,
  formatFaults,
  parseFaults,
  parseRateLimits,
  pickFault,
  type FaultKind,
  type FaultSpec,
  type RateLimitSpec,
} from './faults.ts'
import type { HeldReceipt, ProviderSim } from './sim.ts'
import { createPortoneV1Sim, type PortoneMerchant, type PortonePayment } from './providers/portone-v1.ts'
import { createPortoneV2Sim } from './providers/portone-v2/index.ts'
import { createPayssamSim } from './providers/payssam.ts'
import { createNtsSim } from './providers/nts.ts'
import { createTossSim, type TossSim } from './providers/toss.ts'
import { createPopbillSim, POPBILL_NTS_RESULTS, type PopbillSim } from './providers/popbill.ts'

export type { PortoneMerchant, PortonePayment }

export interface SandboxOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Fault spec, e.g. `portone:5xx=0.05,timeout_after_commit=0.02,latency=20-80;payssam:5xx=0.1`. */
  readonly faults?: string
  /** Rate-limit spec, e.g. `portone=100,payssam=50,nts/day=1000`. */
  readonly rateLimits?: string
  /** Seeds the fault PRNG (a `seed=N` in the fault spec overrides it). */
  readonly seed?: number
  /** Only start-up, shutdown and internal errors are logged; never identifiers or secrets. */
  readonly logger?: Logger
  /** The providers' clock (token lifetimes, idempotency TTL, KST quota day); rate windows use real time. */
  readonly clock?: () => number
  /** NTS-style issues per credential per KST day (default 1,000,000; `nts/day=N` in rateLimits wins). */
  readonly ntsDailyQuota?: number
  /** How long a Toss receipt stays IN_PROGRESS before its NTS result (default one day). */
  readonly tossResultDelayMs?: number
  /** How long a Popbill bulk submission takes to process (default 2.5 × a modelled submission time). */
  readonly popbillBulkDelayMs?: number
  /**
   * Popbill's own processing time per `/Cashbill` call (RegistIssue, BulkSubmit, revocations, reads),
   * ms: the answer leaves this long after the request came (default 0, an instant answer). Popbill
   * issues a single receipt synchronously, forwarding it for NTS filing, so a real RegistIssue takes
   * ~140 ms (docs/providers.md, Popbill: timing); a run comparing single calls with bulk submissions
   * sets it so both pay what each call costs.
   */
  readonly popbillCallMs?: number
}

/** One provider's figures in `GET /_sandbox/stats`. */
export interface ProviderStats {
  requests: number
  issued: number
  cancelled: number
  duplicates_rejected: number
  rate_limited: number
}

/** `GET /_sandbox/stats`. */
export interface SandboxStats {
  providers: Record<ProviderName, ProviderStats>
  /** Largest number of live (not cancelled) receipts held for one payment key, over all providers. */
  max_live_receipts_per_key: number
  /**
   * Largest number of receipts ever issued for one payment key, over all providers, cancelled ones
   * included: a duplicate that reconcile cancelled stays visible here.
   */
  max_receipts_per_key: number
}

/** A held receipt with its provider, as listed by `GET /_sandbox/receipts`. */
export type ListedReceipt = HeldReceipt & { readonly provider: ProviderName }

/** The fault a receipt operation gets: drawn (or forced), with the latency to add and how long a timeout holds. */
export interface FaultDraw {
  readonly fault: FaultKind | null
  /** Extra latency before handling; null when the spec sets none. */
  readonly latencyMs: number | null
  readonly hangMs: number
}

const isFaultKind = (k: unknown): k is FaultKind => (FAULT_KINDS as readonly unknown[]).includes(k)

const noTraffic = () => Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, { requests: 0, rate_limited: 0 }])) as Record<ProviderName, { requests: number; rate_limited: number }>

export class SandboxState {
  readonly clock: () => number
  readonly #sims: Record<ProviderName, ProviderSim>
  readonly #portone: ReturnType<typeof createPortoneV1Sim>
  readonly #nts: ReturnType<typeof createNtsSim>
  readonly #toss: TossSim
  readonly #popbill: PopbillSim
  readonly #seed: number | undefined
  readonly #ntsDailyQuota: number | undefined
  readonly #popbillCallMs: number
  readonly #forced = new Map<ProviderName, FaultKind[]>()
  readonly #windows = new RateWindow()
  #counts = noTraffic()
  #faults: FaultSpec
  #limits: RateLimitSpec
  #rand: () => number = Math.random

  /** Throws SpecError for a bad seed, fault spec or rate-limit spec. */
  constructor(opts: SandboxOptions) {
    this.clock = opts.clock ?? Date.now
    if (opts.seed !== undefined && !(Number.isSafeInteger(opts.seed) && opts.seed >= 0)) {
      throw new SpecError(`seed must be a non-negative integer, got ${opts.seed}`)
    }
    this.#seed = opts.seed
    if (opts.popbillCallMs !== undefined && !(Number.isSafeInteger(opts.popbillCallMs) && opts.popbillCallMs >= 0)) {
      throw new SpecError(`popbillCallMs must be a non-negative integer (ms), got ${opts.popbillCallMs}`)
    }
    this.#popbillCallMs = opts.popbillCallMs ?? 0
    this.#ntsDailyQuota = opts.ntsDailyQuota
    this.#portone = createPortoneV1Sim()
    this.#nts = createNtsSim({ dailyQuota: opts.ntsDailyQuota ?? null })
    this.#toss = createTossSim({ resultDelayMs: opts.tossResultDelayMs })
    this.#popbill = createPopbillSim({ clock: this.clock, bulkDelayMs: opts.popbillBulkDelayMs ?? null })
    this.#sims = {
      portone: this.#portone,
      'portone-v2': createPortoneV2Sim(),
      payssam: createPayssamSim(),
      nts: this.#nts,
      toss: this.#toss,
      popbill: this.#popbill,
    }
    this.#faults = parseFaults(opts.faults)
    this.#limits = parseRateLimits(opts.rateLimits)
    this.#applyNtsQuota()
    this.#reseed()
  }

  sim(name: ProviderName): ProviderSim {
    return this.#sims[name]
  }

  /** The provider's own processing time for each receipt operation, ms (0: answered at once). */
  processingMs(name: ProviderName): number {
    return name === 'popbill' ? this.#popbillCallMs : 0
  }

  stats(): SandboxStats {
    let maxLive = 0
    let maxEver = 0
    const providers = {} as Record<ProviderName, ProviderStats>
    for (const p of SANDBOX_PROVIDERS) {
      const s = this.#sims[p]
      maxLive = Math.max(maxLive, s.maxLivePerKey())
      maxEver = Math.max(maxEver, s.maxReceiptsPerKey())
      providers[p] = {
        requests: this.#counts[p].requests,
        issued: s.counters.issued,
        cancelled: s.counters.cancelled,
        duplicates_rejected: s.counters.duplicates_rejected,
        rate_limited: this.#counts[p].rate_limited + s.counters.rate_limited,
      }
    }
    return { providers, max_live_receipts_per_key: maxLive, max_receipts_per_key: maxEver }
  }

  /** Forgets every receipt, token, payment, counter, rate window and forced fault; keeps the fault spec. */
  reset(): void {
    for (const s of Object.values(this.#sims)) s.reset()
    this.#counts = noTraffic()
    this.#windows.reset()
    this.#forced.clear()
    this.#reseed()
  }

  /** Replaces the fault spec (throws SpecError). */
  setFaults(spec: string): void {
    this.#faults = parseFaults(spec)
    this.#reseed()
  }

  /** Replaces the rate limits (throws SpecError). */
  setRateLimits(spec: string): void {
    this.#limits = parseRateLimits(spec)
    this.#windows.reset()
    this.#applyNtsQuota()
  }

  /** Gives the next receipt operations of a provider these faults, in order. */
  forceNext(provider: ProviderName | '*', list: readonly FaultKind[]): void {
    const names = provider === '*' ? SANDBOX_PROVIDERS : [provider]
    if (provider !== '*' && !SANDBOX_PROVIDERS.includes(provider)) {
      throw new SpecError(`unknown provider "${String(provider)}" (one of ${SANDBOX_PROVIDERS.join(', ')} or *)`)
    }
    for (const k of list) {
      if (!isFaultKind(k)) {
        throw new SpecError(`unknown fault "${String(k)}" (one of ${FAULT_KINDS.join(', ')})`)
      }
    }
    for (const n of names) this.#forced.set(n, [...list])
  }

  /** Toss: the NTS results of receipts requested up to `ms` later are in (the result clock only). */
  tossAdvance(ms: number): void {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new SpecError(`ms must be a non-negative number, got ${String(ms)}`)
    this.#toss.advance(ms)
  }

  /** Toss: the next issues fail at the NTS with these result codes, in order. */
  tossFailNext(codes: readonly string[]): void {
    for (const c of codes) if (typeof c !== 'string' || !/^(TS[1-8]|XXX)$/.test(c)) throw new SpecError(`unknown NTS result code "${String(c)}" (TS1–TS8 or XXX)`)
    this.#toss.failNext(codes)
  }

  /** Toss: how long new receipts stay IN_PROGRESS. */
  tossResultDelay(ms: number): void {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new SpecError(`ms must be a non-negative number, got ${String(ms)}`)
    this.#toss.setResultDelay(ms)
  }

  /** Popbill: files every receipt issued so far, as the midnight NTS filing would (304 or 305). */
  popbillFileNow(): void {
    this.#popbill.fileNow()
  }

  /** Popbill: the next issues fail at the NTS filing with these result codes (305), in order. */
  popbillFailNext(codes: readonly string[]): void {
    for (const c of codes) if (typeof c !== 'string' || !(c in POPBILL_NTS_RESULTS)) throw new SpecError(`unknown NTS result code "${String(c)}" (TS1–TS8 or XXX)`)
    this.#popbill.failNext(codes)
  }

  /** Popbill: how long a bulk submission takes to process (null: the default). */
  popbillBulkDelay(ms: number | null): void {
    if (ms !== null && !(Number.isFinite(ms) && ms >= 0)) throw new SpecError(`ms must be a non-negative number or null, got ${String(ms)}`)
    this.#popbill.setBulkDelay(ms)
  }

  registerPortonePayments(list: readonly PortonePayment[]): void {
    this.#portone.registerPayments(list)
  }

  registerPortoneMerchants(list: readonly PortoneMerchant[]): void {
    this.#portone.registerMerchants(list)
  }

  receipts(provider?: ProviderName): ListedReceipt[] {
    const names = provider ? [provider] : SANDBOX_PROVIDERS
    return names.flatMap((n) => this.#sims[n].receipts().map((r) => ({ provider: n, ...r })))
  }

  /** `GET /_sandbox/faults`. */
  faultsView() {
    const next: Partial<Record<ProviderName, FaultKind[]>> = {}
    for (const [p, list] of this.#forced) if (list.length) next[p] = [...list]
    return { spec: formatFaults(this.#faults), faults: this.#faults.providers, seed: this.#seedOf(), next }
  }

  /** `GET /_sandbox/rate-limits`. */
  rateLimitsView() {
    return { perSecond: this.#limits.perSecond, perCredential: this.#limits.perCredential, ntsDaily: this.#limits.ntsDaily }
  }

  /** Counts a request that reached a provider's prefix. */
  countRequest(name: ProviderName): void {
    this.#counts[name].requests++
  }

  /**
   * Takes a slot in the credential's one-second window (`arrivedAt` in real time): 0 when the
   * request may pass, else the ms until a slot frees, and the request is counted as rate limited.
   */
  takeRateSlot(name: ProviderName, credential: string | null, arrivedAt: number): number {
    if (credential === null) return 0
    const limit = this.#limits.perCredential[`${name}@${credential}`] ?? this.#limits.perSecond[name]
    if (limit === undefined) return 0
    const waitMs = this.#windows.take(`${name}\u0000${credential}`, limit, arrivedAt)
    if (waitMs > 0) this.#counts[name].rate_limited++
    return waitMs
  }

  /**
   * The fault for one receipt operation: the next forced one, else a draw from the spec; then the
   * latency draw. The order of PRNG draws is what makes a seeded run reproducible.
   */
  drawFault(name: ProviderName): FaultDraw {
    const f = this.#faults.providers[name]
    const queued = this.#forced.get(name)
    const fault = queued?.length ? queued.shift()! : pickFault(f, this.#rand)
    let latencyMs: number | null = null
    if (f?.latency) {
      const [lo, hi] = f.latency
      latencyMs = lo + Math.floor(this.#rand() * (hi - lo + 1))
    }
    return { fault, latencyMs, hangMs: f?.hangMs ?? DEFAULT_HANG_MS }
  }

  #applyNtsQuota(): void {
    this.#nts.setDailyQuota(this.#limits.ntsDaily ?? this.#ntsDailyQuota ?? null)
  }

  #seedOf(): number | null {
    return this.#faults.seed ?? this.#seed ?? null
  }

  #reseed(): void {
    const s = this.#seedOf()
    this.#rand = s === null ? Math.random : seededRandom(s)
  }
}
