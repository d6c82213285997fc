/**
 * One status line at the bottom of a terminal (a progress bar) and everything else written to stderr
 * above it: a log line written while a bar is drawn first clears the bar, then the bar is drawn again
 * below it, so log lines never land on the bar. Off a terminal there is no bar and writes pass through.
 */
export interface StatusLine {
  /** The current line, without a newline ('' when nothing is drawn). */
  text(): string
}

interface Sink {
  write(text: string): unknown
}

let active: { line: StatusLine; stream: Sink } | undefined

/** Makes `line` the status line drawn on `stream` (undefined: none). */
export function setStatusLine(line: StatusLine | undefined, stream: Sink = process.stderr): void {
  active = line ? { line, stream } : undefined
}

/** Writes `text` (whole lines) to stderr, above the status line when one is drawn. */
export function writeAboveStatus(text: string, stream: Sink = process.stderr): void {
  if (!active || active.stream !== stream) {
    stream.write(text)
    return
  }
  const bar = active.line.text()
  stream.write(`\r\x1b[K${text}${text.endsWith('\n') ? '' : '\n'}${bar}`)
}
