/**
 * addBulk of plain jobs (the settlement bench's baseline) against jobs of settle's shape (its data,
 * deterministic id, priority and the receipts queue's default options), alternating in one process:
 * Node CPU, Redis CPU (INFO cpu: use a Redis of its own, BENCH_REDIS) and wall per job.
 * `tsx bench/addbulk-shapes.ts [jobs] [rounds]`
 */
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { createRanker, createReceiptsQueue } from '../src/queue/queues.ts'
import { redisCpuSeconds } from './lib.ts'

const jobs = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 3)
const redisUrl = process.env.BENCH_REDIS ?? 'redis://127.0.0.1:6379'
const info = new Redis(redisUrl)
const merchants = Array.from({ length: 50 }, (_, i) => `bm${String(i).padStart(4, '0')}`)
const providers = ['portone', 'portone-v2', 'payssam'] as const

async function measure(name: string, run: (prefix: string, conn: Redis) => Promise<void>) {
  const prefix = `shape${Date.now().toString(36)}`
  const conn = new Redis(redisUrl, { maxRetriesPerRequest: null })
  const r0 = await redisCpuSeconds(info)
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await run(prefix, conn)
  const wall = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  const redis = (await redisCpuSeconds(info)) - r0
  const q = new Queue(name === 'plain' ? 'noop' : 'receipts', { connection: conn as never, prefix })
  await q.obliterate({ force: true })
  await q.close()
  conn.disconnect()
  const us = (s: number) => Math.round((s * 1e7) / jobs) / 10
  console.log(JSON.stringify({ shape: name, jobs_per_s: Math.round(jobs / wall), node_us: us((c.user + c.system) / 1e6), redis_us: us(redis) }))
}

const plain = (chunk: number) => async (prefix: string, conn: Redis) => {
  const queue = new Queue('noop', { connection: conn as never, prefix })
  for (let i = 0; i < jobs; i += chunk) {
    await queue.addBulk(
      Array.from({ length: Math.min(chunk, jobs - i) }, (_, k) => ({ name: 'noop', data: { receiptId: i + k, businessDate: '2026-11-21' }, opts: { removeOnComplete: true } })),
    )
  }
}
const settleShape = (chunk: number, priority: boolean) => async (prefix: string, conn: Redis) => {
  const queue = createReceiptsQueue(conn, prefix, 1000)
  const rank = createRanker()
  for (let i = 0; i < jobs; i += chunk) {
    await queue.addBulk(
      Array.from({ length: Math.min(chunk, jobs - i) }, (_, k) => {
        const id = i + k + 1
        const merchantId = merchants[id % 50]!
        const provider = providers[id % 3]!
        return {
          name: 'issue-receipt',
          data: { receiptId: id, businessDate: '2026-11-21', merchantId, provider },
          opts: { jobId: `issue-${id}`, ...(priority ? { priority: rank(merchantId, provider) } : {}) },
        }
      }),
    )
  }
}
await measure('warm-up', settleShape(2000, true))
await measure('warm-up', plain(1000))
for (let r = 0; r < rounds; r++) {
  await measure('plain', plain(1000))
  await measure('settle-shape', settleShape(2000, true))
  await measure('settle-shape-no-priority', settleShape(2000, false))
}
info.disconnect()
