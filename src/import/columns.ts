/**
 * The columns an import file may have: the import format's columns, plus `reject_reason`, which a
 * `--rejects` file adds so a merchant can fix its records and import the file again as it is (the
 * importer ignores it). Any other column is not read: it is reported, with the known column it was
 * probably meant to be, because a misspelled optional column (`buyer_mail`) would otherwise be
 * dropped without a word.
 */
import { IMPORT_COLUMNS } from '../domain/index.ts'

/** The column a rejects file adds: `line N: field: reason` for every problem of the record. */
export const REJECT_REASON_COLUMN = 'reject_reason'

const KNOWN: ReadonlySet<string> = new Set<string>([...IMPORT_COLUMNS, REJECT_REASON_COLUMN])

export const isKnownColumn = (name: string): boolean => KNOWN.has(name)

/**
 * The known column nearest to `name` when it is close enough to be a slip of the keyboard: an edit
 * distance of at most 2, or 3 for long names, after case and separators are folded (`Buyer-Mail`).
 * Undefined when nothing is that close.
 */
export function suggestColumn(name: string): string | undefined {
  const folded = fold(name)
  let best: { column: string; distance: number } | undefined
  for (const column of IMPORT_COLUMNS) {
    const distance = editDistance(folded, column)
    if (!best || distance < best.distance) best = { column, distance }
  }
  if (!best) return undefined
  const limit = Math.min(best.column.length >= 10 ? 3 : 2, Math.floor(folded.length / 2))
  return best.distance <= limit ? best.column : undefined
}

/**
 * The warning for an unknown column: its name and the column it was probably meant to be. A name
 * that looks like data (a run of digits, an @) is not repeated, only its position: a file without
 * its header row has a record there, and that may hold a phone number or an e-mail address.
 */
export function unknownColumnMessage(name: string, position?: number): { field: string; message: string } {
  // eslint-disable-next-line no-control-regex
  if (/\d{3}|@/.test(name) || /[\u0000-\u001F\u007F-\u009F]/.test(name)) {
    const field = position === undefined ? 'column' : `column ${position}`
    const what = position === undefined ? 'a key' : `column ${position}`
    const why = position === undefined ? 'its name looks like data, so it is not shown' : 'its name looks like data, so it is not shown: is the header row missing?'
    return { field, message: `${what} is not an import column and is ignored (${why})` }
  }
  const hint = suggestColumn(name)
  return { field: name, message: `column "${name}" is not an import column and is ignored${hint ? `; did you mean "${hint}"?` : ''}` }
}

const fold = (name: string): string =>
  name
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_')

/**
 * Levenshtein distance (insert, delete, substitute, each 1), two rows of the table. Column names
 * are a few dozen characters, so a dependency would buy nothing.
 */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]!
}
