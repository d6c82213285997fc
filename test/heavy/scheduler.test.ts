/**
 * `cash-receipts scheduler` upserts the nightly settlement (00:30 Asia/Seoul) and the D+1 reconcile
 * as BullMQ job schedulers — idempotently, so two starts leave one of each — and drains on SIGTERM.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { spawnCli, stopChild } from '../helpers/pipeline.ts'

let env: TestEnv

beforeAll(async () => {
  env = await createTestEnv()
})
afterAll(async () => {
  await env?.close()
})

it('upserts the nightly settlement and reconcile schedulers once, in Asia/Seoul, and stops on SIGTERM', async () => {
  const queue = env.app.controlQueue()
  for (let run = 0; run < 2; run++) {
    const child = spawnCli(['scheduler'], env.env({ LOG_LEVEL: 'info' }))
    await eventually(async () => child.output().includes('scheduler started'), 120_000)
    const schedulers = await queue.getJobSchedulers()
    expect(schedulers).toHaveLength(2)
    const byId = Object.fromEntries(schedulers.map((s) => [s.key, s]))
    expect(byId['nightly-settlement']).toMatchObject({ pattern: '0 30 0 * * *', tz: 'Asia/Seoul' })
    expect(byId['daily-reconcile']).toMatchObject({ pattern: '0 0 6 * * *', tz: 'Asia/Seoul' })
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    await stopChild(child, 'SIGTERM')
    expect(await exit).toBe(0)
  }
  expect(await queue.getJobSchedulers()).toHaveLength(2)
}, 300_000)
