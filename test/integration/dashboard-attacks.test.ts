/**
 * The dashboard under the attacks of issue 21, against the real app on real Postgres and Redis:
 * DNS rebinding (a foreign Host header), clickjacking (framing), malformed query strings and form
 * bodies (400, never 500), and a loosely parsed Authorization header.
 */
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningDashboard } from '../../src/http/server.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'

const TOKEN = 'attack-test-token-0123456789'
let env: TestEnv
let open: RunningDashboard // no credentials, loopback only: the DNS rebinding target
let guarded: RunningDashboard // bearer token, one public host name allowed

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** node:http rather than fetch: fetch may not set Host. */
function call(base: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const url = new URL(path, base)
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

beforeAll(async () => {
  env = await createTestEnv({ env: {} })
  open = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
  guarded = await env.newApp({ DASHBOARD_TOKEN: TOKEN, DASHBOARD_ALLOWED_HOSTS: 'dash.example.com' }).startDashboard({ port: 0, host: '127.0.0.1' })
}, 60_000)

afterAll(async () => {
  await open?.close()
  await guarded?.close()
  await env?.close()
})

const form = { 'content-type': 'application/x-www-form-urlencoded' }
const bearer = { authorization: `Bearer ${TOKEN}` }

describe('DNS rebinding: the Host header is checked', () => {
  it('answers a foreign Host with 421 on every page, /metrics and POST /redrive (no credentials configured)', async () => {
    const evil = { host: 'evil.example' }
    expect((await call(open.url, '/', { headers: evil })).status).toBe(421)
    expect((await call(open.url, '/metrics', { headers: evil })).status).toBe(421)
    expect((await call(open.url, '/queues', { headers: evil })).status).toBe(421)
    const post = await call(open.url, '/redrive', { method: 'POST', headers: { ...evil, ...form }, body: 'run=1' })
    expect(post.status).toBe(421)
    expect(post.body).toMatch(/DASHBOARD_ALLOWED_HOSTS/)
    // A name ending like a loopback name is still foreign.
    expect((await call(open.url, '/', { headers: { host: 'localhost.evil.example:3000' } })).status).toBe(421)
  })

  it('answers loopback names, IP literals and the configured host names', async () => {
    const port = new URL(open.url).port
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'LOCALHOST', '10.1.2.3:3000']) {
      expect((await call(open.url, '/', { headers: { host } })).status, host).toBe(200)
    }
    expect((await call(guarded.url, '/', { headers: { host: 'dash.example.com', ...bearer } })).status).toBe(200)
    expect((await call(guarded.url, '/', { headers: { host: 'Dash.Example.com.:443', ...bearer } })).status).toBe(200)
    expect((await call(guarded.url, '/', { headers: { host: 'other.example.com', ...bearer } })).status).toBe(421)
  })

  it('leaves the health checks open to any Host (probes address pods by name or IP)', async () => {
    expect((await call(open.url, '/healthz', { headers: { host: 'pod-7.internal' } })).status).toBe(200)
  })
})

describe('security headers', () => {
  it('forbids framing, inline script and MIME sniffing, and sends no referrer to other sites', async () => {
    for (const path of ['/', '/queues', '/nothing-here']) {
      const r = await call(open.url, path)
      const csp = String(r.headers['content-security-policy'])
      expect(csp, path).toMatch(/frame-ancestors 'none'/)
      expect(csp, path).toMatch(/script-src 'self'(;|$)/)
      expect(csp, path).not.toMatch(/unsafe-inline'[^;]*;?\s*$|script-src[^;]*unsafe/)
      expect(r.headers['x-frame-options'], path).toBe('DENY')
      expect(r.headers['x-content-type-options'], path).toBe('nosniff')
      expect(r.headers['referrer-policy'], path).toBe('same-origin')
    }
  })

  it('serves pages without any inline script, so the policy costs them nothing', async () => {
    const r = await call(open.url, '/')
    expect(r.status).toBe(200)
    expect(r.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i)
    expect(r.body).not.toMatch(/\son[a-z]+=/i)
  })
})

describe('query strings and form bodies: 400 with a message, never 500', () => {
  const cases: [string, string, RegExp][] = [
    ['after=1e308', 'GET', /after: must be a whole number/],
    ['before=99999999999999999', 'GET', /before: must be a whole number/],
    ['after=-1', 'GET', /after: must be a whole number/],
    ['size=7', 'GET', /size: must be one of 50, 20, 100, 200/],
    ['merchant=a%00b', 'GET', /merchant: must not contain control characters/],
    ['code=%00', 'GET', /code: must not contain control characters/],
    ['provider=a%0Db', 'GET', /provider: must not contain control characters/],
    ['code=a&code=b', 'GET', /code: expected a single text value/],
    [`class=${'x'.repeat(101)}`, 'GET', /class: too long/],
  ]
  for (const [qs, , message] of cases) {
    it(`GET /runs/1/failures?${qs.slice(0, 30)}`, async () => {
      const r = await call(open.url, `/runs/1/failures?${qs}`)
      expect(r.status).toBe(400)
      expect(r.body).toMatch(message)
      expect(r.body).not.toContain('\u0000')
    })
  }

  it('GET /runs/1?redriven=1e308 and ?from=x', async () => {
    expect((await call(open.url, '/runs/1?redriven=1e308')).status).toBe(400)
    expect((await call(open.url, '/runs/1?redriven=2&from=x')).body).toMatch(/from: must be a whole number/)
  })

  it('POST /redrive with code=%00, a bad run, a repeated field, malformed JSON', async () => {
    const post = (body: string, headers: Record<string, string> = form) => call(open.url, '/redrive', { method: 'POST', headers, body })
    let r = await post('run=1&code=%00')
    expect(r.status).toBe(400)
    expect(r.body).toMatch(/code: must not contain control characters/)
    r = await post('run=1e308')
    expect(r.status).toBe(400)
    expect(r.body).toMatch(/run: must be a whole number/)
    r = await post('run=1&run=2')
    expect(r.status).toBe(400)
    r = await post('run=999')
    expect(r.status).toBe(400)
    expect(r.body).toMatch(/run: no settlement run with that id/)
    r = await post('date=2026-02-30')
    expect(r.body).toMatch(/date: must be a valid YYYY-MM-DD date/)
    r = await post('{"run": 1, "code": "\\u0000"}', { 'content-type': 'application/json' })
    expect(r.status).toBe(400)
    r = await post('{"run": ', { 'content-type': 'application/json' })
    expect(r.status).toBe(400)
    expect(r.body).toBe('malformed request body\n')
    r = await post('{"run": 1, "dry_run": "maybe"}', { 'content-type': 'application/json' })
    expect(r.status).toBe(400)
    expect(r.body).toMatch(/dry_run/)
    // A valid dry run still answers.
    r = await post('{"date": "2026-11-03", "dry_run": true}', { 'content-type': 'application/json' })
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toMatchObject({ count: 0 })
  })
})

describe('the Authorization header is parsed strictly', () => {
  it('refuses trailing junk, doubled schemes and non-token68 values; accepts the exact form', async () => {
    const status = async (authorization: string) => (await call(guarded.url, '/', { headers: { authorization } })).status
    expect(await status(`Bearer ${TOKEN}`)).toBe(200)
    expect(await status(`bearer   ${TOKEN}`)).toBe(200)
    for (const h of [
      `Bearer ${TOKEN} junk`,
      `Bearer ${TOKEN},junk`,
      `Bearer Bearer ${TOKEN}`,
      `Bearer\t${TOKEN}`,
      `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')} x`,
      `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}!`,
    ]) {
      expect(await status(h), h).toBe(401)
    }
    expect(await status(`Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`)).toBe(200)
  })
})
