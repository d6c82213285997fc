/**
 * `cash-receipts import <file>`: completed cash transactions from CSV or JSON Lines, all-or-nothing
 * unless --skip-invalid; a re-import that cancels or refunds an issued receipt requests its
 * cancellation (at a provider that cancels only in full, a partial refund cancels in full and re-issues
 * what is still paid). Exit 3: written, but a refund needs a person (listed as NEEDS ATTENTION).
 */
import { chmod, open, stat, writeFile } from 'node:fs/promises'
import { parse as parseCsv } from 'csv-parse/sync'
import { basename } from 'node:path'
import { csvRow } from '../../domain/index.ts'
import { osActor } from '../../db/audit.ts'
import type { Command } from 'commander'
import { printJson } from '../output.ts'
import { createProgress } from '../progress.ts'
import type { CliContext } from '../run.ts'

export function registerImport(program: Command, { withApp }: CliContext): void {
  program
    .command('import')
    .description('import completed cash transactions from CSV or JSON Lines (all-or-nothing unless --skip-invalid); exit 2: invalid rows, exit 3: written but a refund needs attention')
    .argument('<file>', 'a .csv (header row, UTF-8) or .jsonl file')
    .option('--skip-invalid', 'write the valid rows and reject the invalid ones')
    .option('--rejects <file>', 'write rejected records to this file (same format as the input)')
    .option('--json', 'print the result as JSON')
    .action((file: string, o) =>
      withApp(async (app) => {
        await app.prepareDatabase()
        const progress = createProgress('import')
        const estimate = await estimateRecords(file)
        const result = await app.importFile(file, {
          skipInvalid: Boolean(o.skipInvalid),
          keepRejects: Boolean(o.rejects),
          nowMs: Date.now(),
          onProgress: (n, phase) =>
            phase === 'reading'
              ? progress.update(n, estimate === undefined ? undefined : Math.max(n, estimate), 'rows read')
              : progress.finish('read; checking and writing…'),
        })
        const { rejectsRaw, ...summary } = result
        if (summary.written) {
          await app.audit({
            actor: osActor(),
            action: 'import',
            selectors: { file: basename(file), format: summary.format, skip_invalid: Boolean(o.skipInvalid) },
            counts: { rows: summary.rows, inserted: summary.inserted, updated: summary.updated, unchanged: summary.unchanged, rejected: summary.rejected },
          })
        }
        if (o.rejects && rejectsRaw.length) {
          await writeRejects(o.rejects, result.format === 'csv' ? await csvHeader(file) : undefined, rejectsRaw)
          process.stderr.write(
            `warning: ${o.rejects} holds the rejected records with their personal data in plaintext (mode 0600); delete it once they are fixed\n`,
          )
        }
        // Cancellation requests for transactions that moved to cancelled/refunded after issuance.
        const cancels = summary.written ? await app.cancelChanged(summary.changedTransactionIds) : []
        if (o.json) {
          printJson({ ...summary, cancellations: cancels })
        } else {
          for (const e of summary.errors) process.stderr.write(`line ${e.line}: ${e.field}: ${e.message}\n`)
          process.stderr.write(
            summary.written
              ? `imported ${summary.rows} rows: ${summary.inserted} new, ${summary.updated} updated, ${summary.unchanged} unchanged, ${summary.rejected} rejected\n`
              : `nothing written: ${summary.rejected} of ${summary.rows} rows invalid (fix them, or use --skip-invalid)\n`,
          )
          for (const c of cancels) {
            process.stderr.write(`${c.action === 'needs_attention' ? 'NEEDS ATTENTION ' : ''}${c.transaction_id}: ${c.result}\n`)
          }
        }
        if (summary.errors.length > 0 && !o.skipInvalid) return 2
        // Written, but a refund could not be receipted: loud, for a person (the receipt is flagged).
        return cancels.some((c) => c.action === 'needs_attention') ? 3 : 0
      }),
    )
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
async function writeRejects(path: string, csvHeaderLine: string | undefined, raws: readonly string[]): Promise<void> {
  const lines =
    csvHeaderLine === undefined
      ? raws
      : [csvHeaderLine, ...raws].map((raw) => {
          try {
            const [fields] = parseCsv(raw, { relax_column_count: true }) as string[][]
            return csvRow(fields ?? [])
          } catch {
            // A record csv-parse cannot read (broken quoting): one neutralised field, still inert.
            return csvRow([raw])
          }
        })
  await writeFile(path, lines.join('\n') + '\n', { mode: 0o600 })
  await chmod(path, 0o600) // an existing file keeps its mode on write
}

async function csvHeader(file: string): Promise<string> {
  const { createReadStream } = await import('node:fs')
  const { createInterface } = await import('node:readline')
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }) })
  for await (const line of rl) {
    rl.close()
    return line.replace(/^\uFEFF/, '')
  }
  return ''
}
