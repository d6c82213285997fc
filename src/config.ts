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
import { PROVIDERS, type ProviderLimits, type ProviderName } from './domain/index.ts'
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
    toss: CREDENTIAL_SCHEMAS.toss.optional(),
    popbill: CREDENTIAL_SCHEMAS.popbill.optional(),
  }),
  /** Buyer notification after an issue or a cancellation (docs/notifications.md); absent = off. */
  notify: z
    .object({
      email: z
        .object({
          enabled: z.boolean(),
          /** The sender address, e.g. "동네 꽃집 <receipts@flowers.example>" or a bare address. */
          from: z.string().refine(isMailbox, 'must be an email address, optionally with a display name ("이름 <a@b.kr>")'),
          replyTo: z.string().refine(isMailbox, 'must be an email address').optional(),
        })
        .strict()
        .optional(),
      sms: z
        .object({
          enabled: z.boolean(),
          /** The merchant's registered 발신번호. */
          sender: z.string().regex(/^0\d{1,2}-?\d{3,4}-?\d{4}$|^1\d{3}-?\d{4}$/, 'must be a Korean phone number registered as 발신번호 (e.g. 02-123-4567 or 1588-1234)'),
        })
        .strict()
        .optional(),
      kakao: z
        .object({
          enabled: z.boolean(),
          /** The KakaoTalk channel's sender key (발신 프로필 키). */
          senderKey: z.string().min(1),
          /** The approved 알림톡 template's code. */
          templateCode: z.string().min(1),
        })
        .strict()
        .optional(),
    })
    .strict()
    .optional(),
})
export type MerchantConfig = z.infer<typeof merchantSchema>

/** "a@b.kr" or "이름 <a@b.kr>": one mailbox, without checking deliverability. */
function isMailbox(raw: string): boolean {
  const m = /^(?:[^<>]*<([^<>\s]+)>|([^<>\s]+))$/.exec(raw.trim())
  const address = m?.[1] ?? m?.[2]
  return address !== undefined && /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(address)
}

export interface AppConfig {
  readonly nodeEnv: 'development' | 'production' | 'test'
  readonly databaseUrl: string
  /** Postgres connections per process; jobs hold one only for a few statements. */
  readonly dbPoolMax: number
  /** The ledger's hot statements as named prepared statements (off behind PgBouncer < 1.21 in transaction mode). */
  readonly dbPreparedStatements: boolean
  /**
   * The worker's ledger batcher on its own pool whose sessions force generic plans (startup option
   * `plan_cache_mode`); off for a pooler that refuses that startup option.
   */
  readonly dbLedgerGenericPlans: boolean
  /**
   * How long Postgres may stay unreachable before a long-running command (worker, scheduler, serve)
   * gives up and exits non-zero; shorter outages (failover, restart) are ridden out.
   */
  readonly dbUnreachableExitMs: number
  readonly redisUrl: string
  /** BullMQ key prefix; tests use one per file. */
  readonly queuePrefix: string
  readonly log: { readonly level: string; readonly pretty: boolean }
  readonly dataKeys: {
    readonly activeKeyId: string
    readonly keys: ReadonlyMap<string, Buffer>
    /** True when DATA_KEYS was unset and the caller's built-in development key is in use (warned about at start). */
    readonly builtIn?: boolean
  }
  readonly providerBaseUrls: Readonly<Record<ProviderName, string>>
  readonly providerDefaults: Readonly<Record<ProviderName, ProviderLimits>>
  /**
   * Per provider (<PREFIX>_COMMIT_WINDOW_MS), the longest an issue request may still commit after it
   * was sent. A lookup that finds nothing sooner than that after the last send is not trusted. NTS
   * does not deduplicate, so a late commit of an earlier request plus a new issue would be two
   * receipts: default 10 minutes. PortOne V1/V2 and PaySsam refuse a second issue for the same key,
   * so a not_found is safe at once: default 0.
   */
  readonly providerCommitWindowMs: Readonly<Record<ProviderName, number>>
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
    /** Delay between polls of a bulk submission's result (the provider asks for 2–5 s). */
    readonly bulkPollMs: { readonly min: number; readonly max: number }
  }
  /** How worker slots are handed to credentials and providers (docs/dispatch.md). */
  readonly dispatch: {
    /** Longest a worker slot waits inside the limiter; a call that cannot start sooner is deferred (delayed, no attempt used). */
    readonly maxWaitMs: number
    /** Consecutive timeouts, 5xx or unknown outcomes that open a provider's or a credential's circuit. */
    readonly circuitFailures: number
    /**
     * Consecutive unknown outcomes (a read timeout after sending) that open a circuit sooner than
     * circuitFailures: each one is a receipt that must wait out the provider's commit window.
     */
    readonly circuitUnknownOutcomes: number
    /** How long an open circuit stays open before one probe call is let through (half-open). */
    readonly circuitHalfOpenMs: number
    /**
     * A provider call in flight this long makes its provider slow in that process: no further call to
     * it until the slow one ends, and the worker lends one more slot for each such call.
     */
    readonly slowCallMs: number
    /** The per-provider in-flight window (starts at 2, grows per quick answer) and the cap of 1 while a call is slow. */
    readonly adaptiveInFlight: boolean
    /** Raise a worker's BullMQ concurrency by the calls stuck at slow providers (lent slots). */
    readonly lendSlots: boolean
    /**
     * Calls in flight per provider in one worker process as configured (<PREFIX>_MAX_IN_FLIGHT);
     * null: not set, half of the process's effective worker slots (providerInFlightCaps).
     */
    readonly providerMaxInFlight: Readonly<Record<ProviderName, number | null>>
  }
  readonly settle: {
    readonly chunkSize: number
    /** Backpressure: settle pauses while the issue queue has more waiting jobs than this. */
    readonly maxWaiting: number
    /** Cron (six fields, Asia/Seoul) of the nightly settlement. */
    readonly cron: string
    readonly reconcileCron: string
    /**
     * Reconcile cancels, at providers that allow it, a further live receipt it finds for one of our
     * receipts (the one the ledger recorded is kept). Off: duplicates are recorded and reported only.
     */
    readonly reconcileCancelDuplicates: boolean
  }
  /** The recovery pass (receipts whose job is gone or finished while work is still due). */
  readonly recovery: {
    /** How often each worker and the scheduler run a pass (one at a time across processes); 0 = never. */
    readonly intervalMs: number
    /** A pending row untouched for less than this is left alone: the add of its job may be in flight. */
    readonly graceMs: number
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
    /**
     * Host names the dashboard answers to besides loopback names and IP literals (DASHBOARD_ALLOWED_HOSTS);
     * any other Host header gets 421, which defeats DNS rebinding.
     */
    readonly allowedHosts: readonly string[]
  }
  /**
   * Buyer notification (docs/notifications.md). `enabled` when any merchant switches on any channel:
   * the worker then also runs the notification queue's workers.
   */
  readonly notify: {
    readonly enabled: boolean
    /** NOTIFY_WORKER: whether `worker` processes run the notification workers too (false: run them elsewhere). */
    readonly worker: boolean
    /** smtp://user:pass@host:port or smtps://… (nodemailer); required when a merchant enables email. */
    readonly smtpUrl: string | undefined
    /** The SMS/Kakao gateway's base URL and API key (src/notify/gateway.ts). */
    readonly gatewayUrl: string
    readonly gatewayApiKey: string | undefined
    /** Our printable receipt page's origin, linked when the provider gives no receipt URL. */
    readonly receiptBaseUrl: string | undefined
    readonly concurrency: number
    /** BullMQ attempts per notification (longer outages); p-retry handles short blips inside one. */
    readonly attempts: number
    readonly backoffMs: number
    /** How long a claimed notification is one worker's before another may take it over. */
    readonly leaseMs: number
    /** How often the outbox is read for rows not yet on the queue. */
    readonly pollMs: number
    /** Per merchant and channel, across processes. */
    readonly perSecond: { readonly email: number; readonly sms: number; readonly kakao: number }
    readonly timeoutMs: number
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

/*
 * The environment is parsed by one zod schema: each variable by the schema of its kind below (an
 * unset or empty variable takes its default), then the settings that depend on others (production,
 * the sandbox URL, the caller's defaults) in the schema's transform. Every issue's path is its
 * variable, so every error names it; values that may hold a secret (URLs, keys) are never echoed.
 */

/** An unset or empty variable is absent. */
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v)

function integer(min: number) {
  return z
    .string()
    .regex(/^\s*-?\d+\s*$/, { error: (iss) => `expected an integer, got "${String(iss.input)}"` })
    .transform(Number)
    .pipe(z.number().min(min, { error: (iss) => `must be ≥ ${min}, got ${String(iss.input)}` }))
}
const int = (def: number, min: number) => z.preprocess(unsetIfEmpty, integer(min).default(def))
const optionalInt = (min: number) => z.preprocess(unsetIfEmpty, integer(min).optional())

function boolean() {
  return z.string().transform((raw, ctx) => {
    if (/^(1|true|yes|on)$/i.test(raw)) return true
    if (/^(0|false|no|off)$/i.test(raw)) return false
    ctx.issues.push({ code: 'custom', input: raw, message: `expected true or false (or 1/0, yes/no, on/off), got "${raw}"` })
    return z.NEVER
  })
}
const bool = (def: boolean) => z.preprocess(unsetIfEmpty, boolean().default(def))
const optionalBool = () => z.preprocess(unsetIfEmpty, boolean().optional())

function isUrl(raw: string): boolean {
  try {
    new URL(raw)
    return true
  } catch {
    return false
  }
}
/** A URL without trailing slashes. Not echoed in errors: it may carry a password. */
const url = () =>
  z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .refine(isUrl, 'not a valid URL (e.g. "http://host:port/path")')
      .transform((raw) => raw.replace(/\/+$/, ''))
      .optional(),
  )
const text = (def: string) => z.preprocess(unsetIfEmpty, z.string().default(def))
const optionalText = () => z.preprocess(unsetIfEmpty, z.string().optional())

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const NODE_ENVS = ['development', 'production', 'test'] as const

/** DATA_KEYS="k1:<base64 32 bytes>,k2:<base64>": key id → key. */
const dataKeysVar = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .transform((raw, ctx) => {
      const keys = new Map<string, Buffer>()
      for (const [i, part] of raw.split(',').entries()) {
        const m = /^\s*([A-Za-z0-9_-]{1,16}):([A-Za-z0-9+/=]+)\s*$/.exec(part)
        if (!m) {
          ctx.issues.push({ code: 'custom', input: undefined, message: `entry ${i + 1} is not "<id>:<base64 key>" (id: 1–16 letters, digits, _ or -)` })
          continue
        }
        const key = Buffer.from(m[2]!, 'base64')
        if (key.length !== 32) ctx.issues.push({ code: 'custom', input: undefined, message: `key "${m[1]}" must be 32 bytes, got ${key.length}` })
        else if (keys.has(m[1]!)) ctx.issues.push({ code: 'custom', input: undefined, message: `key id "${m[1]}" appears twice` })
        else keys.set(m[1]!, key)
      }
      return keys
    })
    .optional(),
)

/** DASHBOARD_ALLOWED_HOSTS="dash.example.com,ops.internal": host names without scheme or port. */
const allowedHostsVar = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .transform((raw, ctx) => {
      const hosts: string[] = []
      for (const [i, part] of raw.split(',').entries()) {
        const h = part.trim().toLowerCase()
        if (!/^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$/.test(h)) {
          ctx.issues.push({ code: 'custom', input: undefined, message: `entry ${i + 1} is not a host name (letters, digits, - and dots; no scheme, port or path)` })
        } else hosts.push(h)
      }
      return hosts
    })
    .default([]),
)

/**
 * Values shipped as examples (docker-compose.yml, docs, the built-in development key): anyone can read
 * them, so production refuses them. Keys are compared by their bytes, passwords as written.
 */
const EXAMPLE_KEYS = [
  'Y2FzaC1yZWNlaXB0cy1jb21wb3NlLWV4YW1wbGUta2U=', // docker-compose.yml before it stopped shipping one
  Buffer.from('cash-receipts-development-key-32', 'utf8').toString('base64'), // src/demo/defaults.ts
].map((b64) => Buffer.from(b64, 'base64'))
const EXAMPLE_PASSWORDS = new Set(['change-me', 'change-me-too', 'changeme', 'password', 'postgres', 'secret', 'admin', 'ops'])
/** Shortest dashboard password or token production accepts. */
const MIN_PRODUCTION_SECRET = 12

export function isExampleKey(key: Buffer): boolean {
  return EXAMPLE_KEYS.some((k) => k.equals(key)) || key.every((b) => b === key[0])
}

/** MERCHANTS_FILE: the path of a JSON array of merchants, read and checked here. */
const merchantsFileVar = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .transform((file, ctx) => {
      let content: string
      try {
        content = readFileSync(file, 'utf8')
      } catch (err) {
        ctx.issues.push({ code: 'custom', input: file, message: `cannot read ${file}: ${(err as Error).message}` })
        return z.NEVER
      }
      let json: unknown
      try {
        json = JSON.parse(content)
      } catch {
        // The parser's message quotes the file, and the file holds credentials.
        ctx.issues.push({ code: 'custom', input: file, message: `cannot read ${file}: not valid JSON` })
        return z.NEVER
      }
      const parsed = z.array(merchantSchema).min(1).safeParse(json)
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!
        ctx.issues.push({ code: 'custom', input: file, message: `${file}: [${issue.path.join('.')}] ${issue.message}` })
        return z.NEVER
      }
      const ids = new Set<string>()
      for (const m of parsed.data) {
        if (ids.has(m.id)) ctx.issues.push({ code: 'custom', input: file, message: `merchant id "${m.id}" appears twice` })
        ids.add(m.id)
      }
      return parsed.data
    })
    .optional(),
)

/** The variable prefix of each provider's settings: <PREFIX>_BASE_URL and its default limits. */
const PROVIDER_ENV_PREFIX = { portone: 'PORTONE', 'portone-v2': 'PORTONE_V2', payssam: 'PAYSSAM', nts: 'NTS', toss: 'TOSS', popbill: 'POPBILL' } as const satisfies Record<
  ProviderName,
  string
>
type ProviderPrefix = (typeof PROVIDER_ENV_PREFIX)[ProviderName]

/** <PREFIX>_BASE_URL and the credential limits every merchant's credential starts from. */
function providerVars<P extends ProviderPrefix>(p: P, commitWindowMs: number) {
  return {
    [`${p}_BASE_URL`]: url(),
    [`${p}_COMMIT_WINDOW_MS`]: int(commitWindowMs, 0),
    [`${p}_MAX_CONCURRENT`]: int(20, 1),
    [`${p}_MIN_TIME_MS`]: int(0, 0),
    [`${p}_MAX_PER_SECOND`]: optionalInt(1),
    [`${p}_DAILY_QUOTA`]: optionalInt(1),
    [`${p}_MAX_IN_FLIGHT`]: optionalInt(1),
  } as {
    [K in `${P}_BASE_URL`]: ReturnType<typeof url>
  } & { [K in `${P}_MAX_CONCURRENT` | `${P}_MIN_TIME_MS` | `${P}_COMMIT_WINDOW_MS`]: ReturnType<typeof int> } & {
    [K in `${P}_MAX_PER_SECOND` | `${P}_DAILY_QUOTA` | `${P}_MAX_IN_FLIGHT`]: ReturnType<typeof optionalInt>
  }
}

/** Every variable config reads, by name. */
const envVars = z.object({
  NODE_ENV: z.preprocess(unsetIfEmpty, z.enum(NODE_ENVS, { error: (iss) => `expected development, production or test, got "${String(iss.input)}"` }).default('development')),
  DATABASE_URL: url(),
  DB_POOL_MAX: int(20, 1),
  DB_PREPARED_STATEMENTS: bool(true),
  DB_LEDGER_GENERIC_PLANS: bool(false),
  DB_UNREACHABLE_EXIT_MS: int(60_000, 100),
  REDIS_URL: url(),
  QUEUE_PREFIX: text('cr'),
  LOG_LEVEL: z.preprocess(unsetIfEmpty, z.enum(LOG_LEVELS, { error: (iss) => `expected one of ${LOG_LEVELS.join(', ')}, got "${String(iss.input)}"` }).optional()),
  LOG_PRETTY: optionalBool(),
  DATA_KEYS: dataKeysVar,
  DATA_KEY_ID: optionalText(),
  // Commit windows: only NTS needs one (it does not deduplicate by key; see providerCommitWindowMs).
  ...providerVars('PORTONE', 0),
  ...providerVars('PORTONE_V2', 0),
  ...providerVars('PAYSSAM', 0),
  ...providerVars('NTS', 600_000),
  // Toss refuses a second issue for an orderId (DUPLICATED_CASH_RECEIPT): not_found is safe at once.
  ...providerVars('TOSS', 0),
  // Popbill refuses a second issue under a mgtKey (-14001019): not_found is safe at once for a single
  // RegistIssue. (A bulk submission's receipts appear only once it is processed: its outcome is read
  // with GetBulkResult under the same SubmitID, never decided by a lookup alone.)
  ...providerVars('POPBILL', 0),
  HTTP_CONNECT_TIMEOUT_MS: int(5_000, 1),
  HTTP_READ_TIMEOUT_MS: int(15_000, 1),
  MERCHANTS_FILE: merchantsFileVar,
  WORKER_CONCURRENCY: int(16, 1),
  DISPATCH_MAX_WAIT_MS: int(50, 0),
  CIRCUIT_FAILURES: int(5, 1),
  CIRCUIT_UNKNOWN_OUTCOMES: int(2, 1),
  CIRCUIT_HALF_OPEN_MS: int(10_000, 100),
  DISPATCH_SLOW_CALL_MS: int(3_000, 1),
  DISPATCH_LEND_SLOTS: bool(true),
  DISPATCH_ADAPTIVE_IN_FLIGHT: bool(true),
  // Read by the worker (the outcome policy's last attempt); jobs carry a ceiling (MAX_JOB_ATTEMPTS in queues.ts).
  WORKER_ATTEMPTS: int(6, 1).refine((n) => n <= 100, { error: 'must be ≤ 100' }),
  WORKER_BACKOFF_MS: int(5_000, 0),
  WORKER_LOCK_MS: int(60_000, 1_000),
  WORKER_STALLED_INTERVAL_MS: int(30_000, 1_000),
  WORKER_LEASE_MS: int(120_000, 100),
  BULK_POLL_MIN_MS: int(2_000, 10),
  BULK_POLL_MAX_MS: int(5_000, 10),
  SETTLE_CHUNK_SIZE: int(1_000, 1),
  SETTLE_MAX_WAITING: int(50_000, 1),
  SETTLE_CRON: text('0 30 0 * * *'),
  RECONCILE_CRON: text('0 0 6 * * *'),
  RECONCILE_CANCEL_DUPLICATES: bool(true),
  RECOVERY_INTERVAL_MS: int(60_000, 0),
  RECOVERY_GRACE_MS: int(120_000, 0),
  PORT: int(3000, 0),
  HOST: text('127.0.0.1'),
  DASHBOARD_TOKEN: optionalText(),
  DASHBOARD_USER: optionalText().refine((u) => !u?.includes(':'), 'must not contain ":" (the basic auth separator)'),
  DASHBOARD_PASSWORD: optionalText(),
  DASHBOARD_ALLOWED_HOSTS: allowedHostsVar,
  METRICS_CACHE_MS: int(5_000, 0),
  SMTP_URL: url(),
  NOTIFY_WORKER: bool(true),
  NOTIFY_GATEWAY_URL: url(),
  NOTIFY_GATEWAY_API_KEY: optionalText(),
  NOTIFY_RECEIPT_BASE_URL: url(),
  NOTIFY_CONCURRENCY: int(4, 1),
  NOTIFY_ATTEMPTS: int(8, 1),
  NOTIFY_BACKOFF_MS: int(30_000, 0),
  NOTIFY_LEASE_MS: int(60_000, 100),
  NOTIFY_POLL_MS: int(1_000, 50),
  NOTIFY_EMAIL_PER_SECOND: int(5, 1),
  NOTIFY_SMS_PER_SECOND: int(10, 1),
  NOTIFY_KAKAO_PER_SECOND: int(10, 1),
  NOTIFY_TIMEOUT_MS: int(10_000, 100),
  OTEL_EXPORTER_OTLP_ENDPOINT: url(),
  OTEL_SERVICE_NAME: text('cash-receipts'),
  SANDBOX_PORT: int(4010, 0),
  SANDBOX_URL: url(),
})
type EnvVars = z.infer<typeof envVars>

/** The environment schema: the variables, then the settings that depend on others and on the caller's defaults. */
function configSchema(defaults: ConfigDefaults) {
  return envVars.transform((e, ctx): AppConfig => {
    const problem = (variable: keyof EnvVars, message: string) => {
      ctx.issues.push({ code: 'custom', input: undefined, path: [variable], message })
    }
    const production = e.NODE_ENV === 'production'
    const sandboxUrl = e.SANDBOX_URL ?? (production ? 'http://invalid.invalid' : `http://127.0.0.1:${e.SANDBOX_PORT}`)
    const baseUrl = (p: ProviderName): string => {
      const variable = `${PROVIDER_ENV_PREFIX[p]}_BASE_URL` as const
      const given = e[variable]
      if (given) return given
      // Toss serves test and live keys on one published host: no setting needed.
      if (production && p === 'toss') return 'https://api.tosspayments.com'
      // Popbill's live host; its test environment (same LinkID and SecretKey) is
      // https://popbill-test.linkhub.co.kr. The adapter asks Linkhub's auth host for tokens.
      if (production && p === 'popbill') return 'https://popbill.linkhub.co.kr'
      if (production) problem(variable, 'required in production')
      return `${sandboxUrl}/${p}`
    }
    const limits = (p: ProviderName): ProviderLimits => {
      const prefix = PROVIDER_ENV_PREFIX[p]
      return {
        maxConcurrent: e[`${prefix}_MAX_CONCURRENT`],
        minTimeMs: e[`${prefix}_MIN_TIME_MS`],
        maxPerSecond: e[`${prefix}_MAX_PER_SECOND`] ?? null,
        dailyQuota: e[`${prefix}_DAILY_QUOTA`] ?? null,
      }
    }

    let dataKeys: AppConfig['dataKeys'] = { activeKeyId: '', keys: new Map() }
    if (e.DATA_KEYS) {
      const activeKeyId = e.DATA_KEY_ID ?? [...e.DATA_KEYS.keys()].at(-1)!
      if (!e.DATA_KEYS.has(activeKeyId)) problem('DATA_KEY_ID', `"${activeKeyId}" is not one of the ids in DATA_KEYS`)
      dataKeys = { activeKeyId, keys: e.DATA_KEYS }
      if (production) {
        for (const [id, key] of e.DATA_KEYS) {
          if (isExampleKey(key)) problem('DATA_KEYS', `key "${id}" is a published example or development key; generate one with \`openssl rand -base64 32\``)
        }
      }
    } else if (production) problem('DATA_KEYS', 'required in production (e.g. "k1:<base64 of 32 bytes>")')
    else if (defaults.dataKey) dataKeys = { activeKeyId: defaults.dataKey.id, keys: new Map([[defaults.dataKey.id, defaults.dataKey.key]]), builtIn: true }
    else problem('DATA_KEYS', 'required (e.g. "k1:<base64 of 32 bytes>")')

    if (production) {
      // Shipped example passwords (docker-compose.yml, docs) and short ones: never echoed, only named.
      for (const variable of ['DASHBOARD_PASSWORD', 'DASHBOARD_TOKEN'] as const) {
        const v = e[variable]
        if (v === undefined) continue
        if (EXAMPLE_PASSWORDS.has(v.toLowerCase())) problem(variable, 'is a published example value; set your own')
        else if (v.length < MIN_PRODUCTION_SECRET) problem(variable, `must have at least ${MIN_PRODUCTION_SECRET} characters in production`)
      }
      for (const variable of ['DATABASE_URL', 'REDIS_URL'] as const) {
        const v = e[variable]
        if (v === undefined) continue
        let password = new URL(v).password
        try {
          password = decodeURIComponent(password)
        } catch {
          // left encoded: compared as written
        }
        if (password && EXAMPLE_PASSWORDS.has(password.toLowerCase())) problem(variable, 'holds a published example password; set your own')
      }
    }

    const merchants = e.MERCHANTS_FILE ?? (defaults.merchants ? [...defaults.merchants] : undefined)
    if (!merchants) problem('MERCHANTS_FILE', 'required (the path of a JSON array of merchants)')

    // Notification channels need their transport: named by the variable, with the merchant that asks.
    for (const m of merchants ?? []) {
      if (m.notify?.email?.enabled && !e.SMTP_URL) problem('SMTP_URL', `required: merchant "${m.id}" enables email notifications (notify.email.enabled)`)
      for (const c of ['sms', 'kakao'] as const) {
        if (!m.notify?.[c]?.enabled || !production) continue
        if (!e.NOTIFY_GATEWAY_URL) problem('NOTIFY_GATEWAY_URL', `required in production: merchant "${m.id}" enables ${c} notifications`)
        if (!e.NOTIFY_GATEWAY_API_KEY) problem('NOTIFY_GATEWAY_API_KEY', `required in production: merchant "${m.id}" enables ${c} notifications`)
      }
    }

    // DASHBOARD_USER and DASHBOARD_PASSWORD come together or not at all.
    if (e.DASHBOARD_USER && !e.DASHBOARD_PASSWORD) problem('DASHBOARD_PASSWORD', 'required when DASHBOARD_USER is set')
    if (e.DASHBOARD_PASSWORD && !e.DASHBOARD_USER) problem('DASHBOARD_USER', 'required when DASHBOARD_PASSWORD is set')

    return {
      nodeEnv: e.NODE_ENV,
      databaseUrl: e.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/cash_receipts',
      dbPoolMax: e.DB_POOL_MAX,
      dbPreparedStatements: e.DB_PREPARED_STATEMENTS,
      dbLedgerGenericPlans: e.DB_LEDGER_GENERIC_PLANS,
      dbUnreachableExitMs: e.DB_UNREACHABLE_EXIT_MS,
      redisUrl: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
      queuePrefix: e.QUEUE_PREFIX,
      log: {
        level: e.LOG_LEVEL ?? (e.NODE_ENV === 'test' ? 'warn' : 'info'),
        pretty: e.LOG_PRETTY ?? (!production && Boolean(process.stderr.isTTY)),
      },
      dataKeys,
      providerBaseUrls: Object.fromEntries(PROVIDERS.map((p) => [p, baseUrl(p)])) as Record<ProviderName, string>,
      providerDefaults: Object.fromEntries(PROVIDERS.map((p) => [p, limits(p)])) as Record<ProviderName, ProviderLimits>,
      providerCommitWindowMs: Object.fromEntries(PROVIDERS.map((p) => [p, e[`${PROVIDER_ENV_PREFIX[p]}_COMMIT_WINDOW_MS`]])) as Record<ProviderName, number>,
      http: { connectTimeoutMs: e.HTTP_CONNECT_TIMEOUT_MS, readTimeoutMs: e.HTTP_READ_TIMEOUT_MS },
      merchants: merchants ?? [],
      worker: {
        concurrency: e.WORKER_CONCURRENCY,
        attempts: e.WORKER_ATTEMPTS,
        backoffMs: e.WORKER_BACKOFF_MS,
        lockDurationMs: e.WORKER_LOCK_MS,
        stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
        leaseMs: e.WORKER_LEASE_MS,
        bulkPollMs: { min: e.BULK_POLL_MIN_MS, max: Math.max(e.BULK_POLL_MIN_MS, e.BULK_POLL_MAX_MS) },
      },
      dispatch: {
        maxWaitMs: e.DISPATCH_MAX_WAIT_MS,
        circuitFailures: e.CIRCUIT_FAILURES,
        circuitUnknownOutcomes: e.CIRCUIT_UNKNOWN_OUTCOMES,
        circuitHalfOpenMs: e.CIRCUIT_HALF_OPEN_MS,
        slowCallMs: e.DISPATCH_SLOW_CALL_MS,
        lendSlots: e.DISPATCH_LEND_SLOTS,
        adaptiveInFlight: e.DISPATCH_ADAPTIVE_IN_FLIGHT,
        // Unset: half the slots the process actually runs, known only once its workers start
        // (`worker --concurrency N` overrides WORKER_CONCURRENCY): providerInFlightCaps.
        providerMaxInFlight: Object.fromEntries(PROVIDERS.map((p) => [p, e[`${PROVIDER_ENV_PREFIX[p]}_MAX_IN_FLIGHT`] ?? null])) as Record<ProviderName, number | null>,
      },
      settle: {
        chunkSize: e.SETTLE_CHUNK_SIZE,
        maxWaiting: e.SETTLE_MAX_WAITING,
        cron: e.SETTLE_CRON,
        reconcileCron: e.RECONCILE_CRON,
        reconcileCancelDuplicates: e.RECONCILE_CANCEL_DUPLICATES,
      },
      recovery: { intervalMs: e.RECOVERY_INTERVAL_MS, graceMs: e.RECOVERY_GRACE_MS },
      serve: {
        port: e.PORT,
        host: e.HOST,
        authToken: e.DASHBOARD_TOKEN,
        basicAuth: e.DASHBOARD_USER && e.DASHBOARD_PASSWORD ? { user: e.DASHBOARD_USER, password: e.DASHBOARD_PASSWORD } : undefined,
        metricsCacheMs: e.METRICS_CACHE_MS,
        allowedHosts: e.DASHBOARD_ALLOWED_HOSTS,
      },
      notify: {
        enabled: (merchants ?? []).some((m) => m.notify?.email?.enabled || m.notify?.sms?.enabled || m.notify?.kakao?.enabled),
        worker: e.NOTIFY_WORKER,
        smtpUrl: e.SMTP_URL,
        gatewayUrl: e.NOTIFY_GATEWAY_URL ?? `${sandboxUrl}/gateway`,
        gatewayApiKey: e.NOTIFY_GATEWAY_API_KEY,
        receiptBaseUrl: e.NOTIFY_RECEIPT_BASE_URL,
        concurrency: e.NOTIFY_CONCURRENCY,
        attempts: e.NOTIFY_ATTEMPTS,
        backoffMs: e.NOTIFY_BACKOFF_MS,
        leaseMs: e.NOTIFY_LEASE_MS,
        pollMs: e.NOTIFY_POLL_MS,
        perSecond: { email: e.NOTIFY_EMAIL_PER_SECOND, sms: e.NOTIFY_SMS_PER_SECOND, kakao: e.NOTIFY_KAKAO_PER_SECOND },
        timeoutMs: e.NOTIFY_TIMEOUT_MS,
      },
      otel: { endpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: e.OTEL_SERVICE_NAME },
      sandboxPort: e.SANDBOX_PORT,
    }
  })
}

/** The environment with some settings replaced (the demo points the app at what it started). */
/**
 * The in-flight cap per provider for a process running `slots` worker slots in all (the sum of its
 * workers' concurrency, `worker --concurrency N` included): <PREFIX>_MAX_IN_FLIGHT where set, else
 * half the slots, so a provider that hangs holds at most half of them and the others keep the rest.
 */
export function providerInFlightCaps(dispatch: Pick<AppConfig['dispatch'], 'providerMaxInFlight'>, slots: number): Record<ProviderName, number> {
  const half = Math.max(1, Math.ceil(slots / 2))
  return Object.fromEntries(PROVIDERS.map((p) => [p, dispatch.providerMaxInFlight[p] ?? half])) as Record<ProviderName, number>
}

export function loadConfigWith(overrides: Record<string, string>, defaults: ConfigDefaults = {}): AppConfig {
  return loadConfig({ ...process.env, ...overrides }, defaults)
}

/**
 * Builds the configuration from an environment (process.env when undefined) and what the caller
 * supplies for settings left unset. Throws one ConfigError listing every problem, one a line, each
 * starting with its variable.
 */
export function loadConfig(env: Env = process.env, defaults: ConfigDefaults = {}): AppConfig {
  const parsed = configSchema(defaults).safeParse(env)
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || 'environment'}: ${i.message}`).join('\n'))
  }
  return Object.freeze(parsed.data)
}
