/**
 * Issue 21, attack 3: no secret or personal identifier in any message, log or error. Identifiers,
 * e-mail addresses, names and secrets are planted in every column of an import (CSV and JSON Lines,
 * through the real CLI with debug logging), in every configuration variable that can fail, and in
 * every dashboard parameter; everything printed, logged or answered is scanned for them.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { request } from 'node:http'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IMPORT_COLUMNS } from '../../src/domain/index.ts'
import { createApp } from '../../src/app.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli } from '../helpers/pipeline.ts'

/** What gets planted, and the strings that must never come back (digits with and without separators). */
const PLANTED = {
  phone: '010-9876-5432',
  phoneDigits: '01098765432',
  rrn: '850715-2345678',
  card: '9410-1234-5678-9012',
  brn: '2208162517',
  email: 'leak.me@example.com',
  name: '김비밀누설',
  secret: 'sk_live_PLANTEDSECRET0123',
}
const NEEDLES = [
  '9876-5432',
  '98765432',
  '1098765432',
  '850715-2345678',
  '8507152345678',
  '2345678',
  '9410123456789012',
  '1234-5678-9012',
  '12345678',
  '2208162517',
  '220-81-62517',
  'leak.me',
  '김비밀누설',
  '비밀',
  'PLANTEDSECRET',
]
const plantedValues = Object.values(PLANTED)

function expectClean(where: string, text: string) {
  for (const n of NEEDLES) {
    const at = text.indexOf(n)
    expect(at, `${where} leaks "${n}": …${text.slice(Math.max(0, at - 300), at + 100)}…`).toBe(-1)
  }
}

const BASE: Record<string, string> = {
  transaction_id: 'T-base',
  merchant_id: 'm-shop',
  provider: 'nts',
  payment_ref: '',
  order_id: 'order-1',
  order_name: '꽃다발',
  method: 'cash',
  amount: '10000',
  tax_free_amount: '0',
  service_fee: '0',
  paid_at: '2026-11-02T10:00:00+09:00',
  identifier: '',
  identifier_type: '',
  purpose: 'deduction',
  buyer_name: '',
  buyer_email: '',
  buyer_tel: '',
  status: 'completed',
  refunded_amount: '0',
}

/** One row per (column, planted value), the rest valid; plus a duplicate id and a clash. */
function plantedRows(): Record<string, string>[] {
  const rows: Record<string, string>[] = []
  let n = 0
  for (const column of IMPORT_COLUMNS) {
    for (const value of plantedValues) {
      rows.push({ ...BASE, transaction_id: `T-${++n}`, [column]: value })
    }
  }
  // Identifier-shaped values where an identifier belongs, but wrong for their type.
  rows.push({ ...BASE, transaction_id: `T-${++n}`, identifier: PLANTED.brn, identifier_type: 'phone' })
  rows.push({ ...BASE, transaction_id: `T-${++n}`, identifier: '2208162518', identifier_type: 'business' })
  rows.push({ ...BASE, transaction_id: `T-${++n}`, identifier: PLANTED.rrn.replace('0715', '1315'), identifier_type: 'rrn' })
  rows.push({ ...BASE, transaction_id: `T-${++n}`, identifier: PLANTED.card, identifier_type: 'card', purpose: 'expense' })
  rows.push({ ...BASE, transaction_id: `T-${++n}`, identifier: PLANTED.phone, purpose: 'expense' })
  return rows
}

const csvField = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)

let env: TestEnv
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  dir = await mkdtemp(join(tmpdir(), 'cr-nosecrets-'))
}, 60_000)

afterAll(async () => {
  await env?.close()
})

describe('import errors name line and field, never the value', () => {
  it('CSV through the CLI, text and --json, with debug logs', async () => {
    const rows = plantedRows()
    const file = join(dir, 'planted.csv')
    await writeFile(file, [IMPORT_COLUMNS.join(','), ...rows.map((r) => IMPORT_COLUMNS.map((c) => csvField(r[c] ?? '')).join(','))].join('\n') + '\n')
    const debug = env.env({ LOG_LEVEL: 'trace', LOG_PRETTY: 'false' })
    for (const args of [
      ['import', file],
      ['import', file, '--json'],
      ['import', file, '--skip-invalid', '--json'],
    ]) {
      const r = await runCli(args, debug)
      expect(r.code, r.stderr).toBe(args.includes('--skip-invalid') ? 0 : 2)
      const out = r.stdout + r.stderr
      expect(out).toMatch(/line \d+|"line":\s*\d+/)
      expectClean(args.join(' '), out)
    }
  }, 120_000)

  it('JSON Lines with identifiers as numbers, objects and misplaced strings', async () => {
    const file = join(dir, 'planted.jsonl')
    const lines = plantedRows().map((r) => JSON.stringify(r))
    lines.push(JSON.stringify({ ...BASE, transaction_id: 'J-num', identifier: 1098765432 }))
    lines.push(JSON.stringify({ ...BASE, transaction_id: 'J-amount', amount: 1098765432 }))
    lines.push(JSON.stringify({ ...BASE, transaction_id: 'J-obj', buyer_tel: { tel: PLANTED.phone } }))
    lines.push(`{"transaction_id": "J-broken", "identifier": "${PLANTED.phoneDigits}"`)
    lines.push(`["${PLANTED.phoneDigits}", "${PLANTED.secret}"]`)
    await writeFile(file, lines.join('\n') + '\n')
    const r = await runCli(['import', file, '--json'], env.env({ LOG_LEVEL: 'trace', LOG_PRETTY: 'false' }))
    expect(r.code).toBe(2)
    const result = JSON.parse(r.stdout) as { errors: { line: number; field: string; message: string }[] }
    expect(result.errors.length).toBeGreaterThan(IMPORT_COLUMNS.length)
    expectClean('import jsonl', r.stdout + r.stderr)
  }, 60_000)
})

describe('configuration errors name the variable, never the value', () => {
  it.each<Record<string, string>>([
    { DATA_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')},${PLANTED.secret}` },
    { DATA_KEYS: `${PLANTED.secret}:${Buffer.from(PLANTED.secret).toString('base64')}` },
    { DATA_KEYS: `k1:${Buffer.from(PLANTED.secret).toString('base64')}` },
    { DATABASE_URL: `postgres ${PLANTED.secret}@db` },
    { REDIS_URL: `::${PLANTED.secret}` },
    { OTEL_EXPORTER_OTLP_ENDPOINT: PLANTED.secret },
    { DASHBOARD_USER: `${PLANTED.secret}:x`, DASHBOARD_PASSWORD: PLANTED.secret },
    { DASHBOARD_PASSWORD: PLANTED.secret },
    { NODE_ENV: 'production', DASHBOARD_TOKEN: 'PLANTEDSECRET', DATA_KEYS: `k1:${Buffer.from(`${PLANTED.secret}-padding-pad`).toString('base64')}` },
    { NODE_ENV: 'production', DATABASE_URL: 'postgres://u:change-me@db/x', DATA_KEYS: `k1:${Buffer.from('cash-receipts-development-key-32').toString('base64')}` },
  ])('%#', (vars) => {
    let message = ''
    try {
      loadDemoConfig(vars)
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).not.toBe('')
    expectClean('config', message)
    expect(message).not.toContain('change-me')
    expect(message).not.toContain(Buffer.from('cash-receipts-development-key-32').toString('base64'))
  })

  it('a merchants file with a broken entry', async () => {
    const file = join(dir, 'merchants.json')
    await writeFile(file, JSON.stringify([{ id: 'm-x', name: PLANTED.name, businessNumber: PLANTED.phone, providers: { nts: { clientId: 1, clientSecret: PLANTED.secret } } }]))
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file })).toThrow(/MERCHANTS_FILE/)
    try {
      loadDemoConfig({ MERCHANTS_FILE: file })
    } catch (err) {
      expectClean('merchants file', (err as Error).message)
    }
    await writeFile(file, `[{"id": "m-x", "secret": "${PLANTED.secret}", ]`)
    try {
      loadDemoConfig({ MERCHANTS_FILE: file })
    } catch (err) {
      expectClean('merchants file JSON', (err as Error).message)
    }
  })
})

describe('dashboard answers and logs', () => {
  it('400 and 404 answers and every log line of the requests', async () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString())
        cb()
      },
    })
    const app = createApp(env.config, { logger: pino({ level: 'trace' }, sink) })
    const dash = await app.startDashboard({ port: 0, host: '127.0.0.1' })
    try {
      const url = new URL(dash.url)
      const call = (path: string, method = 'GET', body?: string, type = 'application/x-www-form-urlencoded') =>
        new Promise<string>((resolve, reject) => {
          const req = request({ host: url.hostname, port: url.port, path, method, headers: body ? { 'content-type': type } : {} }, (res) => {
            let text = `${res.statusCode} `
            res.setEncoding('utf8')
            res.on('data', (c: string) => (text += c))
            res.on('end', () => resolve(text))
          })
          req.on('error', reject)
          req.end(body)
        })
      const enc = encodeURIComponent
      const answers = [
        await call(`/runs/${PLANTED.phoneDigits}`),
        await call(`/runs/${enc(PLANTED.phone)}`),
        await call(`/runs/1?redriven=${enc(PLANTED.phone)}&from=${enc(PLANTED.rrn)}`),
        await call(`/runs/1/failures?offset=${PLANTED.phoneDigits}`),
        await call(`/runs/1/failures?code=${enc(`${PLANTED.rrn}\u0000`)}&class=${enc(PLANTED.secret.repeat(5))}`),
        await call('/redrive', 'POST', `run=${enc(PLANTED.phone)}&provider=${enc(PLANTED.email)}&date=${enc(PLANTED.card)}`),
        await call('/redrive', 'POST', JSON.stringify({ run: PLANTED.rrn, provider: PLANTED.name, dry_run: PLANTED.secret }), 'application/json'),
        await call('/redrive', 'POST', `{"run": "${PLANTED.phoneDigits}", `, 'application/json'),
        await call(`/${enc(PLANTED.phone)}`),
      ]
      for (const [i, a] of answers.entries()) expect(a, String(i)).toMatch(/^4\d\d /)
      expectClean('dashboard answers', answers.join('\n'))
      expectClean('dashboard logs', lines.join(''))
    } finally {
      await dash.close()
      await app.close()
    }
  })
})
