/**
 * What jobs need to reach a merchant's provider: the adapter and its shared throttle, built once per
 * merchant and provider for the life of the process.
 */
import type { AppConfig, MerchantConfig } from '../config.ts'
import type { ProviderName } from '../domain/index.ts'
import type { Db } from '../db/database.ts'
import { merchantBusinessNumber } from '../db/merchants.ts'
import type { Logger } from '../logger.ts'
import { createHttpClient, type HttpClient } from '../providers/http.ts'
import { createProvider } from '../providers/registry.ts'
import type { CashReceiptProvider } from '../providers/types.ts'
import type { Throttle, ThrottleRegistry } from '../throttle/throttle.ts'

export interface ProviderSource {
  get(merchantId: string, provider: ProviderName): { readonly provider: CashReceiptProvider; readonly throttle: Throttle }
  /** The merchant's own 사업자등록번호, decrypted, for providers that need it (NTS-style). */
  merchantBusinessNumber(merchantId: string): Promise<string>
  /** Calls in flight the provider may have from this process (its gate's cap); undefined: no cap. */
  inFlightCap(provider: ProviderName): number | undefined
}

/**
 * A job names a merchant this process does not know: its merchant list (MERCHANTS_FILE, read at
 * start) is older than the job. No call was made; retrying cannot help until the process restarts.
 */
export class MerchantNotConfiguredError extends Error {
  override name = 'MerchantNotConfiguredError'
  readonly code = 'MERCHANT_NOT_CONFIGURED'
}

export interface ProviderSourceDeps {
  readonly config: Pick<AppConfig, 'merchants' | 'http' | 'providerBaseUrls' | 'providerDefaults' | 'dataKeys'>
  readonly db: Db
  readonly throttles: Pick<ThrottleRegistry, 'get' | 'gate'>
  readonly logger: Logger
  /** A fetch to use instead of the shared keep-alive transport (tests). */
  readonly fetch?: typeof globalThis.fetch
  /** Called once per throttle created (the /metrics limiter registry). */
  readonly onLimiter?: (limiterKey: string, provider: ProviderName) => unknown
}

export function createProviderSource(deps: ProviderSourceDeps): ProviderSource {
  const { config, db, throttles, logger, fetch: fetchImpl, onLimiter } = deps
  const merchants = new Map<string, MerchantConfig>(config.merchants.map((m) => [m.id, m]))
  const cache = new Map<string, { provider: CashReceiptProvider; throttle: Throttle }>()
  // One keep-alive transport for every merchant and provider of this process.
  const http: HttpClient | undefined = fetchImpl ? undefined : createHttpClient({ connectTimeoutMs: config.http.connectTimeoutMs, readTimeoutMs: config.http.readTimeoutMs })
  const brn = new Map<string, string>()
  return {
    get(merchantId: string, name: ProviderName) {
      const key = `${merchantId}/${name}`
      let entry = cache.get(key)
      if (!entry) {
        const merchant = merchants.get(merchantId)
        const hint = 'restart the workers with the current MERCHANTS_FILE, then `cash-receipts redrive --code MERCHANT_NOT_CONFIGURED`'
        if (!merchant) throw new MerchantNotConfiguredError(`merchant ${merchantId} is not in this worker's merchant list (read at start): ${hint}`)
        const credentials = merchant.providers[name]
        if (!credentials) throw new MerchantNotConfiguredError(`merchant ${merchantId} has no ${name} credentials in this worker's merchant list (read at start): ${hint}`)
        const provider = createProvider(name, {
          baseUrl: config.providerBaseUrls[name],
          credentials: credentials as never,
          http,
          fetch: fetchImpl,
          logger: logger.child({ provider: name, merchant: merchantId }),
          timeouts: { connectMs: config.http.connectTimeoutMs, readMs: config.http.readTimeoutMs },
        })
        const limits = { ...config.providerDefaults[name], ...(credentials.limits ?? {}) }
        const throttleKey = `${name}-${provider.credentialId}`
        const throttle = throttles.get(throttleKey, limits, name)
        onLimiter?.(throttleKey, name)
        entry = { provider, throttle }
        cache.set(key, entry)
      }
      return entry
    },
    inFlightCap(name: ProviderName) {
      const max = throttles.gate(name)?.inFlight.max
      return max === undefined || max === Number.MAX_SAFE_INTEGER ? undefined : max
    },
    async merchantBusinessNumber(merchantId: string) {
      let v = brn.get(merchantId)
      if (!v) {
        v = await merchantBusinessNumber(db, merchantId, config.dataKeys)
        brn.set(merchantId, v)
      }
      return v
    },
  }
}
