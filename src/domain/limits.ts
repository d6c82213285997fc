/**
 * Rate limits of one provider credential, shared by every worker process. The throttle enforces
 * them; config fills them from the <PROVIDER>_* variables and a merchant's per-credential overrides.
 */
export interface ProviderLimits {
  /** Calls in flight at once for one credential, across all worker processes. null = none. */
  readonly maxConcurrent: number | null
  /** Minimum milliseconds between two call starts for one credential, across all processes. */
  readonly minTimeMs: number
  /**
   * The provider's documented request rate per credential (req/s), kept as the provider counts it: at
   * most this many calls in any one-second window, each counted until a window after its answer came
   * (the throttle's rate window), so timer or network jitter never makes a 429. null = none.
   */
  readonly maxPerSecond: number | null
  /** Issue calls allowed per KST calendar day for one credential (NTS-style quotas). null = none. */
  readonly dailyQuota: number | null
}

/** A merchant's per-credential overrides; what it leaves out comes from the provider's defaults. */
export type ProviderLimitsOverride = { readonly [K in keyof ProviderLimits]?: ProviderLimits[K] }
