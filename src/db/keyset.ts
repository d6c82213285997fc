/**
 * Keyset pagination for the dashboard's lists: a page is "the `size` rows after (or before) this
 * key" in the list's order, never "rows 200–300", so rows inserted while someone pages (a settle
 * running, receipts failing) neither shift a row onto the next page twice nor hide one. Links carry
 * the key of the last row shown (`after`) or of the first (`before`), with the filters.
 */

export interface PageRequest<K> {
  /** Rows after this key, in list order (the next page). */
  readonly after?: K
  /** Rows before this key, in list order (the previous page); wins over `after`. */
  readonly before?: K
  readonly size: number
}

export interface PageOf<T, K> {
  readonly rows: T[]
  /** The `after` of the next page; null on the last. */
  readonly next: K | null
  /** The `before` of the previous page; null on the first (and on an empty page: the list's first page is a link of its own). */
  readonly previous: K | null
}

/** The page sizes a list offers (the first is the default). */
export const PAGE_SIZES = [50, 20, 100, 200] as const
export const DEFAULT_PAGE_SIZE = PAGE_SIZES[0]

/**
 * One page. `fetch(cursor, limit)` returns up to `limit` rows: with no cursor, from the start in list
 * order; `forward`: the rows past `cursor.key` in list order; not forward: the rows before
 * `cursor.key` nearest first (reverse list order). One row more than the page is read to know
 * whether another page follows.
 */
export async function keysetPage<T, K>(
  page: PageRequest<K>,
  key: (row: T) => K,
  fetch: (cursor: { readonly key: K; readonly forward: boolean } | null, limit: number) => Promise<T[]>,
): Promise<PageOf<T, K>> {
  if (page.before !== undefined) {
    const got = await fetch({ key: page.before, forward: false }, page.size + 1)
    const rows = got.slice(0, page.size).reverse()
    const last = rows.at(-1)
    return { rows, previous: got.length > page.size && rows[0] ? key(rows[0]) : null, next: last ? key(last) : null }
  }
  const got = await fetch(page.after === undefined ? null : { key: page.after, forward: true }, page.size + 1)
  const rows = got.slice(0, page.size)
  const last = rows.at(-1)
  return {
    rows,
    next: got.length > page.size && last ? key(last) : null,
    previous: page.after !== undefined && rows[0] ? key(rows[0]) : null,
  }
}
