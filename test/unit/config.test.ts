import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, ConfigError, providerInFlightCaps } from '../../src/config.ts'
import { DEMO_MERCHANTS, loadDemoConfig } from '../../src/demo/defaults.ts'

describe('loadConfig', () => {
  it('works with no environment at all (developer defaults)', () => {
    const c = loadDemoConfig({})
    expect(c.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/cash_receipts')
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379')
    expect(c.providerBaseUrls.portone).toBe('http://127.0.0.1:4010/portone')
    expect(c.merchants.map((m) => m.id)).toEqual(DEMO_MERCHANTS.map((m) => m.id))
    expect(Object.isFrozen(c)).toBe(true)
  })

  it("polls a bulk submission's result every 2–5 s by default, as Popbill asks (GetBulkResult until txState 2)", () => {
    expect(loadDemoConfig({}).worker.bulkPollMs).toEqual({ min: 2_000, max: 5_000 })
    // A maximum below the minimum is the minimum: the interval never goes under what is set.
    expect(loadDemoConfig({ BULK_POLL_MIN_MS: '3000', BULK_POLL_MAX_MS: '1000' }).worker.bulkPollMs).toEqual({ min: 3_000, max: 3_000 })
  })

  it.each([
    [{ WORKER_CONCURRENCY: 'many' }, /WORKER_CONCURRENCY: expected an integer/],
    [{ WORKER_CONCURRENCY: '0' }, /WORKER_CONCURRENCY: must be ≥ 1/],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL: not a valid URL/],
    [{ LOG_PRETTY: 'maybe' }, /LOG_PRETTY: expected true or false/],
    [{ NODE_ENV: 'staging' }, /NODE_ENV: expected development, production or test/],
    [{ DATA_KEYS: 'k1:c2hvcnQ=' }, /DATA_KEYS: key "k1" must be 32 bytes/],
    [{ NODE_ENV: 'production' }, /DATA_KEYS: required in production/],
    [{ MERCHANTS_FILE: '/nonexistent/merchants.json' }, /MERCHANTS_FILE: cannot read/],
  ])('names the bad variable: %j', (env, message) => {
    expect(() => loadDemoConfig(env as Record<string, string>)).toThrow(ConfigError)
    expect(() => loadDemoConfig(env as Record<string, string>)).toThrow(message)
  })

  it('takes merchants and the data key from the caller when the environment has none, and requires them otherwise', () => {
    expect(() => loadConfig({})).toThrow(/DATA_KEYS: required \(e\.g\./)
    const key = `k1:${Buffer.alloc(32, 1).toString('base64')}`
    expect(() => loadConfig({ DATA_KEYS: key })).toThrow(/MERCHANTS_FILE: required/)
    const c = loadConfig({ DATA_KEYS: key }, { merchants: DEMO_MERCHANTS.slice(0, 1) })
    expect(c.merchants.map((m) => m.id)).toEqual([DEMO_MERCHANTS[0]!.id])
    expect(c.dataKeys.activeKeyId).toBe('k1')
    const dev = loadConfig({}, { merchants: DEMO_MERCHANTS, dataKey: { id: 'd', key: Buffer.alloc(32, 2) } })
    expect(dev.dataKeys.activeKeyId).toBe('d')
    expect(() => loadConfig({ NODE_ENV: 'production' }, { dataKey: { id: 'd', key: Buffer.alloc(32, 2) } })).toThrow(/DATA_KEYS: required in production/)
  })

  it('waits out a commit window only at NTS by default (the one provider that does not deduplicate), each one settable', () => {
    expect(loadDemoConfig({}).providerCommitWindowMs).toEqual({ portone: 0, 'portone-v2': 0, payssam: 0, nts: 600_000, toss: 0, popbill: 0 })
    const c = loadDemoConfig({ NTS_COMMIT_WINDOW_MS: '60000', PAYSSAM_COMMIT_WINDOW_MS: '5000', PORTONE_V2_COMMIT_WINDOW_MS: '7000' })
    expect(c.providerCommitWindowMs).toMatchObject({ nts: 60_000, payssam: 5_000, 'portone-v2': 7_000, portone: 0 })
    expect(() => loadDemoConfig({ NTS_COMMIT_WINDOW_MS: '-1' })).toThrow(/NTS_COMMIT_WINDOW_MS/)
  })

  it('leaves an unset in-flight cap to the slots the process runs (half of them, at least 1)', () => {
    const c = loadDemoConfig({ WORKER_CONCURRENCY: '16', NTS_MAX_IN_FLIGHT: '3' })
    expect(c.dispatch.providerMaxInFlight.nts).toBe(3)
    expect(c.dispatch.providerMaxInFlight.payssam).toBeNull()
    expect(providerInFlightCaps(c.dispatch, 16)).toMatchObject({ nts: 3, payssam: 8 })
    expect(providerInFlightCaps(c.dispatch, 5)).toMatchObject({ nts: 3, payssam: 3 })
    expect(providerInFlightCaps(c.dispatch, 1)).toMatchObject({ nts: 3, payssam: 1 })
  })

  it('reports every bad variable at once, one a line, each by name', () => {
    const message = (() => {
      try {
        loadDemoConfig({ WORKER_CONCURRENCY: 'many', LOG_PRETTY: 'maybe', LOG_LEVEL: 'loud', PAYSSAM_DAILY_QUOTA: '0' })
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError)
        return (err as Error).message
      }
      throw new Error('loadDemoConfig accepted a bad environment')
    })()
    expect(message.split('\n').sort()).toEqual([
      'LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'LOG_PRETTY: expected true or false (or 1/0, yes/no, on/off), got "maybe"',
      'PAYSSAM_DAILY_QUOTA: must be ≥ 1, got 0',
      'WORKER_CONCURRENCY: expected an integer, got "many"',
    ])
  })

  it('never echoes a value that may hold a secret', () => {
    const secret = 'hunter2hunter2hunter2'
    expect(() => loadDemoConfig({ DATABASE_URL: `postgres://app:${secret}@db host/x` })).toThrow(/^DATABASE_URL: not a valid URL/)
    expect(() => loadDemoConfig({ DATABASE_URL: `postgres://app:${secret}@db host/x` })).not.toThrow(new RegExp(secret))
    expect(() => loadDemoConfig({ DATA_KEYS: `k1 ${secret}` })).toThrow(/^DATA_KEYS: entry 1 is not "<id>:<base64 key>"/)
    expect(() => loadDemoConfig({ DATA_KEYS: `k1 ${secret}` })).not.toThrow(new RegExp(secret))
  })

  it('checks the variables that depend on each other', () => {
    const key = Buffer.alloc(32, 1).toString('base64')
    expect(loadDemoConfig({ DATA_KEYS: `k1:${key},k2:${key}` }).dataKeys.activeKeyId).toBe('k2')
    expect(loadDemoConfig({ DATA_KEYS: `k1:${key},k2:${key}`, DATA_KEY_ID: 'k1' }).dataKeys.activeKeyId).toBe('k1')
    expect(() => loadDemoConfig({ DATA_KEYS: `k1:${key}`, DATA_KEY_ID: 'k9' })).toThrow(/^DATA_KEY_ID: "k9" is not one of the ids in DATA_KEYS$/)
    expect(() => loadDemoConfig({ DATA_KEYS: `k1:${key},k1:${key}` })).toThrow(/^DATA_KEYS: key id "k1" appears twice$/)
    const c = loadDemoConfig({ SANDBOX_PORT: '4999', NTS_BASE_URL: 'https://nts.example/api/', NTS_MAX_PER_SECOND: '5', LOG_PRETTY: 'off' })
    expect(c.providerBaseUrls).toEqual({
      portone: 'http://127.0.0.1:4999/portone',
      'portone-v2': 'http://127.0.0.1:4999/portone-v2',
      payssam: 'http://127.0.0.1:4999/payssam',
      nts: 'https://nts.example/api',
      toss: 'http://127.0.0.1:4999/toss',
      popbill: 'http://127.0.0.1:4999/popbill',
    })
    expect(c.providerDefaults.nts).toEqual({ maxConcurrent: 20, minTimeMs: 0, maxPerSecond: 5, dailyQuota: null })
    expect(c.log.pretty).toBe(false)
  })

  it('requires explicit provider URLs in production', () => {
    expect(() => loadDemoConfig({ NODE_ENV: 'production', DATA_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}` })).toThrow(/PORTONE_BASE_URL: required in production/)
  })

  it('validates a merchants file and reports the path of the bad field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crt-cfg-'))
    const file = join(dir, 'm.json')
    writeFileSync(file, JSON.stringify([{ id: 'a b', name: 'x', businessNumber: '2208162517', providers: {} }]))
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file })).toThrow(/\[0\.id\] merchant id may contain/)
    writeFileSync(
      file,
      JSON.stringify([{ id: 'm1', name: 'x', businessNumber: '2208162517', providers: { payssam: { apikey: 'k', member: 'm', merchant: 's', limits: { minTimeMs: 50 } } } }]),
    )
    const c = loadDemoConfig({ MERCHANTS_FILE: file })
    expect(c.merchants[0]!.providers.payssam!.limits!.minTimeMs).toBe(50)
  })

  it('checks the PG and environment fields that change what a provider needs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crt-cfg-'))
    const file = join(dir, 'm.json')
    const merchant = (providers: object) => JSON.stringify([{ id: 'm1', name: 'x', businessNumber: '2208162517', providers }])
    const portone = { impKey: 'k', impSecret: 's', channelKey: 'c' }
    writeFileSync(file, merchant({ portone: { ...portone, pg: 'daou' } }))
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file })).toThrow(/companyName and companyTel/)
    writeFileSync(file, merchant({ portone: { ...portone, pg: 'not-a-pg' } }))
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file })).toThrow(/pg/)
    writeFileSync(file, merchant({ payssam: { apikey: 'k', member: 'm', merchant: 's', environment: 'development' } }))
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file })).toThrow(/businessNumber/)
    writeFileSync(
      file,
      merchant({
        portone: { ...portone, pg: 'ksnet', productType: 'digital' },
        payssam: { apikey: 'k', member: 'm', merchant: 's', environment: 'development', businessNumber: '2208162517' },
      }),
    )
    const c = loadDemoConfig({ MERCHANTS_FILE: file })
    expect(c.merchants[0]!.providers.portone!.pg).toBe('ksnet')
    expect(c.merchants[0]!.providers.payssam!.environment).toBe('development')
  })
})

describe('production refuses published example values (issue 21)', () => {
  const realKey = `k1:${Buffer.from('0123456789abcdefghijklmnopqrstuv').toString('base64')}`
  const prod = {
    NODE_ENV: 'production',
    DATA_KEYS: realKey,
    PORTONE_BASE_URL: 'https://api.iamport.kr',
    PORTONE_V2_BASE_URL: 'https://api.portone.io',
    PAYSSAM_BASE_URL: 'https://erp-api.payssam.kr',
    NTS_BASE_URL: 'https://nts.example',
  }

  it('starts with its own key and long enough secrets', () => {
    const c = loadDemoConfig({ ...prod, DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'a long own password', DASHBOARD_TOKEN: 'tok-0123456789abcdef' })
    expect(c.dataKeys.builtIn).toBeFalsy()
    // Published single hosts need no setting: Toss, and Popbill's live host (test: POPBILL_BASE_URL).
    expect(c.providerBaseUrls.popbill).toBe('https://popbill.linkhub.co.kr')
  })

  it.each([
    [{ DATA_KEYS: 'k1:Y2FzaC1yZWNlaXB0cy1jb21wb3NlLWV4YW1wbGUta2U=' }, /DATA_KEYS: key "k1" is a published example/],
    [{ DATA_KEYS: `k0:${Buffer.from('cash-receipts-development-key-32').toString('base64')},${realKey}` }, /DATA_KEYS: key "k0" is a published example/],
    [{ DATA_KEYS: `k1:${Buffer.alloc(32).toString('base64')}` }, /DATA_KEYS: key "k1" is a published example/],
    [{ DATA_KEYS: '' }, /DATA_KEYS: required in production/],
    [{ DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'change-me' }, /DASHBOARD_PASSWORD: is a published example value/],
    [{ DASHBOARD_TOKEN: 'change-me-too' }, /DASHBOARD_TOKEN: is a published example value/],
    [{ DASHBOARD_TOKEN: 'short' }, /DASHBOARD_TOKEN: must have at least 12 characters/],
    [{ DATABASE_URL: 'postgres://postgres:postgres@db:5432/cash_receipts' }, /DATABASE_URL: holds a published example password/],
  ])('refuses %j', (env, message) => {
    let text = ''
    try {
      loadDemoConfig({ ...prod, ...env })
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      text = (err as Error).message
    }
    expect(text).toMatch(message)
    // Named, never echoed.
    for (const v of Object.values(env)) if (v.length > 4) expect(text).not.toContain(v.split(':').at(-1))
  })

  it('outside production the built-in development key is marked, so the app warns once', () => {
    expect(loadDemoConfig({}).dataKeys.builtIn).toBe(true)
    expect(loadDemoConfig({ DATA_KEYS: realKey }).dataKeys.builtIn).toBeFalsy()
  })

  it('names a malformed DATA_KEYS entry by position without echoing it', () => {
    const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWxlYWtz'
    expect(() => loadDemoConfig({ DATA_KEYS: `${realKey},${secret}` })).toThrow(/DATA_KEYS: entry 2 is not/)
    try {
      loadDemoConfig({ DATA_KEYS: `${realKey},${secret}` })
    } catch (err) {
      expect((err as Error).message).not.toContain(secret.slice(0, 8))
    }
  })

  it('reads DASHBOARD_ALLOWED_HOSTS as host names', () => {
    expect(loadDemoConfig({ DASHBOARD_ALLOWED_HOSTS: 'Dash.Example.com, ops.internal' }).serve.allowedHosts).toEqual(['dash.example.com', 'ops.internal'])
    expect(loadDemoConfig({}).serve.allowedHosts).toEqual([])
    expect(() => loadDemoConfig({ DASHBOARD_ALLOWED_HOSTS: 'https://dash.example.com' })).toThrow(/DASHBOARD_ALLOWED_HOSTS: entry 1 is not a host name/)
  })
})
