/**
 * Server-side SVG charts for the HTML report and the dashboard: no JavaScript, no fonts or scripts
 * from the network. Every chart is one `<svg class="chart" id="chart-…" data-chart="…"
 * data-points="N">`; each datum is a `<rect>` (or the line's `<path>`) with a `<title>` tooltip.
 */
import { html, type SafeHtml } from './html.ts'
import { displayWidth, truncateToWidth } from './text-width.ts'

export interface Series {
  readonly key: string
  readonly label: string
  readonly color: string
}

export const OUTCOME_SERIES: readonly Series[] = [
  { key: 'issued', label: 'issued', color: '#2e7d32' },
  { key: 'failed', label: 'failed', color: '#c62828' },
  { key: 'pending', label: 'pending', color: '#f9a825' },
  { key: 'skipped', label: 'skipped', color: '#9e9e9e' },
  { key: 'cancelled', label: 'cancelled', color: '#1565c0' },
]

export interface Row {
  readonly label: string
  readonly values: Readonly<Record<string, number>>
}

const FONT = 12
/** Approximate advance of one terminal column at 12px: Korean glyphs are two. */
const COLUMN_PX = 7
const n = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1))

function empty(id: string, kind: string, title: string, message: string): SafeHtml {
  return html`<svg
    class="chart"
    id="${id}"
    data-chart="${kind}"
    data-points="0"
    role="img"
    aria-label="${title}: ${message}"
    width="640"
    height="48"
    viewBox="0 0 640 48"
    xmlns="http://www.w3.org/2000/svg"
  >
    <text x="8" y="28" font-size="${FONT}" fill="#666">${message}</text>
  </svg>`
}

function legend(series: readonly Series[], y: number, x0: number): SafeHtml {
  let x = x0
  const items = series.map((s) => {
    const item = html`<g class="legend"
      ><rect x="${x}" y="${y - 9}" width="10" height="10" fill="${s.color}"></rect
      ><text x="${x + 14}" y="${y}" font-size="${FONT}">${s.label}</text></g
    >`
    x += 24 + displayWidth(s.label) * COLUMN_PX
    return item
  })
  return html`${items}`
}

/** Horizontal stacked bars: one row per label (provider, merchant, failure reason). */
export function stackedBars(opts: { id: string; kind: string; title: string; rows: readonly Row[]; series: readonly Series[]; empty?: string }): SafeHtml {
  const rows = opts.rows.filter((r) => opts.series.some((s) => (r.values[s.key] ?? 0) > 0))
  if (!rows.length) return empty(opts.id, opts.kind, opts.title, opts.empty ?? 'No data')
  const labels = rows.map((r) => truncateToWidth(r.label, 28))
  const labelW = Math.min(220, Math.max(60, ...labels.map((l) => displayWidth(l) * COLUMN_PX + 12)))
  const width = 760
  const barW = width - labelW - 70
  const rowH = 24
  const top = 28
  const height = top + rows.length * rowH + 8
  const max = Math.max(1, ...rows.map((r) => opts.series.reduce((a, s) => a + (r.values[s.key] ?? 0), 0)))
  let points = 0
  const bars = rows.map((r, i) => {
    const y = top + i * rowH
    let x = labelW
    const total = opts.series.reduce((a, s) => a + (r.values[s.key] ?? 0), 0)
    const segs = opts.series.map((s) => {
      const v = r.values[s.key] ?? 0
      if (v <= 0) return ''
      const w = Math.max(1, (v / max) * barW)
      points++
      const seg = html`<rect
        class="bar"
        data-series="${s.key}"
        data-value="${v}"
        x="${x.toFixed(1)}"
        y="${y + 3}"
        width="${w.toFixed(1)}"
        height="${rowH - 8}"
        fill="${s.color}"
        ><title>${r.label} · ${s.label}: ${v}</title></rect
      >`
      x += w
      return seg
    })
    return html`<text x="${labelW - 8}" y="${y + rowH / 2 + 4}" font-size="${FONT}" text-anchor="end"
        >${labels[i]!}</text
      >${segs}<text x="${x + 6}" y="${y + rowH / 2 + 4}" font-size="${FONT}" fill="#444">${total}</text>`
  })
  return html`<svg
    class="chart"
    id="${opts.id}"
    data-chart="${opts.kind}"
    data-points="${points}"
    role="img"
    aria-label="${opts.title}"
    width="${width}"
    height="${height}"
    viewBox="0 0 ${width} ${height}"
    xmlns="http://www.w3.org/2000/svg"
  >
    ${legend(opts.series, 14, labelW)}${bars}
  </svg>`
}

/**
 * Vertical stacked columns over an ordered axis (time buckets, latency buckets), with an optional
 * line (a `<path>`) of a cumulative total.
 */
export function columns(opts: {
  id: string
  kind: string
  title: string
  points: readonly Row[]
  series: readonly Series[]
  xTitle: string
  yTitle: string
  cumulative?: { key: string; label: string; color: string }
  empty?: string
}): SafeHtml {
  const pts = opts.points
  const totalOf = (p: Row) => opts.series.reduce((a, s) => a + (p.values[s.key] ?? 0), 0)
  if (!pts.length || !pts.some((p) => totalOf(p) > 0)) {
    return empty(opts.id, opts.kind, opts.title, opts.empty ?? 'No data')
  }
  const width = 760
  const height = 260
  const left = 48
  const right = opts.cumulative ? 56 : 16
  const top = 28
  const bottom = 48
  const plotW = width - left - right
  const plotH = height - top - bottom
  const max = Math.max(1, ...pts.map(totalOf))
  const slot = plotW / pts.length
  const colW = Math.max(1, slot * 0.8)
  let points = 0
  const cols = pts.map((p, i) => {
    let y = top + plotH
    const x = left + i * slot + (slot - colW) / 2
    return opts.series.map((s) => {
      const v = p.values[s.key] ?? 0
      if (v <= 0) return ''
      const h = Math.max(1, (v / max) * plotH)
      y -= h
      points++
      return html`<rect
        class="bar"
        data-series="${s.key}"
        data-value="${v}"
        x="${x.toFixed(1)}"
        y="${y.toFixed(1)}"
        width="${colW.toFixed(1)}"
        height="${h.toFixed(1)}"
        fill="${s.color}"
        ><title>${p.label} · ${s.label}: ${v}</title></rect
      >`
    })
  })
  // x labels: at most ~8, evenly spaced
  const every = Math.max(1, Math.ceil(pts.length / 8))
  const xLabels = pts.map((p, i) =>
    i % every === 0
      ? html`<text
          x="${(left + i * slot + slot / 2).toFixed(1)}"
          y="${top + plotH + 16}"
          font-size="11"
          text-anchor="middle"
          >${p.label}</text
        >`
      : '',
  )
  const yTicks = [0, 0.5, 1].map((f) => {
    const y = top + plotH - f * plotH
    return html`<line
        x1="${left - 4}"
        x2="${left + plotW}"
        y1="${y.toFixed(1)}"
        y2="${y.toFixed(1)}"
        stroke="#ddd"
      ></line
      ><text x="${left - 6}" y="${(y + 4).toFixed(1)}" font-size="11" text-anchor="end">${n(max * f)}</text>`
  })
  let line: SafeHtml | string = ''
  if (opts.cumulative) {
    const c = opts.cumulative
    let acc = 0
    const cum = pts.map((p) => (acc += p.values[c.key] ?? 0))
    const cmax = Math.max(1, acc)
    const d = cum.map((v, i) => `${i ? 'L' : 'M'}${(left + i * slot + slot / 2).toFixed(1)},${(top + plotH - (v / cmax) * plotH).toFixed(1)}`).join(' ')
    points++
    line = html`<path
        class="line"
        data-series="${c.key}"
        data-value="${acc}"
        d="${d}"
        fill="none"
        stroke="${c.color}"
        stroke-width="2"
        ><title>${c.label}: ${acc}</title></path
      ><text x="${width - right + 6}" y="${top + 4}" font-size="11">${n(acc)}</text
      ><text x="${width - right + 6}" y="${top + plotH}" font-size="11">0</text>`
  }
  const legendSeries = opts.cumulative ? [...opts.series, { key: opts.cumulative.key, label: opts.cumulative.label, color: opts.cumulative.color }] : opts.series
  return html`<svg
    class="chart"
    id="${opts.id}"
    data-chart="${opts.kind}"
    data-points="${points}"
    role="img"
    aria-label="${opts.title}"
    width="${width}"
    height="${height}"
    viewBox="0 0 ${width} ${height}"
    xmlns="http://www.w3.org/2000/svg"
  >
    ${legend(legendSeries, 14, left)}${yTicks}
    <line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#999"></line>
    ${cols}${line}${xLabels}
    <text x="${left + plotW / 2}" y="${height - 6}" font-size="11" text-anchor="middle" fill="#555">
      ${opts.xTitle}
    </text>
    <text
      x="12"
      y="${top + plotH / 2}"
      font-size="11"
      text-anchor="middle"
      fill="#555"
      transform="rotate(-90 12 ${top + plotH / 2})"
    >
      ${opts.yTitle}
    </text>
  </svg>`
}
