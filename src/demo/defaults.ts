/**
 * What the demo gives config for settings a developer machine leaves unset: three merchants whose
 * credentials are the provider sandbox's, and a built-in data key. The command line, the demo and
 * the tests load their configuration through here; production sets MERCHANTS_FILE and DATA_KEYS.
 */
import { loadConfig, loadConfigWith, merchantSchema, type AppConfig, type ConfigDefaults, type Env, type MerchantConfig } from '../config.ts'

/** 32 bytes; development and tests only (config refuses to fall back to it in production). */
const DEV_DATA_KEY = Buffer.from('cash-receipts-development-key-32', 'utf8')

/** Built-in merchants for development and the demo; credentials are the sandbox's. */
export const DEMO_MERCHANTS: readonly MerchantConfig[] = Object.freeze([
  demoMerchant('m-clinic', '서울 밝은치과의원', '2208162517', true),
  // A PortOne V1 merchant on 헥토파이낸셜 (Settle Bank): its PG's rules (identifier_type) apply in the sandbox.
  demoMerchant('m-academy', '한빛 수학학원', '1248100998', true, 'settle'),
  demoMerchant('m-shop', '동네 꽃집', '1012345672', false),
])

function demoMerchant(id: string, name: string, businessNumber: string, mandatory: boolean, pg?: string): MerchantConfig {
  return merchantSchema.parse({
    id,
    name,
    businessNumber,
    mandatoryIssuer: mandatory,
    providers: {
      portone: { impKey: `imp_key_${id}`, impSecret: `imp_secret_${id}`, channelKey: `channel-${id}`, ...(pg ? { pg } : {}) },
      'portone-v2': { apiSecret: `v2-secret-${id}`, channelKey: `channel-v2-${id}`, storeId: `store-${id}` },
      payssam: { apikey: `apikey${id.replace(/-/g, '')}`, member: `member-${id}`, merchant: `shop-${id}` },
      nts: { clientId: `nts-${id}`, clientSecret: `nts-secret-${id}` },
      toss: { secretKey: `test_sk_${id.replace(/-/g, '')}` },
      // The sandbox accepts a LinkID with the SecretKey base64("sandbox-secret:<LinkID>") (sandbox/README.md).
      // bulk: settlement groups the merchant's Popbill receipts into submissions of up to 100 (docs/exactly-once.md, Bulk issuance).
      popbill: { linkId: `LINK-${id}`, secretKey: Buffer.from(`sandbox-secret:LINK-${id}`, 'utf8').toString('base64'), corpNum: businessNumber, bulk: true },
    },
  })
}

export const DEMO_DEFAULTS: ConfigDefaults = Object.freeze({ merchants: DEMO_MERCHANTS, dataKey: { id: 'dev', key: DEV_DATA_KEY } })

/** The configuration from an environment (process.env when undefined), with the demo's merchants and key as defaults. */
export function loadDemoConfig(env?: Env): AppConfig {
  return loadConfig(env, DEMO_DEFAULTS)
}

/** process.env with some settings replaced, with the demo's merchants and key as defaults. */
export function loadDemoConfigWith(overrides: Record<string, string>): AppConfig {
  return loadConfigWith(overrides, DEMO_DEFAULTS)
}
