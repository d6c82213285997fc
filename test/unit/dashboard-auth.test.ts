/** Dashboard access rules and their configuration. */
import { describe, expect, it } from 'vitest'
import { assertServeSecurity, isAuthorized, isLoopback } from '../../src/http/auth.ts'
import { redriveFilter } from '../../src/http/server.ts'
import { ConfigError } from '../../src/config.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`

describe('dashboard auth', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
      expect(isLoopback(h), h).toBe(true)
    }
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'dashboard.internal']) {
      expect(isLoopback(h), h).toBe(false)
    }
  })

  it('refuses to serve beyond loopback without credentials', () => {
    expect(() => assertServeSecurity({ host: '0.0.0.0', authToken: undefined, basicAuth: undefined })).toThrow(ConfigError)
    expect(() => assertServeSecurity({ host: '0.0.0.0', authToken: undefined, basicAuth: undefined })).toThrow(/DASHBOARD_TOKEN/)
    expect(() => assertServeSecurity({ host: '127.0.0.1', authToken: undefined, basicAuth: undefined })).not.toThrow()
    expect(() => assertServeSecurity({ host: '0.0.0.0', authToken: 't', basicAuth: undefined })).not.toThrow()
  })

  it('accepts the bearer token, the basic user/password, or the token as basic password', () => {
    const auth = { authToken: 'tok', basicAuth: { user: 'ops', password: 'pw' } }
    expect(isAuthorized('Bearer tok', auth)).toBe(true)
    expect(isAuthorized(basic('ops', 'pw'), auth)).toBe(true)
    expect(isAuthorized(basic('anyone', 'tok'), auth)).toBe(true)
    for (const h of [undefined, '', 'Bearer tokx', 'Bearer', basic('ops', 'tok2'), basic('op', 'pw'), 'Basic !!!', 'Digest x']) {
      expect(isAuthorized(h, auth), String(h)).toBe(false)
    }
    expect(isAuthorized(undefined, { authToken: undefined, basicAuth: undefined })).toBe(true)
  })

  it('reads the dashboard and tracing settings from the environment', () => {
    const c = loadDemoConfig({
      DASHBOARD_TOKEN: 't',
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: 'pw',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
    })
    expect(c.serve).toMatchObject({
      authToken: 't',
      basicAuth: { user: 'ops', password: 'pw' },
      host: '127.0.0.1',
      port: 3000,
      metricsCacheMs: 5000,
    })
    expect(c.otel).toEqual({ endpoint: 'http://collector:4318', serviceName: 'cash-receipts' })
    expect(loadDemoConfig({}).otel.endpoint).toBeUndefined()
    expect(() => loadDemoConfig({ DASHBOARD_USER: 'ops' })).toThrow(/DASHBOARD_PASSWORD: required/)
    expect(() => loadDemoConfig({ DASHBOARD_PASSWORD: 'pw' })).toThrow(/DASHBOARD_USER: required/)
    expect(() => loadDemoConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT: not a valid URL/)
  })

  it('validates the re-drive selectors like the CLI does', () => {
    expect(redriveFilter({ run: '12', provider: 'nts', class: 'retryable', code: '' })).toEqual({
      runId: 12,
      date: undefined,
      provider: 'nts',
      code: undefined,
      errorClass: 'retryable',
    })
    expect(() => redriveFilter({ run: '1; drop' })).toThrow(/run: must be a whole number/)
    expect(() => redriveFilter({ date: '2026-02-30' })).toThrow(/date: must be a valid YYYY-MM-DD/)
    expect(() => redriveFilter({ provider: 'kakao' })).toThrow(/provider: must be one of/)
  })
})
