/**
 * Circuit breakers for provider calls (cockatiel): one per provider and one per credential, in each
 * worker process. A run of consecutive failures — a timeout, a 5xx or connection failure, any answer
 * whose outcome is unknown — opens the circuit; while it is open no call is made and the jobs behind
 * it are deferred (delayed, no attempt used); after `halfOpenMs` one call is let through as a probe
 * (half-open); its success closes the circuit, its failure opens it again.
 *
 * Why per process: a breaker is a guess about the provider's health from the calls this process
 * made. Sharing it through Redis would add a round trip to every call, and a wrong open state could
 * then stop every process at once. Each process pays at most `failures` failing calls (plus one probe
 * per half-open period) before it stops, which the per-provider in-flight cap bounds. The states are
 * published for /metrics and the dashboard (dispatch-stats.ts).
 *
 * Why cockatiel: a small, maintained TypeScript library whose breaker is exactly this state machine
 * (consecutive breaker, half-open after a delay, events on every change). Its `execute` makes
 * callers wait while a probe is in flight; a worker slot must not, so `waitMs` is asked first and a
 * caller that would wait is deferred instead.
 */
import { CircuitState, circuitBreaker, handleWhenResult, type CircuitBreakerPolicy, type IBreaker } from 'cockatiel'

export type CircuitStateName = 'closed' | 'open' | 'half_open'

export interface CircuitOptions {
  /** Consecutive failures that open the circuit. */
  readonly failures: number
  /**
   * Consecutive unknown outcomes (a read timeout after the request went out) that open it sooner
   * (default: `failures`). Each one is a receipt that must wait out the provider's commit window
   * before it may be looked up and sent again, so a hanging provider should get few of them.
   */
  readonly unknownOutcomes?: number
  /** How long it stays open before a probe is let through. */
  readonly halfOpenMs: number
  readonly onChange?: (state: CircuitStateName) => void
}

export interface Circuit {
  /**
   * 0: a call may start now (closed, or open long enough that this call becomes the probe); else
   * the ms until it is worth asking again (open: until half-open; half-open: a probe is in flight).
   */
  waitMs(): number
  /** Runs fn, counting its result; call it in the same tick as a `waitMs()` that answered 0. */
  run<T>(fn: () => Promise<T>): Promise<T>
  state(): CircuitStateName
}

/** Outcomes that say the provider is not answering properly: the ones a breaker counts. */
export function isFailureOutcome(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || !('kind' in v)) return false
  const kind = (v as { kind: unknown }).kind
  return kind === 'unknown_outcome' || kind === 'retryable'
}

const NAMES: Record<CircuitState, CircuitStateName> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Isolated]: 'open',
}

/**
 * cockatiel's ConsecutiveBreaker with a second, lower threshold for unknown outcomes: a run of
 * consecutive failures opens the circuit at `failures` failures, or once `unknownOutcomes` of them
 * were unknown outcomes. cockatiel's result filter sees each failing result before the breaker's
 * `failure()` is called for it (with an await between the two, so other calls' results may come in
 * between): the filter counts the unknown ones it saw and each `failure()` takes one of them, which
 * keeps the counts right whatever the interleaving.
 */
class RunBreaker implements IBreaker {
  state = { failures: 0, unknown: 0 }
  #unknownSeen = 0
  readonly #failures: number
  readonly #unknownOutcomes: number
  constructor(failures: number, unknownOutcomes: number) {
    this.#failures = failures
    this.#unknownOutcomes = unknownOutcomes
  }
  /** The result filter found this failing result; `unknown`: its kind is unknown_outcome. */
  noteFailure(unknown: boolean): void {
    if (unknown) this.#unknownSeen++
  }
  success(): void {
    this.state = { failures: 0, unknown: 0 }
  }
  failure(): boolean {
    const unknown = this.#unknownSeen > 0 ? 1 : 0
    this.#unknownSeen -= unknown
    this.state = { failures: this.state.failures + 1, unknown: this.state.unknown + unknown }
    return this.state.failures >= this.#failures || this.state.unknown >= this.#unknownOutcomes
  }
}

export function createCircuit(opts: CircuitOptions): Circuit {
  const breaker = new RunBreaker(opts.failures, opts.unknownOutcomes ?? opts.failures)
  // Only results are counted: an exception (the send fence refused, an abort, our own failure) says
  // nothing about the provider and passes through uncounted.
  const policy: CircuitBreakerPolicy = circuitBreaker(
    handleWhenResult((v) => {
      const failed = isFailureOutcome(v)
      if (failed) breaker.noteFailure((v as { kind: unknown }).kind === 'unknown_outcome')
      return failed
    }),
    { halfOpenAfter: opts.halfOpenMs, breaker },
  )
  let openedAt = 0
  policy.onBreak(() => {
    openedAt = Date.now()
  })
  policy.onStateChange((s) => opts.onChange?.(NAMES[s]))
  // While a probe is in flight, come back after a fraction of the open period.
  const probeBusyMs = Math.max(100, Math.round(opts.halfOpenMs / 4))
  return {
    waitMs() {
      switch (policy.state) {
        case CircuitState.Closed:
          return 0
        case CircuitState.Open:
          return Math.max(0, openedAt + opts.halfOpenMs - Date.now())
        case CircuitState.HalfOpen:
          return probeBusyMs
        default:
          return opts.halfOpenMs
      }
    },
    run: (fn) => policy.execute(fn),
    state: () => NAMES[policy.state],
  }
}
