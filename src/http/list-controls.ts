/**
 * What every dashboard list shows around its table: the merchant filter (a select of the known
 * merchants), the page size, and previous / next / first-page links. Links keep the list's filters
 * (and an explicit `?lang=`) and carry the keyset cursor (src/db/keyset.ts), never an offset.
 */
import type { Translator } from '../i18n/index.ts'
import { html, trusted, type SafeHtml } from '../report/html.ts'
import { DEFAULT_PAGE_SIZE, PAGE_SIZES, type PageOf } from '../db/keyset.ts'

/** A list's current filters as query parameters (absent values left out). */
export type ListParams = Readonly<Record<string, string | number | undefined>>

/** `path?params` with empty values dropped and the language kept. */
export function listHref(t: Translator, path: string, params: ListParams): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v))
  const s = q.toString()
  return t.href(s ? `${path}?${s}` : path)
}

/** The merchant select and page-size select, for inside a list's GET form (which keeps `lang` itself). */
export function listFilterFields(
  t: Translator,
  merchants: readonly { readonly id: string; readonly name: string }[],
  current: { readonly merchant?: string; readonly size?: number },
): SafeHtml {
  const size = current.size ?? DEFAULT_PAGE_SIZE
  return html`<label
      >${t('list.merchant')}
      <select name="merchant" class="merchant-filter">
        <option value="">${t('common.all')}</option>
        ${merchants.map((m) => html`<option value="${m.id}" ${trusted(m.id === current.merchant ? ' selected' : '')}>${m.name} (${m.id})</option>`)}
      </select></label
    ><label
      >${t('list.pageSize')}
      <select name="size" class="page-size">
        ${[...PAGE_SIZES].sort((a, b) => a - b).map((n) => html`<option value="${n}" ${trusted(n === size ? ' selected' : '')}>${n}</option>`)}
      </select></label
    >`
}

/** A GET form with only the list fields, for a list that has no other filter. */
export function listFilterForm(
  t: Translator,
  id: string,
  merchants: readonly { readonly id: string; readonly name: string }[],
  current: { readonly merchant?: string; readonly size?: number },
): SafeHtml {
  return html`<form method="get" class="filters" id="${id}">
    ${t.explicit ? html`<input type="hidden" name="lang" value="${t.lang}" />` : ''} ${listFilterFields(t, merchants, current)}
    <button type="submit" style="background:#1f2937;border-color:#1f2937">${t('list.apply')}</button>
  </form>`
}

/**
 * Previous / next links of a keyset page (each keeps `params`: the filters and the page size), and a
 * link to the first page once the reader has paged away from it.
 */
export function pager<K extends string | number>(t: Translator, path: string, params: ListParams, page: PageOf<unknown, K>, paged: boolean): SafeHtml {
  const base = { ...params, after: undefined, before: undefined }
  return html`<p class="pager">
    ${paged ? html`<a class="first" href="${listHref(t, path, base)}">${t('list.first')}</a>` : ''}${
      page.previous !== null ? html`<a class="previous" rel="prev" href="${listHref(t, path, { ...base, before: page.previous })}">${t('pager.previous')}</a>` : ''
    }${page.next !== null ? html`<a class="next" rel="next" href="${listHref(t, path, { ...base, after: page.next })}">${t('pager.next')}</a>` : ''}
  </p>`
}
