/**
 * `cash-receipts rekey`: after DATA_KEY_ID moved to a new key, re-encrypts every row still under an
 * older key (transactions' personal data, merchants' business numbers) and rehashes transactions'
 * content fingerprints under the new key, so the old key can be removed from DATA_KEYS. It also
 * (re)computes each buyer identifier's search hash under the active key: after a rotation, and for
 * rows stored before search hashes existed (migration 0460 adds the column empty; docs/security.md).
 *
 * Batches of rows, each in its own transaction: safe to interrupt and run again (it picks up what is
 * left), and safe beside imports and workers (a row is rewritten only if it is still as it was read).
 */
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { decryptPii, decryptText, encryptPii, encryptText, ENVELOPE_VERSION, searchHash, type DataKeys } from '../crypto/pii.ts'
import { contentHash, FINGERPRINT_MARKER } from '../crypto/content-hash.ts'

export interface RekeySummary {
  readonly activeKeyId: string
  readonly transactions: number
  readonly merchants: number
  /** Rows per key id still referenced after the run (only the active key when it finished). */
  readonly remainingByKey: Readonly<Record<string, number>>
}

export class RekeyError extends Error {
  override name = 'RekeyError'
}

export async function rekey(db: Db, keys: DataKeys, opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<RekeySummary> {
  const active = keys.activeKeyId
  const batchSize = opts.batchSize ?? 1_000
  // Stale: under another key, or under the active key in the form before per-purpose keys (v1, no f2),
  // or a buyer identifier (identifier_type is set exactly when there is one) without a search hash
  // under the active key.
  const stale = sql<boolean>`((pii_enc IS NOT NULL AND (data_key_id IS DISTINCT FROM ${active} OR pii_enc NOT LIKE ${`${ENVELOPE_VERSION}.%`}))
    OR content_hash NOT LIKE ${`${active}.${FINGERPRINT_MARKER}.%`}
    OR (pii_enc IS NOT NULL AND identifier_type IS NOT NULL AND identifier_type <> 'self' AND (identifier_search IS NULL OR identifier_search NOT LIKE ${`${active}.%`})))`
  await assertKeysPresent(db, keys)

  const total = Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM cash_transactions WHERE ${stale}`.execute(db)).rows[0]?.n ?? 0)
  let transactions = 0
  let cursor = ''
  for (;;) {
    const rows = await db.selectFrom('cash_transactions').selectAll().where('transaction_id', '>', cursor).where(stale).orderBy('transaction_id').limit(batchSize).execute()
    if (rows.length === 0) break
    cursor = rows.at(-1)!.transaction_id
    const updates = rows.map((t) => {
      const pii = t.pii_enc ? decryptPii(t.pii_enc, keys, t.transaction_id) : {}
      const enc = t.pii_enc ? encryptPii(pii, keys, t.transaction_id) : null
      return {
        id: t.transaction_id,
        oldHash: t.content_hash,
        pii: enc?.value ?? null,
        keyId: enc?.keyId ?? null,
        search: pii.identifier && t.identifier_type !== 'self' ? searchHash(pii.identifier, keys) : null,
        hash: contentHash(
          {
            merchantId: t.merchant_id,
            provider: t.provider,
            paymentRef: t.payment_ref,
            orderId: t.order_id,
            orderName: t.order_name,
            method: t.method,
            amount: t.amount,
            taxFreeAmount: t.tax_free_amount,
            serviceFee: t.service_fee,
            paidAt: t.paid_at,
            identifierDigits: pii.identifier ?? null,
            identifierType: t.identifier_type,
            purpose: t.purpose,
            buyerName: pii.buyerName ?? null,
            buyerEmail: pii.buyerEmail ?? null,
            buyerTel: pii.buyerTel ?? null,
          },
          keys,
        ),
      }
    })
    const col = <T>(f: (u: (typeof updates)[number]) => T) => updates.map(f)
    const res = await sql`
      UPDATE cash_transactions c SET pii_enc = u.pii, data_key_id = u.key_id, content_hash = u.hash, identifier_search = u.search, updated_at = now()
      FROM unnest(${col((u) => u.id)}::text[], ${col((u) => u.oldHash)}::text[], ${col((u) => u.pii)}::text[], ${col((u) => u.keyId)}::text[], ${col((u) => u.hash)}::text[],
          ${col((u) => u.search)}::text[])
        AS u(id, old_hash, pii, key_id, hash, search)
      WHERE c.transaction_id = u.id AND c.content_hash = u.old_hash`.execute(db)
    transactions += Number(res.numAffectedRows ?? 0)
    opts.onProgress?.(transactions, total)
  }

  let merchants = 0
  const ms = await db
    .selectFrom('merchants')
    .select(['id', 'business_number_enc', 'data_key_id'])
    .where((eb) => eb.or([eb('data_key_id', '<>', active), eb('business_number_enc', 'not like', `${ENVELOPE_VERSION}.%`)]))
    .execute()
  for (const m of ms) {
    const enc = encryptText(decryptText(m.business_number_enc, keys, `merchant:${m.id}`), keys, `merchant:${m.id}`)
    const r = await db
      .updateTable('merchants')
      .set({ business_number_enc: enc.value, data_key_id: enc.keyId, updated_at: new Date() })
      .where('id', '=', m.id)
      .where('business_number_enc', '=', m.business_number_enc)
      .executeTakeFirst()
    merchants += Number(r.numUpdatedRows)
  }
  return { activeKeyId: active, transactions, merchants, remainingByKey: await keysInUse(db) }
}

/** Rows per key id that encrypted or hashed them. */
export async function keysInUse(db: Db): Promise<Record<string, number>> {
  const res = await sql<{ key_id: string; n: number }>`
    SELECT key_id, sum(n)::int AS n FROM (
      SELECT data_key_id AS key_id, count(*) AS n FROM cash_transactions WHERE pii_enc IS NOT NULL GROUP BY 1
      UNION ALL SELECT split_part(content_hash, '.', 1), count(*) FROM cash_transactions GROUP BY 1
      UNION ALL SELECT split_part(identifier_search, '.', 1), count(*) FROM cash_transactions WHERE identifier_search IS NOT NULL GROUP BY 1
      UNION ALL SELECT data_key_id, count(*) FROM merchants GROUP BY 1
    ) k GROUP BY key_id ORDER BY key_id`.execute(db)
  return Object.fromEntries(res.rows.map((r) => [r.key_id, r.n]))
}

/** Every key the data still uses must be configured, or its rows could not be read again. */
async function assertKeysPresent(db: Db, keys: DataKeys): Promise<void> {
  const used = await keysInUse(db)
  const missing = Object.keys(used).filter((id) => !keys.keys.has(id))
  if (missing.length) {
    throw new RekeyError(`data key(s) ${missing.map((m) => `"${m}" (${used[m]} rows)`).join(', ')} not configured in DATA_KEYS: add them back to re-encrypt those rows`)
  }
}
