/**
 * Progress on stderr: a one-line bar (count, rate, ETA) redrawn in place on a terminal, plain
 * periodic lines when not a TTY (CI logs, pipes, journald). Never writes to stdout, so `--json`
 * output stays clean. While a bar is drawn, log lines and notes are written above it
 * (src/logging/status-line.ts), never onto it.
 */
import { setStatusLine, writeAboveStatus } from '../logging/status-line.ts'

export interface Progress {
  /** `total` when known (bar, percentage and ETA); `note` is shown after the numbers. */
  update(done: number, total?: number, note?: string): void
  /** Prints the last state as a final line (always, TTY or not), with an optional note. */
  finish(note?: string): void
  /** A message line (ending in a newline) printed above the bar, the bar drawn again below it. */
  note(text: string, stream?: Pick<NodeJS.WriteStream, 'write'>): void
}

export interface ProgressOptions {
  readonly stream?: Pick<NodeJS.WriteStream, 'write'> & {
    readonly isTTY?: boolean
    readonly columns?: number
  }
  /** Minimum time between two redraws (TTY, default 100 ms) or two lines (otherwise, default 5 s). */
  readonly intervalMs?: number
  readonly silent?: boolean
  readonly now?: () => number
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

export function createProgress(label: string, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr
  const tty = Boolean(stream.isTTY)
  const interval = opts.intervalMs ?? (tty ? 100 : 5_000)
  const now = opts.now ?? Date.now
  let first: { t: number; done: number } | undefined
  let lastDraw = -Infinity
  let state: { done: number; total?: number; note?: string } | undefined
  let drawn = false
  let current = ''

  const render = () => {
    const { done, total, note } = state!
    const t = now()
    first ??= { t, done }
    // Rate over this progress's own lifetime: work done before it started (a run already half issued)
    // does not count. Never negative: a count that went back (a new phase) restarted the baseline.
    const secs = (t - first.t) / 1000
    const rate = secs > 0 ? Math.max(0, done - first.done) / secs : 0
    const complete = total !== undefined && done >= total
    const pct = total ? (complete ? 100 : Math.min(99, Math.floor((done / total) * 100))) : total === 0 ? 100 : undefined
    const eta = total !== undefined && rate > 0 && !complete ? (total - done) / rate : undefined
    const bar = pct !== undefined && tty ? `[${'#'.repeat(Math.floor(pct / 5)).padEnd(20, '.')}] ` : ''
    const count = total !== undefined ? `${done}/${total} (${pct}%)` : String(done)
    const etaText = eta !== undefined ? ` ETA ${formatDuration(eta)}` : total !== undefined && !complete ? ' ETA –' : ''
    return `${label} ${bar}${count} ${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)}/s${etaText}${note ? ` · ${note}` : ''}`
  }

  const statusLine = { text: () => current }

  return {
    update(done, total, note) {
      if (opts.silent) return
      const t = now()
      if (state && done < state.done) first = { t, done }
      state = { done, total, note }
      first ??= { t, done }
      if (t - lastDraw < interval) return
      lastDraw = t
      const line = render()
      if (tty) {
        current = line
        if (!drawn) setStatusLine(statusLine, stream)
        stream.write(`\r\x1b[K${line}`)
      } else stream.write(`${line}\n`)
      drawn = true
    },
    finish(note) {
      if (opts.silent) return
      if (tty && drawn) setStatusLine(undefined, stream)
      if (!state) {
        if (note) stream.write(`${label} ${note}\n`)
        return
      }
      const line = `${render()}${note ? ` · ${note}` : ''}`
      stream.write(tty && drawn ? `\r\x1b[K${line}\n` : `${line}\n`)
      drawn = false
      current = ''
    },
    note(text, to = stream) {
      if (tty && drawn && to === stream) writeAboveStatus(text, stream)
      else to.write(text)
    },
  }
}
