/**
 * `cash-receipts import`: streams a CSV/JSONL file into cash_transactions inside ONE Postgres
 * transaction. Row rules come from the domain module; file-wide rules (unknown merchant, a
 * transaction id twice in the file, a conflict with what was imported before, a provider key or
 * payment id that another transaction of the provider has) are checked in SQL on a temporary staging
 * table, so memory stays bounded whatever the file size.
 *
 * All-or-nothing by default: any bad row → rollback, every problem listed as `line N: field: reason`.
 * A problem with the file as a whole (a required column missing, an unknown column under
 * `strictColumns`) writes nothing even with `skipInvalid`; a file without records is refused.
 *
 * The file is UTF-8 or CP949/EUC-KR, detected unless forced (read-rows.ts). Columns outside the
 * import format are ignored with a warning naming the column it was probably meant to be.
 * Re-importing an identical transaction is a no-op; a later import of the same transaction may only
 * move it forward (completed → cancelled, a larger refunded_amount), which requests cancellation of
 * an issued receipt.
 */
import { open } from 'node:fs/promises'
import { sql } from 'kysely'
import type { Db } from '../db/database.ts'
import { encryptPii, encryptText, decryptText, searchHash, type DataKeys } from '../crypto/pii.ts'
import { contentHash, contentHashes, type HashedContent } from '../crypto/content-hash.ts'
import { validateTransaction, IMPORT_REQUIRED_COLUMNS, maskIdentifier, type ValidTransaction } from '../domain/index.ts'
import { deriveProviderKeys, providerKeySource } from '../providers/keys.ts'
import { readRows, formatOf, detectEncoding, FileFormatError, type Encoding } from './read-rows.ts'
import { isKnownColumn, REJECT_REASON_COLUMN, unknownColumnMessage } from './columns.ts'

export interface ImportError {
  readonly line: number
  readonly field: string
  readonly message: string
}

/** Something in the file that was not imported but does not stop the import (an unknown column). */
export interface ImportWarning {
  readonly line: number
  /** The column concerned, or `column N` when its name looks like data and is not repeated. */
  readonly field: string
  readonly message: string
}

/** A rejected record as it was in the file, and why (`line N: field: reason; …`). */
export interface RejectedRecord {
  readonly line: number
  readonly raw: string
  readonly reason: string
}

export interface ImportResult {
  readonly file: string
  readonly format: 'csv' | 'jsonl'
  /** The encoding the file was read in: detected, or as `encoding` forced it. */
  readonly encoding: Encoding
  /** Records read, the invalid ones included. */
  readonly rows: number
  readonly inserted: number
  readonly updated: number
  readonly unchanged: number
  readonly rejected: number
  readonly written: boolean
  readonly errors: readonly ImportError[]
  /** True when `errors` include a problem of the file as a whole: nothing is written whatever the options. */
  readonly fileRejected: boolean
  readonly warnings: readonly ImportWarning[]
  /** Transactions whose status/refund moved forward: their issued receipts need cancelling. */
  readonly changedTransactionIds: readonly string[]
}

export interface ImportOptions {
  readonly skipInvalid?: boolean
  readonly keepRejects?: boolean
  readonly nowMs: number
  /** Rows read so far; phase `writing` once the whole file is read (checks and merge follow). */
  readonly onProgress?: (rows: number, phase: 'reading' | 'writing') => void
  /** At most this many errors are kept in memory and reported (the count stays exact). */
  readonly maxErrors?: number
  /** Read the file in this encoding instead of detecting it. */
  readonly encoding?: Encoding
  /** An unknown column is an error of the file (nothing written), not a warning. */
  readonly strictColumns?: boolean
}

/** What `keepRejects` adds to the result: the rejected records, and the CSV header to write above them. */
export interface ImportRejects {
  readonly rejects: RejectedRecord[]
  readonly header?: readonly string[]
}

const BATCH = 1_000
const IMMUTABLE = [
  'merchant_id',
  'provider',
  'payment_ref',
  'order_id',
  'order_name',
  'method',
  'amount',
  'tax_free_amount',
  'service_fee',
  'paid_at',
  'identifier_type',
  'purpose',
] as const

export async function importTransactions(db: Db, dataKeys: DataKeys, path: string, opts: ImportOptions): Promise<ImportResult & ImportRejects> {
  const format = formatOf(path)
  await assertReadable(path)
  const encoding = opts.encoding ?? (await detectEncoding(path))
  const maxErrors = opts.maxErrors ?? 10_000
  const errors: ImportError[] = []
  let errorCount = 0
  let fileRejected = false
  const badLines = new Set<number>()
  // Why each rejected line was rejected, for the rejects file (kept only when it is asked for).
  const reasons = new Map<number, string[]>()
  const addError = (e: ImportError, file = false) => {
    errorCount++
    if (file) fileRejected = true
    else badLines.add(e.line)
    if (errors.length < maxErrors) errors.push(e)
    if (opts.keepRejects && !file) {
      const list = reasons.get(e.line) ?? []
      if (!list.length) reasons.set(e.line, list)
      list.push(`line ${e.line}: ${e.field}: ${e.message}`)
    }
  }
  const rawByLine = new Map<number, string>()
  const warnings: ImportWarning[] = []
  const seenColumns = new Set<string>()
  /** A column not in the import format: a warning, or under strictColumns an error of the file. */
  const checkColumns = (columns: readonly string[], line: number) => {
    columns.forEach((name, i) => {
      if (seenColumns.has(name)) return
      seenColumns.add(name)
      if (isKnownColumn(name)) return
      const shown = unknownColumnMessage(name, format === 'csv' ? i + 1 : undefined)
      if (opts.strictColumns) addError({ line, field: shown.field, message: `${shown.message} (--strict-columns refuses unknown columns)` }, true)
      else warnings.push({ line, ...shown })
    })
  }
  let header: readonly string[] | undefined
  let rows = 0

  let summary = { inserted: 0, updated: 0, unchanged: 0, changed: [] as string[] }
  let written = false

  try {
    await db.transaction().execute(async (trx) => {
      await sql`
        CREATE TEMP TABLE import_staging (
          line integer NOT NULL,
          raw_enc text,
          transaction_id text NOT NULL, merchant_id text NOT NULL, provider text NOT NULL,
          payment_ref text, order_id text, order_name text, method text NOT NULL,
          amount bigint NOT NULL, tax_free_amount bigint NOT NULL, service_fee bigint NOT NULL,
          paid_at timestamptz NOT NULL, business_date date NOT NULL,
          identifier_type text, identifier_masked text, pii_enc text, data_key_id text, identifier_search text,
          purpose text NOT NULL, status text NOT NULL, refunded_amount bigint NOT NULL, content_hash text NOT NULL,
          content_hashes text[] NOT NULL, unique_ref text, unique_ref_field text
        ) ON COMMIT DROP`.execute(trx)

      let batch: Record<string, unknown>[] = []
      const flush = async () => {
        if (!batch.length) return
        await trx
          .insertInto('import_staging' as never)
          .values(batch as never)
          .execute()
        batch = []
      }
      for await (const ev of readRows(path, IMPORT_REQUIRED_COLUMNS, encoding)) {
        if (ev.kind === 'header') {
          header = ev.columns
          checkColumns(ev.columns, 1)
          continue
        }
        if (ev.kind === 'error') {
          if (!ev.file) rows++
          addError({ line: ev.line, field: ev.field, message: ev.message }, ev.file)
          if (opts.keepRejects && ev.raw !== undefined) rawByLine.set(ev.line, ev.raw)
          continue
        }
        rows++
        if (rows % 1_000 === 0) opts.onProgress?.(rows, 'reading')
        if (format === 'jsonl') checkColumns(Object.keys(ev.row.fields), ev.row.line)
        const v = validateTransaction(ev.row.fields, { nowMs: opts.nowMs })
        if (!v.ok) {
          for (const e of v.errors) addError({ line: ev.row.line, field: e.field, message: e.message })
          if (opts.keepRejects) rawByLine.set(ev.row.line, ev.row.raw)
          continue
        }
        batch.push(stagingRow(v.value, ev.row.line, dataKeys, opts.keepRejects ? ev.row.raw : undefined))
        if (batch.length >= BATCH) await flush()
      }
      await flush()
      if (rows === 0 && !fileRejected) {
        throw new FileFormatError(
          0,
          'file',
          format === 'jsonl'
            ? `${path} holds no records (an empty file is not an import)`
            : header
              ? `${path} has a header row but no records (an empty file is not an import)`
              : `${path} is empty: no header row and no records`,
        )
      }
      opts.onProgress?.(rows, 'writing')

      // Concurrent imports check and merge one after the other, so two of them cannot both pass the
      // uniqueness checks with the same payment_ref; reading and staging still run side by side.
      await sql`SELECT pg_advisory_xact_lock(hashtext('cash-receipts:import-merge'))`.execute(trx)
      for (const e of await fileWideErrors(trx)) addError(e)

      if (fileRejected || (errorCount > 0 && !opts.skipInvalid)) throw new Rollback()
      if (opts.keepRejects && badLines.size) {
        const staged = await sql<{ line: number; raw_enc: string }>`SELECT line, raw_enc FROM import_staging WHERE line = ANY(${[...badLines]}::int[]) ORDER BY line`.execute(trx)
        for (const r of staged.rows) rawByLine.set(r.line, decryptText(r.raw_enc, dataKeys, 'import-raw'))
      }
      await sql`DELETE FROM import_staging WHERE line = ANY(${[...badLines]}::int[])`.execute(trx)
      summary = await merge(trx)
      written = true
    })
  } catch (err) {
    if (!(err instanceof Rollback)) throw err
  }

  errors.sort((a, b) => a.line - b.line || a.field.localeCompare(b.field))
  const rejects = [...rawByLine].sort(([a], [b]) => a - b).map(([line, raw]) => ({ line, raw, reason: (reasons.get(line) ?? []).join('; ') }))
  return {
    file: path,
    format,
    encoding,
    rows,
    inserted: summary.inserted,
    updated: summary.updated,
    unchanged: summary.unchanged,
    rejected: badLines.size,
    written,
    errors,
    fileRejected,
    warnings,
    changedTransactionIds: summary.changed,
    rejects,
    ...(format === 'csv' && header ? { header: header.filter((c) => c !== REJECT_REASON_COLUMN) } : {}),
  }
}

class Rollback extends Error {}

async function assertReadable(path: string) {
  try {
    const fh = await open(path, 'r')
    await fh.close()
  } catch (err) {
    throw new FileFormatError(0, 'file', `cannot open ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

function stagingRow(t: ValidTransaction, line: number, keys: DataKeys, raw?: string): Record<string, unknown> {
  const pii = {
    identifier: t.identifier?.digits,
    buyerName: t.buyerName ?? undefined,
    buyerEmail: t.buyerEmail ?? undefined,
    buyerTel: t.buyerTel ?? undefined,
  }
  const hasPii = Object.values(pii).some((v) => v !== undefined)
  const enc = hasPii ? encryptPii(pii, keys, t.transactionId) : null
  const content: HashedContent = {
    merchantId: t.merchantId,
    provider: t.provider,
    paymentRef: t.paymentRef,
    orderId: t.orderId,
    orderName: t.orderName,
    method: t.method,
    amount: t.amount,
    taxFreeAmount: t.taxFreeAmount,
    serviceFee: t.serviceFee,
    paidAt: t.paidAt,
    identifierDigits: t.identifier?.digits ?? null,
    identifierType: t.identifier?.type ?? null,
    purpose: t.purpose,
    buyerName: t.buyerName ?? null,
    buyerEmail: t.buyerEmail ?? null,
    buyerTel: t.buyerTel ?? null,
  }
  return {
    line,
    raw_enc: raw === undefined ? null : encryptText(raw, keys, 'import-raw').value,
    transaction_id: t.transactionId,
    merchant_id: t.merchantId,
    provider: t.provider,
    payment_ref: t.paymentRef,
    order_id: t.orderId,
    order_name: t.orderName,
    method: t.method,
    amount: t.amount,
    tax_free_amount: t.taxFreeAmount,
    service_fee: t.serviceFee,
    paid_at: t.paidAt,
    business_date: t.businessDate,
    identifier_type: t.identifier?.type ?? null,
    identifier_masked: t.identifier ? maskIdentifier(t.identifier.digits, t.identifier.type) : null,
    pii_enc: enc?.value ?? null,
    data_key_id: enc?.keyId ?? null,
    // The buyer's keyed hash for search (never the identifier); the self-issue number names no buyer.
    identifier_search: t.identifier && t.identifier.type !== 'self' ? searchHash(t.identifier.digits, keys) : null,
    purpose: t.purpose,
    status: t.status,
    refunded_amount: t.refundedAmount,
    content_hash: contentHash(content, keys),
    content_hashes: contentHashes(content, keys),
    ...uniqueRef(t),
  }
}

/**
 * What must be unique per provider: the provider key where the merchant's data supplies it (PortOne
 * imp_uid / merchant_uid, V2 paymentId; the receipts table holds one issue per provider and key), else
 * the payment_ref, the provider's payment id, since one payment gets one receipt. PaySsam and NTS keys
 * are digests of the transaction id, unique with it.
 */
function uniqueRef(t: ValidTransaction): { unique_ref: string | null; unique_ref_field: string | null } {
  const source = providerKeySource(t)
  if (source !== 'digest') return { unique_ref: deriveProviderKeys(t).providerKey, unique_ref_field: source }
  return t.paymentRef ? { unique_ref: t.paymentRef, unique_ref_field: 'payment_ref' } : { unique_ref: null, unique_ref_field: null }
}

/**
 * `uniqueRef` of a row already in cash_transactions (rows may have been written directly). It mirrors
 * providerKeySource / deriveProviderKeys; a test holds the two to the same answers. The index
 * cash_transactions_unique_ref (migration 0105) is on this exact expression: change both together.
 */
export const storedUniqueRef = (alias: string) => sql`CASE ${sql.ref(alias + '.provider')}
    WHEN 'portone' THEN CASE WHEN ${sql.ref(alias + '.payment_ref')} <> '' THEN ${sql.ref(alias + '.payment_ref')}
      ELSE coalesce(${sql.ref(alias + '.order_id')}, ${sql.ref(alias + '.transaction_id')}) END
    WHEN 'portone-v2' THEN coalesce(${sql.ref(alias + '.payment_ref')}, ${sql.ref(alias + '.transaction_id')})
    ELSE nullif(${sql.ref(alias + '.payment_ref')}, '') END`

const REF_HINT: Record<string, string> = {
  payment_ref: "a payment_ref is the provider's payment id and can appear once per provider",
  order_id: 'PortOne external receipts use order_id as merchant_uid, which must be unique',
  transaction_id: 'without a payment_ref (or, for portone, an order_id) the transaction id is the PortOne key',
}

type Trx = Parameters<Parameters<ReturnType<Db['transaction']>['execute']>[0]>[0]

async function fileWideErrors(trx: Trx): Promise<ImportError[]> {
  const out: ImportError[] = []
  const unknownMerchant = await sql<{ line: number; merchant_id: string }>`
    SELECT s.line, s.merchant_id FROM import_staging s
    WHERE NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = s.merchant_id)`.execute(trx)
  for (const r of unknownMerchant.rows) {
    // Not echoed: a misplaced column may put an identifier or a secret there.
    out.push({ line: r.line, field: 'merchant_id', message: 'is not a configured merchant (check MERCHANTS_FILE)' })
  }
  const dupes = await sql<{ line: number; first: number }>`
    SELECT line, first FROM (
      SELECT line, min(line) OVER (PARTITION BY transaction_id) AS first FROM import_staging
    ) d WHERE line <> first`.execute(trx)
  for (const r of dupes.rows) {
    out.push({ line: r.line, field: 'transaction_id', message: `appears twice in this file (first at line ${r.first})` })
  }
  // One provider key (or payment id) per provider: the first row of the file keeps it, later rows of
  // other transactions are reported, and so is any row whose key a stored transaction already has.
  const refClash = await sql<{ line: number; field: string; provider: string; other: string; other_line: number | null }>`
    SELECT line, unique_ref_field AS field, provider, first_tx AS other, first_line AS other_line FROM (
      SELECT line, transaction_id, unique_ref_field, provider,
        first_value(line) OVER w AS first_line, first_value(transaction_id) OVER w AS first_tx
      FROM import_staging WHERE unique_ref IS NOT NULL
      WINDOW w AS (PARTITION BY provider, unique_ref ORDER BY line)
    ) d WHERE transaction_id <> first_tx
    UNION ALL
    SELECT DISTINCT ON (s.line) s.line, s.unique_ref_field, s.provider, c.transaction_id, NULL
    FROM import_staging s JOIN cash_transactions c
      ON c.provider = s.provider AND ${storedUniqueRef('c')} = s.unique_ref AND c.transaction_id <> s.transaction_id
    WHERE s.unique_ref IS NOT NULL
    ORDER BY 1, 5 NULLS LAST`.execute(trx)
  const reported = new Set<number>()
  for (const r of refClash.rows) {
    if (reported.has(r.line)) continue
    reported.add(r.line)
    const where = r.other_line === null ? 'imported before' : `line ${r.other_line}`
    const what = r.provider === 'portone' || r.provider === 'portone-v2' ? 'receipt key' : 'payment id'
    out.push({ line: r.line, field: r.field, message: `already used by transaction ${r.other} (${where}) as its ${r.provider} ${what}; ${REF_HINT[r.field]}` })
  }
  const conflicts = await sql<Record<string, unknown> & { line: number }>`
    SELECT s.line, NOT (c.content_hash = ANY(s.content_hashes)) AS content_differs,
      ${sql.join(IMMUTABLE.map((col) => sql`s.${sql.ref(col)} IS DISTINCT FROM c.${sql.ref(col)} AS ${sql.ref('d_' + col)}`))},
      c.status AS old_status, s.status AS new_status, c.refunded_amount AS old_refund, s.refunded_amount AS new_refund
    FROM import_staging s JOIN cash_transactions c USING (transaction_id)
    WHERE NOT (c.content_hash = ANY(s.content_hashes)) OR (c.status = 'cancelled' AND s.status = 'completed') OR s.refunded_amount < c.refunded_amount`.execute(trx)
  for (const r of conflicts.rows) {
    if (r.content_differs) {
      const cols = IMMUTABLE.filter((c) => r['d_' + c])
      out.push({
        line: r.line,
        field: cols[0] ?? 'identifier',
        message: `conflicts with the transaction imported before (${cols.length ? cols.join(', ') : 'identifier or buyer details'} differ); a transaction id cannot be reused for different data`,
      })
    } else if (r.old_status === 'cancelled' && r.new_status === 'completed') {
      out.push({ line: r.line, field: 'status', message: 'was cancelled in an earlier import and cannot go back to completed' })
    } else {
      out.push({ line: r.line, field: 'refunded_amount', message: `is ${r.new_refund}, below the ${r.old_refund} imported before; refunds only grow` })
    }
  }
  return out
}

async function merge(trx: Trx) {
  const inserted = await sql<{ transaction_id: string }>`
    INSERT INTO cash_transactions (transaction_id, merchant_id, provider, payment_ref, order_id, order_name, method, amount,
      tax_free_amount, service_fee, paid_at, business_date, identifier_type, identifier_masked, pii_enc, data_key_id,
      identifier_search, purpose, status, refunded_amount, content_hash)
    SELECT transaction_id, merchant_id, provider, payment_ref, order_id, order_name, method, amount,
      tax_free_amount, service_fee, paid_at, business_date, identifier_type, identifier_masked, pii_enc, data_key_id,
      identifier_search, purpose, status, refunded_amount, content_hash
    FROM import_staging
    ON CONFLICT (transaction_id) DO NOTHING
    RETURNING transaction_id`.execute(trx)
  const updated = await sql<{ transaction_id: string }>`
    UPDATE cash_transactions c SET status = s.status, refunded_amount = s.refunded_amount, updated_at = now()
    FROM import_staging s
    WHERE s.transaction_id = c.transaction_id AND (s.status <> c.status OR s.refunded_amount <> c.refunded_amount)
    RETURNING c.transaction_id`.execute(trx)
  // A transaction stored before search hashes existed (or hashed under an older key) gets its hash
  // when it is imported again: its content matched above, so the identifier is the same one.
  await sql`
    UPDATE cash_transactions c SET identifier_search = s.identifier_search
    FROM import_staging s
    WHERE s.transaction_id = c.transaction_id AND s.identifier_search IS NOT NULL AND c.identifier_search IS DISTINCT FROM s.identifier_search`.execute(trx)
  const total = await sql<{ n: number }>`SELECT count(*)::int AS n FROM import_staging`.execute(trx)
  const n = total.rows[0]?.n ?? 0
  return {
    inserted: inserted.rows.length,
    updated: updated.rows.length,
    unchanged: n - inserted.rows.length - updated.rows.length,
    changed: updated.rows.map((r) => r.transaction_id),
  }
}
