/**
 * The startup guard: the database and the queue's Redis keys must belong to one deployment. Every
 * job names a receipt by id in one database; a worker on another database (same Redis prefix) would
 * find none of them and fail every job. The database's id (db/deployment.ts) is copied to
 * `<prefix>:deployment` when that key is absent — a new deployment, or a Redis that lost its data,
 * which is safe: the jobs it lost are re-driven from the ledger — and a present, different id stops
 * the process before it enqueues or takes a job.
 */
import type { Redis } from 'ioredis'
import type { Db } from '../db/database.ts'
import { describeDatabase } from '../db/availability.ts'
import { databaseDeploymentId } from '../db/deployment.ts'

export class DeploymentMismatchError extends Error {
  override name = 'DeploymentMismatchError'
}

export interface DeploymentTarget {
  readonly databaseUrl: string
  readonly redisUrl: string
  readonly queuePrefix: string
}

export interface DeploymentCheck {
  readonly deploymentId: string
  /** True when Redis had no id (or `adopt` was asked) and the database's was written to it. */
  readonly adopted: boolean
}

export const deploymentKey = (prefix: string) => `${prefix}:deployment`

/** `Redis host:port`, never its password. */
function describeRedis(redisUrl: string): string {
  try {
    const u = new URL(redisUrl)
    return `Redis on ${u.hostname || 'localhost'}:${u.port || '6379'}${u.pathname.length > 1 ? ` db ${u.pathname.slice(1)}` : ''}`
  } catch {
    return 'the Redis in REDIS_URL'
  }
}

/**
 * Checks (and on first use records) that the database and the Redis prefix belong together.
 * `adopt` overwrites a different id in Redis with the database's: for an operator who has made sure
 * the queue under that prefix holds nothing of the other deployment.
 */
export async function checkDeployment(db: Db, redis: Redis, target: DeploymentTarget, opts: { readonly adopt?: boolean } = {}): Promise<DeploymentCheck> {
  const id = await databaseDeploymentId(db)
  const key = deploymentKey(target.queuePrefix)
  if (opts.adopt) {
    const before = await redis.getset(key, id)
    return { deploymentId: id, adopted: before !== id }
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    if ((await redis.set(key, id, 'NX')) === 'OK') return { deploymentId: id, adopted: true }
    const current = await redis.get(key)
    if (current === id) return { deploymentId: id, adopted: false }
    if (current === null) continue // removed between the two calls: try to write it again
    throw new DeploymentMismatchError(
      `refusing to start: ${describeDatabase(target.databaseUrl)} belongs to deployment ${id}, but queue prefix "${target.queuePrefix}" ` +
        `on ${describeRedis(target.redisUrl)} belongs to deployment ${current}, so its jobs name receipts of another database. ` +
        'Point DATABASE_URL and QUEUE_PREFIX at the same deployment. If this database is the right one and the queue under that prefix ' +
        "is left over from another deployment (e.g. the database was recreated), remove that queue's jobs and run " +
        '`cash-receipts migrate --adopt-redis`.',
    )
  }
  throw new DeploymentMismatchError(`could not record the deployment id under ${key}: the key keeps disappearing`)
}
