/**
 * What the shared bottleneck limiters are doing right now, read cheaply from Redis for /metrics.
 *
 * Every process that builds a throttle records it in one hash (`<prefix>:limiters`, throttle key →
 * provider), so the dashboard process knows which limiters exist without scanning the keyspace. Per
 * limiter it then reads bottleneck's own cluster keys (`b_<limiter id>_…`) without running any of
 * bottleneck's scripts (those have side effects):
 * - running: calls in flight across all processes (the `running` field of `b_<id>_settings`);
 * - queued: calls waiting in the limiter across the processes still alive (sum of
 *   `b_<id>_client_num_queued` over clients seen within bottleneck's clientTimeout);
 * - quotaUsed: issue calls counted today (KST) against a daily quota (our own counter, throttle.ts).
 */
import type { Redis } from 'ioredis'

export interface LimiterStats {
  /** The throttle key: `<provider>-<credential id>`. */
  readonly limiter: string
  readonly provider: string
  readonly running: number
  readonly queued: number
  /** null when the credential has no quota key today. */
  readonly quotaUsed: number | null
}

const registryKey = (prefix: string) => `${prefix}:limiters`

/** Records a throttle key; idempotent, one HSET per throttle a process creates. */
export async function registerLimiter(redis: Redis, prefix: string, throttleKey: string, provider: string): Promise<void> {
  await redis.hset(registryKey(prefix), throttleKey, provider)
}

/** One pipeline round trip for all limiters (four reads each). Limiters whose settings expired are left out. */
export async function readLimiterStats(redis: Redis, prefix: string, kstDate: string, nowMs: number): Promise<LimiterStats[]> {
  const limiters = Object.entries(await redis.hgetall(registryKey(prefix))).sort(([a], [b]) => a.localeCompare(b))
  if (!limiters.length) return []
  const pipe = redis.pipeline()
  for (const [key] of limiters) {
    const id = `b_${prefix}-${key}`
    pipe.hmget(`${id}_settings`, 'running', 'clientTimeout')
    pipe.hgetall(`${id}_client_num_queued`)
    pipe.zrange(`${id}_client_last_seen`, 0, -1, 'WITHSCORES')
    pipe.get(`${prefix}:quota:${key}:${kstDate}`)
  }
  const replies = (await pipe.exec()) ?? []
  const out: LimiterStats[] = []
  limiters.forEach(([limiter, provider], i) => {
    const [settings, queuedByClient, lastSeen, quota] = replies.slice(i * 4, i * 4 + 4).map(([err, v]) => (err ? null : v)) as [
      (string | null)[] | null,
      Record<string, string> | null,
      string[] | null,
      string | null,
    ]
    if (!settings || settings[0] === null) return
    const clientTimeout = Number(settings[1] ?? 0)
    const alive = new Set<string>()
    for (let j = 0; lastSeen && j + 1 < lastSeen.length; j += 2) {
      if (!clientTimeout || Number(lastSeen[j + 1]) >= nowMs - clientTimeout) alive.add(lastSeen[j]!)
    }
    let queued = 0
    for (const [client, n] of Object.entries(queuedByClient ?? {})) {
      if (alive.has(client)) queued += Number(n) || 0
    }
    out.push({
      limiter,
      provider,
      running: Number(settings[0]) || 0,
      queued,
      quotaUsed: quota === null ? null : Number(quota),
    })
  })
  return out
}
