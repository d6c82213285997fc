/**
 * Issue 22, item 1: a buyer identifier is searched through a keyed hash, never stored or shown raw.
 * Import writes the hash of the normalised identifier (none for the self-issue number); a lookup by
 * the identifier as a person types it finds the buyer's transactions and a wrong one finds nothing;
 * rows without a hash (stored before the column existed) are filled by rekey and by re-import; after
 * a key rotation the lookup still finds rows hashed under the old key, and rekey rehashes them.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { findReceipts } from '../../src/report/receipt-history.ts'
import { rekey } from '../../src/jobs/rekey.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'

const k1 = randomBytes(32).toString('base64')
const k2 = randomBytes(32).toString('base64')
const PHONE = '01098765432'
const OTHER_PHONE = '01011112222'
const BRN = '1208147521' // a valid business number (check digit 1)
const HEADER = 'transaction_id,merchant_id,provider,order_id,order_name,method,amount,paid_at,identifier,purpose'
const PAID = '2026-11-20T10:00:00+09:00'
let env: TestEnv
let dir: string
let file: string

beforeAll(async () => {
  env = await createTestEnv({ env: { DATA_KEYS: `k1:${k1}`, DATA_KEY_ID: 'k1' } })
  dir = await mkdtemp(join(tmpdir(), 'crt-idsearch-'))
  file = join(dir, 'day.csv')
  await writeFile(
    file,
    [
      HEADER,
      `IDS-1,m-clinic,nts,o-1,진료비,cash,11000,${PAID},010-9876-5432,`,
      `IDS-2,m-clinic,nts,o-2,진료비,cash,22000,2026-11-21T10:00:00+09:00,01098765432,`,
      `IDS-3,m-clinic,nts,o-3,진료비,cash,33000,${PAID},${OTHER_PHONE},`,
      `IDS-4,m-clinic,nts,o-4,진료비,cash,44000,${PAID},120-81-47521,expense`,
      `IDS-5,m-clinic,nts,o-5,진료비,cash,55000,${PAID},010-000-1234,`,
      `IDS-6,m-clinic,nts,o-6,진료비,cash,66000,${PAID},,`,
    ].join('\n') + '\n',
  )
  const first = await importTransactions(env.app.db(), env.config.dataKeys, file, { nowMs: Date.now() })
  expect(first, JSON.stringify(first.errors)).toMatchObject({ written: true, inserted: 6 })
}, 60_000)

afterAll(async () => {
  await env?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

const hashes = async (db = env.app.db()) =>
  Object.fromEntries(
    (
      await sql<{ transaction_id: string; identifier_search: string | null }>`SELECT transaction_id, identifier_search FROM cash_transactions ORDER BY transaction_id`.execute(db)
    ).rows.map((r) => [r.transaction_id, r.identifier_search]),
  )
const found = async (query: string, app = env.app) =>
  (await findReceipts(app.db(), query, { dataKeys: app.config.dataKeys })).transactions.map((t) => `${t.transaction_id}:${t.matched_by}`).sort()

describe('buyer identifier search', () => {
  it('import writes a keyed hash of the normalised identifier, never the identifier; none for self-issue', async () => {
    const h = await hashes()
    expect(h['IDS-1']).toMatch(/^k1\.[A-Za-z0-9_-]{43}$/)
    expect(h['IDS-1']).toBe(h['IDS-2']) // the same buyer written two ways
    expect(h['IDS-3']).not.toBe(h['IDS-1'])
    expect(h['IDS-4']).toMatch(/^k1\./)
    expect(h['IDS-5']).toBeNull()
    expect(h['IDS-6']).toBeNull()
    const dump = JSON.stringify(await sql`SELECT * FROM cash_transactions`.execute(env.app.db()))
    for (const raw of [PHONE, OTHER_PHONE, BRN, '9876-5432', '8147521']) expect(dump).not.toContain(raw)
  })

  it('finds the buyer by the identifier as typed, masks the query, and a wrong identifier finds nothing', async () => {
    expect(await found('010-9876-5432')).toEqual(['IDS-1:buyer_identifier', 'IDS-2:buyer_identifier'])
    expect(await found(' 010 9876 5432 ')).toEqual(['IDS-1:buyer_identifier', 'IDS-2:buyer_identifier'])
    expect(await found('120-81-47521')).toEqual(['IDS-4:buyer_identifier'])
    expect(await found('010-5555-6666')).toEqual([])
    expect(await found('010-000-1234')).toEqual([])
    const lookup = await findReceipts(env.app.db(), '010-9876-5432', { dataKeys: env.config.dataKeys })
    expect(lookup.query).toBe('010-****-5432')
    expect(JSON.stringify(lookup)).not.toContain(PHONE)
    // Without the keys (GET on the dashboard), identifiers are not searched.
    expect((await findReceipts(env.app.db(), '010-9876-5432')).transactions).toEqual([])
  })

  it('fills rows without a hash by rekey and by re-import', async () => {
    const before = await hashes()
    await sql`UPDATE cash_transactions SET identifier_search = NULL`.execute(env.app.db())
    expect(await found('010-9876-5432')).toEqual([])
    const r = await rekey(env.app.db(), env.config.dataKeys)
    expect(r.transactions).toBe(4) // the four with a buyer identifier
    expect(await hashes()).toEqual(before)
    expect((await rekey(env.app.db(), env.config.dataKeys)).transactions).toBe(0)

    await sql`UPDATE cash_transactions SET identifier_search = NULL WHERE transaction_id = 'IDS-3'`.execute(env.app.db())
    expect(await importTransactions(env.app.db(), env.config.dataKeys, file, { nowMs: Date.now() })).toMatchObject({ written: true, unchanged: 6, updated: 0 })
    expect(await hashes()).toEqual(before)
  })

  it('after a key rotation finds rows hashed under the old key, and rekey rehashes them under the new one', async () => {
    const both = env.newApp({ DATA_KEYS: `k1:${k1},k2:${k2}`, DATA_KEY_ID: 'k2' })
    expect(await found('010-9876-5432', both)).toEqual(['IDS-1:buyer_identifier', 'IDS-2:buyer_identifier'])
    const r = await rekey(both.db(), both.config.dataKeys)
    expect(r.transactions).toBe(6)
    const h = await hashes(both.db())
    expect(h['IDS-1']).toMatch(/^k2\./)
    expect(h['IDS-1']).toBe(h['IDS-2'])
    expect(h['IDS-5']).toBeNull()
    const onlyK2 = env.newApp({ DATA_KEYS: `k2:${k2}`, DATA_KEY_ID: 'k2' })
    expect(await found('01098765432', onlyK2)).toEqual(['IDS-1:buyer_identifier', 'IDS-2:buyer_identifier'])
    expect(await found('010-5555-6666', onlyK2)).toEqual([])
  })
})
