/**
 * Postgres array literals ('{…}') for a column of many rows, built in one pass over the rows and
 * handed to pg as ONE text parameter (cast in SQL: `${textArray(…)}::text[]`).
 *
 * Why not pass JavaScript arrays: pg encodes an array parameter element by element (prepareValue,
 * arrayString and escapeElement for every element, each a few intermediate strings), which with ~20
 * columns of 2,000 rows per settlement chunk was a measurable share of settle's thread and of its
 * garbage (docs/performance.md, "2026-12-05, third pass: settlement"). The literals produced here are
 * what pg would send for the same values: every text element double-quoted with `\` and `"` escaped,
 * NULL unquoted, so any string (empty, 'NULL', braces, commas, quotes, backslashes, any Unicode) reads
 * back unchanged.
 */

const NEEDS_ESCAPE = /["\\]/
const ESCAPE = /["\\]/g

/** A text[] (or date[], any type read from its text form) literal; null elements are SQL NULL. */
export function textArray<T>(rows: readonly T[], pick: (row: T) => string | null | undefined): string {
  const n = rows.length
  if (n === 0) return '{}'
  // One join per column: the literal is allocated once, not grown element by element.
  const values = new Array<string | null>(n)
  let nulls = false
  for (let i = 0; i < n; i++) {
    const v = pick(rows[i]!)
    if (v === null || v === undefined) {
      nulls = true
      values[i] = null
    } else values[i] = NEEDS_ESCAPE.test(v) ? v.replace(ESCAPE, '\\$&') : v
  }
  if (!nulls) return `{"${values.join('","')}"}`
  for (let i = 0; i < n; i++) values[i] = values[i] === null ? 'NULL' : `"${values[i]}"`
  return `{${values.join(',')}}`
}

/** A bigint[] / integer[] literal of safe integers; null elements are SQL NULL. */
export function intArray<T>(rows: readonly T[], pick: (row: T) => number | null | undefined): string {
  const n = rows.length
  const values = new Array<number | string>(n)
  for (let i = 0; i < n; i++) {
    const v = pick(rows[i]!)
    if (v === null || v === undefined) values[i] = 'NULL'
    else if (Number.isSafeInteger(v)) values[i] = v
    // NaN, Infinity or a fraction would otherwise reach Postgres as something it parses differently.
    else throw new RangeError(`not a safe integer for an integer array: ${v}`)
  }
  return `{${values.join(',')}}`
}

/** A boolean[] literal; null elements are SQL NULL. */
export function boolArray<T>(rows: readonly T[], pick: (row: T) => boolean | null | undefined): string {
  const n = rows.length
  const values = new Array<string>(n)
  for (let i = 0; i < n; i++) {
    const v = pick(rows[i]!)
    values[i] = v === null || v === undefined ? 'NULL' : v ? 't' : 'f'
  }
  return `{${values.join(',')}}`
}
