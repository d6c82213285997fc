/**
 * Everything one queue prefix owns in Redis: BullMQ's queues and our pacer, quota, hold and limiter
 * registry keys (`<prefix>:…`), and bottleneck's limiter keys (`b_<prefix>-…`). A deployment keeps
 * one prefix for good; a run with a prefix of its own (the demo, a test, a bench scenario) removes
 * its keys with this when it ends.
 */
import type { Redis } from 'ioredis'

/** Removes every key of `prefix` (SCAN, never KEYS); returns how many were removed. */
export async function deletePrefixKeys(redis: Redis, prefix: string): Promise<number> {
  let removed = 0
  for (const pattern of [`${prefix}:*`, `b_${prefix}-*`]) {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      if (keys.length) removed += await redis.del(...keys)
    } while (cursor !== '0')
  }
  return removed
}
