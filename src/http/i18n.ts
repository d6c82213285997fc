/**
 * The language of each dashboard request (src/i18n/): `?lang=ko|en`, else Accept-Language, else
 * Korean. The translator rides on `res.locals.t` for the handlers; responses say which language
 * they are in (Content-Language) and that they vary with Accept-Language (caches keep both).
 */
import type { NextFunction, Request, Response } from 'express'
import { LANGS, pickLang, translator, type Translator } from '../i18n/index.ts'

export function chooseLanguage() {
  return (req: Request, res: Response, next: NextFunction) => {
    // express negotiates Accept-Language (q-values, en-US → en); with no header it answers 'ko'.
    const { lang, explicit } = pickLang(req.query.lang, req.acceptsLanguages(...LANGS))
    res.locals.t = translator(lang, { explicit, url: req.originalUrl })
    res.setHeader('Content-Language', lang)
    res.vary('Accept-Language')
    next()
  }
}

/** The request's translator (Korean when the middleware did not run, e.g. in a unit test). */
export const tOf = (res: Response): Translator => (res.locals.t as Translator | undefined) ?? translator('ko')

/**
 * The translator of an error page: its language switch leads to the home page instead of echoing
 * the URL that was asked for, which may hold whatever was mistyped into it (an identifier, say).
 */
export function errorPageT(res: Response): Translator {
  const t = tOf(res)
  return translator(t.lang, { explicit: t.explicit, url: '/' })
}
