/**
 * Removing what one key prefix left in a shared Redis: used by the tests (a prefix per test file) and
 * by the bench (a prefix per scenario), over a connection of its own.
 */
import { Redis } from 'ioredis'
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
