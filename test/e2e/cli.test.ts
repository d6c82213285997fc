/**
 * The command line as users drive it, each command a separate OS process: help and exit codes,
 * all-or-nothing import with line/field errors, idempotent re-import, and import → settle --wait
 * --json with a worker process → the report JSON shape (README, Report JSON).
 */
import { mkdtemp, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli, spawnCli, stopChild } from '../helpers/pipeline.ts'
import { Redis } from 'ioredis'
import { redisUrl } from '../helpers/env.ts'

let sandbox: Sandbox
let env: TestEnv
let dir: string

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  dir = await mkdtemp(join(tmpdir(), 'crt-e2e-'))
})

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

const COMMANDS = [
  'migrate',
  'import',
  'settle',
  'worker',
  'scheduler',
  'redrive',
  'notify',
  'cancel',
  'reconcile',
  'recover',
  'rekey',
  'report',
  'show',
  'receipt',
  'sandbox',
  'serve',
  'demo',
]

describe('cash-receipts CLI', () => {
  it('has --help on every command', async () => {
    /** The command names a help page lists under "Commands:" (commander's own `help` left out). */
    const listed = (help: string) =>
      help.includes('Commands:')
        ? help
            .slice(help.indexOf('Commands:'))
            .split('\n')
            .slice(1)
            .map((l) => /^ {2}([a-z][a-z-]*)/.exec(l)?.[1])
            .filter((c): c is string => c !== undefined && c !== 'help')
        : []
    const top = await runCli(['--help'], env.env())
    expect(top.code).toBe(0)
    // Every command the program registers is in the list below (a new one must be added to it).
    expect(listed(top.stdout).sort()).toEqual([...COMMANDS].sort())
    // Each command, and each subcommand it lists (notify status, notify redrive), has its own help.
    // A few processes at a time: each is a Node start-up, and the machine may be shared.
    const seen: string[] = []
    const queue: string[][] = COMMANDS.map((c) => [c])
    const runner = async () => {
      for (let path = queue.shift(); path; path = queue.shift()) {
        const r = await runCli([...path, '--help'], env.env(), 300_000)
        expect(r.code, path.join(' ')).toBe(0)
        expect(r.stdout).toContain(`Usage: cash-receipts ${path.join(' ')}`)
        seen.push(path.join(' '))
        queue.push(...listed(r.stdout).map((sub) => [...path!, sub]))
      }
    }
    await Promise.all([runner(), runner(), runner()])
    expect(seen).toEqual(expect.arrayContaining(['notify status', 'notify redrive']))
    expect(seen.length).toBeGreaterThan(COMMANDS.length)
  }, 900_000)

  it('demo runs the whole flow and leaves none of its Redis keys behind (its queue prefix is new each run)', async () => {
    const redis = new Redis(redisUrl())
    const demoKeys = async () => [...(await redis.keys('crdemo*')), ...(await redis.keys('b_crdemo*'))]
    try {
      const before = new Set(await demoKeys())
      const r = await runCli(['demo', '--transactions', '40', '--json'], env.env(), 180_000)
      expect(r.code, r.stderr).toBe(0)
      const out = JSON.parse(r.stdout)
      expect(out.report.totals.issued).toBeGreaterThan(0)
      // Popbill is in the demo (its merchants issue it in bulk, src/demo/defaults.ts), filed and final.
      expect(out.report.by_provider.popbill.issued).toBeGreaterThan(0)
      expect(out.sandbox.providers.popbill.issued).toBe(out.report.by_provider.popbill.issued)
      expect(out.sandbox.max_live_receipts_per_key).toBe(1)
      expect((await demoKeys()).filter((k) => !before.has(k))).toEqual([])
    } finally {
      redis.disconnect()
    }
  })

  it('exits 2 on usage errors', async () => {
    const r = await runCli(['settle', '--date', '2026-13-01'], env.env())
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/not a valid YYYY-MM-DD date/)
    expect((await runCli(['no-such-command'], env.env())).code).toBe(2)
  })

  it('import of a file with one bad row writes nothing, exits 2, and names the line and field', async () => {
    const day = generateDay({ businessDate: '2026-07-01', count: 5, merchants: [{ id: 'm-clinic', mandatoryIssuer: true }], idPrefix: 'BAD' })
    const csv = toCsv(day).split('\n')
    // line 1 is the header; break the amount of the record on line 4
    csv[3] = csv[3]!.replace(/,(\d+),(\d+),(\d+),(20\d\d-)/, ',12.5,$2,$3,$4')
    const file = join(dir, 'one-bad-row.csv')
    await writeFile(file, csv.join('\n'))
    const r = await runCli(['import', file], env.env())
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^line 4: amount: /m)
    const n = await env.app
      .db()
      .selectFrom('cash_transactions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('transaction_id', 'like', 'BAD-%')
      .executeTakeFirstOrThrow()
    expect(Number(n.n)).toBe(0)

    const skipped = await runCli(['import', file, '--skip-invalid', '--rejects', join(dir, 'rejects.csv'), '--json'], env.env())
    expect(skipped.code).toBe(0)
    const summary = JSON.parse(skipped.stdout)
    expect(summary).toMatchObject({ rows: 5, inserted: 4, rejected: 1, written: true })
    const rejects = await readFile(join(dir, 'rejects.csv'), 'utf8')
    expect(rejects.trim().split('\n')).toHaveLength(2) // header + the bad record
  })

  it('imports, settles with --wait --json while a worker process issues, and reports in the contract shape', async () => {
    const day = generateDay({
      businessDate: '2026-07-11',
      count: 24,
      merchants: env.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
      providers: ['portone-v2', 'payssam', 'nts'],
      idPrefix: 'E2E',
    })
    const file = join(dir, 'day.jsonl')
    await writeFile(file, day.rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
    const first = await runCli(['import', file, '--json'], env.env())
    expect(first.code, first.stderr).toBe(0)
    expect(JSON.parse(first.stdout)).toMatchObject({ rows: 24, inserted: 24, rejected: 0 })
    const again = await runCli(['import', file, '--json'], env.env())
    expect(JSON.parse(again.stdout)).toMatchObject({ rows: 24, inserted: 0, updated: 0, unchanged: 24 })

    const dry = await runCli(['settle', '--date', '2026-07-11', '--dry-run', '--json'], env.env())
    expect(dry.code, dry.stderr).toBe(0)
    expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, selected: 24, run_id: null })

    const worker = spawnCli(['worker', '--concurrency', '4'], env.env())
    try {
      const settled = await runCli(['settle', '--date', '2026-07-11', '--wait', '--json'], env.env())
      expect(settled.code, settled.stderr).toBe(0)
      const report = JSON.parse(settled.stdout)
      expect(Object.keys(report)).toEqual(expect.arrayContaining(['run_id', 'business_date', 'status', 'totals', 'amount_issued', 'by_provider', 'failures', 'duration_s']))
      expect(Object.keys(report.totals).sort()).toEqual(['cancelled', 'eligible', 'failed', 'issued', 'pending', 'skipped'])
      expect(report.business_date).toBe('2026-07-11')
      expect(report.status).toBe('finished')
      expect(report.totals.eligible).toBe(24)
      expect(report.totals.issued).toBeGreaterThan(0)
      expect(typeof report.duration_s).toBe('number')

      const byRun = await runCli(['report', '--run', String(report.run_id), '--json'], env.env())
      expect(JSON.parse(byRun.stdout).totals).toEqual(report.totals)
      const table = await runCli(['report', '--date', '2026-07-11'], env.env())
      expect(table.code, table.stderr).toBe(0)
      expect(table.stdout).toContain('business date 2026-07-11')

      // cancel --wait follows the cancel row until the worker process has cancelled at the provider.
      const issued = await env.app
        .db()
        .selectFrom('receipts')
        .select(['transaction_id', 'total_amount'])
        .where('run_id', '=', report.run_id)
        .where('state', '=', 'issued')
        .orderBy('id')
        .executeTakeFirstOrThrow()
      const cancelled = await runCli(['cancel', issued.transaction_id, '--wait', '--json'], env.env())
      expect(cancelled.code, cancelled.stderr).toBe(0)
      expect(JSON.parse(cancelled.stdout)).toMatchObject({ transaction_id: issued.transaction_id, amount: issued.total_amount, partial: false, state: 'cancelled' })
      const after = await env.app
        .db()
        .selectFrom('receipts')
        .select('state')
        .where('transaction_id', '=', issued.transaction_id)
        .where('kind', '=', 'issue')
        .executeTakeFirstOrThrow()
      expect(after.state).toBe('cancelled')
    } finally {
      await stopChild(worker)
    }
    const missing = await runCli(['report', '--run', '99999', '--json'], env.env())
    expect(missing.code, missing.stderr).toBe(2)
  })
})
