/**
 * The one CSV writer (RFC 4180) for every CSV this project writes: the import --rejects file, the
 * demo's and the tests' generated days. A field a spreadsheet would run as a formula (starting
 * with = + - @, a tab or a carriage return) gets a leading apostrophe, the OWASP "CSV injection"
 * defence; the importer removes exactly that apostrophe again, so a written file re-imports as it was.
 */

/** Characters that make Excel, LibreOffice or Google Sheets read a cell as a formula. */
const FORMULA_START = /^[=+\-@\t\r]/

export function neutraliseFormula(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value
}

/** The inverse, for the importer: `'=1+1` → `=1+1`; any other value unchanged. */
export function restoreFormula(value: string): string {
  return value.length > 1 && value[0] === "'" && FORMULA_START.test(value.slice(1)) ? value.slice(1) : value
}

export function csvField(value: string | number | null | undefined): string {
  const s = neutraliseFormula(value === null || value === undefined ? '' : String(value))
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export function csvRow(values: readonly (string | number | null | undefined)[]): string {
  return values.map(csvField).join(',')
}

/** Header plus rows, each row's fields in header order, CRLF-free, ending with a newline. */
export function toCsvText(header: readonly string[], rows: readonly Readonly<Record<string, string | number | null | undefined>>[]): string {
  return [csvRow(header), ...rows.map((r) => csvRow(header.map((h) => r[h])))].join('\n') + '\n'
}
