/**
 * `cash-receipts import <file>`: completed cash transactions from CSV or JSON Lines, all-or-nothing
 * unless --skip-invalid; a re-import that cancels or refunds an issued receipt requests its
 * cancellation (at a provider that cancels only in full, a partial refund cancels in full and re-issues
 * what is still paid). Exit 3: written, but a refund needs a person (listed as NEEDS ATTENTION).
 *
 * The file may be UTF-8 or CP949/EUC-KR (detected, or forced with --encoding); the encoding used is
 * printed. Unknown columns are warned about (an error under --strict-columns). The --rejects file
 * holds every rejected record as it was, plus a `reject_reason` column, so it can be fixed and
 * imported again as it is.
 */
import { chmod, open, stat, writeFile } from 'node:fs/promises'
import { parse as parseCsv } from 'csv-parse/sync'
import { basename } from 'node:path'
import { csvRow } from '../../domain/index.ts'
import { osActor } from '../../db/audit.ts'
import { Option, type Command } from 'commander'
import { printJson } from '../output.ts'
import { createProgress } from '../progress.ts'
import { REJECT_REASON_COLUMN } from '../../import/columns.ts'
import type { RejectedRecord } from '../../import/import-transactions.ts'
import type { CliContext } from '../run.ts'

export function registerImport(program: Command, { withApp }: CliContext): void {
  program
    .command('import')
    .description(
      'import completed cash transactions from CSV or JSON Lines (all-or-nothing unless --skip-invalid); exit 2: invalid rows, exit 3: written but a refund needs attention',
    )
    .argument('<file>', 'a .csv (header row; UTF-8 or CP949/EUC-KR) or .jsonl file')
    .option('--skip-invalid', 'write the valid rows and reject the invalid ones')
    .option('--rejects <file>', 'write rejected records to this file (same format as the input, plus a reject_reason column)')
    .addOption(new Option('--encoding <name>', 'read the file in this encoding instead of detecting it (UTF-8, else CP949)').choices(['utf-8', 'cp949', 'euc-kr']))
    .option('--strict-columns', 'refuse the file (nothing written) when it has a column the import format does not know')
    .option('--json', 'print the result as JSON')
    .action((file: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const progress = createProgress('import')
        const estimate = await estimateRecords(file)
        const result = await app.importFile(file, {
          skipInvalid: Boolean(o.skipInvalid),
          keepRejects: Boolean(o.rejects),
          encoding: o.encoding,
          strictColumns: Boolean(o.strictColumns),
          nowMs: Date.now(),
          onProgress: (n, phase) =>
            phase === 'reading' ? progress.update(n, estimate === undefined ? undefined : Math.max(n, estimate), 'rows read') : progress.finish('read; checking and writing…'),
        })
        const { rejects, header, ...summary } = result
        if (summary.written) {
          await app.audit({
            actor: osActor(),
            action: 'import',
            selectors: { file: basename(file), format: summary.format, skip_invalid: Boolean(o.skipInvalid) },
            counts: { rows: summary.rows, inserted: summary.inserted, updated: summary.updated, unchanged: summary.unchanged, rejected: summary.rejected },
          })
        }
        if (o.rejects && rejects.length) {
          await writeRejects(o.rejects, result.format === 'csv' ? (header ?? []) : undefined, rejects)
          process.stderr.write(`warning: ${o.rejects} holds the rejected records with their personal data in plaintext (mode 0600); delete it once they are fixed\n`)
        }
        // Cancellation requests for transactions that moved to cancelled/refunded after issuance.
        const cancels = summary.written ? await app.cancelChanged(summary.changedTransactionIds) : []
        if (o.json) {
          printJson({ ...summary, cancellations: cancels })
        } else {
          process.stderr.write(`read as ${ENCODING_NAMES[summary.encoding]} (${o.encoding ? '--encoding' : 'detected'})\n`)
          for (const w of summary.warnings) process.stderr.write(`warning: line ${w.line}: ${w.message}\n`)
          for (const e of summary.errors) process.stderr.write(`line ${e.line}: ${e.field}: ${e.message}\n`)
          process.stderr.write(`${summaryLine(summary)}\n`)
          for (const c of cancels) {
            process.stderr.write(`${c.action === 'needs_attention' ? 'NEEDS ATTENTION ' : ''}${c.transaction_id}: ${c.result}\n`)
          }
        }
        if (summary.fileRejected || (summary.errors.length > 0 && !o.skipInvalid)) return 2
        // Written, but a refund could not be receipted: loud, for a person (the receipt is flagged).
        return cancels.some((c) => c.action === 'needs_attention') ? 3 : 0
      }),
    )
}

const ENCODING_NAMES = { 'utf-8': 'UTF-8', cp949: 'CP949 (EUC-KR)', 'euc-kr': 'EUC-KR (as CP949)' } as const

/** `1 row`, `0 rows`, `2 rows`. */
export const rowsText = (n: number): string => `${n} ${n === 1 ? 'row' : 'rows'}`

/** The last line of the human output: what was written, or why nothing was. Right for 0, 1 and many. */
export function summaryLine(s: { written: boolean; fileRejected: boolean; rows: number; inserted: number; updated: number; unchanged: number; rejected: number }): string {
  if (s.written) return `imported ${s.rows - s.rejected} of ${rowsText(s.rows)}: ${s.inserted} new, ${s.updated} updated, ${s.unchanged} unchanged, ${s.rejected} rejected`
  if (s.fileRejected) return `nothing written: the file cannot be imported as it is (${rowsText(s.rows)} read; fix what is named above and import it again)`
  const verb = s.rejected === 1 ? 'is' : 'are'
  return `nothing written: ${s.rejected} of ${rowsText(s.rows)} ${verb} invalid (fix ${s.rejected === 1 ? 'it' : 'them'}, or use --skip-invalid)`
}

/**
 * Roughly how many records a file holds, from its size and the average line length of its first
 * 256 KiB (exact for smaller files): the import's progress bar gets a total, hence an ETA.
 */
async function estimateRecords(file: string): Promise<number | undefined> {
  try {
    const { size } = await stat(file)
    const fh = await open(file, 'r')
    try {
      const buf = Buffer.alloc(Math.min(size, 256 * 1024))
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
      let lines = 0
      for (let i = 0; i < bytesRead; i++) if (buf[i] === 0x0a) lines++
      if (bytesRead === size) return Math.max(0, lines + (buf[bytesRead - 1] === 0x0a ? 0 : 1) - (/\.csv$/i.test(file) ? 1 : 0))
      return lines ? Math.round(size / (bytesRead / lines)) : undefined
    } finally {
      await fh.close()
    }
  } catch {
    return undefined
  }
}

/**
 * The rejected records in the input's format, readable by the owner only (they hold identifiers in
 * plaintext). CSV records are re-written field by field through the one CSV writer, which neutralises
 * formula prefixes; the importer undoes that, so the file re-imports as it was.
 */
async function writeRejects(path: string, header: readonly string[] | undefined, rejects: readonly RejectedRecord[]): Promise<void> {
  const text = header === undefined ? rejects.map(jsonlReject).join('\n') + '\n' : csvRejects(header, rejects)
  await writeFile(path, text, { mode: 0o600 })
  await chmod(path, 0o600) // an existing file keeps its mode on write
}

/**
 * CSV rejects: UTF-8 with a BOM (Excel then shows Korean text, whatever the input's encoding), the
 * input's header without any old reject_reason, and reject_reason last. A record shorter than the
 * header is padded so the reason stays in its column.
 */
function csvRejects(header: readonly string[], rejects: readonly RejectedRecord[]): string {
  const old = header.indexOf(REJECT_REASON_COLUMN)
  const columns = header.filter((_, i) => i !== old)
  const lines = [csvRow([...columns, REJECT_REASON_COLUMN])]
  for (const r of rejects) {
    let fields: string[]
    try {
      fields = ((parseCsv(r.raw, { relax_column_count: true }) as string[][])[0] ?? []).filter((_, i) => i !== old)
    } catch {
      // A record csv-parse cannot read (broken quoting): one neutralised field, still inert.
      fields = [r.raw]
    }
    while (fields.length < columns.length) fields.push('')
    lines.push(csvRow([...fields, r.reason]))
  }
  return `\uFEFF${lines.join('\n')}\n`
}

/** JSON Lines rejects: the object with `reject_reason` set; a line that is not a JSON object stays as it was. */
function jsonlReject(r: RejectedRecord): string {
  try {
    const value = JSON.parse(r.raw) as unknown
    if (value && typeof value === 'object' && !Array.isArray(value)) return JSON.stringify({ ...value, [REJECT_REASON_COLUMN]: r.reason })
  } catch {
    // not JSON: written as it was read
  }
  return r.raw
}
