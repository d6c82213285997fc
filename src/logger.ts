/** pino, JSON in production and pretty on a terminal, with personal data and secrets redacted. */
import { Writable } from 'node:stream'
import pino, { type Logger, type DestinationStream } from 'pino'
import pinoPretty from 'pino-pretty'
import { PINO_REDACT_PATHS } from './logging/redact.ts'
import { writeAboveStatus } from './logging/status-line.ts'

export type { Logger }

export function createLogger(opts: { level: string; pretty: boolean; name?: string }, destination?: DestinationStream): Logger {
  const base = {
    level: opts.level,
    name: opts.name ?? 'cash-receipts',
    redact: { paths: PINO_REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  }
  if (destination) return pino(base, destination)
  if (process.stderr.isTTY) {
    // On a terminal, lines go through the status line so they never land on a progress bar.
    const above = new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        writeAboveStatus(String(chunk))
        cb()
      },
    })
    if (opts.pretty) return pino(base, pinoPretty({ colorize: true, translateTime: 'SYS:HH:MM:ss', destination: above, sync: true }))
    return pino(base, { write: (line: string) => writeAboveStatus(line) })
  }
  if (opts.pretty) {
    return pino(base, pino.transport({ target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss' } }))
  }
  // Logs go to stderr so `--json` output on stdout stays clean.
  return pino(base, pino.destination({ fd: 2, sync: false }))
}
