/**
 * What dispatch is doing, shared through Redis so that `serve` (which runs no worker) can show it in
 * /metrics and on the dashboard:
 * - deferrals: jobs put off by the throttle (delayed without using an attempt), counted per provider
 *   and reason in one hash (`<prefix>:dispatch:deferred`, field `<provider>|<reason>`). Each process
 *   adds its counts once a second (one HINCRBY per changed field), not per deferral.
 * - circuits: the state of every circuit breaker, provider and credential, in one hash
 *   (`<prefix>:dispatch:circuits`, field = the circuit's name), written when a state changes. Breakers
 *   live in each worker process (circuit.ts); the hash holds the latest change any process made, with
 *   the time and the process, which is what an operator needs: "this provider was cut off at …".
 */
import type { Redis } from 'ioredis'
import type { CircuitStateName } from './circuit.ts'

export type DeferReason = 'rate' | 'concurrency' | 'hold' | 'circuit' | 'provider_cap' | 'quota' | 'queue_full' | 'timeout'

export interface CircuitReading {
  /** `<provider>` (scope provider) or the throttle key `<provider>-<credential id>` (scope credential). */
  readonly name: string
  readonly provider: string
  readonly scope: 'provider' | 'credential'
  readonly state: CircuitStateName
  /** When it changed to this state (ms since the epoch). */
  readonly since: number
  readonly by: string
}

export interface DispatchReading {
  readonly deferred: readonly { readonly provider: string; readonly reason: string; readonly n: number }[]
  readonly circuits: readonly CircuitReading[]
}

const deferredKey = (prefix: string) => `${prefix}:dispatch:deferred`
const circuitsKey = (prefix: string) => `${prefix}:dispatch:circuits`

export interface DispatchStatsWriter {
  deferred(provider: string, reason: DeferReason): void
  circuit(c: Omit<CircuitReading, 'since' | 'by'>): void
  /** Writes what is counted so far (also done every second). */
  flush(): Promise<void>
  close(): Promise<void>
}

export function createDispatchStatsWriter(redis: Redis, prefix: string, processName: string): DispatchStatsWriter {
  const counts = new Map<string, number>()
  const flush = async () => {
    if (counts.size === 0) return
    const pipe = redis.pipeline()
    for (const [field, n] of counts) pipe.hincrby(deferredKey(prefix), field, n)
    counts.clear()
    await pipe.exec()
  }
  const timer = setInterval(() => void flush().catch(() => {}), 1_000).unref()
  return {
    deferred(provider, reason) {
      const field = `${provider}|${reason}`
      counts.set(field, (counts.get(field) ?? 0) + 1)
    },
    circuit(c) {
      const reading: CircuitReading = { ...c, since: Date.now(), by: processName }
      void redis.hset(circuitsKey(prefix), c.name, JSON.stringify(reading)).catch(() => {})
    },
    flush,
    async close() {
      clearInterval(timer)
      await flush().catch(() => {})
    },
  }
}

/** One round trip: both hashes. */
export async function readDispatchStats(redis: Redis, prefix: string): Promise<DispatchReading> {
  const [deferred, circuits] = await Promise.all([redis.hgetall(deferredKey(prefix)), redis.hgetall(circuitsKey(prefix))])
  return {
    deferred: Object.entries(deferred)
      .map(([field, n]) => {
        const bar = field.lastIndexOf('|')
        return { provider: field.slice(0, bar), reason: field.slice(bar + 1), n: Number(n) || 0 }
      })
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.reason.localeCompare(b.reason)),
    circuits: Object.values(circuits)
      .map((v) => JSON.parse(v) as CircuitReading)
      .sort((a, b) => a.name.localeCompare(b.name)),
  }
}
