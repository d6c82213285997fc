/**
 * The rough edges an operator meets on the command line (issue 22, item 7), each through the real
 * CLI as a separate process: --version, usage errors for nonsense input (exit 2, naming the option
 * or variable), a future settle date, Redis down, snake_case --json, human output without raw JSON,
 * `settle --wait` with no worker, a worker with a stale merchant list, re-drive runs labelled
 * and linked to the run they follow up, and WORKER_ATTEMPTS read by the worker that runs a job.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { DEMO_MERCHANTS } from '../../src/demo/defaults.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { kstToday } from '../../src/domain/index.ts'
import { ROOT, runCli, spawnCli, stopChild } from '../helpers/pipeline.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'

let sandbox: Sandbox
let env: TestEnv
let dir: string

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  dir = await mkdtemp(join(tmpdir(), 'crt-ops-'))
})

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const isSnake = (k: string) => /^[a-z0-9_]+$/.test(k) || !/[a-z][A-Z]/.test(k)
function camelKeys(v: unknown, path = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => camelKeys(x, `${path}[${i}]`))
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [...(isSnake(k) ? [] : [`${path}.${k}`]), ...camelKeys(x, `${path}.${k}`)])
  return []
}

async function importCsv(name: string, businessDate: string, count: number, idPrefix: string, merchants = env.config.merchants) {
  const day = generateDay({
    businessDate,
    count,
    merchants: merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
    providers: ['payssam', 'nts'],
    idPrefix,
  })
  const file = join(dir, name)
  await writeFile(file, toCsv(day))
  const r = await runCli(['import', file, '--json'], env.env())
  expect(r.code, r.stderr).toBe(0)
  return day
}

describe('operator command line', () => {
  it('prints its version', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const r = await runCli(['--version'], env.env())
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(pkg.version)
  })

  it('refuses nonsense input with exit 2, naming the option or variable', async () => {
    const [cls, run, level, future] = await Promise.all([
      runCli(['redrive', '--class', 'nonsense', '--dry-run'], env.env()),
      runCli(['redrive', '--run', '999999', '--dry-run'], env.env()),
      runCli(['report'], env.env({ LOG_LEVEL: 'verbose' })),
      runCli(['settle', '--date', '2999-01-01', '--dry-run'], env.env()),
    ])
    expect(cls.code).toBe(2)
    expect(cls.stderr).toMatch(/--class.*'nonsense' is invalid.*permanent/s)
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('--run: no settlement run with id 999999')
    expect(level.code).toBe(2)
    expect(level.stderr).toMatch(/^error: LOG_LEVEL: expected one of .*got "verbose"/m)
    expect(future.code).toBe(2)
    expect(future.stderr).toMatch(/--date: 2999-01-01 is in the future \(today in Asia\/Seoul is \d{4}-\d\d-\d\d\)/)
  })

  it('warns when settling today, which is not over yet', async () => {
    const r = await runCli(['settle', '--date', kstToday(Date.now()), '--dry-run', '--json'], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: .* is today in Asia\/Seoul and not over yet/)
    const summary = JSON.parse(r.stdout)
    expect(camelKeys(summary)).toEqual([])
    expect(summary).toMatchObject({ dry_run: true, run_id: null })
  })

  it('fails fast naming REDIS_URL when Redis does not answer, without raw errors', async () => {
    const r = await runCli(['settle', '--date', '2026-01-05'], env.env({ REDIS_URL: 'redis://:secretpw@127.0.0.1:1' }), 60_000)
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(/^error: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1 does not answer \(REDIS_URL\): connect ECONNREFUSED/)
    expect(r.stderr).not.toContain('secretpw')
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('settle --wait says when no worker consumes the queue; a stale merchant list fails with a hint; re-drive is labelled and linked', async () => {
    const date = '2026-08-03'
    await importCsv('stale.csv', date, 12, 'OPS')

    // settle --wait with no worker: it says so instead of waiting silently.
    const settle = spawnCli(['settle', '--date', date, '--wait', '--json'], env.env())
    let stdout = ''
    settle.stdout!.on('data', (d) => (stdout += d))
    try {
      await eventually(async () => /no worker is consuming the receipts queue/.test(settle.output()), 60_000, 200)

      // A worker whose merchant list lacks m-shop: its receipts fail at once, with the hint, not after every attempt.
      const partial = join(dir, 'merchants-partial.json')
      await writeFile(partial, JSON.stringify(DEMO_MERCHANTS.filter((m) => m.id !== 'm-shop')))
      const worker = spawnCli(['worker', '--concurrency', '4'], env.env({ MERCHANTS_FILE: partial }))
      try {
        const exited = await new Promise<number>((res) => settle.on('exit', (c) => res(c ?? -1)))
        expect(exited, settle.output()).toBe(0)
      } finally {
        await stopChild(worker)
      }
    } finally {
      await stopChild(settle)
    }
    const report = JSON.parse(stdout.slice(stdout.indexOf('{')))
    expect(report.status).toBe('finished')
    const shop = await env.app
      .db()
      .selectFrom('receipts')
      .select(['state', 'error_code', 'error_message', 'attempts'])
      .where('merchant_id', '=', 'm-shop')
      .where('kind', '=', 'issue')
      .where('state', '<>', 'skipped')
      .execute()
    expect(shop.length).toBeGreaterThan(0)
    for (const r of shop) {
      expect(r).toMatchObject({ state: 'failed', error_code: 'MERCHANT_NOT_CONFIGURED', attempts: 1 })
      expect(r.error_message).toMatch(/restart the workers with the current MERCHANTS_FILE/)
    }
    expect(report.totals.failed).toBe(shop.length)
    const failedJobs = await env.app.receiptsQueue().getJobCountByTypes('failed')
    expect(failedJobs).toBe(shop.length)

    // Human output names classes in words, never raw JSON.
    const dry = await runCli(['redrive', '--run', report.run_id, '--dry-run'], env.env())
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout.trim()).toBe(`dry run: would re-drive ${shop.length} receipts (permanent ${shop.length}), business date ${date}`)

    // Re-drive with every merchant known: labelled with the receipts' business date, linked both ways.
    const worker = spawnCli(['worker', '--concurrency', '4'], env.env())
    try {
      const redriven = await runCli(['redrive', '--code', 'MERCHANT_NOT_CONFIGURED', '--wait', '--json'], env.env())
      expect(redriven.code, redriven.stderr).toBe(0)
      const rr = JSON.parse(redriven.stdout)
      expect(rr).toMatchObject({ business_date: date, trigger: 'redrive', redrive_of: [report.run_id], status: 'finished' })
      expect(rr.totals.issued).toBe(shop.length)
      // Bull Board no longer counts the failed jobs of receipts that were re-driven and issued.
      expect(await env.app.receiptsQueue().getJobCountByTypes('failed')).toBe(0)

      const original = JSON.parse((await runCli(['report', '--run', report.run_id, '--json'], env.env())).stdout)
      expect(original).toMatchObject({ redriven: shop.length, redrive_runs: [rr.run_id], redrive_of: [] })
      expect(original.totals.failed).toBe(0)
      const table = await runCli(['report', '--run', report.run_id], env.env())
      expect(table.stdout).toContain(`${shop.length} receipts failed and were re-driven (run ${rr.run_id})`)
      const byDate = await runCli(['report', '--date', date, '--json'], env.env())
      expect(JSON.parse(byDate.stdout).redrive_runs).toEqual([rr.run_id])
    } finally {
      await stopChild(worker)
    }
  }, 480_000)

  it('the README lists the built-in demo merchants, and its sample import file imports as is', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    for (const m of DEMO_MERCHANTS) {
      expect(readme).toContain(`\`${m.id}\``)
      expect(readme).toContain(m.name)
    }
    expect(readme).toContain('examples/transactions.csv')
    const r = await runCli(['import', join(ROOT, 'examples/transactions.csv'), '--json'], env.env())
    expect(r.code, r.stderr).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary).toMatchObject({ rows: 12, inserted: 12, rejected: 0, written: true })
    expect(camelKeys(summary)).toEqual([])
  })

  it('the worker that runs a job decides its attempts (WORKER_ATTEMPTS), not the process that enqueued it', async () => {
    const date = '2026-08-05'
    const day = generateDay({
      businessDate: date,
      count: 4,
      merchants: env.config.merchants.filter((m) => m.mandatoryIssuer).map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
      providers: ['payssam'],
      idPrefix: 'ATT',
    })
    const file = join(dir, 'attempts.csv')
    await writeFile(file, toCsv(day))
    expect((await runCli(['import', file], env.env())).code).toBe(0)
    // PaySsam answers 5xx to everything: each receipt fails once its worker's attempts run out.
    sandbox.setFaults('payssam:5xx=1')
    const worker = spawnCli(['worker', '--concurrency', '4'], env.env({ WORKER_ATTEMPTS: '3' }))
    try {
      // enqueued by a process whose own WORKER_ATTEMPTS is 1
      const settled = await runCli(['settle', '--date', date, '--wait', '--json'], env.env({ WORKER_ATTEMPTS: '1' }))
      expect(settled.code, settled.stderr).toBe(0)
      const report = JSON.parse(settled.stdout)
      const rows = await env.app.db().selectFrom('receipts').select(['state', 'attempts']).where('run_id', '=', Number(report.run_id)).where('state', '<>', 'skipped').execute()
      expect(rows.length).toBeGreaterThan(0)
      expect(report.totals.failed).toBe(rows.length)
      for (const r of rows) expect(r).toEqual({ state: 'failed', attempts: 3 })
    } finally {
      sandbox.setFaults('')
      await stopChild(worker)
    }
  }, 300_000)

  it('reconcile names the receipts it repaired', async () => {
    const date = '2026-08-04'
    const day = await importCsv(
      'reconcile.csv',
      date,
      3,
      'REC',
      env.config.merchants.filter((m) => m.mandatoryIssuer),
    )
    const worker = spawnCli(['worker', '--concurrency', '4'], env.env())
    let report
    try {
      const settled = await runCli(['settle', '--date', date, '--wait', '--json'], env.env())
      expect(settled.code, settled.stderr).toBe(0)
      report = JSON.parse(settled.stdout)
    } finally {
      await stopChild(worker)
    }
    // The ledger loses an outcome the provider holds: reconcile repairs it and says which receipt.
    const victim = await env.app
      .db()
      .selectFrom('receipts')
      .select(['id', 'transaction_id'])
      .where('run_id', '=', Number(report.run_id))
      .where('state', '=', 'issued')
      .orderBy('id')
      .executeTakeFirstOrThrow()
    await env.app.db().updateTable('receipts').set({ state: 'failed', error_class: 'unknown_outcome', needs_lookup: true }).where('id', '=', victim.id).execute()
    const r = await runCli(['reconcile', '--date', date], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/repaired 1/)
    expect(r.stdout).toMatch(new RegExp(`^  repaired ${victim.transaction_id} \\((payssam|nts)\\): failed → issued$`, 'm'))
    expect(day.rows.length).toBe(3)
  }, 300_000)
})
