/**
 * Progress on stderr: a one-line bar (count, rate, ETA) on a terminal, plain periodic lines when not a
 * TTY (CI logs, pipes). Never writes to stdout, so `--json` output stays clean.
 */
export interface Progress {
  update(done: number, total?: number, note?: string): void
  finish(note?: string): void
}

export function createProgress(label: string, opts: { stream?: NodeJS.WriteStream; intervalMs?: number; silent?: boolean } = {}): Progress {
  const stream = opts.stream ?? process.stderr
  const tty = Boolean(stream.isTTY)
  const interval = opts.intervalMs ?? (tty ? 100 : 5_000)
  const started = Date.now()
  let last = 0
  let lastLine = ''
  const render = (done: number, total?: number, note?: string) => {
    const secs = (Date.now() - started) / 1000
    const rate = secs > 0 ? done / secs : 0
    const pct = total ? Math.min(100, Math.floor((done / total) * 100)) : undefined
    const eta = total && rate > 0 ? Math.max(0, Math.round((total - done) / rate)) : undefined
    const bar = pct !== undefined && tty ? `[${'#'.repeat(Math.floor(pct / 5)).padEnd(20, '.')}] ` : ''
    return `${label} ${bar}${done}${total !== undefined ? `/${total}` : ''}${pct !== undefined ? ` (${pct}%)` : ''} ${rate.toFixed(0)}/s${eta !== undefined ? ` ETA ${eta}s` : ''}${note ? ` ${note}` : ''}`
  }
  return {
    update(done, total, note) {
      if (opts.silent) return
      const now = Date.now()
      if (now - last < interval) return
      last = now
      lastLine = render(done, total, note)
      stream.write(tty ? `\r\x1b[K${lastLine}` : `${lastLine}\n`)
    },
    finish(note) {
      if (opts.silent) return
      if (tty && lastLine) stream.write(`\r\x1b[K${lastLine}${note ? ` ${note}` : ''}\n`)
      else if (note) stream.write(`${label} ${note}\n`)
    },
  }
}
