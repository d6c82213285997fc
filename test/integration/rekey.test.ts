/**
 * Data-key rotation end to end (docs/operations.md): a day imported under key k1; DATA_KEY_ID moves
 * to k2 with both keys configured, and re-importing the day is still a no-op; `rekey` rewrites every
 * row under k2; with k1 removed the data still decrypts and re-imports still match. Removing a key
 * that rows still use is refused with the count.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { generateDay, toCsv } from '../../src/demo/generate.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { keysInUse, rekey, RekeyError } from '../../src/jobs/rekey.ts'
import { decryptPii } from '../../src/crypto/pii.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'

const k1 = randomBytes(32).toString('base64')
const k2 = randomBytes(32).toString('base64')
let env: TestEnv
let file: string
let rows: readonly Record<string, string>[]

beforeAll(async () => {
  env = await createTestEnv({ env: { DATA_KEYS: `k1:${k1}` } })
  const day = generateDay({ businessDate: '2026-11-20', count: 120, seed: 3, merchants: env.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })) })
  rows = day.rows
  file = join(await mkdtemp(join(tmpdir(), 'crt-rekey-')), 'day.csv')
  await writeFile(file, toCsv(day))
  const first = await importTransactions(env.app.db(), env.config.dataKeys, file, { nowMs: Date.now() })
  expect(first).toMatchObject({ written: true, inserted: 120 })
})

afterAll(async () => {
  await env?.close()
})

it('keeps re-imports matching across a key rotation, re-encrypts everything under the new key, and lets the old key go', async () => {
  const both = env.newApp({ DATA_KEYS: `k1:${k1},k2:${k2}`, DATA_KEY_ID: 'k2' })
  const again = await importTransactions(both.db(), both.config.dataKeys, file, { nowMs: Date.now() })
  expect(again).toMatchObject({ written: true, inserted: 0, updated: 0, unchanged: 120, errors: [] })
  expect(Object.keys(await keysInUse(both.db()))).toContain('k1')

  // k1 still holds the rows: it cannot be dropped yet.
  const onlyK2 = env.newApp({ DATA_KEYS: `k2:${k2}` })
  await expect(rekey(onlyK2.db(), onlyK2.config.dataKeys)).rejects.toBeInstanceOf(RekeyError)

  await both.prepareDatabase() // merchants' business numbers are written under the active key on sync
  const result = await rekey(both.db(), both.config.dataKeys, { batchSize: 50 })
  expect(result.transactions).toBe(120)
  expect(result.remainingByKey).toEqual({ k2: expect.any(Number) })
  // Nothing left to do the second time.
  expect((await rekey(both.db(), both.config.dataKeys)).transactions).toBe(0)

  // k1 removed: personal data decrypts with k2 alone, and a re-import still matches.
  const withIdentifier = rows.find((r) => r.identifier)!
  const stored = await onlyK2
    .db()
    .selectFrom('cash_transactions')
    .select(['pii_enc', 'data_key_id'])
    .where('transaction_id', '=', withIdentifier.transaction_id!)
    .executeTakeFirstOrThrow()
  expect(stored.data_key_id).toBe('k2')
  expect(decryptPii(stored.pii_enc!, onlyK2.config.dataKeys, withIdentifier.transaction_id!).identifier).toBe(withIdentifier.identifier!.replace(/\D/g, ''))
  const afterRotation = await importTransactions(onlyK2.db(), onlyK2.config.dataKeys, file, { nowMs: Date.now() })
  expect(afterRotation).toMatchObject({ written: true, inserted: 0, unchanged: 120, errors: [] })
})

it('rewrites rows from before the per-purpose keys (v1 envelopes, unmarked fingerprints) and keeps them readable meanwhile', async () => {
  const { createCipheriv, createHmac } = await import('node:crypto')
  const { sql } = await import('kysely')
  const key = Buffer.from(k2, 'base64')
  const app = env.newApp({ DATA_KEYS: `k1:${k1},k2:${k2}`, DATA_KEY_ID: 'k2' })
  const row = await app.db().selectFrom('cash_transactions').selectAll().where('pii_enc', 'is not', null).orderBy('transaction_id').limit(1).executeTakeFirstOrThrow()
  const plain = JSON.stringify({ identifier: '01055556666' })
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(Buffer.from(row.transaction_id))
  const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()])
  const v1 = ['v1', 'k2', iv.toString('base64url'), c.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.')
  const legacyHash = `k2.${createHmac('sha256', key).update('legacy').digest('base64url')}`
  await sql`UPDATE cash_transactions SET pii_enc = ${v1}, data_key_id = 'k2', content_hash = ${legacyHash} WHERE transaction_id = ${row.transaction_id}`.execute(app.db())
  expect(decryptPii(v1, app.config.dataKeys, row.transaction_id).identifier).toBe('01055556666')

  const result = await rekey(app.db(), app.config.dataKeys)
  expect(result.transactions).toBeGreaterThanOrEqual(1)
  const after = await app.db().selectFrom('cash_transactions').select(['pii_enc', 'content_hash']).where('transaction_id', '=', row.transaction_id).executeTakeFirstOrThrow()
  expect(after.pii_enc!.startsWith('v2.k2.')).toBe(true)
  expect(after.content_hash.startsWith('k2.f2.')).toBe(true)
  expect(decryptPii(after.pii_enc!, app.config.dataKeys, row.transaction_id).identifier).toBe('01055556666')
  // Nothing left in the old form: a second run has nothing to do.
  expect((await rekey(app.db(), app.config.dataKeys)).transactions).toBe(0)
})
