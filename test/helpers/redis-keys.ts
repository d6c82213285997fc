/**
 * Removing what one key prefix left in a shared Redis: used by the tests (a prefix per test file) and
 * by the bench (a prefix per scenario), over a connection of its own.
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { redisUrl } from './env.ts'
import { deletePrefixKeys } from '../../src/queue/prefix-keys.ts'

/** Removes every Redis key of a prefix (see deletePrefixKeys). Returns how many were removed. */
export async function deleteKeys(prefix: string, url = redisUrl()): Promise<number> {
  const r = new Redis(url)
  try {
    return await deletePrefixKeys(r, prefix)
  } finally {
    r.disconnect()
  }
}

/**
 * A test file's own Redis connection (handed to `set` before the tests), closed after them, with
 * every key of the file's prefix removed.
 */
export function useRedis(prefix: string, set: (redis: Redis) => void): void {
  let redis: Redis | undefined
  beforeAll(() => {
    redis = new Redis(redisUrl(), { maxRetriesPerRequest: null })
    set(redis)
  })
  afterAll(async () => {
    await deleteKeys(prefix)
    redis?.disconnect()
  })
}

/** Redis' clock, µs: the clock the rate window's permits and places are kept on. */
export async function redisNowUs(redis: Redis): Promise<number> {
  const [s, us] = await redis.time()
  return Number(s) * 1_000_000 + Number(us)
}
