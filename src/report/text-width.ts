/**
 * Terminal display width (Unicode East Asian Width, through `string-width`): Hangul, CJK, fullwidth
 * forms and emoji take two columns; combining marks, zero-width and control characters take none.
 * Padding by `.length` would misalign every table that holds a Korean merchant name or provider
 * message. Cutting works on grapheme clusters, so a syllable built from jamo or an emoji sequence is
 * never split.
 */
import stringWidth from 'string-width'

const graphemes = new Intl.Segmenter()

/** Columns one character (or grapheme cluster) takes. */
export function charWidth(ch: string): number {
  return stringWidth(ch)
}

export function displayWidth(s: string): number {
  return stringWidth(s)
}

/** Pads to `width` columns (left-aligned, or right-aligned for numbers). */
export function padToWidth(s: string, width: number, align: 'left' | 'right' = 'left'): string {
  const fill = ' '.repeat(Math.max(0, width - displayWidth(s)))
  return align === 'right' ? fill + s : s + fill
}

/** Cuts to at most `width` columns, ending with '…' when cut; never splits a character. */
export function truncateToWidth(s: string, width: number): string {
  if (displayWidth(s) <= width) return s
  let out = ''
  let w = 0
  for (const { segment } of graphemes.segment(s)) {
    const cw = stringWidth(segment)
    if (w + cw > width - 1) break
    out += segment
    w += cw
  }
  return `${out}…`
}

/** One line: control characters and runs of whitespace (a provider message may hold newlines) become one space. */
export function oneLine(s: string): string {
  return s.replace(/[\s\p{Cc}]+/gu, ' ').trim()
}
