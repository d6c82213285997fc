/**
 * Period totals for filing (issue 22, item 4) through the real CLI: `report --from --to` per
 * merchant, purpose and month, issued minus cancelled, as table, JSON, CSV (UTF-8 with BOM, CRLF,
 * opens in Excel) and HTML; and the usage errors around it.
 */
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { importDay, runCli, settle, waitForRun } from '../helpers/pipeline.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'

let sandbox: Sandbox
let env: TestEnv
let cancelledTotal = 0

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  env.app.startWorker({ concurrency: 4 })
  for (const [date, prefix] of [
    ['2026-09-30', 'SEP'],
    ['2026-10-01', 'OCT'],
  ] as const) {
    await importDay(env.app, { businessDate: date, count: 10, seed: 3, providers: ['payssam', 'nts'], idPrefix: prefix })
    await waitForRun(env.app, (await settle(env.app, date)).runId!, 120_000)
  }
  // One receipt of September cancelled in full: it counts as issued and as cancelled.
  const victim = await env.app
    .db()
    .selectFrom('receipts')
    .select(['transaction_id', 'total_amount'])
    .where('trade_date', '=', '2026-09-30')
    .where('state', '=', 'issued')
    .where('kind', '=', 'issue')
    .orderBy('id')
    .executeTakeFirstOrThrow()
  cancelledTotal = Number(victim.total_amount)
  await env.app.cancel({ transactionId: victim.transaction_id, reason: 1 })
  await eventually(async () => {
    const r = await env.app.db().selectFrom('receipts').select('state').where('transaction_id', '=', victim.transaction_id).where('kind', '=', 'issue').executeTakeFirstOrThrow()
    return r.state === 'cancelled'
  }, 60_000)
}, 240_000)

afterAll(async () => {
  await env?.close()
  await sandbox?.close()
})

describe('report --from --to', () => {
  it('totals per merchant, purpose and month, issued minus cancelled, in every format', async () => {
    const expected = await sql<{ n: number; total: string }>`
      SELECT count(*)::int AS n, coalesce(sum(total_amount), 0)::text AS total FROM receipts
      WHERE kind = 'issue' AND state IN ('issued', 'cancelling', 'cancelled') AND trade_date BETWEEN '2026-09-01' AND '2026-10-31'`.execute(env.app.db())
    const issuedCount = expected.rows[0]!.n
    const issuedTotal = Number(expected.rows[0]!.total)
    expect(issuedCount).toBeGreaterThan(1)

    const dir = await mkdtemp(join(tmpdir(), 'crt-period-'))
    const [json, table, csv, htmlOut] = await Promise.all([
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--json'], env.env()),
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31'], env.env()),
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--format', 'csv', '--out', join(dir, 'totals.csv')], env.env()),
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--format', 'html', '--out', join(dir, 'totals.html')], env.env()),
    ])
    for (const r of [json, table, csv, htmlOut]) expect(r.code, r.stderr).toBe(0)

    const p = JSON.parse(json.stdout)
    expect(p).toMatchObject({ from: '2026-09-01', to: '2026-10-31', merchant_scope: '*' })
    expect(p.totals.issued).toMatchObject({ count: issuedCount, total: issuedTotal })
    expect(p.totals.cancelled).toMatchObject({ count: 1, total: cancelledTotal })
    expect(p.totals.net).toMatchObject({ count: issuedCount - 1, total: issuedTotal - cancelledTotal })
    expect(p.totals.net.supply + p.totals.net.vat).toBeLessThanOrEqual(p.totals.net.total)
    expect(new Set(p.rows.map((r: { month: string }) => r.month))).toEqual(new Set(['2026-09', '2026-10']))
    const sum = p.rows.reduce((a: number, r: { net: { total: number } }) => a + r.net.total, 0)
    expect(sum).toBe(p.totals.net.total)
    const sept = p.rows.filter((r: { month: string }) => r.month === '2026-09')
    expect(sept.reduce((a: number, r: { cancelled: { count: number } }) => a + r.cancelled.count, 0)).toBe(1)

    expect(table.stdout).toContain('Period totals 2026-09-01 … 2026-10-31')
    expect(table.stdout).toMatch(new RegExp(`^total .*₩${(issuedTotal - cancelledTotal).toLocaleString('en-US')}`, 'm'))

    const bytes = await readFile(join(dir, 'totals.csv'))
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    const lines = bytes.toString('utf8').slice(1).split('\r\n')
    expect(lines[0]).toBe(
      'month,merchant_id,merchant_name,purpose,issued_count,issued_total,issued_supply,issued_vat,cancelled_count,cancelled_total,cancelled_supply,cancelled_vat,net_count,net_total,net_supply,net_vat',
    )
    expect(lines.at(-1)).toBe('')
    expect(lines.length - 2).toBe(p.rows.length)
    expect(lines.some((l) => l.includes('서울 밝은치과의원'))).toBe(true)

    const page = await readFile(join(dir, 'totals.html'), 'utf8')
    expect(page).toContain('<html lang="ko">')
    expect(page).toContain('기간 합계')
    expect(page).toContain('word-break: keep-all')
    expect(page).toMatch(/생성 \d{4}-\d\d-\d\d \d\d:\d\d KST/)
  })

  it('one merchant only, and usage errors exit 2 naming the option', async () => {
    const one = await runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--merchant', 'm-clinic', '--json'], env.env())
    expect(one.code, one.stderr).toBe(0)
    const p = JSON.parse(one.stdout)
    expect(p.merchant_scope).toBe('m-clinic')
    expect(p.rows.every((r: { merchant_id: string }) => r.merchant_id === 'm-clinic')).toBe(true)

    const [noTo, reversed, csvRun, unknown, both] = await Promise.all([
      runCli(['report', '--from', '2026-09-01'], env.env()),
      runCli(['report', '--from', '2026-10-31', '--to', '2026-09-01'], env.env()),
      runCli(['report', '--format', 'csv'], env.env()),
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--merchant', 'm-nobody'], env.env()),
      runCli(['report', '--from', '2026-09-01', '--to', '2026-10-31', '--run', '1'], env.env()),
    ])
    expect([noTo.code, reversed.code, csvRun.code, unknown.code, both.code]).toEqual([2, 2, 2, 2, 2])
    expect(noTo.stderr).toContain('--to: required with --from')
    expect(reversed.stderr).toContain('--from: 2026-10-31 is after --to 2026-09-01')
    expect(csvRun.stderr).toContain('--format csv: only for period totals')
    expect(unknown.stderr).toContain('--merchant: "m-nobody" is not a configured merchant')
    expect(both.stderr).toContain('use one or the other')
  })
})
