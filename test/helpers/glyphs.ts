/**
 * Does Korean text render as real glyphs, or as tofu (the empty boxes a browser draws when no font
 * on the machine has the character)? Asked of a live page in Chromium, two ways:
 *
 * 1. Pixels. Each character of the element's text is drawn alone on a canvas in the element's own
 *    computed font stack, beside code points no font has (U+0378 is unassigned, U+FFFF and
 *    U+10FFFD are noncharacters): those always come out as the font's missing-glyph box. A Hangul
 *    syllable that renders draws ink, differs from the box, and differs from the other syllables;
 *    under tofu every syllable is the identical box.
 * 2. The font Chromium actually used for the element's text (DevTools' CSS.getPlatformFontsForNode).
 *
 * Without CJK fonts (check with a fontconfig that lists only DejaVu, see test/e2e/i18n.test.ts)
 * every syllable equals the box and the font is a Latin one: the check fails.
 */
import type { Page } from 'playwright-core'

export interface GlyphReport {
  /** The element's computed font-family. */
  readonly family: string
  /** Per distinct non-space character of the text: ink pixels and a hash of the drawing. */
  readonly chars: readonly { ch: string; ink: number; hash: number }[]
  /** The drawing of a code point no font has (the missing-glyph box). */
  readonly missing: { ink: number; hash: number }
  /** The fonts Chromium used to render the element's text. */
  readonly platformFonts: readonly string[]
}

// A string, not a function: the test runner's transform would add helpers the page does not have.
const DRAW = `((selector) => {
  const el = document.querySelector(selector)
  if (!el) throw new Error('no element ' + selector)
  const family = getComputedStyle(el).fontFamily
  const canvas = document.createElement('canvas')
  canvas.width = 64
  canvas.height = 64
  const ctx = canvas.getContext('2d', { willReadFrequently: true })
  const draw = (ch) => {
    ctx.clearRect(0, 0, 64, 64)
    ctx.font = '40px ' + family
    ctx.textBaseline = 'top'
    ctx.fillStyle = '#000'
    ctx.fillText(ch, 4, 4)
    const d = ctx.getImageData(0, 0, 64, 64).data
    let ink = 0
    let hash = 0
    for (let i = 3; i < d.length; i += 4) {
      if (d[i]) ink++
      hash = (Math.imul(hash, 31) + d[i]) >>> 0
    }
    return { ink, hash }
  }
  const chars = [...new Set([...el.textContent].filter((c) => c.trim()))].map((ch) => ({ ch, ...draw(ch) }))
  const missing = ['\\u0378', '\\uFFFF', '\\u{10FFFD}'].map(draw)
  return { family, chars, missing: missing[0], missingAgree: missing.every((m) => m.hash === missing[0].hash) }
})`

export async function glyphReport(page: Page, selector: string): Promise<GlyphReport> {
  const drawn = (await page.evaluate(`${DRAW}(${JSON.stringify(selector)})`)) as Omit<GlyphReport, 'platformFonts'> & { missingAgree: boolean }
  if (!drawn.missingAgree) {
    throw new Error('the missing-glyph probes differ: the probe code points have glyphs here')
  }
  const cdp = await page.context().newCDPSession(page)
  try {
    const { root } = await cdp.send('DOM.getDocument', { depth: -1 })
    const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector })
    await cdp.send('CSS.enable')
    const { fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId })
    return {
      family: drawn.family,
      chars: drawn.chars,
      missing: drawn.missing,
      platformFonts: fonts.map((f) => f.familyName),
    }
  } finally {
    await cdp.detach()
  }
}

const HANGUL = /[\uAC00-\uD7A3]/

/** The Hangul syllables of the report that drew as the missing-glyph box, or as nothing. */
export function tofu(r: GlyphReport): string[] {
  return r.chars.filter((c) => HANGUL.test(c.ch) && (c.ink === 0 || c.hash === r.missing.hash)).map((c) => c.ch)
}

/** How many distinct drawings the Hangul syllables made (under tofu: 1, whatever the text). */
export function distinctHangulDrawings(r: GlyphReport): number {
  return new Set(r.chars.filter((c) => HANGUL.test(c.ch)).map((c) => c.hash)).size
}
