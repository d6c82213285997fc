/**
 * The message catalog of the dashboard, the HTML report and the printable receipt: Korean first
 * (`ko`, the default: merchants and their operators read Korean), English available (`en`).
 *
 * What holds:
 * - Every key exists in every language: `en` is typed against `ko`'s keys, so a key added to one
 *   catalog and not the other fails `npm run typecheck`.
 * - A message is plain text with `{name}` placeholders, filled by {@link Translator}; values are
 *   not escaped here (the `html` tag escapes whatever a page interpolates, messages included).
 * - `{n|one|other}` picks `one` when `n` is 1, `other` otherwise (English plurals; Korean needs none).
 * - The language of a request is chosen by {@link pickLang}: `?lang=` first (and then kept in every
 *   link, see {@link Translator.href}), then the Accept-Language header, then `ko`.
 *
 * To add a string: add the key to messages-ko.ts with its Korean text and to messages-en.ts with its
 * English text, then call `t('the.key', { vars })` where the page renders it.
 */
import { ko, type MessageKey } from './messages-ko.ts'
import { en } from './messages-en.ts'

export type { MessageKey }
export const LANGS = ['ko', 'en'] as const
export type Lang = (typeof LANGS)[number]
export const DEFAULT_LANG: Lang = 'ko'

const CATALOGS: Readonly<Record<Lang, Readonly<Record<MessageKey, string>>>> = { ko, en }

export type MessageVars = Readonly<Record<string, string | number>>

export const isLang = (v: unknown): v is Lang => typeof v === 'string' && (LANGS as readonly string[]).includes(v)

/** Fills `{name}` and `{n|one|other}` placeholders; an unknown placeholder stays as written. */
export function formatMessage(template: string, vars: MessageVars = {}): string {
  return template.replace(/\{(\w+)(?:\|([^|{}]*)\|([^|{}]*))?\}/g, (whole, name: string, one?: string, other?: string) => {
    const v = vars[name]
    if (v === undefined) return whole
    if (one !== undefined && other !== undefined) return Number(v) === 1 ? one : other
    return typeof v === 'number' ? v.toLocaleString('en-US') : v
  })
}

export interface Translator {
  /** The message `key` in this language, placeholders filled. */
  (key: MessageKey, vars?: MessageVars): string
  readonly lang: Lang
  /** True when the language came from `?lang=`: links then carry it so the choice sticks. */
  readonly explicit: boolean
  /** `path` with `lang=` added when the choice was explicit (a path with or without a query). */
  href(path: string): string
  /**
   * A word from an open vocabulary (a receipt state, a purpose, a trigger): the message
   * `group.value` when the catalog has one, else `value` as stored (a new state still shows).
   */
  term(group: string, value: string): string
  /** The same page in `other` language (the request's URL with `lang=` replaced); '' if unknown. */
  switchTo(other: Lang): string
  /** A number as the pages show it (digits grouped by thousands in both languages). */
  num(n: number): string
  /** A KRW amount: `12,345원` in Korean, `₩12,345` in English. */
  won(n: number): string
}

export function translator(lang: Lang, opts: { explicit?: boolean; url?: string } = {}): Translator {
  const catalog = CATALOGS[lang]
  const explicit = opts.explicit ?? false
  const t = ((key: MessageKey, vars?: MessageVars) => formatMessage(catalog[key], vars)) as Translator
  return Object.assign(t, {
    lang,
    explicit,
    href(path: string): string {
      if (!explicit) return path
      const hash = path.indexOf('#')
      const [base, frag] = hash < 0 ? [path, ''] : [path.slice(0, hash), path.slice(hash)]
      return `${base}${base.includes('?') ? '&' : '?'}lang=${lang}${frag}`
    },
    term(group: string, value: string): string {
      const key = `${group}.${value}`
      return Object.hasOwn(catalog, key) ? catalog[key as MessageKey] : value
    },
    switchTo(other: Lang): string {
      if (opts.url === undefined) return ''
      const u = new URL(opts.url, 'http://x')
      u.searchParams.set('lang', other)
      return `${u.pathname}${u.search}`
    },
    num: (n: number) => n.toLocaleString('en-US'),
    won: (n: number) => (lang === 'ko' ? `${n.toLocaleString('en-US')}원` : `₩${n.toLocaleString('en-US')}`),
  })
}

/**
 * The language for a request: a valid `?lang=` wins (explicit), then the best of Accept-Language
 * among {@link LANGS} (the caller passes what its framework negotiated, or undefined), then `ko`.
 */
export function pickLang(queryLang: unknown, negotiated?: string | false): { lang: Lang; explicit: boolean } {
  if (isLang(queryLang)) return { lang: queryLang, explicit: true }
  if (isLang(negotiated)) return { lang: negotiated, explicit: false }
  return { lang: DEFAULT_LANG, explicit: false }
}
