/**
 * Graceful stop for the long-running commands (worker, scheduler, serve): the first SIGINT or SIGTERM
 * resolves `requested`, so the command drains what it runs and the app is closed once; a second signal
 * exits at once with the shell's code for that signal (130 or 143), as if it had not been caught.
 * Listen from the command's first moment: a stop during start-up is still a clean stop.
 */
export type ShutdownSignal = 'SIGINT' | 'SIGTERM'

export interface Shutdown {
  /** Resolves with the first signal received. */
  readonly requested: Promise<ShutdownSignal>
  /** Stops listening (the command ended by itself). */
  dispose(): void
}

export interface SignalSource {
  on(signal: ShutdownSignal, listener: () => void): unknown
  off(signal: ShutdownSignal, listener: () => void): unknown
  exit(code: number): void
}

const SIGNALS: readonly ShutdownSignal[] = ['SIGINT', 'SIGTERM']
const EXIT_CODE: Readonly<Record<ShutdownSignal, number>> = { SIGINT: 130, SIGTERM: 143 }

export function listenForShutdown(opts: { readonly source?: SignalSource; readonly stderr?: Pick<NodeJS.WriteStream, 'write'> } = {}): Shutdown {
  const source: SignalSource = opts.source ?? process
  const stderr = opts.stderr ?? process.stderr
  let first: ShutdownSignal | undefined
  let resolve!: (signal: ShutdownSignal) => void
  const requested = new Promise<ShutdownSignal>((r) => (resolve = r))
  const listeners = SIGNALS.map((signal) => {
    const listener = () => {
      if (first === undefined) {
        first = signal
        resolve(signal)
        return
      }
      stderr.write(`${signal} again: exiting without waiting for the shutdown to finish\n`)
      source.exit(EXIT_CODE[signal])
    }
    source.on(signal, listener)
    return [signal, listener] as const
  })
  return {
    requested,
    dispose() {
      for (const [signal, listener] of listeners) source.off(signal, listener)
    },
  }
}
