/**
 * Issue 22, item 6: import files as merchants export them, through the real CLI. Every fixture is
 * made here: CP949 bytes through iconv-lite, a UTF-8 BOM, CRLF line ends, a NUL byte, Korean
 * names, a misspelled column, empty files. Checked: the encoding is detected and said, Korean text
 * is stored as it was written, unknown columns are warned about (refused under --strict-columns),
 * an empty file is an input error (exit 2), the rejects file carries a reason column and, fixed,
 * imports again as it is, and the summary's counts read right for 0, 1 and many.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import iconv from 'iconv-lite'
import { parse } from 'csv-parse/sync'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli } from '../helpers/pipeline.ts'

const HEADER = 'transaction_id,merchant_id,provider,order_id,order_name,method,amount,paid_at,identifier,buyer_name'
const PAID = '2026-11-20T10:00:00+09:00'
let env: TestEnv
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  dir = await mkdtemp(join(tmpdir(), 'cr-imp-enc-'))
}, 60_000)
afterAll(async () => {
  await env?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function stored(id: string): Promise<{ order_name: string | null } | undefined> {
  const r = await sql<{ order_name: string | null }>`SELECT order_name FROM cash_transactions WHERE transaction_id = ${id}`.execute(env.app.db())
  return r.rows[0]
}

describe('import: encodings, columns, empty files, rejects and counts', () => {
  it('reads a CP949 export with CRLF, stores its Korean text, and rejects a NUL byte into a reasoned rejects file that re-imports', async () => {
    const file = join(dir, 'cp949.csv')
    const text =
      [
        HEADER,
        `ENC-1,m-clinic,nts,o-1,진료비 (똠방각하),cash,11000,${PAID},010-1234-5678,홍길동`,
        `ENC-2,m-clinic,nts,o-2,"한약, 첩약",cash,22000,${PAID},,김철수`,
        `ENC-3,m-clinic,nts,o-3,물리\u0000치료,cash,33000,${PAID},010-2222-3333,이영희`,
      ].join('\r\n') + '\r\n'
    await writeFile(file, iconv.encode(text, 'cp949'))
    const rejects = join(dir, 'cp949.rejects.csv')

    const r = await runCli(['import', file, '--skip-invalid', '--rejects', rejects, '--json'], env.env())
    expect(r.code, r.stderr).toBe(0)
    const summary = JSON.parse(r.stdout)
    expect(summary).toMatchObject({ encoding: 'cp949', rows: 3, inserted: 2, rejected: 1, written: true, warnings: [], file_rejected: false })
    expect(summary.errors).toEqual([{ line: 4, field: 'order_name', message: 'contains a NUL byte at position 3; remove it' }])
    expect(await stored('ENC-1')).toEqual({ order_name: '진료비 (똠방각하)' })
    expect(await stored('ENC-2')).toEqual({ order_name: '한약, 첩약' })
    expect(await stored('ENC-3')).toBeUndefined()

    // The rejects file: UTF-8 with a BOM, the input's columns and reject_reason last.
    const bytes = await readFile(rejects)
    expect([...bytes.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    const records = parse(bytes.toString('utf8'), { columns: true, bom: true }) as Record<string, string>[]
    expect(Object.keys(records[0]!)).toEqual([...HEADER.split(','), 'reject_reason'])
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({ transaction_id: 'ENC-3', buyer_name: '이영희', reject_reason: 'line 4: order_name: contains a NUL byte at position 3; remove it' })

    // Fixed by the merchant and imported as it is: UTF-8 detected, reject_reason ignored without a warning.
    const fixed = join(dir, 'cp949.fixed.csv')
    await writeFile(fixed, bytes.toString('utf8').replace('\u0000', ''))
    const again = await runCli(['import', fixed], env.env())
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).toContain('read as UTF-8 (detected)')
    expect(again.stderr).not.toContain('warning:')
    expect(again.stderr).toContain('imported 1 of 1 row: 1 new, 0 updated, 0 unchanged, 0 rejected')
    expect(await stored('ENC-3')).toEqual({ order_name: '물리치료' })
  }, 120_000)

  it('decodes a forced --encoding euc-kr and refuses a forced utf-8 naming the line and the way out', async () => {
    const file = join(dir, 'euckr.csv')
    await writeFile(file, iconv.encode(`${HEADER}\nEK-1,m-clinic,nts,o-1,수강료,cash,5000,${PAID},,\nEK-2,m-clinic,nts,o-2,교재비,cash,6000,${PAID},,\n`, 'euc-kr'))

    const forcedUtf8 = await runCli(['import', file, '--encoding', 'utf-8'], env.env())
    expect(forcedUtf8.code, forcedUtf8.stderr).toBe(2)
    expect(forcedUtf8.stderr).toContain('line 2: file: line 2 is not valid UTF-8; re-save the file as UTF-8, or import it with --encoding cp949')
    expect(forcedUtf8.stderr).toContain('nothing written: the file cannot be imported as it is')

    const r = await runCli(['import', file, '--encoding', 'euc-kr', '--json'], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ encoding: 'euc-kr', rows: 2, inserted: 2 })
    expect(await stored('EK-2')).toEqual({ order_name: '교재비' })
  }, 120_000)

  it('warns about a misspelled column with the column it probably meant; --strict-columns refuses the file', async () => {
    const file = join(dir, 'misspelled.csv')
    // A UTF-8 BOM and CRLF, as Excel's "CSV UTF-8" writes them.
    await writeFile(file, `\uFEFF${HEADER},buyer_mail,memo\r\nCOL-1,m-shop,nts,o-1,꽃다발,cash,15000,${PAID},,박민수,buyer@example.com,선물\r\n`)

    const strict = await runCli(['import', file, '--strict-columns', '--skip-invalid', '--json'], env.env())
    expect(strict.code, strict.stderr).toBe(2)
    const refused = JSON.parse(strict.stdout)
    expect(refused).toMatchObject({ encoding: 'utf-8', written: false, file_rejected: true, rejected: 0, inserted: 0 })
    expect(refused.errors.map((e: { field: string }) => e.field)).toEqual(['buyer_mail', 'memo'])
    expect(refused.errors[0].message).toContain('did you mean "buyer_email"?')
    expect(await stored('COL-1')).toBeUndefined()

    const r = await runCli(['import', file], env.env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain('read as UTF-8 (detected)')
    expect(r.stderr).toContain('warning: line 1: column "buyer_mail" is not an import column and is ignored; did you mean "buyer_email"?')
    expect(r.stderr).toContain('warning: line 1: column "memo" is not an import column and is ignored\n')
    expect(r.stderr).not.toContain('buyer@example.com')
    expect(r.stderr).toContain('imported 1 of 1 row: 1 new, 0 updated, 0 unchanged, 0 rejected')
    expect(await stored('COL-1')).toEqual({ order_name: '꽃다발' })
  }, 120_000)

  it.each([
    ['an empty CSV', 'empty.csv', '', 'is empty: no header row and no records'],
    ['a CSV with a header and no records (BOM, CRLF)', 'header-only.csv', `\uFEFF${HEADER}\r\n\r\n`, 'has a header row but no records (an empty file is not an import)'],
    ['an empty JSON Lines file', 'empty.jsonl', '\n\n', 'holds no records (an empty file is not an import)'],
  ])(
    'refuses %s with exit 2',
    async (_what, name, content, message) => {
      const file = join(dir, name)
      await writeFile(file, content)
      const r = await runCli(['import', file, '--json'], env.env())
      expect(r.code, r.stderr).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`error: ${file} ${message}\n`)
    },
    60_000,
  )

  it('says how many rows are invalid right for one and for many', async () => {
    const one = join(dir, 'one-bad.csv')
    await writeFile(one, `${HEADER}\nCNT-1,m-shop,nts,o-1,꽃,cash,-5,${PAID},,\n`)
    const a = await runCli(['import', one], env.env())
    expect(a.code, a.stderr).toBe(2)
    expect(a.stderr).toContain('nothing written: 1 of 1 row is invalid (fix it, or use --skip-invalid)')

    const many = join(dir, 'two-bad.csv')
    await writeFile(many, `${HEADER}\nCNT-2,m-shop,nts,o-2,꽃,cash,-5,${PAID},,\nCNT-3,m-shop,nts,o-3,꽃,cash,0,${PAID},,\nCNT-4,m-shop,nts,o-4,꽃,cash,100,${PAID},,\n`)
    const b = await runCli(['import', many], env.env())
    expect(b.code, b.stderr).toBe(2)
    expect(b.stderr).toContain('nothing written: 2 of 3 rows are invalid (fix them, or use --skip-invalid)')
  }, 120_000)

  it('refuses a UTF-16 file (Excel "Unicode text") saying how to save it', async () => {
    const file = join(dir, 'utf16.csv')
    await writeFile(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${HEADER}\r\n`, 'utf16le')]))
    const r = await runCli(['import', file], env.env())
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain('UTF-16')
    expect(r.stderr).toContain('CSV UTF-8')
  }, 60_000)
})
