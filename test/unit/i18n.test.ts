/**
 * The message catalog and the language choice (src/i18n/, src/http/i18n.ts): Korean by default,
 * `?lang=` first and kept in links, then Accept-Language; both catalogs carry the same keys.
 */
import type { AddressInfo } from 'node:net'
import express from 'express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { kstDateTime } from '../../src/domain/index.ts'
import { formatMessage, pickLang, translator } from '../../src/i18n/index.ts'
import { en } from '../../src/i18n/messages-en.ts'
import { ko } from '../../src/i18n/messages-ko.ts'
import { chooseLanguage, tOf } from '../../src/http/i18n.ts'
import { layout } from '../../src/http/pages.ts'
import { html } from '../../src/report/html.ts'

describe('catalog', () => {
  it('has the same keys and placeholders in Korean and English, none empty', () => {
    expect(Object.keys(en).sort()).toEqual(Object.keys(ko).sort())
    const holes = (s: string) => [...new Set([...s.matchAll(/\{(\w+)[|}]/g)].map((m) => m[1]))].sort()
    for (const k of Object.keys(ko) as (keyof typeof ko)[]) {
      expect(ko[k].trim(), k).not.toBe('')
      expect(en[k].trim(), k).not.toBe('')
      expect(holes(en[k]), k).toEqual(holes(ko[k]))
    }
  })

  it('fills placeholders and English plurals; leaves unknown ones as written', () => {
    expect(formatMessage('{n} failed {n|receipt|receipts}', { n: 1 })).toBe('1 failed receipt')
    expect(formatMessage('{n} failed {n|receipt|receipts}', { n: 1200 })).toBe('1,200 failed receipts')
    expect(formatMessage('run #{id} of {date}', { id: 7 })).toBe('run #7 of {date}')
  })

  it('words of an open vocabulary fall back to the stored value', () => {
    expect(translator('ko').term('purpose', 'deduction')).toBe('소득공제')
    expect(translator('en').term('purpose', 'deduction')).toBe('income deduction')
    expect(translator('ko').term('purpose', 'something-new')).toBe('something-new')
  })

  it('writes amounts as Koreans and English readers expect', () => {
    expect(translator('ko').won(1234567)).toBe('1,234,567원')
    expect(translator('en').won(1234567)).toBe('₩1,234,567')
  })
})

describe('language choice', () => {
  it('?lang= wins, then Accept-Language, then Korean', () => {
    expect(pickLang('en', 'ko')).toEqual({ lang: 'en', explicit: true })
    expect(pickLang(undefined, 'en')).toEqual({ lang: 'en', explicit: false })
    expect(pickLang('fr', false)).toEqual({ lang: 'ko', explicit: false })
    expect(pickLang(['en', 'ko'], undefined)).toEqual({ lang: 'ko', explicit: false })
  })

  it('an explicit choice is kept in links; a negotiated one is not written into them', () => {
    const t = translator('en', { explicit: true, url: '/runs/3/failures?provider=toss&lang=en' })
    expect(t.href('/runs/3')).toBe('/runs/3?lang=en')
    expect(t.href('/runs/3/failures?code=E1#list')).toBe('/runs/3/failures?code=E1&lang=en#list')
    expect(t.switchTo('ko')).toBe('/runs/3/failures?provider=toss&lang=ko')
    expect(translator('en').href('/runs/3')).toBe('/runs/3')
  })
})

describe('the dashboard middleware over HTTP', () => {
  let url = ''
  let server: ReturnType<express.Express['listen']>
  beforeAll(async () => {
    const app = express()
    app.use(chooseLanguage())
    app.get('/p', (_req, res) => {
      const t = tOf(res)
      res.type('html').send(layout(t('nav.search'), html`<p><a id="next" href="${t.href('/runs/1')}">x</a></p>`, { t }))
    })
    server = app.listen(0, '127.0.0.1')
    await new Promise((r) => server.once('listening', r))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise((r) => server.close(r)))

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}${path}`, { headers })
    return {
      body: await res.text(),
      lang: res.headers.get('content-language'),
      vary: res.headers.get('vary'),
    }
  }

  it('is Korean with no preference', async () => {
    const r = await get('/p')
    expect(r.lang).toBe('ko')
    expect(r.body).toContain('<html lang="ko">')
    expect(r.body).toContain('<h1>검색</h1>')
    expect(r.body).toContain('href="/runs/1"')
    expect(r.body).toMatch(/hreflang="en"[^>]*href="\/p\?lang=en"/)
  })

  it('follows Accept-Language (q-values, regional tags) and says it varies on it', async () => {
    for (const al of ['en', 'en-US,en;q=0.9', 'fr;q=1, en;q=0.8, ko;q=0.5']) {
      const r = await get('/p', { 'accept-language': al })
      expect(r.lang, al).toBe('en')
      expect(r.body, al).toContain('<html lang="en">')
      expect(r.body, al).toContain('<h1>Search</h1>')
    }
    expect((await get('/p', { 'accept-language': 'ko-KR,ko;q=0.9,en;q=0.8' })).lang).toBe('ko')
    expect((await get('/p', { 'accept-language': 'fr' })).lang).toBe('ko')
    expect((await get('/p')).vary).toMatch(/Accept-Language/i)
  })

  it('?lang= beats Accept-Language and sticks in links', async () => {
    const r = await get('/p?lang=en', { 'accept-language': 'ko' })
    expect(r.body).toContain('<html lang="en">')
    expect(r.body).toContain('href="/runs/1?lang=en"')
    const back = await get('/p?lang=ko', { 'accept-language': 'en' })
    expect(back.body).toContain('<html lang="ko">')
    expect(back.body).toContain('href="/runs/1?lang=ko"')
  })
})

describe('KST everywhere', () => {
  it('shows an instant as Korean wall-clock time, labelled', () => {
    expect(kstDateTime(new Date('2026-12-05T15:30:05Z'))).toBe('2026-12-06 00:30:05 KST')
    expect(kstDateTime('2026-12-05T15:30:05Z', 'minute')).toBe('2026-12-06 00:30 KST')
    expect(kstDateTime(Date.parse('2026-12-05T09:00:00+09:00'))).toBe('2026-12-05 09:00:00 KST')
  })
})
