/**
 * The only module that reads process.env. Everything else receives an {@link AppConfig}.
 *
 * Defaults work on a developer machine: local Postgres and Redis, the local provider sandbox on
 * port 4010. Merchants and the data key come from MERCHANTS_FILE and DATA_KEYS or from the caller's
 * {@link ConfigDefaults} (the demo's merchants and development key). In production
 * (NODE_ENV=production) the data key and provider base URLs must be set explicitly.
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import type { ProviderLimits, ProviderName } from './domain/index.ts'
import { CREDENTIAL_SCHEMAS } from './providers/registry.ts'

export const merchantSchema = z.object({
  id: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_-]+$/, 'merchant id may contain letters, digits, _ and - only'),
  name: z.string().min(1),
  /** 사업자등록번호 of the merchant, 10 digits (stored encrypted). */
  businessNumber: z.string().regex(/^\d{3}-?\d{2}-?\d{5}$/, 'business number must be 10 digits'),
  /** 현금영수증 의무발행업종: must issue for totals ≥ ₩100,000 even without a buyer identifier. */
  mandatoryIssuer: z.boolean().default(false),
  /** The merchant's credential per provider; each provider's adapter owns its schema. */
  providers: z.object({
    portone: CREDENTIAL_SCHEMAS.portone.optional(),
    'portone-v2': CREDENTIAL_SCHEMAS['portone-v2'].optional(),
    payssam: CREDENTIAL_SCHEMAS.payssam.optional(),
    nts: CREDENTIAL_SCHEMAS.nts.optional(),
  }),
})
export type MerchantConfig = z.infer<typeof merchantSchema>

export interface AppConfig {
  readonly nodeEnv: 'development' | 'production' | 'test'
  readonly databaseUrl: string
  /** Postgres connections per process; jobs hold one only for a few statements. */
  readonly dbPoolMax: number
  /** The ledger's hot statements as named prepared statements (off behind PgBouncer < 1.21 in transaction mode). */
  readonly dbPreparedStatements: boolean
  readonly redisUrl: string
  /** BullMQ key prefix; tests use one per file. */
  readonly queuePrefix: string
  readonly log: { readonly level: string; readonly pretty: boolean }
  readonly dataKeys: { readonly activeKeyId: string; readonly keys: ReadonlyMap<string, Buffer> }
  readonly providerBaseUrls: Readonly<Record<ProviderName, string>>
  readonly providerDefaults: Readonly<Record<ProviderName, ProviderLimits>>
  readonly http: { readonly connectTimeoutMs: number; readonly readTimeoutMs: number }
  readonly merchants: readonly MerchantConfig[]
  readonly worker: {
    readonly concurrency: number
    /** BullMQ attempts per job (longer outages); p-retry handles short blips inside one attempt. */
    readonly attempts: number
    readonly backoffMs: number
    readonly lockDurationMs: number
    readonly stalledIntervalMs: number
    /** How long an `issuing` claim is owned by one worker before another may take it over. */
    readonly leaseMs: number
  }
  readonly settle: {
    readonly chunkSize: number
    /** Backpressure: settle pauses while the issue queue has more waiting jobs than this. */
    readonly maxWaiting: number
    /** Cron (six fields, Asia/Seoul) of the nightly settlement. */
    readonly cron: string
    readonly reconcileCron: string
  }
  readonly serve: {
    readonly port: number
    readonly host: string
    /** `Authorization: Bearer <token>` (scripts, Prometheus); also accepted as a basic-auth password. */
    readonly authToken: string | undefined
    /** Basic auth for browsers (DASHBOARD_USER + DASHBOARD_PASSWORD). */
    readonly basicAuth: { readonly user: string; readonly password: string } | undefined
    /** How long /metrics reuses one set of ledger and Redis readings (concurrent scrapers share it). */
    readonly metricsCacheMs: number
  }
  /** OpenTelemetry traces through bullmq-otel; off (nothing loaded) unless an OTLP endpoint is set. */
  readonly otel: { readonly endpoint: string | undefined; readonly serviceName: string }
  readonly sandboxPort: number
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * What the environment may leave out because the caller supplies it: the demo gives its merchants
 * and a development data key (src/demo/defaults.ts). Without them MERCHANTS_FILE and DATA_KEYS are required.
 */
export interface ConfigDefaults {
  /** The merchants when MERCHANTS_FILE is not set. */
  readonly merchants?: readonly MerchantConfig[]
  /** The data key when DATA_KEYS is not set, outside production only. */
  readonly dataKey?: { readonly id: string; readonly key: Buffer }
}

export type Env = Record<string, string | undefined>

function intVar(env: Env, name: string, def: number, min = 0): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return def
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name}: expected an integer, got "${raw}"`)
  const n = Number(raw)
  if (n < min) throw new ConfigError(`${name}: must be ≥ ${min}, got ${n}`)
  return n
}

function boolVar(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]
  if (raw === undefined || raw === '') return def
  if (/^(1|true|yes|on)$/i.test(raw)) return true
  if (/^(0|false|no|off)$/i.test(raw)) return false
  throw new ConfigError(`${name}: expected true or false, got "${raw}"`)
}

function urlVar(env: Env, name: string, def: string | undefined): string {
  const raw = env[name] || def
  if (raw === undefined) throw new ConfigError(`${name}: required in production`)
  try {
    new URL(raw)
  } catch {
    throw new ConfigError(`${name}: not a valid URL: "${raw}"`)
  }
  return raw.replace(/\/+$/, '')
}

/** DATA_KEYS="k1:<base64 32 bytes>,k2:<base64>"; DATA_KEY_ID picks the key new data is encrypted with. */
function parseDataKeys(env: Env, production: boolean, fallback: ConfigDefaults['dataKey']): AppConfig['dataKeys'] {
  const raw = env.DATA_KEYS
  if (!raw) {
    if (production) throw new ConfigError('DATA_KEYS: required in production (e.g. "k1:<base64 of 32 bytes>")')
    if (!fallback) throw new ConfigError('DATA_KEYS: required (e.g. "k1:<base64 of 32 bytes>")')
    return { activeKeyId: fallback.id, keys: new Map([[fallback.id, fallback.key]]) }
  }
  const keys = new Map<string, Buffer>()
  for (const part of raw.split(',')) {
    const m = /^\s*([A-Za-z0-9_-]{1,16}):([A-Za-z0-9+/=]+)\s*$/.exec(part)
    if (!m) throw new ConfigError(`DATA_KEYS: entry "${part.slice(0, 20)}…" is not "<id>:<base64 key>"`)
    const key = Buffer.from(m[2]!, 'base64')
    if (key.length !== 32) throw new ConfigError(`DATA_KEYS: key "${m[1]}" must be 32 bytes, got ${key.length}`)
    keys.set(m[1]!, key)
  }
  const activeKeyId = env.DATA_KEY_ID || [...keys.keys()].at(-1)!
  if (!keys.has(activeKeyId)) throw new ConfigError(`DATA_KEY_ID: "${activeKeyId}" is not one of DATA_KEYS`)
  return { activeKeyId, keys }
}

function parseMerchants(env: Env, fallback: ConfigDefaults['merchants']): MerchantConfig[] {
  const file = env.MERCHANTS_FILE
  if (!file) {
    if (!fallback) throw new ConfigError('MERCHANTS_FILE: required (the path of a JSON array of merchants)')
    return [...fallback]
  }
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ConfigError(`MERCHANTS_FILE: cannot read ${file}: ${(err as Error).message}`)
  }
  const parsed = z.array(merchantSchema).min(1).safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ConfigError(`MERCHANTS_FILE: ${file}: [${issue.path.join('.')}] ${issue.message}`)
  }
  const ids = new Set<string>()
  for (const m of parsed.data) {
    if (ids.has(m.id)) throw new ConfigError(`MERCHANTS_FILE: merchant id "${m.id}" appears twice`)
    ids.add(m.id)
  }
  return parsed.data
}

/** DASHBOARD_USER and DASHBOARD_PASSWORD come together or not at all. */
function parseBasicAuth(env: Env): AppConfig['serve']['basicAuth'] {
  const user = env.DASHBOARD_USER || undefined
  const password = env.DASHBOARD_PASSWORD || undefined
  if (!user && !password) return undefined
  if (!user) throw new ConfigError('DASHBOARD_USER: required when DASHBOARD_PASSWORD is set')
  if (!password) throw new ConfigError('DASHBOARD_PASSWORD: required when DASHBOARD_USER is set')
  if (user.includes(':')) throw new ConfigError('DASHBOARD_USER: must not contain ":" (basic auth separator)')
  return { user, password }
}

/** The environment with some settings replaced (the demo points the app at what it started). */
export function loadConfigWith(overrides: Record<string, string>, defaults: ConfigDefaults = {}): AppConfig {
  return loadConfig({ ...process.env, ...overrides }, defaults)
}

/**
 * Builds the configuration from an environment (process.env when undefined) and what the caller
 * supplies for settings left unset. Throws ConfigError naming the variable.
 */
export function loadConfig(env: Env = process.env, defaults: ConfigDefaults = {}): AppConfig {
  const nodeEnvRaw = env.NODE_ENV ?? 'development'
  if (!['development', 'production', 'test'].includes(nodeEnvRaw)) {
    throw new ConfigError(`NODE_ENV: expected development, production or test, got "${nodeEnvRaw}"`)
  }
  const nodeEnv = nodeEnvRaw as AppConfig['nodeEnv']
  const production = nodeEnv === 'production'
  const sandboxPort = intVar(env, 'SANDBOX_PORT', 4010, 0)
  const sandboxUrl = urlVar(env, 'SANDBOX_URL', production ? 'http://invalid.invalid' : `http://127.0.0.1:${sandboxPort}`)
  const base = (p: ProviderName) => (production ? undefined : `${sandboxUrl}/${p}`)

  const limitsFor = (prefix: string): ProviderLimits => ({
    maxConcurrent: intVar(env, `${prefix}_MAX_CONCURRENT`, 20, 1),
    minTimeMs: intVar(env, `${prefix}_MIN_TIME_MS`, 0, 0),
    maxPerSecond: env[`${prefix}_MAX_PER_SECOND`] ? intVar(env, `${prefix}_MAX_PER_SECOND`, 0, 1) : null,
    dailyQuota: env[`${prefix}_DAILY_QUOTA`] ? intVar(env, `${prefix}_DAILY_QUOTA`, 0, 1) : null,
  })

  const config: AppConfig = {
    nodeEnv,
    databaseUrl: urlVar(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/cash_receipts'),
    dbPoolMax: intVar(env, 'DB_POOL_MAX', 20, 1),
    dbPreparedStatements: boolVar(env, 'DB_PREPARED_STATEMENTS', true),
    redisUrl: urlVar(env, 'REDIS_URL', 'redis://127.0.0.1:6379'),
    queuePrefix: env.QUEUE_PREFIX || 'cr',
    log: {
      level: env.LOG_LEVEL || (nodeEnv === 'test' ? 'warn' : 'info'),
      pretty: boolVar(env, 'LOG_PRETTY', !production && Boolean(process.stderr.isTTY)),
    },
    dataKeys: parseDataKeys(env, production, defaults.dataKey),
    providerBaseUrls: {
      portone: urlVar(env, 'PORTONE_BASE_URL', base('portone')),
      'portone-v2': urlVar(env, 'PORTONE_V2_BASE_URL', base('portone-v2')),
      payssam: urlVar(env, 'PAYSSAM_BASE_URL', base('payssam')),
      nts: urlVar(env, 'NTS_BASE_URL', base('nts')),
    },
    providerDefaults: {
      portone: limitsFor('PORTONE'),
      'portone-v2': limitsFor('PORTONE_V2'),
      payssam: limitsFor('PAYSSAM'),
      nts: limitsFor('NTS'),
    },
    http: {
      connectTimeoutMs: intVar(env, 'HTTP_CONNECT_TIMEOUT_MS', 5_000, 1),
      readTimeoutMs: intVar(env, 'HTTP_READ_TIMEOUT_MS', 15_000, 1),
    },
    merchants: parseMerchants(env, defaults.merchants),
    worker: {
      concurrency: intVar(env, 'WORKER_CONCURRENCY', 16, 1),
      attempts: intVar(env, 'WORKER_ATTEMPTS', 6, 1),
      backoffMs: intVar(env, 'WORKER_BACKOFF_MS', 5_000, 0),
      lockDurationMs: intVar(env, 'WORKER_LOCK_MS', 60_000, 1_000),
      stalledIntervalMs: intVar(env, 'WORKER_STALLED_INTERVAL_MS', 30_000, 1_000),
      leaseMs: intVar(env, 'WORKER_LEASE_MS', 120_000, 100),
    },
    settle: {
      chunkSize: intVar(env, 'SETTLE_CHUNK_SIZE', 1_000, 1),
      maxWaiting: intVar(env, 'SETTLE_MAX_WAITING', 50_000, 1),
      cron: env.SETTLE_CRON || '0 30 0 * * *',
      reconcileCron: env.RECONCILE_CRON || '0 0 6 * * *',
    },
    serve: {
      port: intVar(env, 'PORT', 3000, 0),
      host: env.HOST || '127.0.0.1',
      authToken: env.DASHBOARD_TOKEN || undefined,
      basicAuth: parseBasicAuth(env),
      metricsCacheMs: intVar(env, 'METRICS_CACHE_MS', 5_000, 0),
    },
    otel: {
      endpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT ? urlVar(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', undefined) : undefined,
      serviceName: env.OTEL_SERVICE_NAME || 'cash-receipts',
    },
    sandboxPort,
  }
  return Object.freeze(config)
}
