/**
 * `cash-receipts import` as a separate process on the corpus records that used to break its contract
 * (JSON values of the wrong type, control characters) or pass import and then abort settle (a
 * payment_ref twice per provider, keys beyond the provider's rules): exit 2 with the exact
 * `line N: field: reason` of every bad record, nothing written, the value of a personal field never
 * echoed; with --skip-invalid exactly the good records imported and the bad ones in --rejects.
 * Spawning is slow, so the corpus files of each format are joined into one file per format (the
 * integration corpus test runs them one by one in process). Last, the day of everything imported
 * here settles, which a provider key held by two transactions used to abort.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli, settle } from '../helpers/pipeline.ts'

const DIR = join(import.meta.dirname, '../fixtures/bad-input')
interface Case {
  file: string
  line: number
  field: string
  note: string
  message?: string
  good?: string[]
  secret?: string
}
const cases = (JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as Case[]).filter((c) => c.good)

/** The format's corpus files as one: messages renumbered to the joined file's lines. */
function joined(ext: 'csv' | 'jsonl') {
  const lines: string[] = []
  const messages: string[] = []
  const good: string[] = []
  const secrets: string[] = []
  let n = 0
  for (const c of cases.filter((x) => x.file.endsWith(`.${ext}`))) {
    const own = readFileSync(join(DIR, c.file), 'utf8').replace(/\n$/, '').split('\n')
    if (ext === 'csv' && lines.length) own.shift()
    const shift = ext === 'csv' && n > 0 ? n - 1 : n
    lines.push(...own)
    n = lines.length
    messages.push(c.message!.replace(/^line (\d+)|\(line (\d+)\)/g, (m, a?: string, b?: string) => (a ? `line ${Number(a) + shift}` : `(line ${Number(b) + shift})`)))
    good.push(...c.good!)
    if (c.secret) secrets.push(c.secret)
  }
  return { text: lines.join('\n') + '\n', messages, good, secrets }
}

let env: TestEnv
let dir: string

beforeAll(async () => {
  env = await createTestEnv()
  dir = await mkdtemp(join(tmpdir(), 'crt-import-'))
})
afterAll(async () => {
  await env?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function storedIds(ids: readonly string[]): Promise<string[]> {
  if (!ids.length) return []
  const rows = await env.app.db().selectFrom('cash_transactions').select('transaction_id').where('transaction_id', 'in', ids).orderBy('transaction_id').execute()
  return rows.map((r) => r.transaction_id)
}

const HEADER = 'transaction_id,merchant_id,provider,payment_ref,order_id,order_name,method,amount,paid_at'
const csv = (...rows: string[]) => [HEADER, ...rows].join('\n') + '\n'
const PAID = '2026-11-20T10:00:00+09:00'

describe('import faults through the CLI', () => {
  it('covers every new kind of fault', () => {
    expect(cases.length).toBeGreaterThanOrEqual(15)
  })

  it.each(['jsonl', 'csv'] as const)('%s: exit 2 naming every bad line and field; --skip-invalid imports exactly the good records', async (ext) => {
    const { text, messages, good, secrets } = joined(ext)
    const file = join(dir, `faults.${ext}`)
    await writeFile(file, text)
    const ids = [...new Set(text.match(/\b(?:OK|BAD)-[\w-]+/g) ?? [])]
    expect(ids.length).toBe(good.length + messages.length)

    const r = await runCli(['import', file], env.env())
    expect(r.code, r.stderr).toBe(2)
    const printed = r.stderr.split('\n').filter((l) => l.startsWith('line '))
    expect(printed).toEqual(messages)
    expect(r.stderr).toContain('nothing written')
    for (const s of secrets) expect(r.stderr).not.toContain(s)
    expect(await storedIds(ids)).toEqual([])

    const rejects = join(dir, `faults.rejects.${ext}`)
    const skipped = await runCli(['import', file, '--skip-invalid', '--rejects', rejects, '--json'], env.env())
    expect(skipped.code, skipped.stderr).toBe(0)
    const summary = JSON.parse(skipped.stdout)
    expect(summary).toMatchObject({ rows: good.length + messages.length, inserted: good.length, rejected: messages.length, written: true })
    expect(summary.errors.map((e: { line: number; field: string; message: string }) => `line ${e.line}: ${e.field}: ${e.message}`)).toEqual(messages)
    for (const s of secrets) expect(skipped.stdout + skipped.stderr).not.toContain(s)
    expect(await storedIds(ids)).toEqual([...good].sort())
    const rejected = (await readFile(rejects, 'utf8')).trim().split('\n')
    expect(rejected).toHaveLength(messages.length + (ext === 'csv' ? 1 : 0))
    for (const record of rejected.slice(ext === 'csv' ? 1 : 0)) expect(record).toContain('BAD-')
  })

  it('refuses a payment_ref a stored transaction of the same provider already has, and keeps re-import idempotent', async () => {
    const first = join(dir, 'db-first.csv')
    await writeFile(first, csv(`DBREF-1,m-clinic,portone-v2,pay-DBREF,O-DBREF-1,진료비,cash,11000,${PAID}`))
    const importFirst = () => importTransactions(env.app.db(), env.config.dataKeys, first, { nowMs: Date.now() })
    expect(await importFirst()).toMatchObject({ written: true, inserted: 1 })

    const second = join(dir, 'db-second.csv')
    await writeFile(
      second,
      csv(
        `DBREF-2,m-academy,portone-v2,pay-DBREF,O-DBREF-2,수강료,cash,22000,${PAID}`,
        `DBREF-3,m-academy,portone-v2,pay-DBREF-3,O-DBREF-3,수강료,cash,33000,${PAID}`,
        // DBREF-1's merchant_uid-less V2 key is its payment_ref, so a PortOne V1 key of the same text is another provider's.
        `DBREF-4,m-academy,portone,pay-DBREF,O-DBREF-4,수강료,cash,44000,${PAID}`,
      ),
    )
    const b = await runCli(['import', second], env.env())
    expect(b.code, b.stderr).toBe(2)
    expect(b.stderr.split('\n')).toContain(
      "line 2: payment_ref: already used by transaction DBREF-1 (imported before) as its portone-v2 receipt key; a payment_ref is the provider's payment id and can appear once per provider",
    )
    expect(b.stderr).not.toMatch(/^line [34]:/m)
    expect(await storedIds(['DBREF-2', 'DBREF-3', 'DBREF-4'])).toEqual([])

    const c = await runCli(['import', second, '--skip-invalid', '--json'], env.env())
    expect(c.code, c.stderr).toBe(0)
    expect(JSON.parse(c.stdout)).toMatchObject({ rows: 3, inserted: 2, rejected: 1 })
    expect(await storedIds(['DBREF-1', 'DBREF-2', 'DBREF-3', 'DBREF-4'])).toEqual(['DBREF-1', 'DBREF-3', 'DBREF-4'])

    // The same transaction again is a no-op, not a clash with itself.
    expect(await importFirst()).toMatchObject({ written: true, rows: 1, inserted: 0, updated: 0, unchanged: 1, rejected: 0, errors: [] })
  })

  it('settles the day of everything imported above: no two transactions share a provider key', async () => {
    const db = env.app.db()
    const stored = await db
      .selectFrom('cash_transactions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('business_date', '=', '2026-11-20')
      .executeTakeFirstOrThrow()
    expect(Number(stored.n)).toBeGreaterThan(20)
    const s = await settle(env.app, '2026-11-20')
    expect(s.selected).toBe(Number(stored.n))
    expect(s.created + s.skipped).toBe(Number(stored.n))
  })
})
