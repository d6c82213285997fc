/** Terminal output for operators: display width, the report table, the progress line, HTML escaping. */
import { describe, expect, it } from 'vitest'
import { displayWidth, padToWidth, truncateToWidth, oneLine } from '../../src/report/text-width.ts'
import { formatReportTable, table } from '../../src/report/format-table.ts'
import { createProgress, formatDuration } from '../../src/cli/progress.ts'
import { writeAboveStatus } from '../../src/logging/status-line.ts'
import { liveStatus } from '../../src/http/dashboard-data.ts'
import { countsText, snakeKeys } from '../../src/cli/output.ts'
import { html, trusted } from '../../src/report/html.ts'
import { stackedBars, OUTCOME_SERIES } from '../../src/report/charts.ts'
import type { RunReport } from '../../src/report/report.ts'
import type { ReportDetails } from '../../src/report/report-details.ts'

describe('display width', () => {
  it('counts Hangul, CJK and fullwidth forms as two columns, combining marks as none', () => {
    expect(displayWidth('abc')).toBe(3)
    expect(displayWidth('서울 밝은치과의원')).toBe(17)
    expect(displayWidth('ＡＢ')).toBe(4)
    expect(displayWidth('e\u0301')).toBe(1)
    expect(displayWidth('한\u200b국')).toBe(4)
    expect(displayWidth('₩1,000')).toBe(6)
  })

  it('pads and truncates by columns, never mid-character', () => {
    expect(padToWidth('꽃집', 6)).toBe('꽃집  ')
    expect(padToWidth('12', 4, 'right')).toBe('  12')
    expect(truncateToWidth('국세청 전산 장애입니다', 9)).toBe('국세청 …')
    expect(displayWidth(truncateToWidth('국세청 전산 장애입니다', 9))).toBeLessThanOrEqual(9)
    expect(truncateToWidth('short', 10)).toBe('short')
    expect(oneLine('line one\n\tline\u0007 two ')).toBe('line one line two')
  })

  it('aligns every column of a table holding Korean text', () => {
    const t = table(
      ['merchant', 'issued'],
      [
        ['서울 밝은치과의원', '12'],
        ['동네 꽃집', '3'],
        ['Plain Shop', '100'],
      ],
      [false, true],
    )
    const widths = t.split('\n').map(displayWidth)
    expect(new Set(widths).size).toBe(1)
    expect(t.split('\n')[2]).toBe('서울 밝은치과의원      12')
  })
})

const report: RunReport = {
  run_id: '7',
  business_date: '2026-11-21',
  status: 'finished',
  totals: { eligible: 4, issued: 2, failed: 1, pending: 0, skipped: 1, cancelled: 0 },
  amount_issued: 23_000,
  by_provider: { nts: { issued: 2, failed: 1, pending: 0, skipped: 1, cancelled: 0 } },
  duplicates: [],
  reissued: 0,
  needs_attention: [],
  notifications: { pending: 0, sending: 0, sent: 0, failed: 0, skipped: 0, by_channel: {} },
  failures: [
    {
      transaction_id: 'T-1',
      provider: 'nts',
      error_class: 'permanent',
      code: 'E400',
      message: '식별번호가\n올바르지 않습니다 (주민등록번호 형식 오류가 발생하였습니다. 확인 후 다시 시도하십시오)',
    },
  ],
  duration_s: 3.5,
  trigger: 'manual',
  merchant_scope: '*',
  overdue: 0,
  redriven: 0,
  redrive_runs: [],
  redrive_of: [],
  operator_actions: [],
}
const details: ReportDetails = {
  by_merchant: [
    {
      merchant_id: 'm-clinic',
      name: '서울 밝은치과의원',
      issued: 2,
      failed: 1,
      pending: 0,
      skipped: 0,
      cancelled: 0,
    },
    {
      merchant_id: 'm-shop',
      name: 'Corner Shop',
      issued: 0,
      failed: 0,
      pending: 0,
      skipped: 1,
      cancelled: 0,
    },
  ],
  throughput: { bucket_s: 1, points: [] },
  latency: { bounds_ms: [25], by_provider: [] },
  failure_reasons: [
    {
      provider: 'nts',
      error_class: 'permanent',
      code: 'E400',
      count: 1,
      sample_message: '식별번호가 올바르지 않습니다',
    },
  ],
  failed_transactions: { 'T-1': { merchant_name: '서울 밝은치과의원', amount: 55_000, order_name: '스케일링', paid_at: '2026-11-20T02:00:00.000Z' } },
  overdue: { total: 0, receipts: [] },
}

describe('report table', () => {
  it('keeps a Korean provider message on one line, cut by columns, and aligns the merchant table', () => {
    const text = formatReportTable(report, details)
    const lines = text.split('\n')
    const failure = lines.find((l) => l.startsWith('T-1'))!
    expect(failure).toContain('식별번호가 올바르지 않습니다')
    expect(failure.endsWith('…')).toBe(true)
    const start = lines.findIndex((l) => l.startsWith('merchant'))
    const merchantRows = lines.slice(start, start + 4)
    expect(new Set(merchantRows.map(displayWidth)).size).toBe(1)
  })
})

function fakeStream(isTTY: boolean) {
  const out: string[] = []
  return { out, stream: { isTTY, write: (s: string) => (out.push(s), true) } }
}

describe('progress', () => {
  it('on a terminal redraws one line with a bar, count, rate and ETA, and ends with a newline', () => {
    let t = 0
    const { out, stream } = fakeStream(true)
    const p = createProgress('issuing', { stream, now: () => t })
    p.update(0, 200)
    t = 2_000
    p.update(50, 200, 'issued 50')
    p.finish('done')
    expect(out[1]).toBe('\r\x1b[Kissuing [#####...............] 50/200 (25%) 25/s ETA 6s · issued 50')
    expect(out.at(-1)!.endsWith('· done\n')).toBe(true)
    expect(out.every((s) => !s.includes('\n') || s === out.at(-1))).toBe(true)
  })

  it('without a terminal prints plain lines no more often than the interval, plus a final line', () => {
    let t = 0
    const { out, stream } = fakeStream(false)
    const p = createProgress('import', { stream, now: () => t, intervalMs: 5_000 })
    p.update(1_000)
    t = 1_000
    p.update(2_000) // within the interval: not printed
    t = 6_000
    p.update(12_000)
    p.finish()
    expect(out).toEqual(['import 1000 0.0/s\n', 'import 12000 1833/s\n', 'import 12000 1833/s\n'])
    expect(out.some((s) => s.includes('\r'))).toBe(false)
  })

  it('reaches 100 % only when done, never shows a negative rate, and restarts its rate when a count goes back', () => {
    let t = 0
    const { out, stream } = fakeStream(false)
    const p = createProgress('settle', { stream, now: () => t, intervalMs: 0 })
    p.update(0, 1_000)
    t = 1_000
    p.update(999, 1_000)
    expect(out.at(-1)).toContain('999/1000 (99%)')
    t = 2_000
    p.update(1_000, 1_000)
    expect(out.at(-1)).toBe('settle 1000/1000 (100%) 500/s\n')
    // A new phase counts from zero: the rate starts again, never negative.
    t = 3_000
    p.update(10)
    t = 4_000
    p.update(20)
    expect(out.slice(-2)).toEqual(['settle 10 0.0/s\n', 'settle 20 10/s\n'])
    expect(out.some((l) => /-\d/.test(l))).toBe(false)
  })

  it('on a terminal writes log lines and notes above the bar, then draws the bar again', () => {
    let t = 0
    const { out, stream } = fakeStream(true)
    const p = createProgress('issuing', { stream, now: () => t, intervalMs: 0 })
    p.update(5, 10)
    writeAboveStatus('{"level":30,"msg":"receipt outcome"}\n', stream)
    expect(out.at(-1)).toBe(`\r\x1b[K{"level":30,"msg":"receipt outcome"}\n${out[0]!.slice(4)}`)
    p.note('no worker is consuming the receipts queue\n')
    expect(out.at(-1)).toBe(`\r\x1b[Kno worker is consuming the receipts queue\n${out[0]!.slice(4)}`)
    t = 1_000
    p.finish('done')
    // After the bar is gone, writes pass straight through.
    writeAboveStatus('later\n', stream)
    expect(out.at(-1)).toBe('later\n')
  })

  it('formats durations', () => {
    expect([formatDuration(5), formatDuration(65), formatDuration(3_725)]).toEqual(['5s', '1m05s', '1h02m'])
  })
})

describe('--json and human output', () => {
  it('turns camelCase keys into snake_case at every depth and leaves codes, providers and ids alone', () => {
    expect(snakeKeys({ runId: 1, dryRun: false, rejectReasons: { KEY_CONFLICT: 2 }, byProvider: { 'portone-v2': 3 }, list: [{ transactionId: 'T-1' }], at: new Date(0) })).toEqual({
      run_id: 1,
      dry_run: false,
      reject_reasons: { KEY_CONFLICT: 2 },
      by_provider: { 'portone-v2': 3 },
      list: [{ transaction_id: 'T-1' }],
      at: '1970-01-01T00:00:00.000Z',
    })
  })

  it('prints counts in words, not JSON', () => {
    expect(countsText({ not_cash: 30, refunded: 4, none: 0 })).toBe('not_cash 30, refunded 4')
    expect(countsText({})).toBe('none')
  })
})

describe('runs list', () => {
  it('shows an enqueued run as issuing while receipts are pending and finished once none is', () => {
    const counts = (pending: number) => ({ issued: 3, failed: 1, pending, skipped: 0, cancelled: 0 })
    expect(liveStatus('enqueued', counts(2))).toBe('issuing')
    expect(liveStatus('enqueued', counts(0))).toBe('finished')
    expect(liveStatus('running', counts(0))).toBe('enqueueing')
    expect(liveStatus('finished', counts(0))).toBe('finished')
  })
})

describe('html', () => {
  it('escapes every interpolated value unless it is trusted markup', () => {
    const msg = '<script>alert("x")</script> & 꽃'
    expect(html`<td>${msg}</td>`.value).toBe('<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 꽃</td>')
    expect(html`<p>${trusted('<b>ok</b>')}${[1, '<', null]}</p>`.value).toBe('<p><b>ok</b>1&lt;</p>')
  })

  it('draws one mark per non-zero value and says so in data-points; an empty chart says there is no data', () => {
    const svg = stackedBars({
      id: 'chart-x',
      kind: 'x',
      title: 'X',
      series: OUTCOME_SERIES,
      rows: [{ label: '<가게>', values: { issued: 3, failed: 0, skipped: 1 } }],
    }).value
    expect(svg.match(/<rect\s+class="bar"/g)).toHaveLength(2)
    expect(svg).toContain('data-points="2"')
    expect(svg).toContain('&lt;가게&gt;')
    const none = stackedBars({
      id: 'chart-y',
      kind: 'y',
      title: 'Y',
      series: OUTCOME_SERIES,
      rows: [],
      empty: 'No failures',
    }).value
    expect(none).toContain('data-points="0"')
    expect(none).toContain('No failures')
  })
})
