/**
 * Removing what one key prefix left in a shared Redis: used by the tests (a prefix per test file) and
 * by the bench (a prefix per scenario). Imports nothing but ioredis, so the bench can use it too.
 */
import { Redis } from 'ioredis'
import { redisUrl } from './env.ts'

/**
 * Removes every Redis key of a prefix: BullMQ queues, pacer, quota and hold keys (`<prefix>:…`) and
 * bottleneck's limiter keys (`b_<prefix>-…`). Returns how many were removed.
 */
export async function deleteKeys(prefix: string, url = redisUrl()): Promise<number> {
  const r = new Redis(url)
  let removed = 0
  try {
    for (const pattern of [`${prefix}:*`, `b_${prefix}-*`]) {
      let cursor = '0'
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        cursor = next
        if (keys.length) removed += await r.del(...keys)
      } while (cursor !== '0')
    }
  } finally {
    r.disconnect()
  }
  return removed
}
