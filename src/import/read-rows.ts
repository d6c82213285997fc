/**
 * Streams rows out of an import file (CSV with header, or JSON Lines) with their line numbers.
 * Memory stays bounded by one chunk whatever the file size.
 *
 * Encodings: UTF-8 (a BOM is allowed) or CP949, the superset of EUC-KR that Korean Excel and most
 * Korean back offices export. `detectEncoding` reads the file once before the import: valid UTF-8
 * throughout → UTF-8, else CP949 (a file that is valid UTF-8 is practically never meant as CP949:
 * Hangul in CP949 is not valid UTF-8). A byte sequence that the chosen encoding cannot decode is
 * an error naming its line, never a replacement character in a stored field.
 */
import { createReadStream } from 'node:fs'
import { Transform, type TransformCallback } from 'node:stream'
import { parse } from 'csv-parse'
import iconv from 'iconv-lite'
import { restoreFormula } from '../domain/index.ts'

export interface RawRow {
  /** 1-based line number where the record starts (the header is line 1 in CSV). */
  readonly line: number
  /** CSV fields are strings; a JSON Lines object's values can be anything JSON holds. */
  readonly fields: Readonly<Record<string, unknown>>
  /** The record as it appeared in the file, for --rejects. */
  readonly raw: string
}

export type RowEvent =
  | { readonly kind: 'row'; readonly row: RawRow }
  /** CSV only, before the first row: the header's column names as written (trimmed). */
  | { readonly kind: 'header'; readonly columns: readonly string[] }
  /**
   * `raw` is set when the error concerns one record only (the rest of the file is still read);
   * `file` when the file as a whole cannot be imported as it is (a required column missing).
   */
  | { readonly kind: 'error'; readonly line: number; readonly field: string; readonly message: string; readonly raw?: string; readonly file?: true }

export class FileFormatError extends Error {
  override name = 'FileFormatError'
  readonly line: number
  readonly field: string
  constructor(line: number, field: string, message: string) {
    super(message)
    this.line = line
    this.field = field
  }
}

export function formatOf(path: string): 'csv' | 'jsonl' {
  if (/\.csv$/i.test(path)) return 'csv'
  if (/\.(jsonl|ndjson)$/i.test(path)) return 'jsonl'
  throw new FileFormatError(0, 'file', `unsupported file type "${path}": use .csv or .jsonl`)
}

/** What `--encoding` accepts; `euc-kr` is decoded as CP949, its superset. */
export const ENCODINGS = ['utf-8', 'cp949', 'euc-kr'] as const
export type Encoding = (typeof ENCODINGS)[number]

/**
 * The file's encoding: UTF-8 when every byte is valid UTF-8 (with or without a BOM), else CP949.
 * Reads the whole file (bounded memory) but stops at the first byte that is not UTF-8. A UTF-16
 * file (Excel's "Unicode text") is refused: it is tab-separated text, not a CSV.
 */
export async function detectEncoding(path: string): Promise<'utf-8' | 'cp949'> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let first = true
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
      if (first) {
        first = false
        if (chunk.length >= 2 && ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff))) {
          throw new FileFormatError(1, 'file', 'the file is UTF-16 (Excel "Unicode text"); save it as "CSV UTF-8" or "CSV" and import that')
        }
        // A UTF-8 BOM says what the file is: a bad byte later is reported as bad UTF-8, with its line.
        if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) return 'utf-8'
      }
      decoder.decode(chunk, { stream: true })
    }
    decoder.decode()
    return 'utf-8'
  } catch (err) {
    if (err instanceof FileFormatError) throw err
    if (err instanceof TypeError) return 'cp949'
    throw err
  }
}

/**
 * Decodes CP949 (EUC-KR) across chunk boundaries with iconv-lite. iconv-lite turns bytes that are
 * not CP949 into U+FFFD, which CP949 itself cannot encode: one in the output is a decoding error,
 * reported with its line.
 */
class Cp949Decoder extends Transform {
  readonly #decoder = iconv.getDecoder('cp949')
  readonly #label: string
  #line = 1
  constructor(label: string) {
    super()
    this.#label = label
  }
  #push(text: string, cb: TransformCallback): void {
    const bad = text.indexOf('\uFFFD')
    if (bad !== -1) {
      const line = this.#line + countNewlines(text.slice(0, bad))
      cb(new FileFormatError(line, 'file', `line ${line} is not valid ${this.#label}; re-save the file as UTF-8 ("CSV UTF-8" in Excel)`))
      return
    }
    this.#line += countNewlines(text)
    cb(null, text || undefined)
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#push(this.#decoder.write(chunk), cb)
  }
  override _flush(cb: TransformCallback): void {
    this.#push(this.#decoder.end() ?? '', cb)
  }
}

function countNewlines(text: string): number {
  let n = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++
  return n
}

/** Validates UTF-8 across chunk boundaries; fails with the line number of the first bad byte. */
class Utf8Guard extends Transform {
  readonly #decoder = new TextDecoder('utf-8', { fatal: true })
  #line = 1
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      const text = this.#decoder.decode(chunk, { stream: true })
      for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.#line++
      cb(null, text)
    } catch {
      const line = this.#line + firstBadLine(chunk)
      cb(new FileFormatError(line, 'file', `line ${line} is not valid UTF-8; re-save the file as UTF-8, or import it with --encoding cp949 if it is an EUC-KR/CP949 export`))
    }
  }
  override _flush(cb: TransformCallback): void {
    try {
      const rest = this.#decoder.decode()
      cb(null, rest || undefined)
    } catch {
      cb(new FileFormatError(this.#line, 'file', `the file ends in the middle of a UTF-8 character`))
    }
  }
}

/** Index (0-based) of the first line in a chunk that is not valid UTF-8 on its own. */
function firstBadLine(chunk: Buffer): number {
  let start = 0
  for (let i = 0; ; i++) {
    const nl = chunk.indexOf(0x0a, start)
    const end = nl === -1 ? chunk.length : nl
    try {
      // stream: true tolerates a character split at the end of the chunk.
      new TextDecoder('utf-8', { fatal: true }).decode(chunk.subarray(start, end), { stream: nl === -1 })
    } catch {
      return i
    }
    if (nl === -1) return i
    start = nl + 1
  }
}

export async function* readRows(path: string, requiredColumns: readonly string[], encoding: Encoding = 'utf-8'): AsyncGenerator<RowEvent> {
  const format = formatOf(path)
  const bytes = createReadStream(path, { highWaterMark: 256 * 1024 })
  const decoder = encoding === 'utf-8' ? new Utf8Guard() : new Cp949Decoder(encoding === 'cp949' ? 'CP949' : 'EUC-KR/CP949')
  bytes.on('error', (err) => decoder.destroy(err))
  const source = bytes.pipe(decoder)
  if (format === 'csv') yield* csvRows(source, requiredColumns)
  else yield* jsonlRows(source)
}

async function* csvRows(source: NodeJS.ReadableStream, requiredColumns: readonly string[]): AsyncGenerator<RowEvent> {
  let header: string[] | undefined
  const parser = parse({
    bom: true,
    columns: (h: string[]) => {
      header = h.map((c) => c.trim())
      return header
    },
    info: true,
    raw: true,
    skip_empty_lines: true,
    relax_column_count: false,
    trim: true,
  })
  source.on('error', (err) => parser.destroy(err))
  source.pipe(parser)
  let checkedHeader = false
  try {
    for await (const rec of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number; raw?: string }; raw: string }>) {
      if (!checkedHeader) {
        checkedHeader = true
        yield { kind: 'header', columns: header! }
        const missing = requiredColumns.filter((c) => !header!.includes(c))
        if (missing.length) {
          yield { kind: 'error', line: 1, field: missing[0]!, message: `required column missing from the header (${missing.join(', ')})`, file: true }
          return
        }
      }
      // info.lines is the line where the record ends; multi-line quoted fields start earlier.
      const startLine = rec.info.lines - (rec.raw.match(/\n/g)?.length ?? 0) + (rec.raw.endsWith('\n') ? 1 : 0)
      // A field our CSV writer neutralised ('=…, '+…) comes back as it was written.
      const fields = Object.fromEntries(Object.entries(rec.record).map(([k, v]) => [k, restoreFormula(v)]))
      yield { kind: 'row', row: { line: startLine, fields, raw: rec.raw.replace(/\r?\n$/, '') } }
    }
  } catch (err) {
    // Reading stops here, so the file cannot be imported in part: the rest of it was never read.
    if (err instanceof FileFormatError) {
      yield { kind: 'error', line: err.line, field: err.field, message: err.message, file: true }
      return
    }
    const e = err as { code?: string; lines?: number; message: string }
    yield { kind: 'error', line: e.lines ?? 0, field: 'file', message: `${csvMessage(e)}; the file is not read past this line`, file: true }
  }
  if (!checkedHeader && header) {
    yield { kind: 'header', columns: header }
    const missing = requiredColumns.filter((c) => !header!.includes(c))
    if (missing.length) yield { kind: 'error', line: 1, field: missing[0]!, message: `required column missing from the header (${missing.join(', ')})`, file: true }
  }
}

function csvMessage(e: { code?: string; message: string }): string {
  switch (e.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is never closed (broken CSV quoting)'
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'a quote appears inside an unquoted field or after a closing quote (broken CSV quoting)'
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH':
    case 'CSV_RECORD_DONT_MATCH_COLUMNS_LENGTH':
      return 'the row has a different number of fields than the header'
    default:
      // csv-parse's own messages may quote the record; name the code instead.
      return `the CSV cannot be parsed here (${e.code ?? 'parse error'})`
  }
}

async function* jsonlRows(source: NodeJS.ReadableStream): AsyncGenerator<RowEvent> {
  let line = 0
  let buf = ''
  try {
    for await (const chunk of source as AsyncIterable<string>) {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const text = buf.slice(0, nl).replace(/\r$/, '')
        buf = buf.slice(nl + 1)
        line++
        const ev = jsonLine(text, line)
        if (ev) yield ev
      }
    }
  } catch (err) {
    if (err instanceof FileFormatError) {
      yield { kind: 'error', line: err.line, field: err.field, message: err.message, file: true }
      return
    }
    throw err
  }
  if (buf.trim()) {
    const ev = jsonLine(buf.replace(/\r$/, ''), line + 1)
    if (ev) yield ev
  }
}

function jsonLine(text: string, line: number): RowEvent | null {
  const trimmed = (line === 1 ? text.replace(/^\uFEFF/, '') : text).trim()
  if (!trimmed) return null
  const value = parseJson(trimmed)
  if (value === undefined) return { kind: 'error', line, field: 'line', message: 'not valid JSON', raw: trimmed }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'error', line, field: 'line', message: 'each line must be a JSON object', raw: trimmed }
  }
  return { kind: 'row', row: { line, fields: value as RawRow['fields'], raw: trimmed } }
}

/**
 * JSON.parse, or undefined. JSON forbids raw control characters inside strings; a line that parses
 * once they are escaped is returned as such, so the row's validation names the field holding one.
 */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    // eslint-disable-next-line no-control-regex
    const escaped = text.replace(/[\u0000-\u001F]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    if (escaped === text) return undefined
    try {
      return JSON.parse(escaped)
    } catch {
      return undefined
    }
  }
}
